"""Run a retraining job file where no tracking server is reachable (a GPU box, a batch cluster node).

    shapflow evaluate lds --use-case digits --export-jobs jobs.json       # where MLflow is
    python -m shapflow.evaluation.worker jobs.json --out results.jsonl --device cuda --stack 64
    python -m shapflow.evaluation.worker jobs.json --out results.jsonl --workers 0   # CPU node: a process per core
    shapflow evaluate lds --use-case digits --ingest results.jsonl        # back where MLflow is

The job file carries the whole use-case config and each job's identity key. The worker appends one JSON
line per finished job (flushed at once, so a killed worker keeps what it finished and a rerun skips it)
and stamps every line with the full-training stage key it computed from the config it was given, so
ingesting refuses lines trained under another config. A rerun skips a job whose key, or whose (stamp, mask,
seed), the results file already holds: a job file exported again under a new code version (new keys) still
resumes a versioned results file (``fixture.ledger_path``). ``--stack`` 0 (the default) stacks where that
pays (``groundtruth.auto_stack``). This module never imports MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from shapflow.config import UseCaseConfig, from_dict, stage_key, to_dict
from shapflow.data import load_data
from shapflow.evaluation.groundtruth import RetrainJob, run_jobs
from shapflow.utility import load_scorer

__all__ = ["FORMAT", "config_stamp", "done_in", "main", "read_jobs", "read_results", "write_jobs"]

FORMAT = "shapflow-retrain-jobs/1"


def config_stamp(cfg: UseCaseConfig) -> str:
    """What must match between a job file and its results: the training, sampling and property stage keys."""
    return ":".join(stage_key(cfg, stage) for stage in ("full", "sampling", "property"))


def write_jobs(cfg: UseCaseConfig, jobs: list[RetrainJob], path: Path) -> Path:
    """Write a job file: format tag, config (as data), its stamp, and the jobs."""
    payload = {"format": FORMAT, "use_case": to_dict(cfg), "stamp": config_stamp(cfg),
               "jobs": [asdict(job) for job in jobs]}
    path.write_text(json.dumps(payload, indent=1))
    return path


def read_jobs(path: Path) -> tuple[UseCaseConfig, list[RetrainJob]]:
    """The config and jobs of a job file; a clear error when it is not one, or its config was edited."""
    payload = json.loads(Path(path).read_text())
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a shapflow retraining job file (format {payload.get('format')!r}); "
                         "write one with `shapflow evaluate lds --export-jobs`")
    cfg = from_dict(UseCaseConfig, payload["use_case"])
    if config_stamp(cfg) != payload["stamp"]:
        raise ValueError(f"{path}: its config no longer matches its stamp (edited?): export the jobs again")
    return cfg, [RetrainJob(**job) for job in payload["jobs"]]


def read_results(path: Path) -> list[dict]:
    """The result lines of a results file (a torn last line from a killed worker is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def done_in(jobs: list[RetrainJob], records: list[dict], stamp: str) -> set[str]:
    """Keys of the ``jobs`` that ``records`` answer: the same key, or the same mask and seed under ``stamp``."""
    keys = {record["job"]["key"] for record in records}
    trained = {(record["job"]["mask"], int(record["job"]["seed"])) for record in records
               if record.get("stamp") == stamp}
    return {job.key for job in jobs if job.key in keys or (job.mask, job.seed) in trained}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shapflow.evaluation.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", type=Path, help="job file written by `shapflow evaluate lds --export-jobs`")
    parser.add_argument("--out", type=Path, required=True, help="results file (JSON lines; appended)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 [cpu]")
    parser.add_argument("--stack", type=int, default=0,
                        help="models trained together (vmapped); 0: a stack of up to 64 on a GPU, 1 on a CPU [0]")
    parser.add_argument("--workers", type=int, default=1,
                        help="one-thread processes sharing the jobs, on CPU (0: one per core) [1]")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many jobs (0: all) [0]")
    args = parser.parse_args(argv)

    cfg, jobs = read_jobs(args.jobs)
    stamp = config_stamp(cfg)
    done = done_in(jobs, read_results(args.out), stamp) if args.out.exists() else set()
    pending = [job for job in jobs if job.key not in done]
    if args.limit:
        pending = pending[: args.limit]
    print(f"{len(jobs)} jobs, {len(done)} already in {args.out}, running {len(pending)} on {args.device}",
          file=sys.stderr)
    data = load_data(cfg.data, cfg.assets)
    scorer = load_scorer(cfg, data)
    with args.out.open("a") as out:
        for outcome in run_jobs(cfg, data, scorer, pending, device=args.device, stack=args.stack,
                                workers=args.workers, progress=True):
            out.write(json.dumps({**outcome.as_record(), "stamp": stamp}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
