"""Exact Shapley and Banzhaf values of saturating games v(S) = A (1 - exp(-sum_g w_g [S covers group g])).

Contributors are partitioned into groups (copies of one data set share a group; a group counts once however many
of its members join). Values come from Owen's multilinear extension: with every other contributor present
independently with probability t, the expected marginal contribution of i (in group g, of size c_g) is

    A (1 - q_g) (1 - t)^(c_g - 1) prod_{h != g} (1 - p_h(t) (1 - q_h)),   q_h = exp(-w_h), p_h(t) = 1 - (1 - t)^c_h,

a polynomial of degree n - 1 in t. The Shapley value is its integral over t in [0, 1], computed EXACTLY by
Gauss-Legendre quadrature with n // 2 + 1 nodes (exact for degree <= n + 1); the Banzhaf value is its value at
t = 1/2. Cost O(n^2) for any n (n = 258 included); the tests check both against enumeration.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INDICES", "saturating_values"]

INDICES = ("shapley", "banzhaf")


def _nodes(n: int, index: str) -> tuple[np.ndarray, np.ndarray]:
    """Inclusion probabilities t (K,) and weights (K,) whose weighted sum of the marginal gives the index."""
    if index == "banzhaf":
        return np.array([0.5]), np.array([1.0])
    if index != "shapley":
        raise ValueError(f"index must be one of {INDICES}, got {index!r}")
    x, weights = np.polynomial.legendre.leggauss(n // 2 + 1)
    return (x + 1.0) / 2.0, weights / 2.0


def saturating_values(amplitude: float, w: np.ndarray, group: np.ndarray, index: str = "shapley") -> np.ndarray:
    """Values (n,) of v(S) = amplitude (1 - exp(-sum_g w_g [S meets group g])) (module docstring).

    w: (n_groups,) non-negative rates; group: (n,) int labels 0..n_groups-1 (contributor i is in group[i]);
    index: "shapley" or "banzhaf". The Shapley values sum to amplitude (1 - exp(-sum w)) (efficiency).
    """
    w = np.asarray(w, dtype=float)
    group = np.asarray(group, dtype=int)
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("w must be finite and non-negative (a rate of approach to saturation)")
    n = group.size
    t, weights = _nodes(n, index)
    sizes = np.bincount(group, minlength=w.size).astype(float)  # c_g
    absent = np.log1p(-t)[:, None] * sizes  # log (1 - t)^c_g, (K, n_groups)
    p = -np.expm1(absent)  # p_g(t): the group is covered
    log_factor = np.log1p(-p * -np.expm1(-w))  # log (1 - p_g (1 - q_g))
    others = log_factor.sum(axis=1, keepdims=True) - log_factor  # (K, n_groups): product over h != g
    own = absent - np.log1p(-t)[:, None]  # log (1 - t)^(c_g - 1)
    marginal = -np.expm1(-w) * np.exp(own + others)  # (K, n_groups), per unit amplitude
    return amplitude * (weights @ marginal)[group]
