"""The stage chain full -> prune -> finetune of any family, and the stores that keep its outputs.

``run_stages`` asks a store for each stage in order; the store returns its stored copy or calls the stage's
builder. Stores here: ``cached_store`` (the user cache folder, keyed by the stage's config hash),
``no_store`` (always build) and ``folder_store`` (only load: the folders a driver handed to a worker).
``shapflow.tracking.TrackedStore`` keeps stages as MLflow runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shapflow.cache import cache_dir
from shapflow.config import STAGE_ORDER, stage_key
from shapflow.data import ContributorDataset
from shapflow.utility.protocol import STAGE_META, Models, StageIO, Store

__all__ = ["cached_store", "folder_store", "no_store", "run_stages"]

Built = tuple[Models, dict[str, Any]]


def cached_store(io: StageIO, stage: str, build: Callable[[], Built]) -> Built:
    """A stage's models from the cache folder of its stage key, or built and saved there."""
    folder = cache_dir("stages", f"{io.cfg.name}-{stage}-{stage_key(io.cfg, stage)[:16]}")
    if (folder / STAGE_META).is_file():
        return io.load(folder, stage)
    models, extra = build()
    io.save(models, extra, folder, stage)
    return models, extra


def no_store(_io: StageIO, _stage: str, build: Callable[[], Built]) -> Built:
    """Always build (tests, throwaway studies)."""
    return build()


def folder_store(folders: dict[str, str]) -> Store:
    """A store that only loads: each stage from ``folders[stage]`` (never builds)."""
    def store(io: StageIO, stage: str, _build: Callable[[], Built]) -> Built:
        return io.load(Path(folders[stage]), stage)

    return store


def run_stages(io: StageIO, data: ContributorDataset, *, store: Store = cached_store, progress: bool = False,
               until: str = "finetune") -> dict[str, Built]:
    """Run (or load through ``store``) the stages full -> prune -> finetune up to ``until``, in order:
    {stage: (models, extra)}; the prune stage's extra holds the ``prune_report``, handed on to finetune."""
    if until not in STAGE_ORDER:
        raise ValueError(f"until={until!r} is invalid: use one of {', '.join(STAGE_ORDER)}")
    cfg, family, ctx = io.cfg, io.family, io.ctx
    out: dict[str, Built] = {}

    def full() -> Built:
        start = family.untrained(ctx, cfg.train.seed)
        return family.train(ctx, start, data, cfg.train, progress=progress, desc="full training"), {}

    def pruned() -> Built:
        models, report = family.prune(ctx, out["full"][0], data)
        return models, {"prune_report": report}

    def finetuned() -> Built:
        start, extra = out["prune"]
        return family.train(ctx, start, data, cfg.finetune, progress=progress, desc="pruned fine-tune"), extra

    builders = {"full": full, "prune": pruned, "finetune": finetuned}
    for stage in STAGE_ORDER[: STAGE_ORDER.index(until) + 1]:
        out[stage] = store(io, stage, builders[stage])
    return out
