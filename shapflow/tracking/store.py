"""The only module that talks to MLflow: the store, get-or-run stage runs, coalition runs, utilities, registry.

Identity, never stringified params: every run shapflow reuses carries the tag ``shapflow.key``, a sha256 of
what defines its output (stage key, upstream run id, code version for stages; study and mask for
coalitions), and is found with ``search_runs`` on that tag and ``status = 'FINISHED'``. A RUNNING, FAILED
or KILLED run never counts, so a killed job redoes exactly what it had not finished. All writes go
through ``Tracker.call``, which retries SQLite's transient "database is locked".
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from shapflow.config import TrainConfig, UseCaseConfig, stage_key, to_dict
from shapflow.models import save_unet
from shapflow.utility.study import Models, load_models

__all__ = [
    "KEY_TAG",
    "PARENT_TAG",
    "STAGE_TAG",
    "STUDY_TAG",
    "USE_CASE_TAG",
    "Finisher",
    "TrackedStore",
    "Tracker",
    "code_version",
    "default_tracking_uri",
    "identity",
    "latest_experiment",
    "open_tracker",
    "register_stage",
    "resolve_model",
    "studies",
    "utilities_table",
]

STAGE_TAG = "shapflow.stage"
KEY_TAG = "shapflow.key"
STUDY_TAG = "shapflow.study"
USE_CASE_TAG = "shapflow.use_case"
PARENT_TAG = "mlflow.parentRunId"
RETRIES = 30


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


def identity(*parts: object) -> str:
    """sha256 of the canonical JSON of ``parts``: the value of ``shapflow.key``/``shapflow.study`` tags."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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


def open_tracker(experiment: str | None = None, uri: str | None = None) -> Tracker:
    """A Tracker on ``uri`` (default: ``default_tracking_uri()``) and the named experiment, created if missing.

    A run started by ``mlflow run`` (``MLFLOW_RUN_ID``) fixes the experiment to that run's.
    """
    uri = uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    adopted = os.environ.get("MLFLOW_RUN_ID")
    if adopted:
        return Tracker(client, uri, client.get_run(adopted).info.experiment_id)
    name = experiment or "Default"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return Tracker(client, uri, found.experiment_id)
    root = _artifact_root(uri)
    location = None if root is None else Path(root, name.replace("/", "_")).as_uri()
    try:
        return Tracker(client, uri, client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another process created it first
        return Tracker(client, uri, client.get_experiment_by_name(name).experiment_id)


class TrackedStore:
    """A ``shapflow.utility.study.Store`` whose stage models are MLflow run artifacts (the ``save_unet`` folder).

    A stage is reused when a FINISHED run tagged with identity(stage key, upstream stage run id, code version)
    exists; otherwise it is built inside a new run nested under ``parent``, logged, then FINISHED. ``runs``
    and ``folders`` record each stage's run id and local model folder, for registration and worker processes.
    """

    def __init__(self, tracker: Tracker, workdir: Path, *, parent: str | None = None,
                 score: Callable[[UseCaseConfig, Models], dict[str, float]] | None = None) -> None:
        self.tracker, self.workdir, self.parent, self.score = tracker, workdir, parent, score
        self.runs: dict[str, str] = {}
        self.folders: dict[str, Path] = {}
        self.reused: dict[str, bool] = {}
        self.version = code_version()

    def __call__(self, cfg: UseCaseConfig, stage: str, recipe: TrainConfig | None,
                 build: Callable[[], tuple[Models, dict]]) -> tuple[Models, dict]:
        upstream = self.runs.get({"prune": "full", "finetune": "prune"}.get(stage, ""), "")
        key = identity("stage", stage, stage_key(cfg, stage), upstream, self.version)
        folder = self.workdir / stage
        built: list[tuple[Models, dict]] = []

        def work(run_id: str) -> None:
            models, extra = build()
            save_unet(models.model, folder, ema=models.ema, extra={**extra, "use_case": to_dict(cfg)})
            metrics = self.score(cfg, models) if self.score else {}
            self.tracker.log(run_id, params={"use_case": cfg.name, "config_hash": stage_key(cfg, stage),
                                             "upstream_run": upstream or "-", "code_version": self.version},
                             metrics=metrics)
            self.tracker.call("log_artifacts", run_id, str(folder), "model")
            built.append((models, extra))

        run_id, reused = self.tracker.get_or_run(f"{stage} · {cfg.name}", stage, key, work, parent=self.parent,
                                                 tags={USE_CASE_TAG: cfg.name})
        self.runs[stage], self.reused[stage] = run_id, reused
        if reused:
            folder = self.tracker.download(run_id, "model", self.workdir / f"{stage}-download")
        self.folders[stage] = folder
        if built:
            models, extra = built[0]
            return models, extra
        models, extra = load_models(folder, recipe)
        extra.pop("use_case", None)
        return models, extra


def _model_version(tracker: Tracker, name: str, run_id: str, source: str) -> str:
    """The version of registered model ``name`` made from ``run_id``, registering it once."""
    try:
        tracker.call("create_registered_model", name)
    except MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    found = tracker.call("search_model_versions", f"name = '{name}' AND run_id = '{run_id}'")
    if found:
        return str(found[0].version)
    return str(tracker.call("create_model_version", name, source=source, run_id=run_id).version)


def register_stage(tracker: Tracker, name: str, run_id: str, alias: str | None = None) -> str:
    """Register a stage run's ``model`` folder as a version of ``name`` (once) and set ``alias``; returns version."""
    source = f"{tracker.call('get_run', run_id).info.artifact_uri.rstrip('/')}/model"
    version = _model_version(tracker, name, run_id, source)
    if alias:
        tracker.call("set_registered_model_alias", name, alias, version)
    return version


def resolve_model(tracker: Tracker, ref: str) -> tuple[str, str, str]:
    """``name@alias`` / ``name@latest`` / ``name/<version>`` -> (name, version, run id).

    ``latest`` is MLflow's reserved word for the highest version, never an alias one can set.
    """
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if alias.lower() == "latest":
            versions = tracker.call("search_model_versions", f"name = '{name}'")
            if not versions:
                raise MlflowException(f"registered model {name!r} has no versions: run the attribute entry point")
            chosen = max(versions, key=lambda v: int(v.version))
        else:
            chosen = tracker.call("get_model_version_by_alias", name, alias)
    elif "/" in ref:
        name, number = ref.split("/", 1)
        chosen = tracker.call("get_model_version", name, number)
    else:
        raise MlflowException(f"model reference {ref!r} is invalid: write NAME@ALIAS, NAME@latest or NAME/VERSION")
    return name, str(chosen.version), chosen.run_id


def utilities_table(tracker: Tracker, study: str) -> pd.DataFrame:
    """Every FINISHED coalition/endpoint run of a study as rows (coalition_id, mask, size, utility, ...).

    Sorted by coalition id (sampler order); endpoints (``v0``, ``v1``) are the rows of size 0 and n.
    """
    runs = tracker.search(f"tags.`{STUDY_TAG}` = '{study}' AND attributes.status = 'FINISHED'")
    rows = [{"coalition_id": r.data.params.get("coalition_id", ""), "mask": r.data.params.get("mask", ""),
             "size": int(r.data.params.get("size", 0)), "contributors": r.data.params.get("contributors", ""),
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
