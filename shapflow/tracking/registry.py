"""Registered models, ready to use: ``load_registered("digits-pruned@latest")`` -> the family's models, the
use case they were trained for, and the context to sample them with.

Versions point at a stage run's ``model`` folder (the family's safetensors / PEFT adapter files and
``stage.json`` with the use-case config), so loading never unpickles anything.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from shapflow.config import UseCaseConfig, from_dict
from shapflow.tracking.store import Tracker, open_tracker
from shapflow.utility import Context, Family, Models, family_of, read_stage_meta

__all__ = ["RegisteredModel", "load_registered", "register_stage", "resolve_model"]


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




@dataclass
class RegisteredModel:
    """A loaded model version: name, version, source run, the use case, its family, context and models."""

    name: str
    version: str
    run_id: str
    cfg: UseCaseConfig
    family: Family
    ctx: Context
    models: Models


def load_registered(ref: str, into: Path | None = None, uri: str | None = None) -> RegisteredModel:
    """Load ``NAME@ALIAS`` / ``NAME@latest`` / ``NAME/VERSION`` from the registry (``into``: keep the files there)."""
    tracker = open_tracker(uri=uri)
    name, version, run_id = resolve_model(tracker, ref)
    with tempfile.TemporaryDirectory(prefix="shapflow-model-") as tmp:
        folder = tracker.download(run_id, "model", Path(tmp))
        meta = read_stage_meta(folder)
        cfg = from_dict(UseCaseConfig, meta["use_case"])
        family = family_of(cfg)
        ctx = family.context(cfg)
        models = family.load(ctx, folder, meta["stage"])
        if into is not None:
            shutil.copytree(folder, into, dirs_exist_ok=True)
    return RegisteredModel(name, version, run_id, cfg, family, ctx, models)
