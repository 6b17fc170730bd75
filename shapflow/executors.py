"""Where coalition evaluations run: in-process, N spawned one-thread worker processes, or Ray tasks.

``local`` (default): workers never touch MLflow; each loads the Study once from the stage model folders the
driver downloaded and returns a picklable ``Outcome``; the driver logs every run. On a small CPU box N
one-thread processes beat one N-thread process (the models are too small for intra-op parallelism to pay).

``ray``: one Ray task per coalition. The stage models travel ONCE through the object store as
``{stage: (architecture JSON text, state dict, EMA state dict)}`` (tensors, never a pickled module or
checkpoint file; Ray's serializer pickles the tensor containers internally), and each worker process
rebuilds its Study once and caches it. Every task is idempotent: given the tracking URI and the
coalition's identity key it first looks for a FINISHED run with that key and skips the coalition if one
exists, so a retried task (``max_retries``, a lost worker) or a second driver does no redundant work.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from shapflow.config import TrainConfig, UseCaseConfig, from_dict, to_dict
from shapflow.pipeline import Models, Study, load_models, load_study
from shapflow.procs import guard_initializer

__all__ = ["EXECUTORS", "ExecutorSpec", "Outcome", "evaluate_many", "folder_store", "model_payload", "spawn_pool"]

EXECUTORS = ("local", "ray")
_WORKER: dict[str, Study] = {}


@dataclass
class Outcome:
    """v(S) of one coalition (row ``index`` of the plan): utility, properties, timings (s), the first images.

    ``skipped``: a Ray task found a FINISHED run for the coalition and evaluated nothing (utility is NaN).
    """

    index: int
    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    images: torch.Tensor = field(repr=False)
    skipped: bool = False


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run coalitions: ``local`` or ``ray`` (address, fractional GPUs and retries per task).

    Read from ``SHAPFLOW_EXECUTOR``, ``SHAPFLOW_RAY_ADDRESS``, ``SHAPFLOW_RAY_NUM_GPUS``,
    ``SHAPFLOW_RAY_MAX_RETRIES`` (set by ``--executor``/``-P executor=``), so every entry point agrees.
    """

    kind: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0
    max_retries: int = 3

    @classmethod
    def from_env(cls) -> ExecutorSpec:
        kind = os.environ.get("SHAPFLOW_EXECUTOR", "local") or "local"
        if kind not in EXECUTORS:
            raise ValueError(f"executor={kind!r} is invalid: use one of {', '.join(EXECUTORS)}")
        return cls(kind, os.environ.get("SHAPFLOW_RAY_ADDRESS") or None,
                   float(os.environ.get("SHAPFLOW_RAY_NUM_GPUS", "0") or 0),
                   int(os.environ.get("SHAPFLOW_RAY_MAX_RETRIES", "3") or 3))


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


def model_payload(cfg: UseCaseConfig, folders: dict[str, str]) -> dict:
    """The use case and every stage's model as data: {cfg, stages: {stage: (model.json text, state, ema)}}."""
    from safetensors.torch import load_file

    stages = {}
    for stage, folder in folders.items():
        ema = Path(folder, "ema.safetensors")
        stages[stage] = (Path(folder, "model.json").read_text(), load_file(Path(folder, "model.safetensors")),
                         load_file(ema) if ema.is_file() else None)
    return {"cfg": to_dict(cfg), "stages": stages}


def _study_from_payload(payload: dict) -> Study:
    """Rebuild (once per worker process, cached by payload identity) the Study from a ``model_payload``."""
    from safetensors.torch import save_file

    token = payload["token"]
    if token not in _WORKER:
        torch.set_num_threads(1)
        root = Path(tempfile.mkdtemp(prefix="shapflow-ray-"))
        folders = {}
        for stage, (meta, state, ema) in payload["stages"].items():
            folder = root / stage
            folder.mkdir()
            (folder / "model.json").write_text(meta)
            save_file(state, folder / "model.safetensors")
            if ema is not None:
                save_file(ema, folder / "ema.safetensors")
            folders[stage] = str(folder)
        _WORKER[token] = load_study(from_dict(UseCaseConfig, payload["cfg"]), store=folder_store(folders))
    return _WORKER[token]


