"""The runs of an entry point: its parent run's lifecycle, and reading a store back (a study's utilities, its
attribute runs, the newest experiment, whether a coalition is already FINISHED)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from shapflow.config import InputError, UseCaseConfig, from_dict
from shapflow.tracking.store import Tracker, client_for, default_tracking_uri
from shapflow.tracking.tags import RETIRED_TAG, STAGE_TAG, STUDY_TAG, quoted
from shapflow.utility import read_stage_meta

__all__ = ["LINK_TAG", "FinishedLookup", "RunStopped", "discard_when_ended", "latest_experiment", "parent_run",
           "retire_run", "studies", "study_config", "utilities_table", "with_members"]

LINK_TAG = "shapflow.linked_run"  # an ``mlflow run`` run of another experiment <-> the run shapflow logged into


class RunStopped(Exception):
    """An entry point stopped on purpose before its end (e.g. its work was written to a job file to run
    elsewhere); the message says what to do next. Its parent run ends KILLED, not FAILED."""


@contextmanager
def parent_run(tracker: Tracker, name: str, tags: dict[str, str]) -> Iterator[str]:
    """The run an entry point logs under, after retiring the experiment's runs whose owner is gone.

    The run ``mlflow run`` started (``MLFLOW_RUN_ID``) when it lies in the tracker's experiment (tagged and
    renamed ``name`` here, ended by ``mlflow run``); otherwise a new one, ended on exit FINISHED, KILLED (Ctrl-C,
    SystemExit, ``RunStopped``) or FAILED. An adopted run of another experiment (``mlflow run`` without
    ``--experiment-name``) only links to the new run, so both commands share the use case's experiment.
    """
    tracker.retire_leftovers()
    adopted = _adoptable(tracker, os.environ.get("MLFLOW_RUN_ID"))
    if adopted and tracker.call("get_run", adopted).info.experiment_id == tracker.experiment_id:
        tracker.adopt(adopted, {**tags, "mlflow.runName": name})
        try:
            yield adopted
        except (KeyboardInterrupt, RunStopped) as stop:  # its nested runs end here; `mlflow run` ends it
            tracker.release(adopted)
            tracker.retire_own(f"stopped: {type(stop).__name__} {stop}".strip())
            raise
        tracker.release(adopted)
        return
    run_id = tracker.start(name, {**tags, **({LINK_TAG: adopted} if adopted else {})})
    if adopted:
        experiment = tracker.call("get_experiment", tracker.experiment_id).name
        note = f"shapflow logged this job as run {run_id} of experiment {experiment!r} (shared with `shapflow run`)"
        tracker.log(adopted, tags={LINK_TAG: run_id, "mlflow.note.content": note})
        print(f"shapflow: {note}; pass --experiment-name {experiment} to mlflow run to log there directly",
              file=sys.stderr)
    try:
        yield run_id
    except (KeyboardInterrupt, SystemExit, RunStopped) as stop:
        tracker.retire_own(f"stopped: {type(stop).__name__} {stop}".strip())  # nested runs in flight
        tracker.end(run_id, "KILLED")
        raise
    except BaseException:
        tracker.end(run_id, "FAILED")
        raise
    tracker.end(run_id)


def _adoptable(tracker: Tracker, run_id: str | None) -> str | None:
    """``run_id`` when this store holds it (``mlflow run`` may log to another store: MLFLOW_TRACKING_URI unset)."""
    if not run_id:
        return None
    try:
        tracker.call("get_run", run_id)
    except MlflowException:
        print(f"shapflow: the mlflow run run {run_id} is not in {tracker.uri}; logging there without it (export "
              "MLFLOW_TRACKING_URI before mlflow run to use one store)", file=sys.stderr)
        return None
    return run_id


@dataclass(frozen=True)
class FinishedLookup:
    """``lookup(key)``: whether the store at ``uri`` already holds a FINISHED run with identity ``key``.

    Picklable (a URI and an experiment id), so worker processes and Ray tasks can skip a coalition another
    driver finished without the executors knowing about MLflow.
    """

    uri: str
    experiment_id: str

    def __call__(self, key: str) -> bool:
        return Tracker(client_for(self.uri), self.uri, self.experiment_id).finished(key) is not None


def utilities_table(tracker: Tracker, study: str) -> pd.DataFrame:
    """Every FINISHED coalition/endpoint run of a study as rows (coalition_id, mask, size, utility, ...).

    Sorted by coalition id (sampler order); endpoints (``v0``, ``v1``) are the rows of size 0 and n.
    """
    runs = tracker.search(f"tags.`{STUDY_TAG}` = {quoted(study)} AND attributes.status = 'FINISHED'")
    rows = [{"coalition_id": r.data.params.get("coalition_id", ""), "mask": r.data.params.get("mask", ""),
             "size": int(r.data.params.get("size", 0)),
             "role": r.data.params.get("role", "plan"),
             **r.data.metrics, "run_id": r.info.run_id, "stage": r.data.tags.get(STAGE_TAG, "")}
            for r in runs if r.data.tags.get(STAGE_TAG) in ("coalition", "endpoint")]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("coalition_id", kind="stable").drop_duplicates("coalition_id").reset_index(drop=True)


def with_members(table: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """``table`` with a ``contributors`` column after ``size``: each row's members (by its mask over ``names``)
    as a JSON array, a CSV cell that splits back into the exact names whatever characters they hold."""
    members = [json.dumps([name for name, bit in zip(names, mask, strict=True) if bit == "1"], ensure_ascii=False)
               for mask in table["mask"]]
    out = table.copy()
    out.insert(out.columns.get_loc("size") + 1, "contributors", members)
    return out


def study_config(tracker: Tracker, study: str) -> UseCaseConfig:
    """The use-case config a study's coalitions were evaluated with: the ``stage.json`` of the pruned fine-tuned
    model its coalition runs name as ``upstream_run`` (so its data and property can be rebuilt, e.g. for a proxy)."""
    runs = tracker.search(f"tags.`{STUDY_TAG}` = {quoted(study)} AND tags.`{STAGE_TAG}` = 'coalition'", max_results=1)
    upstream = runs[0].data.params.get("upstream_run", "-") if runs else "-"
    if upstream == "-":
        raise InputError(f"study {study[:12]} has no coalition run naming its upstream model: its config cannot be "
                         "read back (run without the proxy)")
    with tempfile.TemporaryDirectory(prefix="shapflow-study-") as tmp:
        folder = tracker.download(upstream, "model/stage.json", Path(tmp)).parent
        return from_dict(UseCaseConfig, read_stage_meta(folder)["use_case"])


def studies(tracker: Tracker) -> Iterator[tuple[str, Run]]:
    """(study id, attribute run) of the experiment's attribute runs, newest first."""
    for run in tracker.search(f"tags.`{STAGE_TAG}` = 'attribute'"):
        if STUDY_TAG in run.data.tags:
            yield run.data.tags[STUDY_TAG], run



