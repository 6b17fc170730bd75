"""Surrogate-assisted (regression-adjusted) Shapley and Banzhaf values, cross-fitted.

Regression-adjusted Monte Carlo (Witter, Liu & Musco 2025, arXiv 2506.11849): for any surrogate f of the utility,
phi(v) = phi(f) + phi(v - f). The surrogate's values phi(f) are exact and free (surrogates.py); only the residual
game v - f is estimated from the logged coalitions, and its values are small when f is good. Steps:

1-2. cross-fit the surrogate (crossfit.py): K folds that keep a pair {S, N \\ S} together; every row gets the
   out-of-fold residual e_r = v(S_r) - f_k(r)(S_r) of a surrogate f_k fitted without its fold;
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
A fit with no surrogate (the plain fit, the proxy fit without one) keeps the shift^2: nothing else counts its ridge's
bias (without it the proxy fit's 95% intervals covered 0.4-0.7 of the exact values on property-shaped games).
Coverage is measured in benchmarks/estimators.py.

Safeguard: the plain fit (the same estimator on v itself, no surrogate) is returned instead where its estimated
mean squared error (its reported variance, shift^2 included) is smaller than the surrogate-assisted one's (its
reported variance); e.g. a threshold (voting) game that no saturating curve fits, or an additive game that leverage
recovers exactly. The result's `method` then says so ("surrogate-shapley:fallback-leverage"). Masks of a single
coalition size (no saturation curve is identified) take the plain fit too, with a warning, and so does a surrogate
that fails numerically (SurrogateFitError): finite utilities always give values.

Proxy (control.py): given a cheap game q that correlates with v, fold k's surrogate becomes b_k q + f_k, b_k the
out-of-fold slope of v on q within coalition sizes and f_k fitted to v - b_k q; phi(q) comes from proxy calls alone.
The proxy is kept where it lowers the out-of-fold residual spread; the safeguard then chooses among the estimates
with the proxy, without it, and the plain fit. A result that used the proxy is named "surrogate-<index>+proxy". A
proxy constant on the rows gives a warning and no proxy.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from math import comb
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .control import PROXY_BUDGET, proxy_crossfits, proxy_rows
from .crossfit import CrossFit, SurrogateFitError, crossfit, jackknife_var, kernel_weights
from .leverage import leverage_fit, ridge_gcv
from .regression import canonical_pairs, hc3_terms, sandwich_std
from .results import ShapleyResult, check_inputs, make_result, pool_duplicates
from .surrogates import SURROGATES

__all__ = [
    "DEFAULT_FOLDS",
    "PLAIN",
    "CrossFit",
    "SurrogateFitError",
    "banzhaf_fit",
    "crossfit",
    "crossfit_values",
    "estimate_indices",
    "estimate_surrogate_banzhaf",
    "estimate_surrogate_shapley",
]

DEFAULT_FOLDS = 5
CROSS_VALIDATE_BELOW = 4  # coalitions per player below which the safeguard compares held-out losses
SAFEGUARD_Z = 0.5  # there, a surrogate replaces the plain fit where its held-out loss is lower by > 0.5 std errors
DEFAULT_SURROGATE = "saturating"


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


def crossfit_values(
    masks: np.ndarray, v0: float, v1: float, fit: CrossFit, index: str
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 for one index and one cross-fit: the values (n,) and their variance (n,): the jackknife over folds of
    the surrogate values, the residual fit's sandwich variance and the proxy's Monte Carlo variance; for a fit with
    no surrogate (its jackknife sees no surrogate error) also the residual ridge's shift^2, its bias, as the plain
    fit counts it."""
    r0, r1 = v0 - fit.ends[:, 0].mean(), v1 - fit.ends[:, 1].mean()
    correction, std, shift = PLAIN[index][0](masks, fit.residuals, r0, r1)
    variance = jackknife_var(fit.fold_values[index]) + std**2 + fit.extra_var.get(index, 0.0)
    if fit.surrogate.startswith("none"):
        variance = variance + shift**2
    return fit.fold_values[index].mean(axis=0) + correction, variance


