"""The planner: what precision a compute budget buys, and with which sFT steps and how many coalitions.

Two inputs. The cost of one coalition of the use case (sFT + sampling + scoring, seconds on one device): measured
in the store's earlier runs of that use case under its current config, else the paper's figure (artworks:
635 GPU-seconds at 200 sFT steps, METHOD.md). And a measured trade-off (``tradeoff/<use case>.json``, written by
``benchmarks/sft_tradeoff.py``): for sFT steps at 1/4, 1/2, 1 and 2 x the default, the precision the coalitions
of equal compute reached on the real digits game, prefix by prefix, with the cost's split into a fixed part
(sampling, scoring) and a part per step. The plan carries the digits curves over to another use case at the same
number of coalitions per contributor (m / n), which is an assumption, and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from shapflow.config import UseCaseConfig, stage_key
from shapflow.shapley.targets import Target
from shapflow.tracking import NoSuchExperiment, open_tracker, studies, utilities_table

__all__ = ["PAPER_CONTRIBUTORS", "PAPER_COSTS", "TRADEOFF_FORMAT", "Cost", "Plan", "Tradeoff", "coalition_seconds",
           "hours_for", "known_cost", "load_tradeoff", "plan_budget"]

TRADEOFF_FORMAT = "shapflow-tradeoff/1"
TIMINGS = ("sft_seconds", "sampling_seconds", "scoring_seconds")
# use case -> (seconds per coalition on one GPU, at these sFT steps, where the figure comes from)
PAPER_COSTS: dict[str, tuple[float, int, str]] = {
    "artworks": (635.0, 200, "the paper: 635 GPU-seconds per sFT coalition at 200 steps (METHOD.md)"),
}

PAPER_CONTRIBUTORS = {"artworks": 258, "celebahq": 50, "cifar20": 20}  # n of the paper's setups (METHOD.md)


def coalition_seconds(table: pd.DataFrame) -> float:
    """Mean seconds one coalition took (sFT + sampling + scoring) over a utilities table's coalition rows; NaN
    where none logged its timings."""
    rows = table[table["stage"] == "coalition"] if "stage" in table else table.iloc[:0]
    if rows.empty or not set(TIMINGS) <= set(rows):
        return float("nan")
    return float(np.nanmean(rows[list(TIMINGS)].to_numpy(float).sum(axis=1)))


@dataclass(frozen=True)
class Cost:
    """Seconds per coalition at ``sft_steps``, and where the figure comes from."""

    seconds: float
    sft_steps: int
    source: str


def known_cost(cfg: UseCaseConfig, uri: str | None = None, experiment: str | None = None) -> Cost | None:
    """The per-coalition cost of ``cfg``: the mean over the coalitions of the store's attribute runs of that use
    case (in ``experiment``, default its name) under its current coalition config, else the paper's figure, else
    None."""
    try:
        tracker = open_tracker(experiment or cfg.name, uri, create=False)
    except NoSuchExperiment:
        tracker = None
    key, tables = stage_key(cfg, "coalition"), []
    for study_id, run in studies(tracker) if tracker else []:
        if run.data.params.get("study.config_hash") == key:
            tables.append(utilities_table(tracker, study_id))
    rows = pd.concat(tables) if tables else pd.DataFrame()
    seconds = coalition_seconds(rows.drop_duplicates("run_id")) if not rows.empty else float("nan")
    if np.isfinite(seconds):
        count = int((rows.drop_duplicates("run_id")["stage"] == "coalition").sum())
        return Cost(seconds, cfg.sft.steps, f"measured: the mean of {count} coalitions logged in {tracker.uri}")
    if cfg.name in PAPER_COSTS:
        seconds, steps, source = PAPER_COSTS[cfg.name]
        return Cost(seconds, steps, source)
    return None


@dataclass(frozen=True)
class Tradeoff:
    """A measured trade-off: per sFT-step ratio (steps / the reference steps), the precision curve over
    coalitions per contributor; the fixed share of a coalition's cost at the reference steps."""

    use_case: str
    n: int
    reference_steps: int
    fixed_share: float
    curves: dict[float, pd.DataFrame]  # ratio -> columns per_n, pairs_separated, mean_std_rel, lds
    source: str


