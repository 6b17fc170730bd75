"""Scale-out benchmark: coalitions per minute (local vs 1 and 2 Ray workers), MLflow tracking overhead, and
CPU retrainings per minute (one process vs worker processes).

Usage:  python benchmarks/scaling.py [--coalitions 8] [--budget 10] [--realistic] [--only X] [--json PATH]
Throughput: the same tiny digits-classes coalitions evaluated by the local executor (one process) and by
a local Ray cluster with 1 and 2 one-CPU workers (models put once in the object store), timed after every
worker has started and loaded the study (start-up is paid once per sweep, not per coalition), and the
same masks on 1 and 2 plain one-thread processes: the scaling this machine's cores allow at all.
Tracking overhead: a whole attribute sweep with SQLite and with a PostgreSQL-backed MLflow server; the share of the
coalition phase's wall time the driver thread spends blocked inside MLflow client calls (``Tracker.call``;
the artifact upload and end of each run happen on a background thread while the next coalition runs).
Retraining (``--only retrain``): ground-truth retrainings per minute of ``shapflow evaluate`` on CPU, in one
process against one one-thread worker process per core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# keep this folder (benchmarks/kernels.py shadows the `kernels` package diffusers probes for) off sys.path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from shapflow.attribution import parse_request, run_attribute  # noqa: E402
from shapflow.attribution.driver import Driver  # noqa: E402
from shapflow.cache import cache_dir  # noqa: E402
from shapflow.config import (  # noqa: E402
    STAGE_ORDER,
    load_use_case,
    stage_key,
    to_dict,
)
from shapflow.data import load_data  # noqa: E402
from shapflow.evaluation.groundtruth import RetrainJob, run_jobs  # noqa: E402
from shapflow.execution import ExecutorSpec, evaluate_many  # noqa: E402
from shapflow.execution.local import _evaluate_in_worker, _init_worker  # noqa: E402
from shapflow.services.server import start_mlflow_server, start_postgres  # noqa: E402
from shapflow.shapley.masks import bits, heldout_masks  # noqa: E402
from shapflow.testing.fast import FAST_SETTINGS  # noqa: E402
from shapflow.tracking import Tracker  # noqa: E402
from shapflow.utility import load_scorer, load_study  # noqa: E402

USE_CASE = "digits-classes"
OVERRIDES = [*FAST_SETTINGS, "sft.steps=10"]
# --realistic: tiny stages, but each coalition costs what a digits coalition costs (sFT 100 x 128, 512 images)
REALISTIC = [*FAST_SETTINGS, "sft.steps=100", "sft.batch_size=128", "sampling.num_images=512",
             "sampling.num_inference_steps=25", "sampling.batch_size=512"]


def process_rate(study_cfg: dict, folders: dict[str, str], masks: dict[int, np.ndarray], processes: int) -> float:
    """Coalitions per minute of ``processes`` plain one-thread processes (no Ray, no MLflow), timed after each
    has loaded the study: what this machine's cores give independent work, the ceiling for any executor."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker,
                             initargs=(study_cfg, folders)) as pool:
        list(pool.map(_evaluate_in_worker, range(processes), [masks[0]] * processes, [1] * processes))
        start = time.perf_counter()
        list(pool.map(_evaluate_in_worker, list(masks), list(masks.values()), [1] * len(masks)))
        return 60 * len(masks) / (time.perf_counter() - start)


