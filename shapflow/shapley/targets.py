"""Precision targets: what "precise enough" means for a run that stops at the answer it needs.

A target is ``<measure>=<goal>``, parsed by ``parse_target``:

- ``pairs-separated=0.44``: the share of the n (n-1)/2 contributor pairs whose 95% intervals are disjoint;
  met when >= the goal, in (0, 1].
- ``mean-std=0.05``: mean std / (max value - min value); met when <= the goal, in (0, 1).
- ``max-std=0.05``: worst std / (max value - min value), the old ``--until-converged`` rule; met when <= the goal.
- ``top-k-stable=5``: how many of the k highest values have a 95% interval above every interval outside the top
  k; met when = k, 1 <= k < n.

Standard errors shrink like 1/sqrt(m) in the number m of coalitions, so ``forecast`` scales the stds of a
result by sqrt(m / m') and finds the fewest m' at which the target would be met.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .results import ShapleyResult

__all__ = ["TARGETS", "Target", "forecast", "pairs_separated", "parse_target"]

Z95 = 1.96
# measure -> (higher is better, what the goal means)
TARGETS: dict[str, tuple[bool, str]] = {
    "pairs-separated": (True, "a share of contributor pairs in (0, 1], e.g. 0.44"),
    "mean-std": (False, "a fraction of the values' range in (0, 1), e.g. 0.05"),
    "max-std": (False, "a fraction of the values' range in (0, 1), e.g. 0.05"),
    "top-k-stable": (True, "a whole number k of top contributors, 1 <= k < n, e.g. 5"),
}


def pairs_separated(values: np.ndarray, std: np.ndarray) -> float:
    """Share of contributor pairs whose 95% intervals are disjoint (NaN std: not separated)."""
    low, high = values - Z95 * std, values + Z95 * std
    i, j = np.triu_indices(len(values), k=1)
    return float(np.mean((high[i] < low[j]) | (high[j] < low[i]))) if i.size else 0.0


def _top_stable(values: np.ndarray, std: np.ndarray, k: int) -> float:
    """How many of the k highest values have a lower 95% bound above the upper bound of every value outside them."""
    order = np.argsort(-values, kind="stable")
    top, rest = order[:k], order[k:]
    ceiling = float(np.max(values[rest] + Z95 * std[rest])) if rest.size else -np.inf
    return float(np.sum(values[top] - Z95 * std[top] > ceiling))


@dataclass(frozen=True)
class Target:
    """A precision the run must reach: ``measure`` (a TARGETS key) and its ``goal``."""

    measure: str
    goal: float

    def __str__(self) -> str:
        goal = int(self.goal) if self.measure == "top-k-stable" else self.goal
        return f"{self.measure}={goal}"

    def value(self, values: np.ndarray, std: np.ndarray) -> float:
        """The measure on values (n,) with standard errors std (n,); NaN where the stds are unknown."""
        if not np.all(np.isfinite(std)):
            return float("nan")
        spread = float(np.ptp(values)) or float("inf")
        if self.measure == "pairs-separated":
            return pairs_separated(values, std)
        if self.measure == "mean-std":
            return float(np.mean(std)) / spread
        if self.measure == "max-std":
            return float(np.max(std)) / spread
        return _top_stable(values, std, int(self.goal))

    def reached(self, result: ShapleyResult) -> float:
        """The measure on a result."""
        return self.value(result.values, result.std)

    def met_by(self, value: float) -> bool:
        """Whether a measured value meets the goal (NaN never does)."""
        if np.isnan(value):
            return False
        return value >= self.goal if TARGETS[self.measure][0] else value <= self.goal

    def met(self, result: ShapleyResult) -> bool:
        return self.met_by(self.reached(result))


def parse_target(text: str, n: int) -> Target:
    """``"pairs-separated=0.44"`` -> Target; ValueError naming the bad part and the fix (``n``: contributors)."""
    name, sep, goal_text = str(text).strip().partition("=")
    name = name.strip().lower()
    if not sep or name not in TARGETS:
        raise ValueError(f"target={text!r} is invalid: write <measure>=<goal> with a measure of "
                         f"{', '.join(TARGETS)}, e.g. pairs-separated=0.44")
    try:
        goal = float(goal_text)
    except ValueError:
        goal = float("nan")
    meaning = TARGETS[name][1]
    if name == "top-k-stable":
        ok = np.isfinite(goal) and goal == int(goal) and 1 <= goal < n
        meaning = meaning.replace("n,", f"n = {n},")
    elif name == "pairs-separated":
        ok = 0.0 < goal <= 1.0
    else:
        ok = 0.0 < goal < 1.0
    if not ok:
        raise ValueError(f"target={text!r} is invalid: the goal of {name} is {meaning}")
    return Target(name, goal)


def forecast(result: ShapleyResult, target: Target, max_factor: float = 100.0) -> int | None:
    """Fewest coalitions in all at which ``result``'s stds, shrunk like 1/sqrt(m), would meet ``target``
    (``result.n_evaluations`` when met now); None when not within ``max_factor`` times as many, or unknown."""
    m = max(int(result.n_evaluations), 1)
    if not np.all(np.isfinite(result.std)):
        return None
    for factor in np.geomspace(1.0, max_factor, 200):
        if target.met_by(target.value(result.values, result.std / np.sqrt(factor))):
            return int(np.ceil(m * factor))
    return None
