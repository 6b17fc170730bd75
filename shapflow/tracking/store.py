"""The MLflow client shapflow uses everywhere: one store, one experiment, retried writes, runs ended off the
critical path.

Identity, never stringified params: every run shapflow reuses carries the tag ``shapflow.key``, a sha256 of
what defines its output (``config.identity``), and is found with ``search_runs`` on that tag and
``status = 'FINISHED'``. A RUNNING, FAILED or KILLED run never counts, so a killed job redoes exactly what it
had not finished. All writes go through ``Tracker.call``, which retries SQLite's transient "database is locked".

Claims: a RUNNING run with a key and a live owner (``owner``) holds that key; ``get_or_run`` waits for the
holder to finish and reuses its run instead of computing the same thing twice, and takes over when the holder's
owner is gone. Runs whose owner is gone are retired (KILLED) by the next entry point that starts
(``retire_leftovers``); a live run is never marked KILLED. A new SQLite store is created under a file lock
(``<db>.lock``), so two processes never both run MLflow's schema migration.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from shapflow.config import InputError
from shapflow.tracking.faults import store_fault
from shapflow.tracking.owner import HEARTBEAT_TAG, OWNER_TAG, Heartbeat, owner_alive, owner_id, owner_tags

__all__ = ["KEY_TAG", "KIND_TAG", "PARENT_TAG", "SMOKE_TAG", "STAGE_TAG", "STUDY_TAG", "TRAINING_KIND", "USE_CASE_TAG",
           "Finisher", "NoSuchExperiment", "Tracker", "client_for", "code_version", "default_tracking_uri",
           "global_tracking_uri", "open_tracker", "quoted", "runs_page", "store_lock"]

STAGE_TAG = "shapflow.stage"
KEY_TAG = "shapflow.key"
STUDY_TAG = "shapflow.study"
USE_CASE_TAG = "shapflow.use_case"
SMOKE_TAG = "shapflow.smoke"  # "true" on the runs of a SMOKE configuration (tiny random stand-ins)
PARENT_TAG = "mlflow.parentRunId"
RETIRED_TAG = "shapflow.retired"  # why a leftover run was marked KILLED
# The experiment kind MLflow 3 records and its UI reads (mlflow/server/js: ExperimentKind): model training opens on
# the runs table. The 3.17 UI bundle reads it only with its GenAI/Model-training switch off; with the switch (on by
# default) the kind follows ``?workflowType=machine_learning`` in the URL (``runs_page``) or the switch's last state.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
RETRIES = 30
CLAIM_ATTEMPTS = 5  # holders that fail (or die) before this process computes the key itself
CLAIM_WAIT = 24 * 3600.0  # seconds to wait for one live holder before giving up with a message
CLAIM_SETTLE = 0.5  # seconds between taking a claim and confirming it (a rival's create may commit late)
POLL_MAX = 10.0


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


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter: in single quotes, or in double quotes when it holds
    a single quote. MLflow's filter grammar has no escapes, so a value holding both quote kinds cannot be searched
    for: ``InputError``. Every value that enters a filter goes through here, so none can change the query."""
    text = str(value)
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    raise InputError(f"{text!r} holds both quote kinds and cannot be looked up in an MLflow store: rename it")


