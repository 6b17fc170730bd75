"""Ground-truth retrainings as MLflow runs: look up, compute, export, ingest. Get-or-run, never overwrite.

Every retraining is one run (stage ``retrain``) tagged with its job key, so every method evaluated on a
use case, and every later evaluation, reuses it; a killed evaluation redoes only the jobs with no FINISHED
run. Outcomes computed elsewhere (``shapflow.evaluation.worker`` on a GPU box or batch node) come back
through ``ingest``, which logs a line only when its key is wanted and its config stamp matches.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shapflow.config import UseCaseConfig, stage_key
from shapflow.data import ContributorDataset
from shapflow.evaluation.fixture import GroundTruth
from shapflow.evaluation.groundtruth import RetrainJob, RetrainOutcome, run_jobs, time_one
from shapflow.evaluation.worker import config_stamp, read_results, write_jobs
from shapflow.generation.grids import image_grid
from shapflow.properties import Property
from shapflow.shapley.masks import mask_of
from shapflow.tracking import KEY_TAG, STAGE_TAG, USE_CASE_TAG, RunStopped, Tracker, quoted

__all__ = ["RETRAIN_STAGE", "JobsExported", "Retrained", "RetrainingNotAsked", "ensure_retrained",
           "finished_retrains", "ingest", "log_outcome"]

RETRAIN_STAGE = "retrain"
PURPOSE_TAG = "shapflow.purpose"
DEVICE_TAG = "shapflow.computed_on"


class JobsExported(RunStopped):
    """The missing retrainings were written to a job file instead of run; the message says how to go on."""


class RetrainingNotAsked(RunStopped):
    """Retrainings are missing and were not asked for; the message says how many, what for, and how long they
    would take here."""


@dataclass(frozen=True)
class Retrained:
    """The logged outcome of a job: its utility, every property, and its run id."""

    utility: float
    properties: dict[str, float]
    run_id: str


def finished_retrains(tracker: Tracker, cfg: UseCaseConfig) -> dict[str, Retrained]:
    """{job key: outcome} of every FINISHED retraining run of the use case in the tracker's experiment."""
    runs = tracker.search(f"tags.`{STAGE_TAG}` = '{RETRAIN_STAGE}' AND tags.`{USE_CASE_TAG}` = {quoted(cfg.name)} "
                          "AND attributes.status = 'FINISHED'")
    found: dict[str, Retrained] = {}
    for run in reversed(runs):  # oldest first: the first finished run of a key is the one every reader uses
        key = run.data.tags.get(KEY_TAG)
        if key and key not in found and "utility" in run.data.metrics:
            metrics = dict(run.data.metrics)
            found[key] = Retrained(metrics.pop("utility"), metrics, run.info.run_id)
    return found


def log_outcome(tracker: Tracker, cfg: UseCaseConfig, names: tuple[str, ...], outcome: RetrainOutcome | dict,
                parent: str | None) -> str:
    """Log one retraining (an outcome, or a results-file record) as a FINISHED run; returns its run id."""
    record = outcome.as_record() if isinstance(outcome, RetrainOutcome) else outcome
    job = RetrainJob(**record["job"])
    mask = mask_of(job.mask)
    members = [names[i] for i in np.flatnonzero(mask)]
    name = f"retrain · {len(members)}/{mask.size} · seed {job.seed} · {job.purpose}"
    run_id = tracker.start(name, {STAGE_TAG: RETRAIN_STAGE, KEY_TAG: job.key, USE_CASE_TAG: cfg.name,
                                  PURPOSE_TAG: job.purpose, DEVICE_TAG: record["device"]}, parent)
    try:
        tracker.log(run_id, params={"mask": job.mask, "size": len(members),
                                    "seed": job.seed, "purpose": job.purpose,
                                    "config_hash": stage_key(cfg, "full"), "computed_on": record["device"]},
                    metrics={"utility": record["utility"], **record["properties"], **record["timings"]})
        images = getattr(outcome, "images", None)
        if images is not None:
            with tempfile.TemporaryDirectory(prefix="shapflow-retrain-") as tmp:
                tracker.log_artifact(run_id, image_grid(images, Path(tmp) / "samples.png"))
    except BaseException:
        tracker.end(run_id, "FAILED")
        raise
    tracker.end(run_id)
    return run_id