def _candidate(masks: np.ndarray, v0: float, v1: float, fit: CrossFit, index: str, name: str) -> ShapleyResult:
    """Step 3 for one index and one cross-fit, as a result."""
    values, variance = crossfit_values(masks, v0, v1, fit, index)
    return make_result(values, np.sqrt(variance), masks, len(masks), name)


def held_out_loss(masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, fit: CrossFit) -> np.ndarray:
    """How far a cross-fit's Shapley estimate is from the truth, up to a constant: the kernel-weighted squared error
    of the additive predictor v0 + x_S . phi_k on the rows of fold k, phi_k the estimate made without them
    (fold k's surrogate values + Leverage SHAP on the other folds' residuals).

    Over all coalitions with the Shapley kernel's weights this loss is L(phi) + alpha |phi_k - phi|^2 for any
    efficient phi_k (the Shapley value is the kernel-weighted best additive fit), so comparing it between
    estimators compares their errors; the rows' per-size weights make it an unbiased estimate on any design.
    Returns the per-row terms (m,), whose sum is the loss."""
    weight, loss = kernel_weights(masks), np.empty(len(utilities))
    for k in range(len(fit.ends)):
        train, test = fit.fold != k, fit.fold == k
        r0, r1 = v0 - fit.ends[k, 0], v1 - fit.ends[k, 1]
        phi = fit.fold_values["shapley"][k] + leverage_fit(masks[train], fit.residuals[train], r0, r1)[0]
        loss[test] = weight[test] * (utilities[test] - v0 - masks[test] @ phi) ** 2
    return loss


def _error(masks: np.ndarray, v0: float, v1: float, fit: CrossFit) -> float:
    """A cross-fit's estimated Shapley mean squared error: its reported variance (crossfit_values), averaged over
    contributors."""
    return float(np.mean(crossfit_values(masks, v0, v1, fit, "shapley")[1]))


