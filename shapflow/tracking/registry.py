"""Registered models, ready to use: ``load_registered("digits-pruned@latest")`` -> the family's models, the
use case they were trained for, and the context to sample them with.

Each version is an MLflow model (``shapflow.tracking.pyfunc``: models-from-code, the stage folder as its
``stage`` artifact), so ``mlflow.pyfunc.load_model("models:/digits-pruned@prod")`` and ``mlflow models serve``
work too. Versions registered before that point at a stage run's ``model`` folder; ``load_registered`` reads
both kinds. Either way the weights are the family's safetensors / PEFT adapter files and ``stage.json`` with
the use-case config, so loading never unpickles anything.

A reference a user gives is checked before it reaches the store: its model name and alias follow
``config.REGISTRY_NAME_RULE`` and its version is a number (``ConfigError`` otherwise), and every value that
enters a search filter is quoted by ``store.quoted``, so no name can widen a search to another model.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from shapflow.config import REGISTRY_NAME, REGISTRY_NAME_RULE, ConfigError, InputError
from shapflow.tracking.pyfunc import STAGE_ARTIFACT, log_stage_model
from shapflow.tracking.store import Tracker, global_tracking_uri, open_tracker, store_lock
from shapflow.tracking.tags import quoted
from shapflow.utility.deploy import LoadedStage, load_stage_folder

__all__ = ["NoSuchModel", "RegisteredModel", "list_versions", "load_registered", "parse_ref", "register_stage",
           "set_alias"]

_MODELS = "models:/"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class NoSuchModel(InputError, LookupError):
    """A registered model, version or alias the store does not have; the message says how to list those it has."""


@contextlib.contextmanager
def _lookup(what: str) -> Iterator[None]:
    """MLflow's "does not exist" / "invalid" for names a user gave becomes ``NoSuchModel`` naming ``what``: no
    MlflowException leaves the tracking boundary for a user's typo."""
    try:
        yield
    except MlflowException as err:
        if err.error_code not in _NOT_FOUND:
            raise
        raise NoSuchModel(f"{what}: {err.message}; list the registered models, versions and aliases with "
                          "`shapflow models list`") from None


def _model_id(version: ModelVersion) -> str | None:
    """The LoggedModel a version was registered from (its source ``models:/<model id>``; the store's search
    does not fill ``model_id``), or None for a version of a run's folder."""
    source = version.source or ""
    return version.model_id or (source.removeprefix(_MODELS) if source.startswith(_MODELS) else None)


def _model_version(tracker: Tracker, name: str, run_id: str, model_id: str) -> str:
    """The version of registered model ``name`` made from the MLflow model ``model_id``, registering it once."""
    try:
        tracker.call("create_registered_model", name)
    except MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    found = tracker.call("search_model_versions", f"name = {quoted(name)} AND run_id = {quoted(run_id)}")
    same = [v for v in found if _model_id(v) == model_id]
    if same:
        return str(same[0].version)
    with global_tracking_uri(tracker.uri):  # the registry finds the LoggedModel through the global URI
        return str(tracker.call("create_model_version", name, source=f"{_MODELS}{model_id}", run_id=run_id,
                                model_id=model_id).version)


def _one_version(tracker: Tracker, name: str, run_id: str, version: str, model_id: str) -> str:
    """The version of ``name`` that stands for ``run_id``: the lowest of its model-backed versions. Drivers that
    registered the same run at once (a PostgreSQL store or a tracking server: no lock spans them) each delete
    their own higher version and its LoggedModel, so all of them return the same version and one is left."""
    found = [v for v in tracker.call("search_model_versions", f"name = '{name}' AND run_id = '{run_id}'")
             if _model_id(v) is not None]
    winner = min(found, key=lambda v: int(v.version), default=None)
    if winner is None or str(winner.version) == version:
        return version
    tracker.call("delete_model_version", name, version)
    if _model_id(winner) != model_id:
        tracker.call("delete_logged_model", model_id)
    return str(winner.version)


def register_stage(tracker: Tracker, name: str, run_id: str, alias: str | None = None) -> str:
    """Log a stage run's ``model`` folder as an MLflow model and register it as a version of ``name`` (each
    once: a rerun logs and registers nothing new, and concurrent drivers end with one version), then set
    ``alias``; returns the version. On a SQLite store the check-then-register runs under the store's lock."""
    with store_lock(tracker.uri):
        model_id = log_stage_model(tracker, run_id, name)
        version = _one_version(tracker, name, run_id, _model_version(tracker, name, run_id, model_id), model_id)
    if alias:
        tracker.call("set_registered_model_alias", name, alias, version)
    return version


