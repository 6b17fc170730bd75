"""Leverage SHAP with size-stratified pairs and a GCV ridge: shapflow's default Shapley estimator.

Musco & Witter, "Provably Accurate Shapley Value Estimation via Leverage Score Sampling" (ICLR 2025) show that
the leverage scores of the constrained KernelSHAP regression are equal within a coalition size, so leverage
sampling is: sizes spread evenly, uniform subsets given the size, paired, without replacement, with each row
importance-weighted back to the Shapley kernel. Here the sampler (`sample_leverage`) draws pairs stratified by
size on a deterministic schedule and this estimator:

1. pools repeated evaluations of one coalition into their mean (one row each, so repeats never count twice);
2. weights each unique coalition of size k by the kernel mass of that size, (n-1)/(k(n-k)), divided by the
   number of unique coalitions of size k evaluated: a stratified (Horvitz-Thompson) estimate of the exact
   KernelSHAP objective, whatever the size allocation, so the full enumeration gives the exact Shapley values;
3. folds each pair {S, N \\ S} into one row: under 1^T d = 0 the pair's sum says nothing about the values, only
   its weighted half-difference does (this is why pairing cancels all even-order interactions);
4. fits d = phi - (v1 - v0)/n under 1^T d = 0 by ridge regression with the penalty chosen by generalized
   cross-validation (Golub, Heath & Wahba 1979): 0 when the game is fitted exactly, larger when the regression is
   near-interpolating (budgets ~ 2n), vanishing relative to the data as the budget grows. Efficiency is exact.

std: sandwich (influence-function) errors from the HC3-corrected residuals of the pair rows, stratified by size;
a size whose pairs are all evaluated adds no variance. Partly sampled sizes get no finite-population correction:
the residuals also carry utility noise, which sampling more of a size does not remove (so the error bars stay
honest for noisy sFT utilities, and conservative for noise-free ones). The full enumeration is fitted unpenalised.
Plus the squared shift of the ridge
away from the unpenalised fit (its bias as far as the data can tell: conservative where the penalty bites).
"""

from __future__ import annotations

from math import comb

import numpy as np

from .regression import canonical_pairs, hc3_terms, sandwich_std
from .results import ShapleyResult, make_result, pool_duplicates

__all__ = ["MIN_DOF_FRACTION", "estimate_leverage", "fold_pairs", "leverage_fit", "ridge_gcv"]

# GCV is unstable when the fit nearly interpolates (residual dof -> 0): keep at least this share of the pair
# rows as residual degrees of freedom; it binds only at budgets close to 2n, where interpolation is hopeless.
MIN_DOF_FRACTION = 0.25


