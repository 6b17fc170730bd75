"""Surrogate-assisted (regression-adjusted) Shapley and Banzhaf values, cross-fitted.

Regression-adjusted Monte Carlo (Witter, Liu & Musco 2025, arXiv 2506.11849): for any surrogate f of the utility,
phi(v) = phi(f) + phi(v - f). The surrogate's values phi(f) are exact and free (surrogates.py); only the residual
game v - f is estimated from the logged coalitions, and its values are small when f is good. Steps:

1. split the coalitions into `folds` folds at random (seeded); a pair {S, N \\ S} and repeats of one coalition stay
   in one fold, so a row is never predicted by a surrogate that saw it or its complement;
2. fit the surrogate on all folds but k (plus v0, v1) and predict the rows of fold k: every row gets an out-of-fold
   residual e_r = v(S_r) - f_k(r)(S_r) (cross-fitting, as in double machine learning: a surrogate that overfits
   cannot fake a small residual). Where the surrogate has candidates (the saturating fit's penalties), the one with
   the least Shapley-kernel-weighted out-of-fold squared residual is kept;
3. values = mean_k phi(f_k) + the residual game's values estimated from all rows, with r(empty) = v0 - mean_k
   f_k(empty) and r(full) = v1 - mean_k f_k(full): Shapley by Leverage SHAP (leverage.py; its GCV ridge shrinks the
   correction towards the equal split of the residual total where the data cannot resolve it), Banzhaf by the same
   ridge on the Banzhaf regression (`banzhaf_fit`), both with per-size Horvitz-Thompson weights, so any design
   (leverage, kernel, uniform, permutation...) can be used. Consistent whatever the surrogate: as the rows grow the
   residual estimate converges to phi(v - f). The Shapley values sum to v1 - v0 exactly (the residual estimate is
   efficient for r(full) - r(empty)).

std^2 = the delete-a-fold jackknife variance of the surrogate values, (K-1)/K sum_k (phi(f_k) - mean)^2 (the fold
fits are delete-a-group jackknife replicates, so the surrogate's own sampling error is counted), + the residual
estimate's sandwich variance around its ridge solution. The ridge shift^2 that leverage adds is left out here: the
shift estimates the same surrogate error as the jackknife, counted twice it doubled the intervals (measured).
Coverage is measured in benchmarks/estimators.py.

Safeguard: the plain fit (the same estimator on v itself, no surrogate) is returned instead where its estimated
mean squared error, mean_i std_i^2 with the ridge shift^2, is smaller than the surrogate-assisted one's computed
the same way; e.g. a threshold (voting) game that no saturating curve fits, or an additive game that leverage
recovers exactly. The result's `method` then says so ("surrogate-shapley:fallback-leverage"). Masks of a single
coalition size (no saturation curve is identified) take the plain fit too, with a warning, and so does a surrogate
that fails numerically (SurrogateFitError): finite utilities always give values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import numpy as np
from threadpoolctl import threadpool_limits

from .leverage import leverage_fit, ridge_gcv
from .regression import canonical_pairs, hc3_terms, sandwich_std
from .results import ShapleyResult, check_inputs, make_result, pool_duplicates
from .surrogates import SURROGATES, fit_surrogate

__all__ = [
    "DEFAULT_FOLDS",
    "PLAIN",
    "CrossFit",
    "SurrogateFitError",
    "banzhaf_fit",
    "crossfit",
    "estimate_indices",
    "estimate_surrogate_banzhaf",
    "estimate_surrogate_shapley",
]

DEFAULT_FOLDS = 5
DEFAULT_SURROGATE = "saturating"


class SurrogateFitError(ArithmeticError):
    """A surrogate could not be fitted to the logged coalitions (a numerical failure, not bad input): the
    estimators then return the plain fit and say so, since finite utilities must always give values."""


@dataclass(frozen=True)
class CrossFit:
    """The chosen candidate surrogate's name; per fold k its values fold_values[index] (K, n) and f_k at the empty
    and full coalitions ends (K, 2); per row r its out-of-fold residual (m,)."""

    surrogate: str
    fold_values: dict[str, np.ndarray]
    ends: np.ndarray
    residuals: np.ndarray


def _kernel_weights(masks: np.ndarray) -> np.ndarray:
    """Per row (m,): Shapley-kernel mass of its size, (n-1)/(k(n-k)), shared among the rows of that size."""
    n = masks.shape[1]
    k = masks.sum(axis=1)
    return (n - 1) / (k * (n - k)) / np.bincount(k, minlength=n)[k]


def crossfit(
    masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, *, seed: int, folds: int, surrogate: str
) -> CrossFit:
    """Steps 1-2 of the module docstring on masks bool (m, n) and utilities (m,); where the surrogate has several
    candidates (e.g. penalties), the one with the least kernel-weighted out-of-fold squared residual is kept.
    With fewer distinct pairs than ``folds``, each pair is its own fold."""
    n = masks.shape[1]
    unit = canonical_pairs(masks)  # a pair and repeats of one coalition share a label
    n_units = int(unit.max()) + 1
    if folds < 2 or n_units < 2:
        raise ValueError(f"cross-fitting needs folds >= 2 (got {folds!r}) and 2 distinct coalition pairs (got "
                         f"{n_units}): evaluate more coalitions")
    folds = min(folds, n_units)  # fewer pairs than folds: leave one pair out
    fold = (np.random.default_rng(seed).permutation(n_units) % folds)[unit]
    corners = np.array([np.zeros(n, bool), np.ones(n, bool)])
    try:
        fits = [fit_surrogate(surrogate, masks[fold != k], utilities[fold != k], v0, v1, seed + k)
                for k in range(folds)]
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:  # a numerical failure of the fit
        raise SurrogateFitError(f"the {surrogate} surrogate could not be fitted ({err})") from err
    candidates = []
    for j in range(len(fits[0])):
        residuals = np.empty(len(utilities))
        for k, candidate in enumerate(fits):
            residuals[fold == k] = utilities[fold == k] - candidate[j].predict(masks[fold == k])
        fold_values = {index: np.array([f[j].values[index] for f in fits]) for index in fits[0][j].values}
        ends = np.array([f[j].predict(corners) for f in fits])
        if all(np.isfinite(a).all() for a in (residuals, ends, *fold_values.values())):
            candidates.append(CrossFit(fits[0][j].name, fold_values, ends, residuals))
    if not candidates:
        raise SurrogateFitError(f"every {surrogate} surrogate candidate predicted a non-finite utility")
    weight = _kernel_weights(masks)
    return min(candidates, key=lambda c: float(weight @ c.residuals**2))


def _jackknife_var(fold_values: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife variance (n,) of the mean of K fold estimates (K, n)."""
    K = fold_values.shape[0]
    return (K - 1) / K * ((fold_values - fold_values.mean(axis=0)) ** 2).sum(axis=0)


