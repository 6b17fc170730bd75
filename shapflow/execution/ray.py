"""Coalitions as Ray tasks: one task per coalition, the stage models sent once through the object store.

The stage folders travel as ``{stage: {file name: bytes}}`` (the family's safetensors / PEFT adapter files and
``stage.json``: data, never a pickled module or checkpoint), and each worker process writes them back to a
folder and loads its Study once, cached by a per-sweep token. Every task is idempotent: given a lookup of the
coalition's identity key it first checks for a FINISHED run and skips the coalition if one exists, so a retried
task (``max_retries``, a lost worker) or a second driver does no redundant work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from shapflow.config import UseCaseConfig, from_dict, to_dict
from shapflow.execution.local import Lookup, Outcome, evaluate_one, skipped
from shapflow.services.lifetime import reap_descendants_on_death
from shapflow.utility import Study, folder_store, load_study

__all__ = ["evaluate_ray", "stage_payload"]

_STUDIES: dict[str, Study] = {}


def stage_payload(cfg: UseCaseConfig, folders: dict[str, str]) -> dict:
    """The use case and every stage folder's files as bytes: {cfg, token, stages: {stage: {name: bytes}}}."""
    stages = {stage: {path.name: path.read_bytes() for path in Path(folder).iterdir() if path.is_file()}
              for stage, folder in folders.items()}
    return {"cfg": to_dict(cfg), "token": os.urandom(8).hex(), "stages": stages}


def _study_from_payload(payload: dict) -> Study:
    """Rebuild (once per worker process and sweep) the Study from a ``stage_payload``."""
    token = payload["token"]
    if token not in _STUDIES:
        torch.set_num_threads(1)
        root = Path(tempfile.mkdtemp(prefix="shapflow-ray-"))
        folders = {}
        for stage, files in payload["stages"].items():
            folder = root / stage
            folder.mkdir()
            for name, content in files.items():
                (folder / Path(name).name).write_bytes(content)
            folders[stage] = str(folder)
        _STUDIES[token] = load_study(from_dict(UseCaseConfig, payload["cfg"]), store=folder_store(folders))
    return _STUDIES[token]


def _task(payload: dict, index: int, mask: np.ndarray, keep_images: int, lookup: Lookup | None,
          key: str | None) -> Outcome:
    """One coalition in a Ray worker: skipped if ``lookup`` finds a FINISHED run with ``key``."""
    if lookup is not None and key and lookup(key):
        return skipped(index)
    return evaluate_one(_study_from_payload(payload), index, mask, keep_images)


def evaluate_ray(cfg: UseCaseConfig, masks: dict[int, np.ndarray], *, folders: dict[str, str], keep_images: int,
                 address: str | None, num_gpus: float, max_retries: int, lookup: Lookup | None = None,
                 keys: dict[int, str] | None = None) -> Iterator[Outcome]:
    """Submit one Ray task per coalition (the stage files put once in the object store), yield as they finish."""
    import ray  # an optional dependency (pip install -e ".[scaleout]")

    if not ray.is_initialized():
        reap_descendants_on_death()  # a local cluster this starts must not outlive a SIGKILL-ed driver
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ref = ray.put(stage_payload(cfg, folders))
    task = ray.remote(_task).options(num_cpus=1, num_gpus=num_gpus, max_retries=max_retries)
    pending = [task.remote(ref, index, mask, keep_images, lookup, (keys or {}).get(index))
               for index, mask in masks.items()]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
