"""The ``shapflow`` command line: run the chain, query logged utilities, re-estimate, report, assets.

Thin: every command parses options, calls the library, prints. Bad parameters exit 2 with a message before
any run is created; every user error exits 2 with its message (``cli.errors``, the one boundary). Models:
``cli.models``; evaluation: ``cli.evaluate_commands``; planning: ``cli.plan_command``; cluster and batch:
``cli.scaleout``.

Start-up speed is a feature: a mistyped command or use case is answered in well under 2 s. So this module
imports Click and ``shapflow.config`` only; each command imports the library (torch, MLflow: seconds) in its
body, and the sub-groups are imported when they are named (``LazyGroup``). Deferred imports here are for that
speed alone (the layering test still counts them), never to hide an import cycle.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shapflow.cli.errors import BoundaryGroup
from shapflow.cli.options import attribute_options, request_from
from shapflow.config import ConfigError, load_use_case
from shapflow.config.request import DEFAULT_METHOD, METHOD_NAMES

if TYPE_CHECKING:
    from shapflow.tracking import Tracker
    from shapflow.utility import DataProxy

__all__ = ["LazyGroup", "main"]

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class LazyGroup(BoundaryGroup):
    """A ``BoundaryGroup`` whose sub-groups ``lazy`` ({name: "module:attribute"}) are imported when named."""

    def __init__(self, *args: object, lazy: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attribute = self.lazy[name].split(":")
        return getattr(importlib.import_module(module), attribute)


_SUBGROUPS = {"models": "shapflow.cli.models:models_group", "evaluate": "shapflow.cli.evaluate_commands:evaluate_group",
              "server": "shapflow.cli.scaleout:server_group", "coalitions": "shapflow.cli.scaleout:coalitions_group",
              "plan": "shapflow.cli.plan_command:plan_command"}


def _study(experiment: str | None, study: str | None) -> tuple[Tracker, str, object]:
    """(tracker, study id, attribute run) of ``--experiment`` (default: the newest attribute run's); an unknown
    experiment is an error (exit 2), never created."""
    from shapflow.tracking import latest_experiment, open_tracker, studies

    name = experiment or latest_experiment()
    if name is None:
        raise click.UsageError("no attribute run in this store yet: run `shapflow run` first")
    tracker = open_tracker(name, create=False)
    found = [(sid, run) for sid, run in studies(tracker) if study is None or sid.startswith(study)]
    if not found:
        raise click.UsageError(f"no attribute run in experiment {experiment!r} of {tracker.uri}: run `shapflow run`")
    return tracker, found[0][0], found[0][1]


@click.group(cls=LazyGroup, lazy=_SUBGROUPS, context_settings={"help_option_names": ["-h", "--help"]})
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
    request = request_from(**options)
    from shapflow.attribution import run_attribute
    from shapflow.tracking import default_tracking_uri
    from shapflow.tracking.store import runs_page

    result = run_attribute(request, progress=True)
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
    """List the logged coalition utilities (masks, members as a JSON list of names, property values, and the data
    proxy q beside v) of a study.

    \b
    Examples:
      shapflow utilities
      shapflow utilities --experiment digits --format csv > utilities.csv
    """
    from shapflow.tracking import logged_names, utilities_table, with_members

    tracker, study_id, parent = _study(experiment, study)
    table = utilities_table(tracker, study_id)
    if len(table):
        table = with_members(table, logged_names(tracker, parent, table))
    if "proxy" in table:  # q(S) beside v(S)
        front = [c for c in ("coalition_id", "mask", "size", "contributors", "role", "utility", "proxy") if c in table]
        table = table[[*front, *(c for c in table.columns if c not in front)]]
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.drop(columns=["run_id"]).to_string(index=False))
    if "proxy" not in table:
        click.echo("(no proxy column: this study was logged without the data proxy; `shapflow reestimate` computes "
                   "it from the data)", err=True)


def _study_proxy(tracker: Tracker, study_id: str) -> DataProxy | None:
    """The data proxy of a logged study, computed from its data (its config read back from its upstream model), and
    checked on its logged coalitions; None where it is constant (with a warning)."""
    from shapflow.attribution import masks_of
    from shapflow.tracking import study_config, utilities_table
    from shapflow.utility import check_proxy, load_proxy

    table = utilities_table(tracker, study_id)
    cfg = study_config(tracker, study_id)
    return check_proxy(load_proxy(cfg), masks_of(table[table["stage"] == "coalition"]),
                       f"the data proxy ({cfg.property.name})")


def _reestimate(experiment: str | None, method: str, study: str | None, proxy: bool = True) -> None:
    from shapflow.attribution import reestimate
    from shapflow.shapley import default_sampler, design_bias

    tracker, study_id, parent = _study(experiment, study)
    data_proxy = _study_proxy(tracker, study_id) if proxy else None
    try:
        use_case, planned_by = parent.data.params.get("study.use_case", ""), parent.data.params.get("study.method")
        bias = design_bias(method, default_sampler(planned_by)) if planned_by else None
        if bias:
            click.echo(f"warning: {bias}", err=True)
        run_id, frame = reestimate(tracker, study_id, parent.info.run_id, use_case, method, planned_by, data_proxy)
    except ValueError as err:
        raise click.UsageError(f"{method} cannot use these utilities: {err}") from None
    click.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    click.echo(f"\nlogged as run {run_id}")


_REESTIMATE_OPTIONS = (
    click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run]."),
    click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHOD_NAMES))),
    click.option("--study", default=None, help="Study id prefix [default: the newest attribute run's]."),
)


def _with_reestimate_options(command):
    for option in reversed(_REESTIMATE_OPTIONS):
        command = option(command)
    return command


@main.command("reestimate")
@_with_reestimate_options
@click.option("--proxy", type=click.BOOL, default=True, show_default=True,
              help="Use the data proxy (the property of each coalition's own real images, computed from the study's "
                   "data, so older studies get it too) as the control variate of the methods that take one.")
def reestimate_command(experiment: str | None, method: str, study: str | None, proxy: bool) -> None:
    """Estimate values from LOGGED utilities with any estimator; log them as a new run; print the table.

    \b
    Examples:
      shapflow reestimate --experiment digits --method kernelshap-paired
      shapflow reestimate --method banzhaf-msr
      shapflow reestimate --proxy false       # the default estimator without the data proxy
    """
    _reestimate(experiment, method, study, proxy)


@main.command("report")
@click.option("--experiment", default=None, help="Experiment name [default: that of the newest attribute run].")
@click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHOD_NAMES)))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("shapflow-report"),
              show_default=True)
def report_command(experiment: str | None, method: str, out: Path) -> None:
    """Write the values table and plots (bar chart, convergence) from logged utilities into a folder.

    \b
    Example:  shapflow report --experiment digits --out report/
    """
    from shapflow.attribution import report_from_table
    from shapflow.tracking import logged_names, utilities_table

    tracker, study_id, parent = _study(experiment, study=None)
    table = utilities_table(tracker, study_id)
    report_from_table(table, logged_names(tracker, parent, table), parent.data.params.get("study.use_case", ""),
                      method, out)
    click.echo(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


@main.group("assets")
def assets_group() -> None:
    """External assets of a use case (datasets, pretrained networks): check them before a run."""


@assets_group.command("check")
@click.option("--use-case", default="digits", show_default=True, help="A shipped use case name.")
@click.option("--config", default=None, help="Path to a use-case YAML (instead of --use-case).")
@click.option("--overrides", default="", help='Field overrides, e.g. "assets.cifar100=/data/cifar-100-python".')
@click.option("--tiny", type=click.BOOL, default=False, show_default=True,
              help="List the tiny configuration's stand-ins instead.")
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
    from shapflow.data.assets import check_use_case, format_table

    statuses = check_use_case(cfg, stand_ins=tiny)
    if not statuses:
        click.echo(f"{cfg.name}: no external assets needed")
        return
    click.echo(f"{cfg.name}{' (tiny stand-ins: plumbing only)' if tiny else ''}:\n{format_table(statuses)}")
    if not all(s.found for s in statuses):
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