def banzhaf_fit(
    masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Banzhaf values (n,) by regression on masks (m, n) -> utilities (m,), their sandwich std (n,) and ridge shift.

    Marichal & Mathonet: the Banzhaf value is the least-squares additive fit (with an intercept) over all 2^n
    coalitions equally weighted. Here a coalition of size k weighs C(n, k) 2^-n divided by the number of distinct
    size-k coalitions evaluated (a stratified estimate of that fit whatever the design), the empty and full ones 2^-n
    each (known, not sampled); GCV ridge as in leverage.py. std: HC3 sandwich stratified by min(k, n - k) with pairs
    as units (0 for enumerated strata).
    """
    pooled = pool_duplicates(masks, utilities)
    n = masks.shape[1]
    k = pooled.masks.sum(axis=1)
    weight = np.array([comb(n, int(s)) for s in k], dtype=float) / np.bincount(k, minlength=n + 1)[k]
    X = np.vstack([pooled.masks, np.zeros(n, bool), np.ones(n, bool)]).astype(float)
    w = np.concatenate([weight, [1.0, 1.0]])
    w /= w.sum()
    z = np.concatenate([pooled.mean, [v0, v1]])
    Xc, zc = X - w @ X, z - w @ z
    stratum = np.minimum(k, n - k)
    available = [comb(n, s) * (1 if 2 * s == n else 2) for s in range(n // 2 + 1)]  # coalitions per stratum
    enumerated = np.bincount(stratum, minlength=n // 2 + 1) >= available
    beta, Q, shift = ridge_gcv(Xc, w, zc, penalise=not enumerated[1:].all(), constrained=False)
    G = hc3_terms(Xc, w, zc - Xc @ beta, Q)[:-2]  # the empty and full rows carry no sampling variance
    std = sandwich_std(G, canonical_pairs(pooled.masks), stratum, np.where(enumerated, 0.0, 1.0), Q)
    return beta, std, shift


# the fit of each index without a surrogate, and its name: the residual estimator and the fallback
PLAIN: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]], str]] = {
    "shapley": (leverage_fit, "leverage"),
    "banzhaf": (banzhaf_fit, "regression"),
}


def _check(masks: np.ndarray, folds: int, surrogate: str, seed: int) -> None:
    """Reject what no surrogate can use, with the fix."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {sorted(SURROGATES)}")
    if not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int (the folds are drawn at random), got {seed!r}")
    m, n = masks.shape
    if m < n:
        raise ValueError(f"a surrogate needs at least n={n} coalitions besides v0 and v1; got {m}: sample more")


