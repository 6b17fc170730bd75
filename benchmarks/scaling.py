"""Scale-out benchmark: coalitions per minute (local vs 1 and 2 Ray workers) and MLflow tracking overhead.

Usage:  python benchmarks/scaling.py [--coalitions 8] [--budget 10] [--realistic] [--json PATH]
Throughput: the same tiny digits-classes coalitions evaluated by the local executor (one process) and by
a local Ray cluster with 1 and 2 one-CPU workers (models put once in the object store). Tracking overhead:
a whole attribute sweep with SQLite and with a PostgreSQL-backed MLflow server; the share of the
coalition phase's wall time spent inside MLflow client calls (``Tracker.call``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# keep this folder (benchmarks/kernels.py shadows the `kernels` package diffusers probes for) off sys.path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from shapflow import attribute, tracking  # noqa: E402
from shapflow.attribute import TINY_OVERRIDES, parse_request, run_attribute  # noqa: E402
from shapflow.cache import cache_dir  # noqa: E402
from shapflow.config import load_use_case, stage_key  # noqa: E402
from shapflow.executors import ExecutorSpec, evaluate_many  # noqa: E402
from shapflow.pipeline import STAGE_ORDER, load_study  # noqa: E402
from shapflow.services import start_mlflow_server, start_postgres  # noqa: E402

USE_CASE = "digits-classes"
OVERRIDES = [*TINY_OVERRIDES, "sft.steps=10"]
# --realistic: tiny stages, but each coalition costs what a digits coalition costs (sFT 100 x 128, 512 images)
REALISTIC = [*TINY_OVERRIDES, "sft.steps=100", "sft.batch_size=128", "sampling.num_images=512",
             "sampling.num_inference_steps=25", "sampling.batch_size=512"]


def throughput(n: int, overrides: list[str]) -> dict[str, float]:
    """Coalitions per minute of the local executor and of 1 and 2 Ray workers on the same masks."""
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
    for workers in (1, 2):
        ray.init(num_cpus=workers, object_store_memory=200 * 1024**2, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        list(evaluate_many(study, {0: masks[0]}, workers=workers, folders=folders, spec=ExecutorSpec("ray")))
        start = time.perf_counter()  # after a warm-up task per worker start-up
        list(evaluate_many(study, masks, workers=workers, folders=folders, spec=ExecutorSpec("ray")))
        rates[f"ray_{workers}_workers"] = 60 * n / (time.perf_counter() - start)
        ray.shutdown()
    return rates


def tracking_overhead(uri: str, budget: int, experiment: str, overrides: list[str]) -> float:
    """Share of the coalition phase's wall time spent inside MLflow client calls (one sweep, 1 process)."""
    spent, phase = [0.0], [0.0]
    call, coalitions = tracking.Tracker.call, attribute.Driver.coalitions

    def timed_call(self, method, *args, **kwargs):
        start = time.perf_counter()
        try:
            return call(self, method, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start if phase[0] else 0.0

    def timed_coalitions(self, *args, **kwargs):
        phase[0] = time.perf_counter()
        try:
            return coalitions(self, *args, **kwargs)
        finally:
            phase[0] = time.perf_counter() - phase[0]

    tracking.Tracker.call, attribute.Driver.coalitions = timed_call, timed_coalitions
    try:
        request = parse_request(USE_CASE, overrides=overrides, budget=budget, workers=1, experiment=experiment)
        run_attribute(request, uri=uri, progress=False)
    finally:
        tracking.Tracker.call, attribute.Driver.coalitions = call, coalitions
    return spent[0] / phase[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coalitions", type=int, default=8)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--realistic", action="store_true",
                        help="coalitions as costly as digits ones (~2 s), not 0.3 s smoke ones")
    args = parser.parse_args()
    overrides = REALISTIC if args.realistic else OVERRIDES
    os.environ.setdefault("SHAPFLOW_CODE_VERSION", "scaling-benchmark")
    rates = throughput(args.coalitions, overrides)
    out: dict[str, float] = {**rates, "speedup_2_workers": rates["ray_2_workers"] / rates["ray_1_workers"],
                             "ray_2_vs_local": rates["ray_2_workers"] / rates["local_1_process"]}
    with tempfile.TemporaryDirectory(prefix="shapflow-scaling-") as tmp:
        out["tracking_overhead_sqlite"] = tracking_overhead(f"sqlite:///{tmp}/mlruns.db", args.budget, "scaling",
                                                            overrides)
        postgres = start_postgres(Path(tmp) / "pg")
        try:
            server = start_mlflow_server(postgres.uri, Path(tmp) / "artifacts", log=Path(tmp) / "mlflow.log")
            try:
                out["tracking_overhead_postgres"] = tracking_overhead(server.uri, args.budget, "scaling", overrides)
            finally:
                server.stop()
        finally:
            postgres.stop()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
