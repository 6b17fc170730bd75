"""The MLflow client shapflow uses everywhere: one store, one experiment, retried writes, runs ended off the
critical path.

Identity, never stringified params: every run shapflow reuses carries the tag ``shapflow.key``, a sha256 of
what defines its output (``config.identity``), and is found with ``search_runs`` on that tag and
``status = 'FINISHED'``. A RUNNING, FAILED or KILLED run never counts, so a killed job redoes exactly what it
had not finished. All writes go through ``Tracker.call``, which retries SQLite's transient "database is locked".

Claims (``get_or_run``, waiting for a live holder, retiring runs whose owner is gone) are the ``claims.Claims``
half of ``Tracker``; the tags are in ``tags``. A new SQLite store is created under a file lock (``<db>.lock``),
so two processes never both run MLflow's schema migration.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from shapflow.config import InputError
from shapflow.tracking.claims import CLAIM_ATTEMPTS, Claims, Finisher
from shapflow.tracking.faults import store_fault
from shapflow.tracking.owner import HEARTBEAT_TAG, Heartbeat, owner_tags
from shapflow.tracking.tags import KEY_TAG, KIND_TAG, PARENT_TAG, TRAINING_KIND, quoted

__all__ = ["CLAIM_ATTEMPTS", "Finisher", "NoSuchExperiment", "Tracker", "client_for", "code_version",
           "default_tracking_uri", "global_tracking_uri", "open_tracker", "runs_page", "store_lock"]

RETRIES = 30


class NoSuchExperiment(InputError, LookupError):
    """``open_tracker(..., create=False)`` of an experiment the store does not have; the message lists those it has."""


@contextlib.contextmanager
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
class Tracker(Claims):
    """An MLflow client bound to one store and one experiment, with retried writes."""

    client: MlflowClient
    uri: str
    experiment_id: str
    _heartbeat: Heartbeat | None = field(default=None, init=False, repr=False, compare=False)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(...)``, retried with backoff while SQLite reports "database is locked"."""
        for attempt in range(RETRIES):
            try:
                return getattr(self.client, method)(*args, **kwargs)
            except Exception as err:  # sqlalchemy's OperationalError arrives wrapped or bare
                fault = store_fault(self.uri, err)
                if fault is not None:  # a damaged file or a full disk: one line for the user, not a traceback
                    raise fault from err
                if "database is locked" not in str(err) or attempt == RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def get_run(self, run_id: str) -> Run:
        """The run ``run_id`` (its params, metrics, tags and artifact URI)."""
        return self.call("get_run", run_id)

    def log_artifact(self, run_id: str, path: Path) -> None:
        """Copy one file into the artifacts of ``run_id``."""
        self.call("log_artifact", run_id, str(path))

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        """Copy a folder's files into the artifacts of ``run_id``."""
        self.call("log_artifacts", run_id, str(folder))

    @property
    def experiment_name(self) -> str:
        """The name of the experiment this tracker writes to."""
        return self.call("get_experiment", self.experiment_id).name

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
        found = self.search(f"tags.`{KEY_TAG}` = {quoted(key)} AND attributes.status = 'FINISHED'", max_results=1)
        return found[0] if found else None

    def start(self, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        """Create a RUNNING run (nested under ``parent``) owned by this process and return its id."""
        tags = {**tags, **owner_tags()}
        if parent:
            tags = {**tags, PARENT_TAG: parent}
        run_id = self.call("create_run", self.experiment_id, run_name=name, tags=tags).info.run_id
        self._beats().add(run_id)
        return run_id

    def adopt(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag a run another process created (``mlflow run``) and make this process its owner."""
        self.log(run_id, tags={**tags, **owner_tags()})
        self._beats().add(run_id)

    def release(self, run_id: str) -> None:
        """Stop refreshing the heartbeat of an adopted run (its creator ends it)."""
        self._beats().remove(run_id)

    def _beats(self) -> Heartbeat:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(lambda run_id, now: self.call("set_tag", run_id, HEARTBEAT_TAG, now))
        return self._heartbeat

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
        self._beats().remove(run_id)
        self.call("set_terminated", run_id, status)

    def finish(self, run_id: str, artifact: Path | None = None) -> None:
        """Log ``artifact`` (if any), then end the run FINISHED (FAILED, re-raised, if the upload fails)."""
        try:
            if artifact is not None:
                self.call("log_artifact", run_id, str(artifact))
        except BaseException:
            self.end(run_id, "FAILED")
            raise
        self.end(run_id)

    def download(self, run_id: str, path: str, into: Path) -> Path:
        """Copy a run's artifact folder ``path`` under ``into`` and return the local folder."""
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(into),
                                                        tracking_uri=self.uri))


_READY: set[str] = set()  # store URIs this process has initialised


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` beside a SQLite store (nothing for other stores or without fcntl)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; the first process should create the store alone
        yield
        return
    with open(f"{uri.removeprefix('sqlite:///')}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def client_for(uri: str) -> MlflowClient:
    """An MlflowClient on ``uri`` (tracking and registry), the store created and migrated once per process under
    ``store_lock``: MLflow's own first-use migration of a new SQLite file is not safe to run twice at once."""
    if uri in _READY:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with store_lock(uri):  # the client itself may already open (and so migrate) the store
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        except Exception as err:
            fault = store_fault(uri, err)
            if fault is None:
                raise
            raise fault from err
    _READY.add(uri)
    return client


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
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}, then http://127.0.0.1:5000/{page}"  # paths with spaces


def open_tracker(experiment: str | None = None, uri: str | None = None, *, create: bool = True) -> Tracker:
    """A Tracker on ``uri`` (default: ``default_tracking_uri()``) and the named experiment (default "Default"),
    created if missing (its artifacts under ``mlartifacts/<name>`` beside a SQLite store) unless ``create`` is
    False: then a missing experiment raises ``NoSuchExperiment``. The experiment is tagged
    ``mlflow.experimentKind = custom_model_development`` (created so, or tagged when it has no kind), so MLflow 3's
    UI opens it on its runs.

    The experiment never follows ``MLFLOW_RUN_ID``: ``mlflow run`` and ``shapflow run`` of one use case log into
    the same experiment and so reuse each other's runs (``runs.parent_run`` links an adopted run elsewhere).
    """
    uri = uri or default_tracking_uri()
    client = client_for(uri)
    name = experiment or "Default"
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "active":
        return _training_kind(Tracker(client, uri, found.experiment_id), found)
    if not create or found is not None:
        known = sorted(e.name for e in client.search_experiments())
        state = "is deleted (restore it with `mlflow experiments restore`)" if found is not None else "does not exist"
        raise NoSuchExperiment(f"experiment {name!r} {state} in {uri}; experiments there: {', '.join(known) or 'none'}")
    root = _artifact_root(uri)
    location = None if root is None else Path(root, name.replace("/", "_")).as_uri()
    try:
        return Tracker(client, uri, client.create_experiment(name, artifact_location=location,
                                                           tags={KIND_TAG: TRAINING_KIND}))
    except MlflowException:  # another process created it first
        return Tracker(client, uri, client.get_experiment_by_name(name).experiment_id)