def parse_ref(ref: str) -> tuple[str, str, str]:
    """``NAME@ALIAS`` / ``NAME@latest`` / ``NAME/VERSION`` -> (name, "@" or "/", alias or version), checked:
    ``ConfigError`` (exit 2 at the CLI) unless the name and alias follow ``REGISTRY_NAME_RULE`` and the
    version is a positive number."""
    sep = "@" if "@" in ref else "/" if "/" in ref else ""
    name, _, rest = ref.partition(sep) if sep else (ref, "", "")
    if not sep:
        raise ConfigError(f"model reference {ref!r} is invalid: write NAME@ALIAS, NAME@latest or NAME/VERSION")
    parts = [("model name", name, REGISTRY_NAME.fullmatch(name), f"use {REGISTRY_NAME_RULE}")]
    if sep == "@":
        parts.append(("alias", rest, REGISTRY_NAME.fullmatch(rest), f"use {REGISTRY_NAME_RULE}"))
    else:
        parts.append(("version", rest, rest.isascii() and rest.isdigit() and int(rest) > 0, "give a number such as 1"))
    for what, value, ok, fix in parts:
        if not ok:
            raise ConfigError(f"model reference {ref!r}: the {what} {value!r} is invalid: {fix}")
    return name, sep, rest


def _version(tracker: Tracker, ref: str) -> ModelVersion:
    """The model version ``name@alias`` / ``name@latest`` / ``name/<version>`` names (``parse_ref``).

    ``latest`` is MLflow's reserved word for the highest version, never an alias one can set.
    """
    name, sep, rest = parse_ref(ref)
    if sep == "/":
        return tracker.call("get_model_version", name, rest)
    if rest.lower() != "latest":
        return tracker.call("get_model_version_by_alias", name, rest)
    versions = tracker.call("search_model_versions", f"name = {quoted(name)}")
    if not versions:
        raise NoSuchModel(f"registered model {name!r} has no versions: run the attribute entry point")
    return max(versions, key=lambda v: int(v.version))


def _stage_folder(tracker: Tracker, version: ModelVersion, into: Path) -> Path:
    """The stage folder of a version: the ``stage`` artifact of its MLflow model, or (a version registered
    before versions were MLflow models) its run's ``model`` folder."""
    model_id = _model_id(version)
    if model_id is None:
        return tracker.download(version.run_id, "model", into)
    with global_tracking_uri(tracker.uri):  # models:/ URIs find their LoggedModel through the global URI
        root = mlflow.artifacts.download_artifacts(artifact_uri=f"{_MODELS}{model_id}", dst_path=str(into),
                                                   tracking_uri=tracker.uri)
    pyfunc = Model.load(root).flavors["python_function"]
    return Path(root, pyfunc["artifacts"][STAGE_ARTIFACT]["path"])


@dataclass
class RegisteredModel(LoadedStage):
    """A loaded model version: the loaded stage (stage, use case, family, context, models) with its registered
    name, version and source run."""

    name: str
    version: str
    run_id: str


def load_registered(ref: str, into: Path | None = None, uri: str | None = None) -> RegisteredModel:
    """Load ``NAME@ALIAS`` / ``NAME@latest`` / ``NAME/VERSION`` from the registry (``into``: keep the files there)."""
    tracker = open_tracker(uri=uri)
    with _lookup(f"cannot load {ref}"):
        version = _version(tracker, ref)
    with tempfile.TemporaryDirectory(prefix="shapflow-model-") as tmp:
        folder = _stage_folder(tracker, version, Path(tmp))
        loaded = load_stage_folder(folder)
        if into is not None:
            shutil.copytree(folder, into, dirs_exist_ok=True)
    stage = {field.name: getattr(loaded, field.name) for field in fields(LoadedStage)}
    return RegisteredModel(**stage, name=version.name, version=str(version.version), run_id=version.run_id)


def list_versions(tracker: Tracker) -> list[tuple[str, str, str, list[str]]]:
    """Every registered model version as (name, version, run id, its aliases), by name then newest version first.
    Read all at once: no model name ever enters a filter."""
    versions: dict[str, list[ModelVersion]] = {}
    for version in tracker.call("search_model_versions"):
        versions.setdefault(version.name, []).append(version)
    rows = []
    for model in tracker.call("search_registered_models"):
        for version in sorted(versions.get(model.name, []), key=lambda v: -int(v.version)):
            aliases = sorted(a for a, v in model.aliases.items() if str(v) == str(version.version))
            rows.append((model.name, str(version.version), version.run_id, aliases))
    return rows


def set_alias(tracker: Tracker, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version``; ``NoSuchModel`` when either is missing."""
    with _lookup(f"cannot point {name}@{alias} at version {version}"):
        tracker.call("set_registered_model_alias", name, alias, version)
