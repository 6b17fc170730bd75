"""Control variates: a cheap proxy game q(S) beside the expensive utilities v(S), in an estimator that stays unbiased.

A proxy is any cheap, deterministic batched game q(masks bool (m, n)) -> (m,) that correlates with v: e.g. the
property of a coalition's own real images, computed with no training. Its values phi(q) cost only proxy calls, so
they are computed to negligible error (exactly by enumeration for small n, else by permutations); only the part of
v that q does not explain is left to the logged coalitions. With the cross-fit of the surrogate-assisted estimator
(crossfit.py), on the same folds:

1. cross-fit the surrogate to v (residuals e, fold values phi(f_k)) and to q (residuals e_q, values phi(g_k));
2. per fold k, b_k = the kernel-weighted least-squares slope of e on e_q over the rows NOT in fold k (partialling
   out, as Frisch-Waugh-Lovell: b is the coefficient of q beside the surrogate, so a q that only repeats what the
   surrogate already explains gets b ~ 0 and changes nothing);
3. the surrogate of fold k becomes h_k = f_k + b_k (q - g_k), whose values are phi(f_k) + b_k (phi(q) - phi(g_k)),
   and the residual of row r in fold k is e_r - b_k e_q,r: no row is predicted by a b or a surrogate that saw it.

The residual game v - h is estimated as before (leverage / Banzhaf regression on all rows), so the estimate is
unbiased whatever q is: a useless q gives b ~ 0 (the plain surrogate estimate), q = v gives b = 1 and a zero
residual (phi(q) itself: exact values). Efficiency stays exact (permutation estimates of phi(q) are efficient).
The Monte Carlo error of phi(q), times b, is added to the reported variance; b's own uncertainty is in the
jackknife over folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from .crossfit import CrossFit, crossfit, kernel_weights
from .exact import all_masks, banzhaf_from_table, shapley_from_table

__all__ = [
    "PROXY_BATCH",
    "PROXY_BUDGET",
    "ProxyValues",
    "control_coefficients",
    "control_crossfit",
    "evaluate_proxy",
    "proxy_report",
    "proxy_values",
]

PROXY_BUDGET = 2**14  # proxy calls (coalitions) spent on phi(q): exact up to n = 14, ~1000 chains at n = 16
PROXY_BATCH = 4096  # coalitions per proxy call


@dataclass(frozen=True)
class ProxyValues:
    """The proxy's values per index (n,), their Monte Carlo std per index (n,; 0 where enumerated) and q at the
    empty and full coalitions ends (2,)."""

    values: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    ends: np.ndarray


def evaluate_proxy(proxy: Callable[[np.ndarray], np.ndarray], masks: np.ndarray) -> np.ndarray:
    """q on masks bool (m, n), in batches of PROXY_BATCH rows: (m,) finite floats, or ValueError saying what to fix."""
    if not callable(proxy):
        raise TypeError(f"proxy must be a callable q(masks bool (m, n)) -> (m,) floats, got {type(proxy).__name__}")
    parts = []
    for start in range(0, len(masks), PROXY_BATCH):
        batch = masks[start : start + PROXY_BATCH]
        q = np.asarray(proxy(batch), dtype=float)
        if q.shape != (len(batch),):
            raise ValueError(f"proxy returned shape {q.shape} for {len(batch)} coalitions: it must return one float "
                             "per mask row, shape (m,)")
        bad = np.flatnonzero(~np.isfinite(q))
        if bad.size:
            raise ValueError(f"proxy returned NaN/inf for {bad.size} of {len(batch)} coalitions (e.g. "
                             f"{batch[bad[0]].nonzero()[0].tolist()}): it must be finite on every coalition, the "
                             "empty and full ones included; guard the empty coalition or drop the proxy")
        parts.append(q)
    return np.concatenate(parts) if parts else np.zeros(0)


def proxy_values(
    proxy: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    seed: int,
    budget: int = PROXY_BUDGET,
    control: tuple[Callable[[np.ndarray], np.ndarray], dict[str, np.ndarray]] | None = None,
) -> ProxyValues:
    """Shapley and Banzhaf values of the proxy game with about `budget` proxy calls (module docstring).

    Exact (enumeration, std 0) when 2^n <= budget. Otherwise half the budget goes to antithetic permutation chains
    (Shapley) and half to antithetic flip samples (Banzhaf: a uniform S and S with each contributor flipped), both
    seeded; control = (predict, exact values per index) of a surrogate of q, whose values are added to the
    Monte Carlo estimate of phi(q - surrogate), which has far smaller marginals than q (less error per call).
    """
    corners = np.array([np.zeros(n, bool), np.ones(n, bool)])
    ends = evaluate_proxy(proxy, corners)
    if 2**n <= budget:
        table = evaluate_proxy(proxy, all_masks(n))
        zero = np.zeros(n)
        return ProxyValues({"shapley": shapley_from_table(table), "banzhaf": banzhaf_from_table(table)},
                           {"shapley": zero, "banzhaf": zero}, ends)
    predict, known = control if control is not None else (lambda masks: np.zeros(len(masks)), None)

    def game(masks: np.ndarray) -> np.ndarray:
        return evaluate_proxy(proxy, masks) - predict(masks)

    rng = np.random.default_rng(seed)
    units = [_permutation_units(game, n, max(budget // 2 // (2 * (n - 1)), 2), rng),
             _flip_units(game, n, max(budget // 2 // (2 * (n + 1)), 2), rng)]
    values, std = {}, {}
    for index, marginal in zip(("shapley", "banzhaf"), units, strict=True):
        values[index] = marginal.mean(axis=0) + (known[index] if known is not None else 0.0)
        std[index] = marginal.std(axis=0, ddof=1) / np.sqrt(len(marginal))
    return ProxyValues(values, std, ends)


def _permutation_units(game: Callable, n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Per antithetic pair of permutations (pi, reversed pi), the mean marginal of each contributor: (pairs, n)."""
    order = np.array([rng.permutation(n) for _ in range(pairs)])
    order = np.concatenate([order, order[:, ::-1]])  # (2 pairs, n)
    rank = np.argsort(order, axis=1)  # position of each contributor in its permutation
    prefixes = rank[:, None, :] < np.arange(1, n)[None, :, None]  # (2 pairs, n - 1, n): sizes 1..n-1
    inner = game(prefixes.reshape(-1, n)).reshape(2 * pairs, n - 1)
    ends = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    chain = np.concatenate([np.full((2 * pairs, 1), ends[0]), inner, np.full((2 * pairs, 1), ends[1])], axis=1)
    marginal = np.zeros((2 * pairs, n))
    np.put_along_axis(marginal, order, np.diff(chain, axis=1), axis=1)
    return (marginal[:pairs] + marginal[pairs:]) / 2


