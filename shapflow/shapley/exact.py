"""Exact Shapley and Banzhaf values by enumerating all 2^n coalitions (n <= 20): the ground truth of the tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .results import ShapleyResult, make_result, pool_duplicates
from .samplers import MAX_ENUMERATION_PLAYERS

__all__ = [
    "all_masks",
    "banzhaf_from_table",
    "estimate_exact_banzhaf",
    "estimate_exact_shapley",
    "exact_values",
    "shapley_from_table",
]


def all_masks(n: int) -> np.ndarray:
    """All 2^n coalitions as bool (2^n, n); row `code` has contributor i iff bit i of code is set."""
    if n > MAX_ENUMERATION_PLAYERS:
        raise ValueError(f"enumeration of 2^{n} coalitions is too large (n <= {MAX_ENUMERATION_PLAYERS})")
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)


def _marginals(v: np.ndarray, n: int, weight: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """sum over S not containing i of weight(|S|) (v(S + i) - v(S)), for every i; v is the (2^n,) table."""
    codes = np.arange(2**n)
    size = np.bitwise_count(codes.astype(np.uint64)).astype(int)
    values = np.empty(n)
    for i in range(n):
        without = codes[((codes >> i) & 1) == 0]
        values[i] = weight(size[without]) @ (v[without | (1 << i)] - v[without])
    return values


def shapley_from_table(v: np.ndarray) -> np.ndarray:
    """Exact Shapley values (n,) of the game table v (2^n,): weights |S|!(n-|S|-1)!/n! = 1/(n C(n-1, |S|))."""
    n = int(np.log2(len(v)))
    log_binom = np.array(
        [
            np.sum(np.log(np.arange(1, n))) - np.sum(np.log(np.arange(1, k + 1))) - np.sum(np.log(np.arange(1, n - k)))
            for k in range(n)
        ]
    )
    return _marginals(np.asarray(v, float), n, lambda k: np.exp(-log_binom[k]) / n)


def banzhaf_from_table(v: np.ndarray) -> np.ndarray:
    """Exact Banzhaf values (n,) of the game table v (2^n,): uniform weight 2^-(n-1)."""
    n = int(np.log2(len(v)))
    return _marginals(np.asarray(v, float), n, lambda k: np.full(k.shape, 2.0 ** -(n - 1)))


def exact_values(game: Callable[[np.ndarray], np.ndarray], n: int, index: str = "shapley") -> np.ndarray:
    """Exact values (n,) of a batched game by evaluating it on all 2^n coalitions; index "shapley" or "banzhaf"."""
    table = np.asarray(game(all_masks(n)), dtype=float)
    return {"shapley": shapley_from_table, "banzhaf": banzhaf_from_table}[index](table)


def _table(masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float) -> np.ndarray:
    """The (2^n,) utility table from rows covering every proper coalition (duplicates pooled)."""
    n = masks.shape[1]
    if n > MAX_ENUMERATION_PLAYERS:
        raise ValueError(f"exact enumeration needs n <= {MAX_ENUMERATION_PLAYERS}, got n={n}: use an estimator")
    pooled = pool_duplicates(masks, utilities)
    if len(pooled.mean) != 2**n - 2:
        raise ValueError(
            f"exact enumeration needs all 2^n - 2 = {2**n - 2} proper coalitions, got "
            f"{len(pooled.mean)} unique ones: sample with sample_all or use an estimator"
        )
    table = np.empty(2**n)
    table[pooled.masks.astype(np.int64) @ (1 << np.arange(n))] = pooled.mean
    table[0], table[-1] = v0, v1
    return table


def estimate_exact_shapley(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float) -> ShapleyResult:
    """Exact Shapley values from all proper coalitions (sampler "all"); std is 0: no coalition sampling error
    (noise in the utilities themselves is not included)."""
    values = shapley_from_table(_table(masks, utilities, v0, v1))
    return make_result(values, np.zeros_like(values), masks, len(masks), "exact-shapley")


def estimate_exact_banzhaf(masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float) -> ShapleyResult:
    """Exact Banzhaf values from all proper coalitions (sampler "all"); std is 0 as for exact-shapley."""
    values = banzhaf_from_table(_table(masks, utilities, v0, v1))
    return make_result(values, np.zeros_like(values), masks, len(masks), "exact-banzhaf")