@dataclass
class Tracker:
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

    def get_or_run(self, name: str, stage: str, key: str, work: Callable[[str], Path | None], *,
                   parent: str | None = None, tags: dict[str, str] | None = None,
                   finisher: Finisher | None = None, claim: bool = True) -> tuple[str, bool]:
        """The FINISHED run with ``key``, or a new run in which ``work(run_id)`` logs; returns (run id, reused).

        With ``claim`` a run of another live process that holds ``key`` (RUNNING) is waited for and reused
        (taken over if it fails or its owner dies); without, a key is looked up once and computed if not
        FINISHED (``work`` already ran elsewhere, e.g. a Ray task: a duplicate is harmless).
        ``work`` may return a file to log as an artifact before the run ends; with a ``finisher`` the upload
        and the end happen on its background thread (the caller goes on; the run turns FINISHED only once
        its artifact is there). A failure (or Ctrl-C) inside ``work`` ends the new run FAILED (KILLED) and
        re-raises, so it is redone. Nothing is read back that the caller does not need (store calls are a
        coalition's tracking overhead).
        """
        if not claim:
            found = self.finished(key)
            if found is not None:
                return found.info.run_id, True
            return self.run_claimed(self.start(name, {STAGE_TAG: stage, KEY_TAG: key, **(tags or {})}, parent),
                                    work, finisher), False
        for _ in range(CLAIM_ATTEMPTS):
            run_id, mine = self.claim(name, stage, key, parent=parent, tags=tags, settle=CLAIM_SETTLE)
            if mine:
                return self.run_claimed(run_id, work, finisher), False
            if self.wait_for(run_id, f"{name} (key {key[:12]})") == "FINISHED":
                return run_id, True
        raise RuntimeError(f"{name}: {CLAIM_ATTEMPTS} runs holding key {key[:12]} failed or were abandoned; "
                           "look at the FAILED runs of that key in the MLflow UI, fix the cause, and rerun")

    def run_claimed(self, run_id: str, work: Callable[[str], Path | None], finisher: Finisher | None = None) -> str:
        """``work(run_id)`` in a run this process holds, then finish it (FAILED/KILLED and re-raised on error)."""
        try:
            artifact = work(run_id)
        except BaseException as err:
            self.end(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        if finisher is None:
            self.finish(run_id, artifact)
        else:
            finisher.submit(run_id, artifact)
        return run_id

    def holder(self, key: str, mine: str | None = None) -> Run | None:
        """The run holding ``key``: the newest FINISHED one, else the first-started RUNNING one whose owner lives
        (``mine`` counts as live); RUNNING runs of dead owners met on the way are retired."""
        runs = self.search(f"tags.`{KEY_TAG}` = {quoted(key)}")
        finished = [run for run in runs if run.info.status == "FINISHED"]
        if finished:
            return finished[0]
        live = []
        for run in runs:
            if run.info.status != "RUNNING":
                continue
            if run.info.run_id == mine or owner_alive(run.data.tags):
                live.append(run)
            else:
                self.retire(run)
        return min(live, key=lambda run: (run.info.start_time, run.info.run_id)) if live else None

    def claim(self, name: str, stage: str, key: str, *, parent: str | None = None,
              tags: dict[str, str] | None = None, settle: float = 0.0) -> tuple[str, bool]:
        """Hold ``key``: (new RUNNING run of ours, True), or (the run that holds it, False: FINISHED, or RUNNING
        under a live owner and started first; our own claim is then withdrawn, i.e. deleted).

        A claim is taken, then confirmed after ``settle`` seconds (a rival's run may commit a little after its
        start time); two processes that see each other agree on the first-started claim.
        """
        held = self.holder(key)
        if held is not None:
            return held.info.run_id, False
        mine = self.start(name, {STAGE_TAG: stage, KEY_TAG: key, **(tags or {})}, parent)
        for pause in ((0.0, settle) if settle else (0.0,)):
            time.sleep(pause)
            held = self.holder(key, mine)
            if held is not None and held.info.run_id != mine:
                self.withdraw(mine)
                return held.info.run_id, False
        return mine, True

    def withdraw(self, run_id: str) -> None:
        """Delete a claim of ours that did no work (another run holds its key)."""
        self._beats().remove(run_id)
        self.call("delete_run", run_id)

    def wait_for(self, run_id: str, what: str, timeout: float = CLAIM_WAIT) -> str:
        """Wait for another process's run to end; its final status, or "KILLED" once its owner is gone (the run
        is retired then). Polls with a growing pause (at most ``POLL_MAX`` s); gives up after ``timeout``."""
        deadline, pause, said = time.monotonic() + timeout, 0.5, False
        while True:
            run = self.call("get_run", run_id)
            if run.info.status != "RUNNING" or run.info.lifecycle_stage == "deleted":
                return run.info.status if run.info.lifecycle_stage != "deleted" else "KILLED"
            if not owner_alive(run.data.tags):
                self.retire(run)
                return "KILLED"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} is still being computed by run {run_id} (owner "
                                   f"{run.data.tags.get(OWNER_TAG, '?')}) after {timeout:.0f} s; wait for it, or "
                                   "stop that process, then rerun")
            if not said:
                print(f"shapflow: {what} is being computed by run {run_id} (owner "
                      f"{run.data.tags.get(OWNER_TAG, '?')}): waiting for it to reuse it", file=sys.stderr)
                said = True
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    def finish(self, run_id: str, artifact: Path | None = None) -> None:
        """Log ``artifact`` (if any), then end the run FINISHED (FAILED, re-raised, if the upload fails)."""
        try:
            if artifact is not None:
                self.call("log_artifact", run_id, str(artifact))
        except BaseException:
            self.end(run_id, "FAILED")
            raise
        self.end(run_id)

    def retire(self, run: Run) -> None:
        """Mark a RUNNING run whose owner is gone KILLED (it never counts; its key is computed again)."""
        self.call("set_tag", run.info.run_id, RETIRED_TAG,
                  f"owner {run.data.tags.get(OWNER_TAG, '?')} gone; retired by {owner_tags()[OWNER_TAG]}")
        self.end(run.info.run_id, "KILLED")

    def retire_own(self, reason: str) -> int:
        """End this process's RUNNING runs of the experiment KILLED, ``reason`` in their retired tag (an entry point
        stopped by a signal or its parent's death: a coalition in flight is not left RUNNING). Returns how many."""
        mine = self.search(f"attributes.status = 'RUNNING' AND tags.`{OWNER_TAG}` = '{owner_id()}'")
        for run in mine:
            self.call("set_tag", run.info.run_id, RETIRED_TAG, reason)
            self.end(run.info.run_id, "KILLED")
        return len(mine)

    def retire_leftovers(self) -> int:
        """Retire the experiment's RUNNING runs whose owner process is gone (a killed job's attribute, stage and
        coalition runs); runs of live owners, this process's included, are left alone. Returns how many."""
        stale = [run for run in self.search("attributes.status = 'RUNNING'") if not owner_alive(run.data.tags)]
        for run in stale:
            self.retire(run)
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