def _flip_units(game: Callable, n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Per antithetic pair (S, N \\ S) of uniform coalitions, the mean Banzhaf marginal of each contributor from S
    and its n one-flip neighbours: (pairs, n)."""
    base = rng.random((pairs, n)) < 0.5
    base = np.concatenate([base, ~base])  # (2 pairs, n)
    flipped = base[:, None, :] ^ np.eye(n, dtype=bool)[None]  # (2 pairs, n, n): S with contributor i flipped
    at_base = game(base)
    at_flip = game(flipped.reshape(-1, n)).reshape(2 * pairs, n)
    marginal = np.where(base, at_base[:, None] - at_flip, at_flip - at_base[:, None])  # v(S + i) - v(S - i)
    return (marginal[:pairs] + marginal[pairs:]) / 2


def _slopes(e: np.ndarray, e_q: np.ndarray, fold: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per fold k, the weighted least-squares slope (with intercept) of e on e_q over the rows not in fold k: (K,);
    0 where e_q does not vary there."""
    K = int(fold.max()) + 1
    b = np.zeros(K)
    for k in range(K):
        w = np.where(fold != k, weight, 0.0)
        w = w / w.sum()
        x, y = e_q - w @ e_q, e - w @ e
        spread = float(w @ x**2)
        if spread > 1e-24 * max(float(w @ e_q**2), 1e-300):
            b[k] = float(w @ (x * y)) / spread
    return b


def control_coefficients(fit: CrossFit, fit_q: CrossFit, masks: np.ndarray) -> tuple[np.ndarray, float]:
    """Step 2 of the module docstring: b per fold (K,) from the cross-fits of v and q on the same folds, and the
    share of the kernel-weighted variance of v's out-of-fold residuals that b q removes, out of fold (row r's
    residual uses the b of its own fold, fitted without it: <= 0 for a proxy that only adds noise, 1 for q = v)."""
    weight = kernel_weights(masks)
    b = _slopes(fit.residuals, fit_q.residuals, fit.fold, weight)
    w = weight / weight.sum()

    def spread(e: np.ndarray) -> float:
        return float(w @ (e - w @ e) ** 2)

    before = spread(fit.residuals)
    removed = 1.0 - spread(fit.residuals - b[fit.fold] * fit_q.residuals) / before if before > 0 else 0.0
    return b, removed


def control_crossfit(
    fit: CrossFit, fit_q: CrossFit, b: np.ndarray, q: ProxyValues, proxy: Callable[[np.ndarray], np.ndarray]
) -> CrossFit:
    """Step 3 of the module docstring: the cross-fit of v with the proxy as control variate, from the cross-fits
    of v (`fit`) and of q (`fit_q`, same folds), the coefficients b (K,) and the proxy's values `q`."""
    fold_values = {index: fit.fold_values[index] + b[:, None] * (q.values[index] - fit_q.fold_values[index])
                   for index in fit.fold_values}
    ends = fit.ends + b[:, None] * (q.ends - fit_q.ends)
    predict = tuple(_combined(f, g, float(b_k), proxy) for f, g, b_k in zip(fit.predict, fit_q.predict, b, strict=True))
    extra_var = {index: b.mean() ** 2 * q.std[index] ** 2 for index in fit.fold_values}
    residuals = fit.residuals - b[fit.fold] * fit_q.residuals
    return CrossFit(f"{fit.surrogate}+proxy", fold_values, ends, residuals, fit.fold, predict, extra_var)


def _combined(f: Callable, g: Callable, b: float, proxy: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """h = f + b (q - g): one fold's surrogate of v with the proxy as control."""
    return lambda masks: f(masks) + b * (evaluate_proxy(proxy, masks) - g(masks))


def proxy_report(
    masks: np.ndarray,
    utilities: np.ndarray,
    q_rows: np.ndarray,
    *,
    v0: float,
    v1: float,
    q0: float,
    q1: float,
    seed: int = 0,
    folds: int = 5,
    surrogate: str = "saturating",
) -> dict[str, float]:
    """How much a proxy helps, from the logged rows: masks bool (m, n), utilities (m,), the proxy on those rows
    q_rows (m,), and both games at the empty and full coalitions.

    "pearson", "spearman": q vs v over the rows; "b": the control coefficient (mean over folds, step 2 of the
    module docstring); "variance_removed": the share of the kernel-weighted variance of v around its cross-fitted
    surrogate that b q removes, out of fold (negative when the proxy only adds noise; 1 for q = v).
    """
    masks = np.asarray(masks, dtype=bool)
    utilities, q_rows = np.asarray(utilities, dtype=float), np.asarray(q_rows, dtype=float)
    if q_rows.shape != utilities.shape or not np.isfinite(q_rows).all():
        raise ValueError(f"q_rows must be {utilities.shape[0]} finite floats, one per row; got shape {q_rows.shape}")
    options = {"seed": seed, "folds": folds, "surrogate": surrogate}
    fit = crossfit(masks, utilities, v0, v1, **options)
    b, removed = control_coefficients(fit, crossfit(masks, q_rows, q0, q1, **options), masks)
    constant = np.ptp(q_rows) == 0
    return {
        "pearson": float("nan") if constant else float(np.corrcoef(utilities, q_rows)[0, 1]),
        "spearman": float("nan") if constant else float(spearmanr(utilities, q_rows).statistic),
        "b": float(b.mean()),
        "variance_removed": removed,
    }
