"""Coalitions evaluated here: in this process, or in N spawned one-thread worker processes.

Workers never touch MLflow: each loads the Study once from the stage folders the driver handed it and returns a
picklable ``Outcome``; the driver logs every run. On a small CPU box N one-thread processes beat one N-thread
process (the models are too small for intra-op parallelism to pay). ``spawn_pool`` is also the pool of the
evaluation's CPU retrainings.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch

from shapflow.config import UseCaseConfig, from_dict, to_dict
from shapflow.services.lifetime import guard_initializer
from shapflow.utility import Study, folder_store, load_study

__all__ = ["Lookup", "Outcome", "evaluate_here", "evaluate_in_workers", "spawn_pool"]

# lookup(identity key) -> whether a FINISHED run already holds that coalition (``tracking.FinishedLookup``)
Lookup = Callable[[str], bool]
_WORKER: dict[str, Study] = {}


@dataclass
class Outcome:
    """v(S) of one coalition (row ``index`` of the plan): utility, properties, timings (s), the first images.

    ``skipped``: the coalition already had a FINISHED run (another driver's) and nothing was evaluated.
    """

    index: int
    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    images: torch.Tensor = field(repr=False)
    skipped: bool = False


def evaluate_one(study: Study, index: int, mask: np.ndarray, keep_images: int) -> Outcome:
    """v(S) of coalition ``mask`` as an Outcome (its first ``keep_images`` images kept)."""
    return evaluate_group(study, [(index, mask)], keep_images)[0]


def evaluate_group(study: Study, group: list[tuple[int, np.ndarray]], keep_images: int) -> list[Outcome]:
    """v(S) of each (index, mask) of ``group`` as Outcomes, the coalitions stacked (``Study.evaluate_many``)."""
    results = study.evaluate_many([mask for _, mask in group])
    return [Outcome(index, result.utility, result.properties, result.timings, result.images[:keep_images].clone())
            for (index, _), result in zip(group, results, strict=True)]


def skipped(index: int) -> Outcome:
    return Outcome(index, float("nan"), {}, {}, torch.empty(0), skipped=True)


def _groups(masks: dict[int, np.ndarray], stack: int, lookup: Lookup | None, keys: dict[int, str] | None,
            found: list[int]) -> Iterator[list[tuple[int, np.ndarray]]]:
    """{index: mask} in order as groups of up to ``stack`` coalitions, each looked up (``lookup``) just before
    it joins a group; those found FINISHED (or held) go to ``found`` instead."""
    group: list[tuple[int, np.ndarray]] = []
    for index, mask in masks.items():
        key = (keys or {}).get(index)
        if lookup and key and lookup(key):
            found.append(index)
            continue
        group.append((index, mask))
        if len(group) == stack:
            yield group
            group = []
    if group:
        yield group


def evaluate_here(study: Study, masks: dict[int, np.ndarray], *, keep_images: int, lookup: Lookup | None = None,
                  keys: dict[int, str] | None = None, stack: int = 1) -> Iterator[Outcome]:
    """Evaluate {index: mask} in this process, in order and ``stack`` at a time, skipping those ``lookup`` finds
    FINISHED."""
    found: list[int] = []
    for group in _groups(masks, stack, lookup, keys, found):
        while found:
            yield skipped(found.pop(0))
        yield from evaluate_group(study, group, keep_images)
    yield from (skipped(index) for index in found)


def _init_worker(cfg_data: dict, folders: dict[str, str]) -> None:
    """Worker start-up: one torch thread, and the Study loaded once from the stage folders."""
    torch.set_num_threads(1)
    _WORKER["study"] = load_study(from_dict(UseCaseConfig, cfg_data), store=folder_store(folders))


def _evaluate_in_worker(group: list[tuple[int, np.ndarray]], keep_images: int) -> list[Outcome]:
    return evaluate_group(_WORKER["study"], group, keep_images)


def evaluate_in_workers(cfg: UseCaseConfig, masks: dict[int, np.ndarray], *, workers: int, folders: dict[str, str],
                        keep_images: int, lookup: Lookup | None = None, keys: dict[int, str] | None = None,
                        stack: int = 1) -> Iterator[Outcome]:
    """Evaluate {index: mask} in ``workers`` spawned processes, each loading its Study from ``folders`` and
    evaluating ``stack`` coalitions at a time; yields in the order they finish. With ``lookup``, this process
    looks each coalition up just before submitting it (at most two groups per worker ahead of the results) and
    yields it skipped when found: drivers sharing a store split the work instead of each evaluating everything."""
    found: list[int] = []
    tasks = ((group, keep_images) for group in _groups(masks, stack, lookup, keys, found))
    for outcomes in spawn_pool(_evaluate_in_worker, tasks, workers=workers, initializer=_init_worker,
                               initargs=(to_dict(cfg), folders), window=2 * workers):
        while found:
            yield skipped(found.pop(0))
        yield from outcomes
    yield from (skipped(index) for index in found)


def spawn_pool(fn: Callable, tasks: Iterable[tuple], *, workers: int, initializer: Callable, initargs: tuple,
               window: int | None = None) -> Iterator:
    """``fn(*task)`` for every task in up to ``workers`` spawned processes (each set up once by
    ``initializer(*initargs)``), yielded in the order they finish. ``window``: submit at most that many tasks
    ahead of the results, drawing ``tasks`` (which may be lazy) only then; default all at once. A caller that
    stops early (an error while logging a result) cancels the tasks not yet started instead of waiting for all
    of them."""
    if isinstance(tasks, list):
        workers = min(workers, len(tasks))
    tasks = iter(tasks)
    initializer, initargs = guard_initializer(initializer, initargs)  # workers exit when this process dies
    pool = ProcessPoolExecutor(max_workers=max(workers, 1), mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        running = {pool.submit(fn, *task) for task in itertools.islice(tasks, window)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            running |= {pool.submit(fn, *task) for task in itertools.islice(tasks, len(done))}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