def _plain(masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, index: str) -> ShapleyResult:
    """The index without a surrogate (std with the ridge shift^2), named "surrogate-<index>:fallback-<plain>"."""
    fit, name = PLAIN[index]
    values, std, shift = fit(masks, utilities, v0, v1)
    return make_result(values, np.sqrt(std**2 + shift**2), masks, len(masks), f"surrogate-{index}:fallback-{name}")


def _adjusted(
    masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, fit: CrossFit, index: str, safeguard: bool
) -> ShapleyResult:
    """Step 3 for one index, or (safeguard) the plain fit where its estimated error is smaller."""
    r0, r1 = v0 - fit.ends[:, 0].mean(), v1 - fit.ends[:, 1].mean()
    correction, std, shift = PLAIN[index][0](masks, fit.residuals, r0, r1)
    variance = _jackknife_var(fit.fold_values[index]) + std**2
    plain = _plain(masks, utilities, v0, v1, index)
    if safeguard and np.mean(variance + shift**2) > np.mean(plain.std**2):  # like for like: both with shift^2
        return plain
    values = fit.fold_values[index].mean(axis=0) + correction
    return make_result(values, np.sqrt(variance), masks, len(masks), f"surrogate-{index}")


def estimate_indices(
    masks: np.ndarray,
    utilities: np.ndarray,
    *,
    v0: float,
    v1: float,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    surrogate: str = DEFAULT_SURROGATE,
    safeguard: bool = True,
) -> dict[str, ShapleyResult]:
    """Shapley and Banzhaf values from ONE cross-fit (module docstring): {"shapley": ..., "banzhaf": ...}.

    masks bool (m, n), utilities (m,); seed draws the folds (and seeds the tree surrogates); folds: K >= 2;
    surrogate: a SURROGATES key; safeguard: return the plain fit (leverage / Banzhaf regression) where its estimated
    mean squared error is smaller than the surrogate-assisted one's. Results are named "surrogate-shapley" and
    "surrogate-banzhaf", or "surrogate-<index>:fallback-<plain>" where the plain fit was returned.
    """
    masks, utilities = check_inputs(masks, utilities, v0, v1)  # a public entry point of its own
    _check(masks, folds, surrogate, seed)
    if _one_size(masks):
        warnings.warn(
            "surrogate estimators: all coalitions have one size, which identifies no saturation curve; falling "
            "back to the plain fits (leverage, Banzhaf regression): add coalitions of other sizes",
            stacklevel=2,
        )
        return {index: _plain(masks, utilities, v0, v1, index) for index in PLAIN}
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend (50x on a busy host)
        try:
            fit = crossfit(masks, utilities, v0, v1, seed=int(seed), folds=folds, surrogate=surrogate)
        except SurrogateFitError as err:
            warnings.warn(f"surrogate estimators: {err}; falling back to the plain fits (leverage, Banzhaf "
                          "regression), whose values and error bars stand on their own", stacklevel=2)
            return {index: _plain(masks, utilities, v0, v1, index) for index in PLAIN}
        return {index: _adjusted(masks, utilities, v0, v1, fit, index, safeguard) for index in PLAIN}


def _one_size(masks: np.ndarray) -> bool:
    sizes = masks.sum(axis=1)
    return bool(sizes.min() == sizes.max())


def estimate_surrogate_shapley(
    masks: np.ndarray,
    utilities: np.ndarray,
    *,
    v0: float,
    v1: float,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    surrogate: str = DEFAULT_SURROGATE,
    safeguard: bool = True,
) -> ShapleyResult:
    """Cross-fitted surrogate-assisted Shapley values (module docstring; options as estimate_indices); any
    design, sampler "leverage"."""
    options = {"seed": seed, "folds": folds, "surrogate": surrogate, "safeguard": safeguard}
    return estimate_indices(masks, utilities, v0=v0, v1=v1, **options)["shapley"]


def estimate_surrogate_banzhaf(
    masks: np.ndarray,
    utilities: np.ndarray,
    *,
    v0: float,
    v1: float,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    surrogate: str = DEFAULT_SURROGATE,
    safeguard: bool = True,
) -> ShapleyResult:
    """Cross-fitted surrogate-assisted Banzhaf values (module docstring; options as estimate_indices); any
    design, sampler "leverage"."""
    options = {"seed": seed, "folds": folds, "surrogate": surrogate, "safeguard": safeguard}
    return estimate_indices(masks, utilities, v0=v0, v1=v1, **options)["banzhaf"]
