"""The design of a precision-targeted run (``--target``): batches of coalitions, each chosen from what is logged.

The first batch is the first n (whole pairs) coalitions of the method's plan; every later batch is chosen by
``shapley.sequential.neyman_batch`` from a pool of the same leverage stream (so a coalition shares its id and its
run with the fixed plan of the same seed), given the values of the batches before it. A batch is a function of
the utilities logged for the batches before it, so a rerun after a kill, or a second driver on the same store,
replays the same batches and evaluates only what no FINISHED run holds. The run stops after the first batch whose
values meet the target, or at the cap (``--budget``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import pandas as pd

from shapflow.attribution.plan import Proxy, design_rows, estimate_from_table
from shapflow.shapley import Coalitions, ShapleyResult, default_sampler
from shapflow.shapley.masks import bits
from shapflow.shapley.samplers import sample_leverage
from shapflow.shapley.sequential import batch_sizes, neyman_batch, pair_residuals
from shapflow.shapley.targets import Target, forecast

__all__ = ["POOL_FACTOR", "TargetDesign", "TargetStatus"]

POOL_FACTOR = 8  # candidate coalitions per coalition of the cap (at least of 10 n)


@dataclass(frozen=True)
class TargetStatus:
    """Where a targeted run stands after a batch: coalitions in the design, the measure, met, and the forecast of
    the coalitions in all at which it would be met (None: unknown or beyond 100x)."""

    coalitions: int
    value: float
    met: bool
    needed: int | None


class TargetDesign:
    """The batches of one targeted request: a candidate pool (the leverage stream of the request's seed) and the
    pool rows chosen so far, in order; ``proxy``: the data proxy, the estimator's control variate (as in the
    attribute run's report, so the run stops on the values it reports)."""

    def __init__(self, n: int, budget: int, seed: int, method: str, target: Target, workers: int,
                 stack: int, proxy: Proxy | None = None) -> None:
        if default_sampler(method) != "leverage":
            raise ValueError(f"a target needs a method on the leverage design, not {method}")
        self.n, self.budget, self.method, self.target, self.proxy = n, budget, method, target, proxy
        self.first, self.step = batch_sizes(n, workers, stack)
        pairs = sum(comb(n, s) // (2 if 2 * s == n else 1) for s in range(1, n // 2 + 1))
        # the pool does not depend on the cap up to 10 n: a rerun with another cap replays the same batches
        self.pool: Coalitions = sample_leverage(n, min(2 * pairs, POOL_FACTOR * max(budget, 10 * n) + 2 * n), seed)
        self.chosen: list[int] = list(range(min(self.first, budget, len(self.pool))))

    def masks(self) -> np.ndarray:
        """The design's coalitions so far, bool (m, n), in the order chosen."""
        return self.pool.masks[self.chosen]

    def estimate(self, table: pd.DataFrame) -> ShapleyResult | None:
        """Values from the design's logged coalitions (None while too few or none logged)."""
        try:
            return estimate_from_table(table, self.method, self.masks(), self.proxy)
        except (ValueError, KeyError, np.linalg.LinAlgError):
            return None

    def status(self, table: pd.DataFrame) -> TargetStatus:
        """The target's measure on the design's logged coalitions, and the forecast."""
        result = self.estimate(table)
        if result is None:
            return TargetStatus(len(self.chosen), float("nan"), False, None)
        value = self.target.reached(result)
        return TargetStatus(len(self.chosen), value, self.target.met_by(value), forecast(result, self.target))

    def extend(self, table: pd.DataFrame) -> list[int]:
        """Choose the next batch (at most the cap) from the logged utilities of the design so far; returns the
        pool rows added (none: the cap is reached or the pool ran out)."""
        size = min(self.step, self.budget - len(self.chosen))
        if size < 2:
            return []
        result = self.estimate(table)
        if result is None:  # no values yet: the design's own allocation
            residuals = np.ones(len(self.chosen) // 2)
        else:
            logged = design_rows(table, self.masks()).set_index("mask")["utility"]
            utilities = np.array([logged.get(bits(mask), np.nan) for mask in self.masks()])  # NaN: not logged
            ends = table[table["stage"] == "endpoint"].set_index("coalition_id")["utility"]
            residuals = pair_residuals(self.masks(), utilities, result.values, float(ends["v0"]))
        added = neyman_batch(self.pool.masks, self.chosen, residuals, size)
        self.chosen += added
        return added