def latest_experiment(uri: str | None = None) -> str | None:
    """Name of the experiment holding the store's newest attribute run (None when there is none)."""
    client = client_for(uri or default_tracking_uri())
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.`{STAGE_TAG}` = 'attribute'", max_results=1,
                              order_by=["attributes.start_time DESC"]) if ids else []
    return client.get_experiment(runs[0].info.experiment_id).name if runs else None


# The detached helper of ``discard_when_ended``: MLflow only (it must not depend on which shapflow is importable).
_DISCARD = """
import sys, time
from mlflow.tracking import MlflowClient
uri, run_id, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
client = MlflowClient(tracking_uri=uri or None)
while client.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
    time.sleep(0.2)
client.delete_run(run_id)
"""


def retire_run(run_id: str, reason: str, uri: str | None = None) -> None:
    """End run ``run_id`` KILLED with ``reason`` (its ``shapflow.retired`` tag) unless it has ended already: the
    run ``mlflow run`` made, when ``mlflow run`` itself was killed and so will never end it."""
    client = client_for(uri or default_tracking_uri())
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, RETIRED_TAG, reason)
        client.set_terminated(run_id, "KILLED")


def discard_when_ended(run_id: str, uri: str | None = None, timeout: float = 120.0) -> None:
    """Delete run ``run_id`` once its creator has ended it, from a detached helper process that lives at most
    ``timeout`` seconds (then deletes it anyway).

    For the run ``mlflow run`` made for a request its script rejected: ``mlflow run`` ends its run after the
    script exits, even a deleted one (MLflow then prints a traceback), so the script cannot delete it itself.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")  # where `mlflow run` made it ("": MLflow's default)
    subprocess.Popen([sys.executable, "-c", _DISCARD, uri, run_id, str(timeout)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
