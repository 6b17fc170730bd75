"""Where coalition evaluations run: in the driver's process, or in N spawned one-thread worker processes.

Workers never touch MLflow: each loads the Study once from the stage model folders the driver downloaded,
evaluates the masks it is handed and returns a picklable ``Outcome``; the driver logs every run, so the
tracking store has a single writer. On a small CPU box N one-thread processes beat one N-thread process
(the models are too small for intra-op parallelism to pay).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from shapflow.config import TrainConfig, UseCaseConfig, from_dict, to_dict
from shapflow.pipeline import Models, Study, load_models, load_study

__all__ = ["Outcome", "evaluate_many", "folder_store"]

_WORKER: dict[str, Study] = {}


@dataclass
class Outcome:
    """v(S) of one coalition (row ``index`` of the plan): utility, properties, timings (s), the first images."""

    index: int
    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    images: torch.Tensor = field(repr=False)


def folder_store(folders: dict[str, str]):
    """A ``pipeline.Store`` that only loads: each stage's models from ``folders[stage]`` (never builds)."""
    def store(_cfg: UseCaseConfig, stage: str, recipe: TrainConfig | None, _build) -> tuple[Models, dict]:
        models, extra = load_models(Path(folders[stage]), recipe)
        extra.pop("use_case", None)
        return models, extra

    return store


def _init_worker(cfg_data: dict, folders: dict[str, str]) -> None:
    """Worker start-up: one torch thread, and the Study loaded once from the stage folders."""
    torch.set_num_threads(1)
    cfg = from_dict(UseCaseConfig, cfg_data)
    _WORKER["study"] = load_study(cfg, store=folder_store(folders))


def _evaluate(study: Study, index: int, mask: np.ndarray, keep_images: int) -> Outcome:
    result = study.evaluate(mask)
    return Outcome(index, result.utility, result.properties, result.timings, result.images[:keep_images].clone())


def _evaluate_in_worker(index: int, mask: np.ndarray, keep_images: int) -> Outcome:
    return _evaluate(_WORKER["study"], index, mask, keep_images)


def evaluate_many(study: Study, masks: dict[int, np.ndarray], *, workers: int, folders: dict[str, str],
                  keep_images: int = 64) -> Iterator[Outcome]:
    """Evaluate coalitions {index: mask}, yielding each Outcome as it completes (any order).

    workers <= 1 evaluates in this process with ``study``; otherwise a spawn pool of ``workers`` processes,
    each loading its own Study from ``folders`` ({stage: local save_unet folder}).
    """
    if workers <= 1 or len(masks) <= 1:
        for index, mask in masks.items():
            yield _evaluate(study, index, mask, keep_images)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(masks)), mp_context=context, initializer=_init_worker,
                             initargs=(to_dict(study.cfg), folders)) as pool:
        futures = [pool.submit(_evaluate_in_worker, index, mask, keep_images) for index, mask in masks.items()]
        for future in as_completed(futures):
            yield future.result()
