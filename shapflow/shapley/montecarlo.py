"""Monte Carlo estimators: antithetic permutation sampling, Banzhaf by maximum sample reuse, leave-one-out.

Repeated evaluations of one coalition are pooled first (their mean utility is used wherever that coalition
appears), which is unbiased and lowers the noise; the design structure (permutation chains) is read from the rows.
"""

from __future__ import annotations

import numpy as np

from .results import ShapleyResult, make_result, pool_duplicates

__all__ = ["estimate_banzhaf_msr", "estimate_loo", "estimate_permutation"]


def _chains(masks: np.ndarray) -> np.ndarray:
    """Check rows form permutation chains (n-1 nested prefixes of sizes 1..n-1 each) and return the order of
    each chain, shape (c, n): the contributor added at each step (the last is the one left out of the chain)."""
    m, n = masks.shape
    if m % (n - 1):
        raise ValueError(
            f"permutation estimator needs whole chains of n-1={n - 1} prefix coalitions "
            f"(as sample_permutation emits them, in order); got {m} rows"
        )
    chains = masks.reshape(m // (n - 1), n - 1, n).astype(np.int8)
    steps = np.diff(chains, axis=1, prepend=0)
    if (steps < 0).any() or (steps.sum(axis=2) != 1).any():
        raise ValueError(
            "permutation estimator: rows are not chains of nested prefixes S_1 < S_2 < ... < S_{n-1} "
            "adding one contributor each; pass the rows in sample_permutation order"
        )
    added = steps.argmax(axis=2)  # (c, n-1)
    last = np.argmin(chains[:, -1, :], axis=1)
    return np.concatenate([added, last[:, None]], axis=1)


def estimate_permutation(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float) -> ShapleyResult:
    """Permutation Monte Carlo (Castro et al. 2009) with antithetic pairs (sampler "permutation").

    phi_i = mean over chains of v(prefix + i) - v(prefix); each chain telescopes to v1 - v0, so efficiency is
    exact. std: consecutive chains (pi, reversed pi) form one i.i.d. unit.
    """
    order = _chains(masks)
    c, n = order.shape
    pooled = pool_duplicates(masks, utilities)
    u = np.concatenate(
        [np.full((c, 1), v0), pooled.mean[pooled.inverse].reshape(c, n - 1), np.full((c, 1), v1)], axis=1
    )
    marginal = np.zeros((c, n))
    np.put_along_axis(marginal, order, np.diff(u, axis=1), axis=1)
    unit = np.arange(c) // 2
    unit_means = np.array([marginal[unit == j].mean(axis=0) for j in range(unit.max() + 1)])
    n_units = unit_means.shape[0]
    std = unit_means.std(axis=0, ddof=1) / np.sqrt(n_units) if n_units > 1 else np.full(n, np.nan)
    return make_result(marginal.mean(axis=0), std, masks, len(masks), "permutation")


def estimate_banzhaf_msr(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float) -> ShapleyResult:
    """Banzhaf values by maximum sample reuse (Wang & Jia 2023; sampler "uniform").

    beta_i = mean(v(S) : i in S) - mean(v(S) : i not in S) over the unique coalitions plus the empty and full
    ones (v0, v1), so the full enumeration gives exact Banzhaf. std: the two means' standard errors with the
    finite-population correction; NaN where a contributor has fewer than two coalitions on one side.
    """
    pooled = pool_duplicates(masks, utilities)
    n = masks.shape[1]
    X = np.vstack([pooled.masks, np.zeros(n, bool), np.ones(n, bool)])
    y = np.concatenate([pooled.mean, [v0, v1]])
    fpc = max(0.0, 1.0 - len(y) / 2.0**n)
    sides = []
    for inside in (X, ~X):
        count = inside.sum(axis=0)
        mean = inside.T @ y / count
        var = (inside.T @ y**2 - count * mean**2) / np.maximum(count - 1, 1)
        sides.append((mean, np.where(count > 1, np.maximum(var, 0.0) * fpc / count, np.nan)))
    values = sides[0][0] - sides[1][0]
    return make_result(values, np.sqrt(sides[0][1] + sides[1][1]), masks, len(masks), "banzhaf-msr")


def estimate_loo(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float) -> ShapleyResult:
    """Leave-one-out (sampler "loo"): phi_i = v1 - v(N \\ {i}); other coalitions are ignored.

    std: standard error of the mean of repeated evaluations of N \\ {i} (v1 taken as exact); NaN with one.
    """
    pooled = pool_duplicates(masks, utilities)
    n = masks.shape[1]
    loo_rows = pooled.masks.sum(axis=1) == n - 1
    left_out = np.argmin(pooled.masks[loo_rows], axis=1)
    missing = np.setdiff1d(np.arange(n), left_out)
    if missing.size:
        raise ValueError(
            f"leave-one-out needs the coalition N \\ {{i}} for every i; missing for i in {missing[:10].tolist()}"
        )
    rows = np.flatnonzero(loo_rows)[np.argsort(left_out)]
    values = v1 - pooled.mean[rows]
    utilities = np.asarray(utilities, dtype=float)
    spread = np.array([utilities[pooled.inverse == r].std(ddof=1) if pooled.counts[r] > 1 else np.nan for r in rows])
    return make_result(values, spread / np.sqrt(pooled.counts[rows]), masks, len(masks), "loo")