def _choose(
    masks: np.ndarray,
    utilities: np.ndarray,
    v0: float,
    v1: float,
    fits: list[tuple[CrossFit, str]],
    direct: CrossFit | None,
) -> tuple[CrossFit, str] | None:
    """The safeguard, on the Shapley estimates (the choice holds for both indices): one of the surrogate fits, the
    fit with the proxy and no surrogate (`direct`), or None for the plain fit.

    Below CROSS_VALIDATE_BELOW x n coalitions (where the ridge shift of a near-interpolating plain fit says nothing
    about its error), by held-out loss (held_out_loss): the surrogate fit with the least, kept only where it is
    below the plain fit's by more than SAFEGUARD_Z standard errors of the difference (pairs as units). Above,
    whichever has the least reported variance (crossfit_values: shift^2 only where no surrogate's jackknife counts
    the ridge's bias; adding it to the surrogate fits too counted their error twice and handed the choice to the
    proxy fit without a surrogate, twice as wrong on property-shaped games at n = 48)."""
    fold, K, n = fits[0][0].fold, len(fits[0][0].ends), masks.shape[1]
    zeros = {index: np.zeros((K, n)) for index in PLAIN}
    bare = CrossFit("none", zeros, np.zeros((K, 2)), utilities, fold, fits[0][0].predict, {})
    if len(masks) >= CROSS_VALIDATE_BELOW * n:
        finalists = [*fits, *([(direct, "+proxy")] if direct is not None else []), (bare, "")]
        chosen = min(finalists, key=lambda f: _error(masks, v0, v1, f[0]))
        return None if chosen[0] is bare else chosen
    options = [*fits, *([(direct, "+proxy")] if direct is not None else [])]
    losses = [held_out_loss(masks, utilities, v0, v1, fit) for fit, _ in options]
    best_index = int(np.argmin([loss.sum() for loss in losses]))
    difference = held_out_loss(masks, utilities, v0, v1, bare) - losses[best_index]
    gain = np.bincount(canonical_pairs(masks), weights=difference)
    margin = SAFEGUARD_Z * np.sqrt(len(gain)) * gain.std(ddof=1) if len(gain) > 1 else 0.0
    return options[best_index] if gain.sum() > margin else None


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
    proxy: Callable[[np.ndarray], np.ndarray] | None = None,
    proxy_budget: int = PROXY_BUDGET,
) -> dict[str, ShapleyResult]:
    """Shapley and Banzhaf values from ONE cross-fit (module docstring): {"shapley": ..., "banzhaf": ...}.

    masks bool (m, n), utilities (m,); seed draws the folds (and seeds the tree surrogates and the proxy's
    permutations); folds: K >= 2; surrogate: a SURROGATES key; safeguard: return whichever of the estimates (with
    proxy, without, plain leverage / Banzhaf regression) has the least estimated mean squared error; proxy: a cheap
    deterministic game q(masks bool (q, n)) -> (q,) that correlates with v, used as a control variate (control.py;
    about m + 2 + proxy_budget proxy calls). Results are named "surrogate-shapley" and "surrogate-banzhaf" (with
    "+proxy" where the proxy was used), or "surrogate-<index>:fallback-<plain>" where the plain fit was returned.
    """
    masks, utilities = check_inputs(masks, utilities, v0, v1)  # a public entry point of its own
    _check(masks, folds, surrogate, seed)
    q_rows = proxy_rows(proxy, masks)
    if _one_size(masks):
        warnings.warn(
            "surrogate estimators: all coalitions have one size, which identifies no saturation curve; falling "
            "back to the plain fits (leverage, Banzhaf regression): add coalitions of other sizes",
            stacklevel=2,
        )
        return {index: _plain(masks, utilities, v0, v1, index) for index in PLAIN}
    options = {"seed": int(seed), "folds": folds, "surrogate": surrogate}
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend (50x on a busy host)
        try:
            fit = crossfit(masks, utilities, v0, v1, **options)
            fits, direct = [(fit, "")], None
            if q_rows is not None:
                controlled, direct = proxy_crossfits(masks, utilities, v0, v1, fit, q_rows, proxy, options,
                                                     proxy_budget)
                fits = [(controlled, "+proxy"), *fits] if controlled is not None else fits
            chosen = _choose(masks, utilities, v0, v1, fits, direct) if safeguard else fits[0]
        except SurrogateFitError as err:
            warnings.warn(f"surrogate estimators: {err}; falling back to the plain fits (leverage, Banzhaf "
                          "regression), whose values and error bars stand on their own", stacklevel=2)
            return {index: _plain(masks, utilities, v0, v1, index) for index in PLAIN}
        results = {}
        for index in PLAIN:
            if chosen is None:
                results[index] = _plain(masks, utilities, v0, v1, index)
            else:
                plain_name = f"surrogate-{index}:fallback-{PLAIN[index][1]}"
                name = f"{plain_name}+proxy" if chosen[0] is direct else f"surrogate-{index}{chosen[1]}"
                results[index] = _candidate(masks, v0, v1, chosen[0], index, name)
        return results


def _one_size(masks: np.ndarray) -> bool:
    sizes = masks.sum(axis=1)
    return bool(sizes.min() == sizes.max())


def _estimator_of(index: str) -> Callable[..., ShapleyResult]:
    """The estimator of one index: ``estimate_indices``'s ``index`` entry, with ``estimate_indices``'s signature
    (options checked against it), so both surrogate-assisted indices are one definition."""

    def estimate(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float, **options: Any) -> ShapleyResult:
        return estimate_indices(masks, utilities, v0=v0, v1=v1, **options)[index]

    estimate.__signature__ = inspect.signature(estimate_indices).replace(return_annotation=ShapleyResult)
    estimate.__name__ = estimate.__qualname__ = f"estimate_surrogate_{index}"
    estimate.__doc__ = (f"Cross-fitted surrogate-assisted {index.capitalize()} values (module docstring; options as "
                        "estimate_indices); any design, sampler \"leverage\".")
    return estimate


estimate_surrogate_shapley = _estimator_of("shapley")
estimate_surrogate_banzhaf = _estimator_of("banzhaf")
