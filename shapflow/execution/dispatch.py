"""The executor choice (``ExecutorSpec``, a field of every request) and the one entry point that follows it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from shapflow.config import ConfigError
from shapflow.config.extras import require_extra
from shapflow.config.request import EXECUTORS
from shapflow.execution.local import Lookup, Outcome, evaluate_here, evaluate_in_workers
from shapflow.execution.ray import evaluate_ray
from shapflow.utility import Study

__all__ = ["EXECUTORS", "ExecutorSpec", "evaluate_many"]


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run coalitions: ``local`` (this process or ``workers`` processes) or ``ray`` (the cluster at
    ``ray_address``, a new local one if None; ``num_gpus`` per task, fractional; ``max_retries`` per task)."""

    kind: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor={self.kind!r} is invalid: use one of {', '.join(EXECUTORS)}")
        if self.num_gpus < 0:
            raise ConfigError(f"num_gpus={self.num_gpus} is invalid: give a fraction of a GPU per task, >= 0")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries} is invalid: use 0 or more retries per task")
        if self.kind == "ray":
            require_extra("ray", "executor=ray")


def evaluate_many(study: Study, masks: dict[int, np.ndarray], *, workers: int, folders: dict[str, str],
                  spec: ExecutorSpec = ExecutorSpec(), keep_images: int = 64, lookup: Lookup | None = None,
                  keys: dict[int, str] | None = None, stack: int = 1) -> Iterator[Outcome]:
    """Evaluate coalitions {index: mask}, yielding each Outcome as it completes (any order).

    ``lookup`` + ``keys`` ({index: identity key}) let each evaluation first skip a coalition already FINISHED
    or held (by another driver): in the Ray task, or in this process just before evaluating or submitting it
    (local). Ray: one task per coalition. Local: ``workers <= 1`` evaluates in this process with
    ``study``; otherwise a spawn pool of ``workers`` processes, each loading its Study from ``folders``. ``stack``
    (local only): each process evaluates its coalitions that many at a time (``Study.evaluate_many``: the same
    utilities, trained and sampled in one vmapped loop).
    """
    if spec.kind == "ray" and masks:
        yield from evaluate_ray(study.cfg, masks, folders=folders, keep_images=keep_images,
                                address=spec.ray_address, num_gpus=spec.num_gpus, max_retries=spec.max_retries,
                                lookup=lookup, keys=keys)
    elif workers <= 1 or len(masks) <= 1:
        yield from evaluate_here(study, masks, keep_images=keep_images, lookup=lookup, keys=keys, stack=stack)
    else:
        yield from evaluate_in_workers(study.cfg, masks, workers=workers, folders=folders, keep_images=keep_images,
                                       lookup=lookup, keys=keys, stack=stack)
