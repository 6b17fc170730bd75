"""Stage runs: a ``utility`` store whose stage models are MLflow run artifacts, reused by identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shapflow.config import STAGE_CHAIN, identity, stage_key
from shapflow.tracking.store import Tracker, code_version
from shapflow.tracking.tags import USE_CASE_TAG
from shapflow.utility import Models, StageIO

__all__ = ["TrackedStore"]

UPSTREAM = {stage.name: stage.upstream for stage in STAGE_CHAIN if stage.upstream}
Built = tuple[Models, dict[str, Any]]


class TrackedStore:
    """A ``utility`` store whose stages are MLflow runs, their models the run's ``model`` artifact folder.

    A stage is reused when a FINISHED run tagged with identity(stage key, upstream stage run id, code version)
    exists; otherwise it is built inside a new run nested under ``parent``, saved (the family's files and
    ``stage.json``), scored, logged, then FINISHED. ``runs`` and ``folders`` record each stage's run id and
    local model folder, for registration and worker processes.
    """

    def __init__(self, tracker: Tracker, workdir: Path, *, parent: str | None = None) -> None:
        self.tracker, self.workdir, self.parent = tracker, workdir, parent
        self.runs: dict[str, str] = {}
        self.folders: dict[str, Path] = {}
        self.reused: dict[str, bool] = {}
        self.version = code_version()

    def __call__(self, io: StageIO, stage: str, build: Callable[[], Built]) -> Built:
        cfg = io.cfg
        upstream = self.runs.get(UPSTREAM.get(stage, ""), "")
        key = identity("stage", stage, stage_key(cfg, stage), upstream, self.version)
        folder = self.workdir / stage
        built: list[Built] = []

        def work(run_id: str) -> None:
            models, extra = build()
            io.save(models, extra, folder, stage)
            metrics = io.score(models) if io.score else {}
            self.tracker.log(run_id, params={"use_case": cfg.name, "family": cfg.model.family,
                                             "config_hash": stage_key(cfg, stage), "upstream_run": upstream or "-",
                                             "code_version": self.version},
                             metrics=metrics)
            self.tracker.call("log_artifacts", run_id, str(folder), "model")
            built.append((models, extra))

        run_id, reused = self.tracker.get_or_run(f"{stage} · {cfg.name}", stage, key, work, parent=self.parent,
                                                 tags={USE_CASE_TAG: cfg.name})
        self.runs[stage], self.reused[stage] = run_id, reused
        if reused:
            folder = self.tracker.download(run_id, "model", self.workdir / f"{stage}-download")
        self.folders[stage] = folder
        return built[0] if built else io.load(folder, stage)
