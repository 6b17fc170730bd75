"""``shapflow models``: the registered models (<use_case>-full, <use_case>-pruned): list, load, alias, check."""

from __future__ import annotations

import json
from pathlib import Path

import click
from mlflow.exceptions import MlflowException

from shapflow.cli.errors import UserError, registry_lookup
from shapflow.tracking import RegisteredModel, load_registered, open_tracker
from shapflow.utility import load_scorer, stage_properties

__all__ = ["models_group"]


@click.group("models")
def models_group() -> None:
    """Registered models (<use_case>-full, <use_case>-pruned): list, load, alias, check."""


@models_group.command("list")
def models_list() -> None:
    """List registered models, their versions and aliases.  Example: shapflow models list"""
    tracker = open_tracker()
    for model in tracker.call("search_registered_models"):
        aliases = tracker.call("get_registered_model", model.name).aliases  # {alias: version}
        for version in tracker.call("search_model_versions", f"name = '{model.name}'"):
            names = sorted(a for a, v in aliases.items() if str(v) == str(version.version))
            click.echo(f"{model.name}/{version.version}\trun {version.run_id}\taliases {','.join(names) or '-'}")


def _registered(ref: str, out: Path | None) -> RegisteredModel:
    try:
        return load_registered(ref, out)
    except MlflowException as err:  # no such model, version or alias; a malformed reference
        raise UserError(f"cannot load {ref}: {err.message}; list the registered models, versions and aliases "
                        "with `shapflow models list`") from None


@models_group.command("load")
@click.argument("ref")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the model folder (safetensors or PEFT adapter files + stage.json) here.")
def models_load(ref: str, out: Path | None) -> None:
    """Load NAME@ALIAS (or NAME@latest, NAME/VERSION) and print its summary.

    \b
    Example:  shapflow models load digits-pruned@latest --out pruned/
    """
    loaded = _registered(ref, out)
    click.echo(f"{ref}: version {loaded.version} (run {loaded.run_id}), use case {loaded.cfg.name}, "
               f"model family {loaded.family.name}" + (f"; files in {out}" if out else ""))


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.option("--version", required=True, help="Model version to point the alias at.")
def models_alias(name: str, alias: str, version: str) -> None:
    """Point ALIAS of registered model NAME at a version.

    \b
    Example:  shapflow models alias digits-pruned prod --version 1
    """
    with registry_lookup(f"cannot point {name}@{alias} at version {version}"):
        open_tracker().call("set_registered_model_alias", name, alias, version)
    click.echo(f"{name}@{alias} -> version {version}")


@models_group.command("check")
@click.argument("ref")
def models_check(ref: str) -> None:
    """Deployment check: load REF, sample with the use case's fixed seed, score, print the properties.

    \b
    Example:  shapflow models check digits-pruned@latest
    """
    loaded = _registered(ref, None)
    scorer = load_scorer(loaded.cfg)
    click.echo(json.dumps(stage_properties(scorer, loaded.family, loaded.ctx, loaded.models), indent=1))
