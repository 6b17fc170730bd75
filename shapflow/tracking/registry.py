"""Registered models, ready to use: ``load_registered("digits-pruned@latest")`` -> models + their use case.

Versions point at a stage run's ``model`` folder (safetensors + JSON written by ``save_unet``, with the
use-case config in its ``extra``), so loading never unpickles anything and needs no MLflow flavor.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shapflow.config import UseCaseConfig, from_dict
from shapflow.tracking.store import open_tracker, resolve_model
from shapflow.utility.study import Models, load_models

__all__ = ["RegisteredModel", "load_registered"]


@dataclass
class RegisteredModel:
    """A loaded model version: its name, version, source run, models and the use case it was trained for."""

    name: str
    version: str
    run_id: str
    models: Models
    cfg: UseCaseConfig


def load_registered(ref: str, into: Path | None = None, uri: str | None = None) -> RegisteredModel:
    """Load ``NAME@ALIAS`` / ``NAME@latest`` / ``NAME/VERSION`` from the registry (``into``: keep the files there)."""
    tracker = open_tracker(uri=uri)
    name, version, run_id = resolve_model(tracker, ref)
    with tempfile.TemporaryDirectory(prefix="shapflow-model-") as tmp:
        folder = tracker.download(run_id, "model", Path(tmp))
        meta_cfg = _use_case(folder)
        recipe = meta_cfg.finetune if name.endswith("-pruned") else meta_cfg.train
        models, _ = load_models(folder, recipe)
        if into is not None:
            shutil.copytree(folder, into, dirs_exist_ok=True)
    return RegisteredModel(name, version, run_id, models, meta_cfg)


def _use_case(folder: Path) -> UseCaseConfig:
    """The use-case config stored in a model folder's JSON (``extra.use_case``)."""
    import json

    extra = json.loads((folder / "model.json").read_text()).get("extra", {})
    if "use_case" not in extra:
        raise ValueError(f"{folder}/model.json has no use-case config: it was not saved by shapflow.tracking")
    return from_dict(UseCaseConfig, extra["use_case"])