def ridge_gcv(
    X: np.ndarray, w: np.ndarray, z: np.ndarray, penalise: bool = True, constrained: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """min_d sum_r w_r (z_r - x_r^T d)^2 + lam |d|^2 subject to 1^T d = 0, lam by GCV (or 0 if not penalise).

    X (p, n), w (p,), z (p,). Solved in an orthonormal basis U (n, n-1) of {1^T d = 0} via the eigendecomposition
    of the (n-1, n-1) Gram matrix (constrained=False: U is the identity and d is free). Returns d (n,), the
    constrained inverse Q_lam (n, n) (d moves by Q_lam sum_r w_r x_r dz_r) and the shift d - d_0 (n,) from the
    unpenalised solution d_0 (0 when lam = 0): the ridge's bias as far as the data can tell.
    """
    n = X.shape[1]
    U = np.linalg.qr(np.eye(n)[:, : n - 1] - 1.0 / n)[0] if constrained else np.eye(n)  # basis of {1^T d = 0}
    root_w = np.sqrt(w)
    Z, zw = root_w[:, None] * (X @ U), root_w * z
    eigenvalues, R = np.linalg.eigh(Z.T @ Z)  # Z = V S R^T with S^2 = eigenvalues: one small (n-1)^2 problem
    S = np.sqrt(np.clip(eigenvalues, 0.0, None))
    Rt = R.T
    keep = S > S.max() * 1e-7
    proj = np.divide(Rt @ (Z.T @ zw), S, out=np.zeros_like(S), where=keep)  # V^T zw
    outside = max(float(zw @ zw - proj @ proj), 0.0)
    rank = keep.astype(float)
    best_score, lam = np.inf, 0.0
    grid = np.concatenate([[0.0], S.max() ** 2 * np.logspace(-8, 1, 37)]) if penalise else np.zeros(1)
    for candidate in grid:
        fit = S**2 / (S**2 + candidate) if candidate > 0 else rank
        dof = len(z) - fit.sum()
        score = (outside + np.sum(((1 - fit) * proj) ** 2)) / dof**2 if dof >= MIN_DOF_FRACTION * len(z) else np.inf
        if score < best_score:
            best_score, lam = score, float(candidate)
    inv_0 = np.divide(rank, S**2, out=np.zeros_like(S), where=rank > 0)
    inv = inv_0 if lam == 0 else 1.0 / (S**2 + lam)
    B = U @ Rt.T  # (n, r)
    d = B @ (S * inv * proj)
    return d, (B * inv) @ B.T, d - B @ (S * inv_0 * proj)


def fold_pairs(masks: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold rows (masks (u, n), targets z (u,), weights w (u,)) into one row per pair {S, N \\ S}.

    With T the member without contributor 0 and C its complement, x_C^T d = -x_T^T d when 1^T d = 0, so
    w_T (z_T - x_T^T d)^2 + w_C (z_C - x_C^T d)^2 = (w_T + w_C) (x_T^T d - (w_T z_T - w_C z_C)/(w_T + w_C))^2 + const.
    Returns masks (p, n) of T, targets (p,), weights (p,); a lone member is a pair row on its own.
    """
    label = canonical_pairs(masks)
    sign = np.where(masks[:, 0], -1.0, 1.0)
    W = np.bincount(label, weights=w)
    target = np.bincount(label, weights=w * sign * z) / W
    X_pair = np.zeros((W.size, masks.shape[1]), dtype=bool)
    X_pair[label] = np.where(masks[:, :1], ~masks, masks)
    return X_pair, target, W


def _pairs_available(n: int) -> np.ndarray:
    """Number of pairs {S, N \\ S} with min(|S|, n - |S|) = s, for s = 0..floor(n/2), shape (floor(n/2)+1,)."""
    return np.array([comb(n, s) // (2 if 2 * s == n else 1) if s else 1 for s in range(n // 2 + 1)], dtype=float)


def leverage_fit(
    masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, ridge: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-4 of the module docstring on masks (m, n), utilities (m,): values (n,), their sandwich std (n,)
    around the (ridge) solution and the ridge's shift (n,) from the unpenalised fit."""
    pooled = pool_duplicates(masks, utilities)
    n = masks.shape[1]
    k = pooled.masks.sum(axis=1)
    w = (n - 1) / (k * (n - k)) / np.bincount(k, minlength=n)[k]
    equal_split = (v1 - v0) / n
    X, z, w_pair = fold_pairs(pooled.masks, pooled.mean - v0 - equal_split * k, w / w.sum())
    X = X.astype(float)
    stratum = np.minimum(X.sum(axis=1), n - X.sum(axis=1)).astype(int)
    enumerated = np.bincount(stratum, minlength=n // 2 + 1) >= _pairs_available(n)
    d, Q, shift = ridge_gcv(X, w_pair, z, penalise=ridge and not enumerated[1:].all())
    fpc = np.where(enumerated, 0.0, 1.0)
    G = hc3_terms(X, w_pair, z - X @ d, Q)
    return equal_split + d, sandwich_std(G, np.arange(len(z)), stratum, fpc, Q), shift


def estimate_leverage(
    masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float, ridge: bool = True
) -> ShapleyResult:
    """Leverage SHAP (Musco & Witter 2025), stratified, pair-folded, GCV ridge (module docstring); sampler
    "leverage". ridge=False gives the unpenalised stratified estimator (the paper's closed form with weights)."""
    values, std, shift = leverage_fit(masks, utilities, v0, v1, ridge)
    return make_result(values, np.sqrt(std**2 + shift**2), masks, len(masks), "leverage")
