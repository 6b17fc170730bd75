"""The ``shapflow`` command line: run the chain, query logged utilities, re-estimate, models, reports.

Thin: every command parses options, calls ``shapflow.attribution.run`` / ``shapflow.tracking``, prints. Bad
parameters raise ``click.UsageError`` (exit 2) before any run is created.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from shapflow.cli.evaluate import evaluate_group
from shapflow.cli.scaleout import executor_options, register
from shapflow.config import ConfigError
from shapflow.shapley import DEFAULT_METHOD, DEFAULT_THRESHOLD, METHODS

__all__ = ["main"]

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _request(**options):
    from shapflow.attribution.run import parse_request
    from shapflow.data.assets import MissingAssetsError

    try:
        return parse_request(**options)
    except (ConfigError, MissingAssetsError) as err:
        raise click.UsageError(str(err)) from None


def _study(experiment: str | None, study: str | None):
    """(tracker, study id, attribute run) of ``--experiment`` (default: the newest attribute run's)."""
    from shapflow.tracking import latest_experiment, open_tracker, studies

    tracker = open_tracker(experiment or latest_experiment())
    found = [(sid, run) for sid, run in studies(tracker) if study is None or sid.startswith(study)]
    if not found:
        raise click.UsageError(f"no attribute run in experiment {experiment!r} of {tracker.uri}: run `shapflow run`")
    return tracker, found[0][0], found[0][1]


def attribute_options(command):
    """The options shared by ``shapflow run`` and the MLproject scripts (defaults match MLproject)."""
    options = [
        click.option("--use-case", default="digits", show_default=True, help="A shipped use case name."),
        click.option("--config", default=None, help="Path to a use-case YAML (instead of --use-case)."),
        click.option("--overrides", default="", help='Field overrides, e.g. "sft.steps=50 sampling.num_images=128".'),
        click.option("--budget", type=int, default=None, help="Coalitions to evaluate [default: 10 n]."),
        click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHODS)),
                     help="Estimator (also picks the coalition sampler)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Coalition sampler seed."),
        click.option("--workers", type=int, default=0, show_default=True,
                     help="Worker processes, one torch thread each (0 = one per core)."),
        click.option("--alias", default=None, help="Registry alias to set on the full and pruned models."),
        click.option("--experiment", default=None, help="MLflow experiment [default: the use case name]."),
        click.option("--tiny", type=click.BOOL, default=False, show_default=True,
                     help="SMOKE configuration: tiny random stand-ins for every external asset (plumbing only)."),
        click.option("--until-converged", type=click.BOOL, default=False, show_default=True,
                     help="Stop before the budget once every value's std is within --threshold of their range."),
        click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
                     help="Convergence rule: worst std <= threshold x (max value - min value)."),
        *executor_options(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Shapley values of data contributors for a global property of a diffusion model.

    \b
    Store: MLFLOW_TRACKING_URI, default sqlite:///./mlruns.db with artifacts in ./mlartifacts.
    Example:  shapflow run --use-case digits && shapflow utilities && shapflow report
    """


@main.command("run")
@attribute_options
def run_command(**options) -> None:
    """Run the whole chain (the MLproject's attribute entry point): stages, coalitions, values, plots.

    \b
    Examples:
      shapflow run --use-case digits
      shapflow run --use-case digits --budget 40 --workers 2 --overrides "sft.steps=50"
    A killed run resumes: the same command again evaluates only the coalitions not yet FINISHED.
    """
    from shapflow.attribution.run import run_attribute

    request = _request(**options)
    result = run_attribute(request, progress=True)
    click.echo(result.values.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"\nattribute run {result.run_id} (experiment {result.experiment_id}); "
               f"{result.evaluated_now} coalitions evaluated now")
    click.echo(f"values and plots: {result.artifact_uri}/values.csv, values.md, values.png, convergence.png, "
               "samples_full.png")


@main.command("utilities")
@click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run].")
@click.option("--study", default=None, help="Study id prefix [default: the newest attribute run's].")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def utilities_command(experiment: str | None, study: str | None, fmt: str) -> None:
    """List the logged coalition utilities (masks and property values) of an experiment.

    \b
    Examples:
      shapflow utilities
      shapflow utilities --experiment digits --format csv > utilities.csv
    """
    from shapflow.tracking import utilities_table

    tracker, study_id, _ = _study(experiment, study)
    table = utilities_table(tracker, study_id)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.drop(columns=["run_id"]).to_string(index=False))


@main.command("attribute")
@click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run].")
@click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHODS)))
@click.option("--study", default=None, help="Study id prefix [default: the newest attribute run's].")
def attribute_command(experiment: str | None, method: str, study: str | None) -> None:
    """Estimate values from LOGGED utilities with any estimator; log them as a new run; print the table.

    \b
    Examples:
      shapflow attribute --experiment digits --method kernelshap-paired
      shapflow attribute --method banzhaf-msr
    """
    from shapflow.attribution.run import reestimate

    tracker, study_id, parent = _study(experiment, study)
    try:
        use_case = parent.data.params.get("study.use_case", "")
        run_id, frame = reestimate(tracker, study_id, parent.info.run_id, use_case, method)
    except ValueError as err:
        raise click.UsageError(f"{method} cannot use these utilities: {err}") from None
    click.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"\nlogged as run {run_id}")


@main.command("report")
@click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run].")
@click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHODS)))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("shapflow-report"),
              show_default=True)
def report_command(experiment: str | None, method: str, out: Path) -> None:
    """Write the values table and plots (bar chart, convergence) from logged utilities into a folder.

    \b
    Example:  shapflow report --experiment digits --out report/
    """
    from shapflow.attribution.run import report_from_table
    from shapflow.tracking import utilities_table

    tracker, study_id, parent = _study(experiment, study=None)
    report_from_table(utilities_table(tracker, study_id), parent.data.params.get("study.use_case", ""), method, out)
    click.echo(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


@main.group("models")
def models_group() -> None:
    """Registered models (<use_case>-full, <use_case>-pruned): list, load, alias, check."""


@models_group.command("list")
def models_list() -> None:
    """List registered models, their versions and aliases.  Example: shapflow models list"""
    from shapflow.tracking import open_tracker

    tracker = open_tracker()
    for model in tracker.call("search_registered_models"):
        aliases = tracker.call("get_registered_model", model.name).aliases  # {alias: version}
        for version in tracker.call("search_model_versions", f"name = '{model.name}'"):
            names = sorted(a for a, v in aliases.items() if str(v) == str(version.version))
            click.echo(f"{model.name}/{version.version}\trun {version.run_id}\taliases {','.join(names) or '-'}")


@models_group.command("load")
@click.argument("ref")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the safetensors + JSON folder here.")
def models_load(ref: str, out: Path | None) -> None:
    """Load NAME@ALIAS (or NAME@latest, NAME/VERSION) and print its architecture summary.

    \b
    Example:  shapflow models load digits-pruned@latest --out pruned/
    """
    from shapflow.models import count_parameters
    from shapflow.tracking.registry import load_registered

    loaded = _registered(load_registered, ref, out)
    click.echo(f"{ref}: version {loaded.version}, {count_parameters(loaded.models.model)} parameters, "
               f"use case {loaded.cfg.name}")


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.option("--version", required=True, help="Model version to point the alias at.")
def models_alias(name: str, alias: str, version: str) -> None:
    """Point ALIAS of registered model NAME at a version.

    \b
    Example:  shapflow models alias digits-pruned prod --version 1
    """
    from shapflow.tracking import open_tracker

    open_tracker().call("set_registered_model_alias", name, alias, version)
    click.echo(f"{name}@{alias} -> version {version}")


@models_group.command("check")
@click.argument("ref")
def models_check(ref: str) -> None:
    """Deployment check: load REF, sample with the use case's fixed seed, score, print the properties.

    \b
    Example:  shapflow models check digits-pruned@latest
    """
    from shapflow.attribution.run import score_models
    from shapflow.tracking.registry import load_registered

    loaded = _registered(load_registered, ref, None)
    click.echo(json.dumps(score_models(loaded.cfg, loaded.models), indent=1))


def _registered(load, ref: str, out: Path | None):
    from mlflow.exceptions import MlflowException

    try:
        return load(ref, out)
    except MlflowException as err:
        raise click.UsageError(str(err)) from None


@main.group("assets")
def assets_group() -> None:
    """External assets of a use case (datasets, pretrained networks): check them before a run."""


@assets_group.command("check")
@click.option("--use-case", default="digits", show_default=True, help="A shipped use case name.")
@click.option("--config", default=None, help="Path to a use-case YAML (instead of --use-case).")
@click.option("--overrides", default="", help='Field overrides, e.g. "assets.cifar100=/data/cifar-100-python".')
@click.option("--tiny", type=click.BOOL, default=False, show_default=True,
              help="List the SMOKE configuration's stand-ins instead.")
def assets_check(use_case: str, config: str | None, overrides: str, tiny: bool) -> None:
    """List each external asset of a use case as found / MISSING, with its expected layout and source.

    \b
    Examples:
      shapflow assets check --use-case artworks
      shapflow assets check --use-case cifar20 --overrides "assets.cifar100=~/data/cifar-100-python.tar.gz"
    Exits 1 when an asset is missing (the same check runs before every pipeline).
    """
    from shapflow.config import load_use_case
    from shapflow.data.assets import check_use_case, format_table

    try:
        cfg = load_use_case(config or use_case, overrides.split())
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    statuses = check_use_case(cfg, stand_ins=tiny)
    if not statuses:
        click.echo(f"{cfg.name}: no external assets needed")
        return
    click.echo(f"{cfg.name}{' (SMOKE stand-ins: plumbing only)' if tiny else ''}:\n{format_table(statuses)}")
    if not all(s.found for s in statuses):
        sys.exit(1)


register(main, attribute_options, _request)  # shapflow server / shapflow coalitions (scale-out)
main.add_command(evaluate_group)  # shapflow evaluate lds / counterfactual

if __name__ == "__main__":
    sys.exit(main())