def _finished(uri: str | None, experiment_id: str | None, key: str | None) -> bool:
    """Whether the store at ``uri`` already holds a FINISHED run with identity ``key`` (False without one)."""
    if not (uri and key):
        return False
    from mlflow.tracking import MlflowClient

    from shapflow.tracking import Tracker

    return Tracker(MlflowClient(tracking_uri=uri), uri, str(experiment_id)).finished(key) is not None


def _skipped(index: int) -> Outcome:
    return Outcome(index, float("nan"), {}, {}, torch.empty(0), skipped=True)


def _ray_task(payload: dict, index: int, mask: np.ndarray, keep_images: int, uri: str | None,
              experiment_id: str | None, key: str | None) -> Outcome:
    """One coalition in a Ray worker: skip it if MLflow already holds a FINISHED run with ``key``."""
    if _finished(uri, experiment_id, key):
        return _skipped(index)
    return _evaluate(_study_from_payload(payload), index, mask, keep_images)


def _evaluate_ray(study: Study, masks: dict[int, np.ndarray], spec: ExecutorSpec, folders: dict[str, str],
                  keep_images: int, lookup: tuple[str, str, dict[int, str]] | None) -> Iterator[Outcome]:
    """Submit one Ray task per coalition (the models put once in the object store), yield as they finish."""
    import ray

    if not ray.is_initialized():
        ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    payload = model_payload(study.cfg, folders)
    payload["token"] = os.urandom(8).hex()
    ref = ray.put(payload)
    task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=spec.num_gpus, max_retries=spec.max_retries)
    uri, experiment_id, keys = lookup or (None, None, {})
    pending = [task.remote(ref, index, mask, keep_images, uri, experiment_id, keys.get(index))
               for index, mask in masks.items()]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def evaluate_many(study: Study, masks: dict[int, np.ndarray], *, workers: int, folders: dict[str, str],
                  keep_images: int = 64, spec: ExecutorSpec | None = None,
                  lookup: tuple[str, str, dict[int, str]] | None = None) -> Iterator[Outcome]:
    """Evaluate coalitions {index: mask}, yielding each Outcome as it completes (any order).

    ``lookup`` = (tracking uri, experiment id, {index: identity key}) lets each evaluation first skip a
    coalition already FINISHED (by another driver). ``spec.kind == "ray"``: Ray tasks. Local: workers <= 1
    evaluates in this process with ``study``; otherwise a spawn pool of ``workers`` processes, each loading
    its Study from ``folders`` (no per-task lookup there: the driver checks before logging).
    """
    spec = spec or ExecutorSpec.from_env()
    if spec.kind == "ray" and masks:
        yield from _evaluate_ray(study, masks, spec, folders, keep_images, lookup)
        return
    uri, experiment_id, keys = lookup or (None, None, {})
    if workers <= 1 or len(masks) <= 1:
        for index, mask in masks.items():
            finished = _finished(uri, experiment_id, keys.get(index))
            yield _skipped(index) if finished else _evaluate(study, index, mask, keep_images)
        return
    tasks = [(index, mask, keep_images) for index, mask in masks.items()]
    yield from spawn_pool(_evaluate_in_worker, tasks, workers=workers, initializer=_init_worker,
                          initargs=(to_dict(study.cfg), folders))


def spawn_pool(fn: Callable, tasks: list[tuple], *, workers: int, initializer: Callable,
               initargs: tuple) -> Iterator:
    """``fn(*task)`` for every task in up to ``workers`` spawned processes (each set up once by
    ``initializer(*initargs)``), yielded in the order they finish. A caller that stops early (an error
    while logging a result) cancels the tasks not yet started instead of waiting for all of them."""
    initializer, initargs = guard_initializer(initializer, initargs)  # workers exit when this process dies
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        for future in as_completed([pool.submit(fn, *task) for task in tasks]):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