def throughput(n: int, overrides: list[str]) -> dict[str, float]:
    """Coalitions per minute of the local executor, of 1 and 2 plain processes, and of 1 and 2 Ray workers."""
    import ray

    cfg = load_use_case(USE_CASE, overrides)
    study = load_study(cfg)  # trains once into the stage cache; Ray workers get it from the object store
    folders = {s: str(cache_dir("stages", f"{cfg.name}-{s}-{stage_key(cfg, s)[:16]}")) for s in STAGE_ORDER}
    masks = dict(enumerate(np.random.default_rng(0).random((n, study.data.n_contributors)) < 0.5))
    rates = {}
    list(evaluate_many(study, {0: masks[0]}, workers=1, folders=folders, spec=ExecutorSpec("local")))  # warm-up
    start = time.perf_counter()
    list(evaluate_many(study, masks, workers=1, folders=folders, spec=ExecutorSpec("local")))
    rates["local_1_process"] = 60 * n / (time.perf_counter() - start)
    for processes in (1, 2):
        rates[f"plain_{processes}_processes"] = process_rate(to_dict(cfg), folders, masks, processes)
    for workers in (1, 2):
        ray.init(num_cpus=workers, object_store_memory=200 * 1024**2, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        # warm-up: one concurrent coalition per worker, so every worker process has started and rebuilt its
        # Study (a once-per-sweep cost) before the clock runs: the ratio is the steady-state throughput
        warm = {i: masks[i % n] for i in range(workers)}
        list(evaluate_many(study, warm, workers=workers, folders=folders, spec=ExecutorSpec("ray")))
        start = time.perf_counter()
        list(evaluate_many(study, masks, workers=workers, folders=folders, spec=ExecutorSpec("ray")))
        rates[f"ray_{workers}_workers"] = 60 * n / (time.perf_counter() - start)
        ray.shutdown()
    return rates


def retraining_rate(jobs: int, steps: int) -> dict[str, float]:
    """Ground-truth retrainings per minute (digits recipe cut to ``steps`` steps, 512 images scored) in this
    process with torch's threads, and spread over one one-thread worker process per core (spawn start-up
    included: it is paid once per batch of retrainings)."""
    cfg = load_use_case("digits", [f"train.steps={steps}"])
    data = load_data(cfg.data, cfg.assets)
    scorer = load_scorer(cfg, data)
    planned = [RetrainJob(f"bench-{i}", bits(m), 0, "benchmark")
               for i, m in enumerate(heldout_masks(data.n_contributors, 0.5, jobs))]
    rates = {}
    for workers in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        list(run_jobs(cfg, data, scorer, planned, workers=workers))
        name = "retrain_in_process" if workers == 1 else f"retrain_{workers}_workers"
        rates[name] = 60 * jobs / (time.perf_counter() - start)
    return rates


def tracking_overhead(uri: str, budget: int, experiment: str, overrides: list[str]) -> tuple[float, float]:
    """(blocked, background): shares of the coalition phase's wall time spent in MLflow client calls on the
    driver thread (the overhead: the driver waits) and on the background finisher thread (artifact upload and
    end of each run, overlapping the next coalition's compute). One in-process sweep."""
    spent = {"blocked": 0.0, "background": 0.0}
    inside, phase = [False], [0.0]
    call, coalitions = Tracker.call, Driver.coalitions

    def timed_call(self, method, *args, **kwargs):
        start = time.perf_counter()
        try:
            return call(self, method, *args, **kwargs)
        finally:
            if inside[0]:
                main = threading.current_thread() is threading.main_thread()
                spent["blocked" if main else "background"] += time.perf_counter() - start

    def timed_coalitions(self, *args, **kwargs):
        inside[0], start = True, time.perf_counter()
        try:
            return coalitions(self, *args, **kwargs)
        finally:
            inside[0], phase[0] = False, time.perf_counter() - start

    Tracker.call, Driver.coalitions = timed_call, timed_coalitions
    try:
        request = parse_request(USE_CASE, overrides=overrides, budget=budget, workers=1, experiment=experiment)
        run_attribute(request, uri=uri, progress=False)
    finally:
        Tracker.call, Driver.coalitions = call, coalitions
    return spent["blocked"] / phase[0], spent["background"] / phase[0]


def tracking_costs(budget: int, overrides: list[str]) -> dict[str, float]:
    """Tracking overhead (blocked, background) of one sweep with SQLite and with a PostgreSQL-backed server."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="shapflow-scaling-") as tmp:
        out["tracking_overhead_sqlite"], out["tracking_background_sqlite"] = tracking_overhead(
            f"sqlite:///{tmp}/mlruns.db", budget, "scaling", overrides)
        cluster = tempfile.mkdtemp(prefix="shapflow-pg-")  # its own folder: the postgres user must reach it
        postgres = start_postgres(cluster)
        try:
            server = start_mlflow_server(postgres.uri, Path(tmp) / "artifacts", log=Path(tmp) / "mlflow.log")
            try:
                out["tracking_overhead_postgres"], out["tracking_background_postgres"] = tracking_overhead(
                    server.uri, budget, "scaling", overrides)
            finally:
                server.stop()
        finally:
            postgres.stop()
            shutil.rmtree(cluster, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coalitions", type=int, default=8)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--realistic", action="store_true",
                        help="coalitions as costly as digits ones (~2 s), not 0.3 s smoke ones")
    parser.add_argument("--only", choices=("throughput", "tracking", "retrain"), default=None, help="run one part")
    parser.add_argument("--retrain-jobs", type=int, default=4, help="retrainings per side of the retrain part")
    parser.add_argument("--retrain-steps", type=int, default=300, help="training steps of each (the recipe: 2000)")
    args = parser.parse_args()
    overrides = REALISTIC if args.realistic else OVERRIDES
    os.environ.setdefault("SHAPFLOW_CODE_VERSION", "scaling-benchmark")
    out: dict[str, float] = {}
    if args.only in (None, "throughput"):
        rates = throughput(args.coalitions, overrides)
        out |= {**rates, "speedup_2_workers": rates["ray_2_workers"] / rates["ray_1_workers"],
                "speedup_2_plain_processes": rates["plain_2_processes"] / rates["plain_1_processes"],
                "ray_2_vs_local": rates["ray_2_workers"] / rates["local_1_process"]}
    if args.only in (None, "tracking"):
        out |= tracking_costs(args.budget, overrides)
    if args.only in (None, "retrain"):
        rates = retraining_rate(args.retrain_jobs, args.retrain_steps)
        out |= {**rates, "speedup_retrain_workers": max(rates.values()) / rates["retrain_in_process"]}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
