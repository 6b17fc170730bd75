"""Options shared by ``shapflow run``, the batch commands and the MLproject scripts (defaults match MLproject:
tests/cli checks it), and the one call that turns them into a validated request.

Light on purpose: the options are built from ``shapflow.config`` alone, and ``request_from`` checks the use case
and its overrides before it imports the attribution package (torch, MLflow: seconds), so a mistyped use case is
answered at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from shapflow.cli.errors import WHOLE
from shapflow.config import ConfigError, load_use_case
from shapflow.config.request import DEFAULT_METHOD, EXECUTORS, METHOD_NAMES, split_overrides

if TYPE_CHECKING:
    from shapflow.attribution import Request

__all__ = ["WHOLE", "attribute_options", "request_from"]


def request_from(**options) -> Request:
    """``parse_request(**options)``; a bad parameter or a missing asset exits 2 with the message (no run exists).
    The use case and overrides are checked first, before the heavy imports."""
    try:
        load_use_case(options.get("config") or options.get("use_case", "digits"),
                      split_overrides(options.get("overrides", "")))
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    from shapflow.attribution import parse_request  # deferred: start-up speed (module docstring)
    from shapflow.data.assets import MissingAssetsError

    try:
        return parse_request(**options)
    except (ConfigError, MissingAssetsError) as err:
        raise click.UsageError(str(err)) from None


def attribute_options(command):
    """The options of an attribution request, in MLproject's order (defaults match MLproject)."""
    options = [
        click.option("--use-case", default="digits", show_default=True, help="A shipped use case name."),
        click.option("--config", default=None, help="Path to a use-case YAML (instead of --use-case)."),
        click.option("--overrides", default="", help='Field overrides, e.g. "sft.steps=50 sampling.num_images=128".'),
        click.option("--budget", type=WHOLE, default=None, help="Coalitions to evaluate [default: 10 n]."),
        click.option("--method", default=DEFAULT_METHOD, show_default=True, type=click.Choice(sorted(METHOD_NAMES)),
                     help="Estimator (also picks the coalition sampler)."),
        click.option("--seed", type=WHOLE, default=0, show_default=True, help="Coalition sampler seed."),
        click.option("--workers", type=WHOLE, default=0, show_default=True,
                     help="Worker processes, one torch thread each (0 = one per core; one for Stable Diffusion)."),
        click.option("--stack", type=WHOLE, default=1, show_default=True,
                     help="Coalitions each local process trains and samples together in one vmapped loop (same "
                          "utilities; pixel family, kernels=eager)."),
        click.option("--alias", default=None, help="Registry alias to set on the full and pruned models."),
        click.option("--experiment", default=None, help="MLflow experiment [default: the use case name]."),
        click.option("--tiny", type=click.BOOL, default=False, show_default=True,
                     help="tiny configuration: tiny random stand-ins for every external asset (plumbing only)."),
        click.option("--target", default="",
                     help="Stop at the precision you need, --budget is then the cap: pairs-separated=0.44, "
                          "mean-std=0.05, max-std=0.05 (x the values' range) or top-k-stable=5."),
        click.option("--check", default="auto", show_default=True,
                     help="Held-out half-size coalitions evaluated to check how well the values predict them "
                          "(auto: 10% of the budget; 0: none)."),
        click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="local processes (--workers) or one Ray task per coalition."),
        click.option("--ray-address", default=None,
                     help="Ray cluster address (ray://host:10001, auto, local) [default: a new local cluster]."),
        click.option("--num-gpus", type=float, default=0.0, show_default=True,
                     help="GPUs per Ray task, fractional (e.g. 0.25)."),
        click.option("--max-retries", type=WHOLE, default=3, show_default=True,
                     help="Retries of a Ray task whose worker died."),
        click.option("--proxy", type=click.BOOL, default=True, show_default=True,
                     help="Use the data proxy (the property of each coalition's own real images) as the estimator's "
                          "control variate, where the property has one."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
