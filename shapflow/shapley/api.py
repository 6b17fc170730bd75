"""The stable entry points: `estimate` (logged utilities -> values) and `approximate` (game + budget -> values).

Methods, the sampler each needs, and the fewest coalitions (besides v0 and v1) it accepts:

| method            | sampler (SAMPLERS key) | index    | minimum coalitions  | efficiency exact |
|-------------------|------------------------|----------|---------------------|------------------|
| surrogate-shapley | leverage (any works)   | Shapley  | n                   | yes              |
| surrogate-banzhaf | leverage (any works)   | Banzhaf  | n                   | no               |
| leverage          | leverage               | Shapley  | n                   | yes              |
| kernelshap-paired | kernel-paired          | Shapley  | n                   | yes              |
| kernelshap-paper  | kernel                 | Shapley  | n                   | yes              |
| permutation       | permutation            | Shapley  | 2(n-1)              | yes              |
| banzhaf-msr       | uniform                | Banzhaf  | n                   | no               |
| loo               | loo                    | LOO      | n                   | no               |
| datamodels        | alpha                  | linear   | n + 1               | no               |
| exact-shapley     | all                    | Shapley  | 2^n - 2 (n <= 20)   | yes              |
| exact-banzhaf     | all                    | Banzhaf  | 2^n - 2 (n <= 20)   | no               |

The surrogate methods (adjusted.py) take options seed (folds), folds, surrogate and safeguard, and may return their
plain fit, named "surrogate-<index>:fallback-<plain>"; `estimate_indices` gives both indices from one fit. They also
take proxy=q, a cheap deterministic game correlated with v (e.g. the property of a coalition's own data), used as a
control variate (control.py); a result that used it ends in "+proxy".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from shapflow.config.request import DEFAULT_METHOD

from .adjusted import estimate_surrogate_banzhaf, estimate_surrogate_shapley
from .exact import estimate_exact_banzhaf, estimate_exact_shapley
from .leverage import estimate_leverage
from .montecarlo import estimate_banzhaf_msr, estimate_loo, estimate_permutation
from .regression import estimate_datamodels, estimate_kernelshap_paired, estimate_kernelshap_paper
from .results import ShapleyResult, check_inputs
from .samplers import SAMPLERS

__all__ = ["DEFAULT_METHOD", "METHODS", "approximate", "default_sampler", "design_bias", "estimate", "min_budget"]



@dataclass(frozen=True)
class Method:
    """An estimator with the sampler it needs and its minimum number of sampled coalitions as a function of n."""

    estimator: Callable[..., ShapleyResult]
    sampler: str
    min_coalitions: Callable[[int], int]


METHODS: dict[str, Method] = {
    "leverage": Method(estimate_leverage, "leverage", lambda n: n + n % 2),
    "surrogate-shapley": Method(estimate_surrogate_shapley, "leverage", lambda n: n + n % 2),
    "surrogate-banzhaf": Method(estimate_surrogate_banzhaf, "leverage", lambda n: n + n % 2),
    "kernelshap-paired": Method(estimate_kernelshap_paired, "kernel-paired", lambda n: n + n % 2),
    "kernelshap-paper": Method(estimate_kernelshap_paper, "kernel", lambda n: n),
    "permutation": Method(estimate_permutation, "permutation", lambda n: 2 * (n - 1)),
    "banzhaf-msr": Method(estimate_banzhaf_msr, "uniform", lambda n: n),
    "loo": Method(estimate_loo, "loo", lambda n: n),
    "datamodels": Method(estimate_datamodels, "alpha", lambda n: n + 1),
    "exact-shapley": Method(estimate_exact_shapley, "all", lambda n: 2**n - 2),
    "exact-banzhaf": Method(estimate_exact_banzhaf, "all", lambda n: 2**n - 2),
}


def _method(method: str) -> Method:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method]


def default_sampler(method: str) -> str:
    """The SAMPLERS key of the design `method` is built for."""
    return _method(method).sampler


def design_bias(method: str, sampler: str) -> str | None:
    """Why ``method``'s values are biased on coalitions drawn by ``sampler`` (a SAMPLERS key), or None.

    The surrogate methods fit a model of v to any coalitions; every other estimator reweighs its own design's
    draws (banzhaf-msr averages uniform ones, permutation walks chains), so on another design it estimates
    something else without an error bar to show it.
    """
    own = _method(method).sampler
    if method.startswith("surrogate-") or sampler == own:
        return None
    return (f"{method} assumes coalitions drawn by the {own} sampler but these were drawn by {sampler}: its values "
            f"are biased; use surrogate-shapley or surrogate-banzhaf (any design), or a study planned for {method}")


def min_budget(method: str, n_players: int) -> int:
    """Fewest game evaluations `approximate` accepts for `method`: its minimum coalitions plus v0 and v1."""
    return _method(method).min_coalitions(n_players) + 2


def _check_options(function: Callable[..., object], options: dict[str, object], where: str) -> None:
    """Reject keyword arguments the function does not take (misspelled options are errors, never ignored)."""
    accepted = set(inspect.signature(function).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - {"masks", "utilities", "v0", "v1", "n", "budget", "seed"})
        raise TypeError(f"{where} got unknown option(s) {unknown}; it accepts {allowed}")


def estimate(
    masks: np.ndarray,
    utilities: np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    v0: float,
    v1: float,
    n_players: int | None = None,
    **options: object,
) -> ShapleyResult:
    """Values from utilities already computed (e.g. logged runs).

    masks: bool (m, n) coalitions (never empty or full); utilities: (m,) their utilities; v0, v1: utilities of the
    empty and full coalitions; n_players: optional check of the mask width; options: the estimator's own keyword
    arguments (e.g. draw_ids, ridge), unknown ones raise TypeError. n_evaluations of the result is m.
    """
    spec = _method(method)
    _check_options(spec.estimator, options, f"estimate(method={method!r})")
    masks, utilities = check_inputs(masks, utilities, v0, v1, n_players)
    return spec.estimator(masks, utilities, v0=float(v0), v1=float(v1), **options)


def approximate(
    game: Callable[[np.ndarray], np.ndarray],
    n_players: int,
    budget: int,
    method: str = DEFAULT_METHOD,
    *,
    seed: int,
    sampler_options: dict[str, object] | None = None,
    **options: object,
) -> ShapleyResult:
    """Estimate values of a batched game with at most `budget` game evaluations in total.

    game(masks bool (m, n)) -> utilities (m,). The budget COUNTS v0 and v1: the game is called once on the empty
    and full coalitions, then once on budget - 2 coalitions (fewer where the sampler rounds to whole pairs or
    permutations), and `n_evaluations` of the result is the number of coalitions the game was called on.
    """
    spec = _method(method)
    if not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int (runs are always seeded), got {seed!r}")
    needed = min_budget(method, n_players)
    if budget < needed:
        raise ValueError(
            f"budget={budget} is below the {needed} evaluations {method!r} needs for n={n_players} "
            f"(its minimum coalitions plus v0 and v1): raise the budget"
        )
    sampler = SAMPLERS[spec.sampler]
    _check_options(sampler, sampler_options or {}, f"sampler {spec.sampler!r}")
    _check_options(spec.estimator, options, f"approximate(method={method!r})")
    ends = _call(game, np.array([np.zeros(n_players, bool), np.ones(n_players, bool)]))
    coalitions = sampler(n_players, budget - 2, seed, **(sampler_options or {}))
    utilities = _call(game, coalitions.masks)
    result = estimate(coalitions.masks, utilities, method, v0=ends[0], v1=ends[1], n_players=n_players, **options)
    return replace(result, n_evaluations=len(coalitions) + 2)


def _call(game: Callable[[np.ndarray], np.ndarray], masks: np.ndarray) -> np.ndarray:
    """Evaluate the game on masks (m, n) and check it returned m finite utilities."""
    utilities = np.asarray(game(masks), dtype=float)
    if utilities.shape != (len(masks),):
        raise ValueError(f"game returned shape {utilities.shape} for {len(masks)} coalitions; expected ({len(masks)},)")
    return utilities