def load_tradeoff(path: Path | None = None) -> Tradeoff:
    """The packaged digits trade-off (or ``path``); ValueError when the file is not one."""
    path = Path(path) if path else Path(str(resources.files("shapflow") / "attribution" / "tradeoff" / "digits.json"))
    payload = json.loads(path.read_text())
    if payload.get("format") != TRADEOFF_FORMAT:
        raise ValueError(f"{path} is not a shapflow trade-off file (format {payload.get('format')!r})")
    reference = payload["reference"]["sft_steps"]
    model = payload["cost_model"]
    fixed = model["seconds_fixed"] / (model["seconds_fixed"] + model["seconds_per_step"] * reference)
    curves = {row["sft_steps"] / reference: pd.DataFrame(row["curve"]).assign(
        per_n=lambda f: f["coalitions"] / payload["n"]) for row in payload["rows"]}
    return Tradeoff(payload["use_case"], payload["n"], reference, float(np.clip(fixed, 0.0, 1.0)), curves,
                    f"{path.name} ({payload['created']}: {payload['command']})")


@dataclass(frozen=True)
class Plan:
    """One row of the plan: sFT steps, the coalitions the compute buys, and the precision expected there."""

    sft_steps: int
    seconds_per_coalition: float
    coalitions: int
    pairs_separated: float
    mean_std_rel: float
    lds: float
    measured: bool  # False: beyond the measured coalitions per contributor (held at the last measured point)


def _expected(curve: pd.DataFrame, per_n: float) -> tuple[float, float, float, bool]:
    """(pairs separated, mean std / range, LDS) at ``per_n`` coalitions per contributor on a measured curve:
    interpolated inside it; beyond it the last point, the std shrunk like 1/sqrt(m)."""
    x = curve["per_n"].to_numpy(float)
    inside = x[0] <= per_n <= x[-1]
    at = float(np.clip(per_n, x[0], x[-1]))
    values = [float(np.interp(at, x, curve[c].to_numpy(float))) for c in ("pairs_separated", "mean_std_rel", "lds")]
    if per_n > x[-1]:
        values[1] *= float(np.sqrt(x[-1] / per_n))
    return values[0], values[1], values[2], inside


def plan_budget(n: int, cost: Cost, seconds: float, tradeoff: Tradeoff) -> list[Plan]:
    """Per sFT-step ratio of the trade-off: the coalitions ``seconds`` of compute buy for ``n`` contributors at
    that many steps (the cost scaled by the measured fixed / per-step split) and the precision expected there."""
    rows = []
    for ratio, curve in sorted(tradeoff.curves.items()):
        steps = max(1, round(cost.sft_steps * ratio))
        scale = tradeoff.fixed_share + (1.0 - tradeoff.fixed_share) * steps / cost.sft_steps
        per_coalition = cost.seconds * scale
        m = int(seconds // per_coalition)
        m -= m % 2
        separated, std, lds, inside = _expected(curve, m / n)
        rows.append(Plan(steps, per_coalition, m, separated, std, lds, inside))
    return rows


def hours_for(target: Target, n: int, cost: Cost, tradeoff: Tradeoff) -> dict[int, float | None]:
    """Per sFT steps: the compute hours at which the measured curve first meets ``target`` (None: never within it)."""
    needed = {}
    for ratio, curve in sorted(tradeoff.curves.items()):
        steps = max(1, round(cost.sft_steps * ratio))
        scale = tradeoff.fixed_share + (1.0 - tradeoff.fixed_share) * steps / cost.sft_steps
        column = {"pairs-separated": "pairs_separated", "mean-std": "mean_std_rel"}.get(target.measure)
        met = curve[[target.met_by(v) for v in curve[column]]] if column else curve.iloc[:0]
        needed[steps] = None if met.empty else float(met["per_n"].iloc[0]) * n * cost.seconds * scale / 3600.0
    return needed