def ingest(tracker: Tracker, cfg: UseCaseConfig, names: tuple[str, ...], jobs: list[RetrainJob],
           records: Iterable[dict], parent: str | None, source: str) -> int:
    """Log the records (results-file lines, or fixture rows) that answer a wanted, not yet FINISHED job; returns
    how many. Records stamped with another config are refused (counted on stderr), never logged."""
    wanted = {job.key for job in jobs}
    done = set(finished_retrains(tracker, cfg))
    stamp, logged, refused = config_stamp(cfg), 0, 0
    for record in records:
        key = record["job"]["key"]
        if record.get("stamp") != stamp:
            refused += 1
        elif key in wanted and key not in done:
            log_outcome(tracker, cfg, names, record, parent)
            done.add(key)
            logged += 1
    if refused:
        print(f"shapflow: {refused} line(s) of {source} were computed under another config and were not logged",
              file=sys.stderr)
    return logged


def ensure_retrained(tracker: Tracker, cfg: UseCaseConfig, data: ContributorDataset, scorer: Property,
                     jobs: list[RetrainJob], *, parent: str | None = None, device: str = "cpu", stack: int = 1,
                     workers: int = 1, results: tuple[Path, ...] = (), export: Path | None = None,
                     fixture: GroundTruth | None = None, progress: bool = False,
                     retrain: bool = True, optional: frozenset[str] = frozenset()) -> dict[str, Retrained]:
    """{job key: outcome} for every job: reused runs, the ``fixture``'s rows, ingested ``results`` lines, then
    computed ones.

    With ``export``, the jobs still missing are written to that job file instead of computed, and
    ``JobsExported`` says how to run and ingest them. Without ``retrain`` nothing is computed: missing jobs raise
    ``RetrainingNotAsked`` saying how many, what for and how long they would take on this machine, except when
    every missing job's key is in ``optional`` (held-out coalitions a partial fixture lacks): then that is said
    on stderr and the outcomes found are returned, for the caller to use what they cover.
    """
    unique = list({job.key: job for job in jobs}.values())
    if fixture is not None:
        ingest(tracker, cfg, data.names, unique, fixture.records(unique), parent, f"fixture {fixture.path}")
    for path in results:
        ingest(tracker, cfg, data.names, unique, read_results(path), parent, str(path))
    found = finished_retrains(tracker, cfg)
    missing = [job for job in unique if job.key not in found]
    if missing and export is not None:
        write_jobs(cfg, missing, export)
        raise JobsExported(f"{len(missing)} retraining(s) still missing: written to {export}. Run them with\n"
                         f"  python -m shapflow.evaluation.worker {export} --out results.jsonl --device cuda "
                         "--stack 64\nthen rerun this command with --ingest results.jsonl")
    if not missing:
        return found
    if not retrain and {job.key for job in missing} <= optional:
        print(f"shapflow: {len(missing)} optional retraining(s) ({_purposes(missing)}) are not in the store or the "
              "fixture: going on with what exists (fill the fixture with `shapflow evaluate fixture --jobs "
              "jobs.json` and the worker, or pass --retrain true)", file=sys.stderr)
        return found
    if not retrain:
        raise RetrainingNotAsked(_not_asked(cfg, data, scorer, missing, found, device, workers))
    for outcome in run_jobs(cfg, data, scorer, missing, device=device, stack=stack, workers=workers,
                            progress=progress):
        log_outcome(tracker, cfg, data.names, outcome, parent)
    return finished_retrains(tracker, cfg)


def _not_asked(cfg: UseCaseConfig, data: ContributorDataset, scorer: Property, missing: list[RetrainJob],
               found: dict[str, Retrained], device: str, workers: int) -> str:
    """What retraining ``missing`` would take here: how many, for what, and the time (from this store's logged
    retrainings of the same recipe, else a short timed one)."""
    logged = [r.properties for r in found.values() if "train_seconds" in r.properties]
    if logged:
        each = float(np.median([p["train_seconds"] + p.get("sample_seconds", 0.0) + p.get("score_seconds", 0.0)
                                for p in logged]))
        how = f"the median of {len(logged)} logged retrainings"
    else:
        each = time_one(cfg, data, scorer, missing[0], device)
        how = f"{min(10, cfg.train.steps)} of its {cfg.train.steps} training steps timed here, plus sampling"
    parallel = max(1, workers if workers > 0 else (os.cpu_count() or 1)) if device == "cpu" else 1
    total = each * len(missing) / parallel
    return (f"{len(missing)} retraining(s) from scratch are not in the store or the fixture "
            f"({_purposes(missing)}): ~{each:.0f} s each on "
            f"{device} here ({how}), ~{total / 3600:.1f} h in all on {parallel} worker(s). Start them with "
            "--retrain, write them to a job file for another machine with --export-jobs jobs.json, or evaluate "
            "fewer held-out coalitions (--count, --seeds) than the fixture holds")


def _purposes(jobs: list[RetrainJob]) -> str:
    """"3 heldout-0.50, 17 loo": how many jobs per purpose."""
    return ", ".join(f"{count} {purpose}" for purpose, count in Counter(job.purpose for job in jobs).items())
