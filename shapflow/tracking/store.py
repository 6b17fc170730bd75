"""The MLflow client shapflow uses everywhere: one store, one experiment, retried writes, runs ended off the
critical path.

Identity, never stringified params: every run shapflow reuses carries the tag ``shapflow.key``, a sha256 of
what defines its output (``config.identity``), and is found with ``search_runs`` on that tag and
``status = 'FINISHED'``. A RUNNING, FAILED or KILLED run never counts, so a killed job redoes exactly what it
had not finished. All writes go through ``Tracker.call``, which retries SQLite's transient "database is locked".
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

__all__ = ["KEY_TAG", "KIND_TAG", "PARENT_TAG", "SMOKE_TAG", "STAGE_TAG", "STUDY_TAG", "TRAINING_KIND", "USE_CASE_TAG",
           "Finisher", "Tracker", "code_version", "default_tracking_uri", "global_tracking_uri", "open_tracker",
           "runs_page"]

STAGE_TAG = "shapflow.stage"
KEY_TAG = "shapflow.key"
STUDY_TAG = "shapflow.study"
USE_CASE_TAG = "shapflow.use_case"
SMOKE_TAG = "shapflow.smoke"  # "true" on the runs of a SMOKE configuration (tiny random stand-ins)
PARENT_TAG = "mlflow.parentRunId"
# The experiment kind MLflow 3 records and its UI reads (mlflow/server/js: ExperimentKind): model training opens on
# the runs table. The 3.17 UI bundle reads it only with its GenAI/Model-training switch off; with the switch (on by
# default) the kind follows ``?workflowType=machine_learning`` in the URL (``runs_page``) or the switch's last state.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
RETRIES = 30


@contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` inside the block, for the MLflow functions that read only
    that (``mlflow.pyfunc.log_model``, the registry's lookup of a LoggedModel, ``mlflow.pyfunc.load_model``).

    Restores the previous URI and the ``MLFLOW_TRACKING_URI`` variable exactly as they were: MLflow's own
    ``_use_tracking_uri`` unsets that variable on exit when no URI had been set, which would send every later
    default lookup (and child process) to another store.
    """
    previous, variable = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    tracking_utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri = previous
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlruns.db`` (artifacts in ``<cwd>/mlartifacts``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def _artifact_root(uri: str) -> str | None:
    """``mlartifacts/`` beside a SQLite file; None (the server's default) for any other store."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts")
    return None


def code_version() -> str:
    """The package version plus the git commit of the checkout it runs from, when there is one.

    ``SHAPFLOW_CODE_VERSION`` pins it (e.g. across a docs-only commit, so finished stages stay reusable).
    """
    from importlib.metadata import PackageNotFoundError, version

    if os.environ.get("SHAPFLOW_CODE_VERSION"):
        return os.environ["SHAPFLOW_CODE_VERSION"]
    try:
        release = version("shapflow")
    except PackageNotFoundError:
        release = "0+unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return release
    return f"{release}+g{commit}" if commit else release


@dataclass
class Tracker:
    """An MLflow client bound to one store and one experiment, with retried writes."""

    client: MlflowClient
    uri: str
    experiment_id: str

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(...)``, retried with backoff while SQLite reports "database is locked"."""
        for attempt in range(RETRIES):
            try:
                return getattr(self.client, method)(*args, **kwargs)
            except Exception as err:  # sqlalchemy's OperationalError arrives wrapped or bare
                if "database is locked" not in str(err) or attempt == RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def search(self, filter_string: str, max_results: int | None = None) -> list[Run]:
        """All runs of the experiment matching ``filter_string``, newest first (paged)."""
        runs: list[Run] = []
        token = None
        while True:
            page = self.call("search_runs", [self.experiment_id], filter_string, max_results=max_results or 1000,
                             order_by=["attributes.start_time DESC"], page_token=token)
            runs.extend(page)
            token = page.token
            if not token or (max_results and len(runs) >= max_results):
                return runs

    def finished(self, key: str) -> Run | None:
        """The newest FINISHED run whose ``shapflow.key`` tag is ``key``, or None."""
        found = self.search(f"tags.`{KEY_TAG}` = '{key}' AND attributes.status = 'FINISHED'", max_results=1)
        return found[0] if found else None

    def start(self, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        """Create a RUNNING run (nested under ``parent``) and return its id."""
        if parent:
            tags = {**tags, PARENT_TAG: parent}
        return self.call("create_run", self.experiment_id, run_name=name, tags=tags).info.run_id

    def log(self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
            tags: dict[str, str] | None = None) -> None:
        """Log params, metrics and tags of a run in one batch."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.call("log_batch", run_id,
                  metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                  params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                  tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.call("set_terminated", run_id, status)

    def get_or_run(self, name: str, stage: str, key: str, work: Callable[[str], Path | None], *,
                   parent: str | None = None, tags: dict[str, str] | None = None,
                   finisher: Finisher | None = None) -> tuple[str, bool]:
        """The FINISHED run with ``key``, or a new run in which ``work(run_id)`` logs; returns (run id, reused).

        ``work`` may return a file to log as an artifact before the run ends; with a ``finisher`` the upload
        and the end happen on its background thread (the caller goes on; the run turns FINISHED only once
        its artifact is there). A failure (or Ctrl-C) inside ``work`` ends the new run FAILED (KILLED) and
        re-raises, so it is redone. Nothing is read back that the caller does not need (store calls are a
        coalition's tracking overhead).
        """
        found = self.finished(key)
        if found is not None:
            return found.info.run_id, True
        run_id = self.start(name, {STAGE_TAG: stage, KEY_TAG: key, **(tags or {})}, parent)
        try:
            artifact = work(run_id)
        except BaseException as err:
            self.end(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        if finisher is None:
            self.finish(run_id, artifact)
        else:
            finisher.submit(run_id, artifact)
        return run_id, False

    def finish(self, run_id: str, artifact: Path | None = None) -> None:
        """Log ``artifact`` (if any), then end the run FINISHED (FAILED, re-raised, if the upload fails)."""
        try:
            if artifact is not None:
                self.call("log_artifact", run_id, str(artifact))
        except BaseException:
            self.end(run_id, "FAILED")
            raise
        self.end(run_id)

    def retire_leftovers(self, study: str) -> int:
        """Mark RUNNING runs of a study left by a killed job as KILLED (they never count); returns how many."""
        stale = self.search(f"tags.`{STUDY_TAG}` = '{study}' AND attributes.status = 'RUNNING'")
        for run in stale:
            self.end(run.info.run_id, "KILLED")
        return len(stale)

    def download(self, run_id: str, path: str, into: Path) -> Path:
        """Copy a run's artifact folder ``path`` under ``into`` and return the local folder."""
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(into),
                                                        tracking_uri=self.uri))


class Finisher:
    """Ends runs off the driver's critical path: one background thread uploads each run's artifact and then
    marks it FINISHED, in submission order, while the driver evaluates the next coalition. A run whose finish
    never happened (a killed driver) stays RUNNING, never counts, and is redone. ``drain`` waits for every
    submitted finish and re-raises the first failure; use it before reading FINISHED runs back."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shapflow-finish")
        self._pending: list[Future[None]] = []

    def submit(self, run_id: str, artifact: Path | None) -> None:
        self._pending.append(self._pool.submit(self.tracker.finish, run_id, artifact))

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> Finisher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)


def _training_kind(tracker: Tracker, experiment: Experiment) -> Tracker:
    """Tag ``experiment`` as model training (unless it says otherwise), so MLflow 3's UI opens it on its runs."""
    if KIND_TAG not in experiment.tags:
        tracker.call("set_experiment_tag", experiment.experiment_id, KIND_TAG, TRAINING_KIND)
    return tracker


def runs_page(uri: str, experiment_id: str) -> str:
    """Where the MLflow UI shows an experiment's training runs: the URL for a tracking server, else how to get there."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/{page}"


def open_tracker(experiment: str | None = None, uri: str | None = None) -> Tracker:
    """A Tracker on ``uri`` (default: ``default_tracking_uri()``) and the named experiment, created if missing.

    A run started by ``mlflow run`` (``MLFLOW_RUN_ID``) fixes the experiment to that run's. The experiment is
    tagged ``mlflow.experimentKind = custom_model_development`` (created so, or tagged when it has no kind).
    """
    uri = uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    adopted = os.environ.get("MLFLOW_RUN_ID")
    name = experiment or "Default"
    found = (client.get_experiment(client.get_run(adopted).info.experiment_id) if adopted
             else client.get_experiment_by_name(name))
    if found is None:
        root = _artifact_root(uri)
        location = None if root is None else Path(root, name.replace("/", "_")).as_uri()
        try:
            client.create_experiment(name, artifact_location=location, tags={KIND_TAG: TRAINING_KIND})
        except MlflowException:
            if client.get_experiment_by_name(name) is None:  # not "another process created it first"
                raise
        found = client.get_experiment_by_name(name)
    return _training_kind(Tracker(client, uri, found.experiment_id), found)
