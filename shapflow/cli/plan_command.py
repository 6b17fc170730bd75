"""``shapflow plan``: the precision a compute budget buys for a use case, and the settings that buy the most."""

from __future__ import annotations

import click
import pandas as pd

from shapflow.attribution import load_config
from shapflow.attribution.planner import PAPER_CONTRIBUTORS, hours_for, known_cost, load_tradeoff, plan_budget
from shapflow.config import ConfigError, UseCaseConfig
from shapflow.data import load_data
from shapflow.data.assets import MissingAssetsError, require_use_case
from shapflow.shapley.targets import parse_target

__all__ = ["plan_command"]


def _contributors(cfg: UseCaseConfig) -> int:
    """n of the use case: its data where it loads offline, else the paper's setup; ConfigError when neither."""
    try:
        require_use_case(cfg)
        return load_data(cfg.data, cfg.assets).n_contributors
    except MissingAssetsError:
        if cfg.name in PAPER_CONTRIBUTORS:
            return PAPER_CONTRIBUTORS[cfg.name]
        raise ConfigError(f"use case {cfg.name}: its data is not here, so its number of contributors is unknown: "
                          "supply its assets (shapflow assets check) and plan again") from None


@click.command("plan")
@click.option("--use-case", default="digits", show_default=True, help="A shipped use case name or YAML path.")
@click.option("--overrides", default="", help='Field overrides, e.g. "sft.steps=100".')
@click.option("--gpu-hours", type=float, default=None, help="Compute to spend: hours of one device.")
@click.option("--target", default="", help="A precision to reach (as shapflow run --target): the hours it needs.")
@click.option("--tradeoff", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A trade-off file [default: the packaged digits measurement].")
@click.option("--experiment", default=None, help="Where its earlier runs are [default: the use case name].")
def plan_command(use_case: str, overrides: str, gpu_hours: float | None, target: str, tradeoff: str | None,
                 experiment: str | None) -> None:
    """Expected precision and recommended settings (sFT steps, coalitions) for a compute budget.

    \b
    Examples:
      shapflow plan --use-case artworks --gpu-hours 100
      shapflow plan --use-case artworks --target pairs-separated=0.44
    The cost per coalition: measured in this store's runs of the use case, else the paper's figure (artworks).
    """
    if gpu_hours is None and not target:
        raise ConfigError("give --gpu-hours (compute to spend) or --target (a precision to reach), or both")
    if gpu_hours is not None and not gpu_hours > 0:
        raise ConfigError(f"gpu-hours={gpu_hours} is invalid: give a positive number of device hours, e.g. 100")
    cfg = load_config(use_case, overrides)
    n = _contributors(cfg)
    goal = None
    if target:
        try:
            goal = parse_target(target, n)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if goal.measure not in ("pairs-separated", "mean-std"):
            raise ConfigError(f"target={target}: the planner knows pairs-separated and mean-std (what the trade-off "
                              "measured); use one of those")
    cost = known_cost(cfg, experiment=experiment)
    if cost is None:
        raise ConfigError(f"no cost per coalition is known for use case {cfg.name}: run it once (shapflow run "
                          f"--use-case {cfg.name} --budget {2 * n}) so the store holds its coalitions' timings")
    curves = load_tradeoff(tradeoff)
    click.echo(f"{cfg.name}: n = {n} contributors; {cost.seconds:.0f} s per coalition at {cost.sft_steps} sFT "
               f"steps ({cost.source})")
    click.echo(f"trade-off: {curves.source}; measured on {curves.use_case} (n = {curves.n}), carried over at equal "
               "coalitions per contributor")
    if gpu_hours is not None:
        rows = plan_budget(n, cost, gpu_hours * 3600.0, curves)
        frame = pd.DataFrame([{"sft_steps": r.sft_steps, "s_per_coalition": round(r.seconds_per_coalition),
                               "coalitions": r.coalitions, "per_n": round(r.coalitions / n, 2),
                               "pairs_separated": r.pairs_separated, "mean_std_rel": r.mean_std_rel, "lds": r.lds,
                               "in_measured_range": r.measured} for r in rows])
        click.echo(f"\n{gpu_hours:g} device-hours buy:\n" + frame.to_string(index=False, float_format="%.3f"))
        best = max(rows, key=lambda r: (r.pairs_separated, r.lds))
        click.echo(f"\nrecommended: --overrides sft.steps={best.sft_steps} --budget {best.coalitions}: expected "
                   f"{best.pairs_separated:.0%} of pairs separated, mean std {best.mean_std_rel:.3f} of the range, "
                   f"held-out LDS {best.lds:.0f}")
    if goal is not None:
        needed = hours_for(goal, n, cost, curves)
        click.echo(f"\nhours to reach {goal}:")
        for steps, hours in needed.items():
            click.echo(f"  sFT steps {steps}: " + ("not reached within the measured coalitions" if hours is None
                                                  else f"~{hours:.1f} device-hours"))
