"""The ``shapflow`` command line: run the chain, query logged utilities, re-estimate, report, assets.

Thin: every command parses options, calls the library, prints. Bad parameters exit 2 with a message before
any run is created; every user error exits 2 with its message (``cli.errors``, the one boundary). Models:
``cli.models``; evaluation: ``cli.evaluate``; cluster and batch: ``cli.scaleout``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from shapflow.attribution import reestimate, report_from_table, run_attribute
from shapflow.cli.errors import BoundaryGroup
from shapflow.cli.evaluate import evaluate_group
from shapflow.cli.models import models_group
from shapflow.cli.options import attribute_options, request_from
from shapflow.cli.plan import plan_command
from shapflow.cli.scaleout import coalitions_group, server_group
from shapflow.config import ConfigError, load_use_case
from shapflow.data.assets import check_use_case, format_table
from shapflow.shapley import DEFAULT_METHOD, METHODS
from shapflow.tracking import Tracker, default_tracking_uri, latest_experiment, open_tracker, studies, utilities_table
from shapflow.tracking.store import runs_page

__all__ = ["main"]

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _study(experiment: str | None, study: str | None) -> tuple[Tracker, str, object]:
    """(tracker, study id, attribute run) of ``--experiment`` (default: the newest attribute run's); an unknown
    experiment is an error (exit 2), never created."""
    name = experiment or latest_experiment()
    if name is None:
        raise click.UsageError("no attribute run in this store yet: run `shapflow run` first")
    tracker = open_tracker(name, create=False)
    found = [(sid, run) for sid, run in studies(tracker) if study is None or sid.startswith(study)]
    if not found:
        raise click.UsageError(f"no attribute run in experiment {experiment!r} of {tracker.uri}: run `shapflow run`")
    return tracker, found[0][0], found[0][1]


@click.group(cls=BoundaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    result = run_attribute(request_from(**options), progress=True)
    click.echo(result.values.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    click.echo(f"\nattribute run {result.run_id} (experiment {result.experiment_id}); "
               f"{result.evaluated_now} coalitions evaluated now")
    click.echo(f"values and plots: {result.artifact_uri}/values.csv, values.md, values.png, convergence.png, "
               "samples_full.png")
    click.echo(f"the runs in the MLflow UI: {runs_page(default_tracking_uri(), result.experiment_id)}")


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
    tracker, study_id, _ = _study(experiment, study)
    table = utilities_table(tracker, study_id)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.drop(columns=["run_id"]).to_string(index=False))


def _reestimate(experiment: str | None, method: str, study: str | None) -> None:
    tracker, study_id, parent = _study(experiment, study)
    try:
        use_case = parent.data.params.get("study.use_case", "")
        run_id, frame = reestimate(tracker, study_id, parent.info.run_id, use_case, method)
    except ValueError as err:
        raise click.UsageError(f"{method} cannot use these utilities: {err}") from None
    click.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    click.echo(f"\nlogged as run {run_id}")


_REESTIMATE_OPTIONS = (
    click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run]."),
    click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHODS))),
    click.option("--study", default=None, help="Study id prefix [default: the newest attribute run's]."),
)


def _with_reestimate_options(command):
    for option in reversed(_REESTIMATE_OPTIONS):
        command = option(command)
    return command


@main.command("reestimate")
@_with_reestimate_options
def reestimate_command(experiment: str | None, method: str, study: str | None) -> None:
    """Estimate values from LOGGED utilities with any estimator; log them as a new run; print the table.

    \b
    Examples:
      shapflow reestimate --experiment digits --method kernelshap-paired
      shapflow reestimate --method banzhaf-msr
    """
    _reestimate(experiment, method, study)


@main.command("attribute", hidden=True)
@_with_reestimate_options
def attribute_command(experiment: str | None, method: str, study: str | None) -> None:
    """Old name of ``shapflow reestimate`` (kept for one release).

    \b
    Example:  shapflow reestimate --method kernelshap-paired
    """
    click.echo("shapflow attribute is now `shapflow reestimate` (this alias goes in the next release)", err=True)
    _reestimate(experiment, method, study)


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
    tracker, study_id, parent = _study(experiment, study=None)
    report_from_table(utilities_table(tracker, study_id), parent.data.params.get("study.use_case", ""), method, out)
    click.echo(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


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


main.add_command(models_group)
main.add_command(evaluate_group)
main.add_command(server_group)
main.add_command(coalitions_group)
main.add_command(plan_command)

if __name__ == "__main__":
    sys.exit(main())
