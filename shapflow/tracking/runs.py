"""The runs of an entry point: its parent run's lifecycle, and reading a store back (a study's utilities, its
attribute runs, the newest experiment, whether a coalition is already FINISHED)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from shapflow.tracking.store import STAGE_TAG, STUDY_TAG, Tracker, default_tracking_uri

__all__ = ["FinishedLookup", "RunStopped", "latest_experiment", "parent_run", "studies", "utilities_table"]


class RunStopped(Exception):
    """An entry point stopped on purpose before its end (e.g. its work was written to a job file to run
    elsewhere); the message says what to do next. Its parent run ends KILLED, not FAILED."""


@contextmanager
def parent_run(tracker: Tracker, name: str, tags: dict[str, str]) -> Iterator[str]:
    """The run an entry point logs under: the one ``mlflow run`` started (``MLFLOW_RUN_ID``: tagged here, ended
    by ``mlflow run``), or a new one, ended on exit FINISHED, KILLED (Ctrl-C, SystemExit, ``RunStopped``) or
    FAILED; the adopted run is renamed ``name`` (``mlflow run`` gives it a random one)."""
    adopted = os.environ.get("MLFLOW_RUN_ID")
    if adopted:
        tracker.log(adopted, tags={**tags, "mlflow.runName": name})
        yield adopted
        return
    run_id = tracker.start(name, tags)
    try:
        yield run_id
    except (KeyboardInterrupt, SystemExit, RunStopped):
        tracker.end(run_id, "KILLED")
        raise
    except BaseException:
        tracker.end(run_id, "FAILED")
        raise
    tracker.end(run_id)


@dataclass(frozen=True)
class FinishedLookup:
    """``lookup(key)``: whether the store at ``uri`` already holds a FINISHED run with identity ``key``.

    Picklable (a URI and an experiment id), so worker processes and Ray tasks can skip a coalition another
    driver finished without the executors knowing about MLflow.
    """

    uri: str
    experiment_id: str

    def __call__(self, key: str) -> bool:
        client = MlflowClient(tracking_uri=self.uri)
        return Tracker(client, self.uri, self.experiment_id).finished(key) is not None


def utilities_table(tracker: Tracker, study: str) -> pd.DataFrame:
    """Every FINISHED coalition/endpoint run of a study as rows (coalition_id, mask, size, utility, ...).

    Sorted by coalition id (sampler order); endpoints (``v0``, ``v1``) are the rows of size 0 and n.
    """
    runs = tracker.search(f"tags.`{STUDY_TAG}` = '{study}' AND attributes.status = 'FINISHED'")
    rows = [{"coalition_id": r.data.params.get("coalition_id", ""), "mask": r.data.params.get("mask", ""),
             "size": int(r.data.params.get("size", 0)), "contributors": r.data.params.get("contributors", ""),
             "role": r.data.params.get("role", "plan"),
             **r.data.metrics, "run_id": r.info.run_id, "stage": r.data.tags.get(STAGE_TAG, "")}
            for r in runs if r.data.tags.get(STAGE_TAG) in ("coalition", "endpoint")]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("coalition_id", kind="stable").drop_duplicates("coalition_id").reset_index(drop=True)


def studies(tracker: Tracker) -> Iterator[tuple[str, Run]]:
    """(study id, attribute run) of the experiment's attribute runs, newest first."""
    for run in tracker.search(f"tags.`{STAGE_TAG}` = 'attribute'"):
        if STUDY_TAG in run.data.tags:
            yield run.data.tags[STUDY_TAG], run



def latest_experiment(uri: str | None = None) -> str | None:
    """Name of the experiment holding the store's newest attribute run (None when there is none)."""
    client = MlflowClient(tracking_uri=uri or default_tracking_uri())
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.`{STAGE_TAG}` = 'attribute'", max_results=1,
                              order_by=["attributes.start_time DESC"]) if ids else []
    return client.get_experiment(runs[0].info.experiment_id).name if runs else None
