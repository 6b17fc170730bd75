"""Regression estimators: the paper's constrained KernelSHAP, paired KernelSHAP, datamodels (Leverage SHAP is in
leverage.py).

All Shapley regressions solve the same constrained weighted least squares (Covert & Lee 2021),

    min_phi  sum_r w_r (y_r - v0 - x_r^T phi)^2   subject to  1^T phi = v1 - v0,

whose closed form with A = sum_r w_r x_r x_r^T and b = sum_r w_r x_r (y_r - v0) is the paper's
phi = A^+ (b - 1 (1^T A^+ b - v1 + v0) / (1^T A^+ 1)); efficiency holds exactly for any sample. They differ
only in which coalitions are sampled and how rows are weighted. Standard errors are sandwich (influence
function) estimates: the per-unit estimating-equation terms g_u = sum_{r in u} w_r x_r e_r built from the
residuals e_r, with their (stratified) sample covariance, mapped through the constrained inverse
Q = A^+ - A^+ 1 1^T A^+ / (1^T A^+ 1). Residuals carry all non-additivity of the game and the utility noise, so
the error bars do not assume an additive game; 1^T Q = 0, so the std of sum(phi) is 0, as it must be. With no
more independent units (draws, or pairs) than free values (n - 1) the std cannot be estimated: it is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .results import ShapleyResult, make_result, pool_duplicates

__all__ = [
    "canonical_pairs",
    "constrained_solve",
    "estimate_datamodels",
    "estimate_kernelshap_paired",
    "estimate_kernelshap_paper",
    "hc3_terms",
    "sandwich_std",
]


def constrained_solve(A: np.ndarray, b: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    """The paper's closed form: phi (n,) with 1^T phi = total, and the constrained inverse Q (n, n)."""
    A_pinv = np.linalg.pinv(A, hermitian=True)
    ones_A = A_pinv.sum(axis=0)  # A^+ 1 (A^+ is symmetric)
    denom = ones_A.sum()  # 1^T A^+ 1
    if not denom > 0:
        raise ValueError("the coalitions carry no information about the values (1^T A^+ 1 = 0): sample more")
    phi = A_pinv @ (b - (ones_A @ b - total) / denom)
    Q = A_pinv - np.outer(ones_A, ones_A) / denom
    return phi, Q


def sandwich_std(G: np.ndarray, unit: np.ndarray, stratum: np.ndarray, fpc: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """std (n,) of phi from per-row terms G (rows, n), grouped into independent units within strata.

    unit (rows,) and stratum (rows,) are integer labels (a unit lies in one stratum); fpc (n_strata,) scales each
    stratum's variance (a finite-population factor; 0 for an enumerated stratum). Strata with a
    single unit cannot estimate their own variance and are pooled into one collapsed stratum.
    """
    n_units = unit.max() + 1
    G_unit = np.zeros((n_units, G.shape[1]))
    np.add.at(G_unit, unit, G)
    unit_stratum = np.zeros(n_units, dtype=int)
    unit_stratum[unit] = stratum
    sizes = np.bincount(unit_stratum)
    factor = fpc[unit_stratum]
    single = sizes[unit_stratum] == 1
    unit_stratum = np.where(single, -1, unit_stratum)  # a lone pooled unit is compared with zero (conservative)
    deviations = np.zeros_like(G_unit)
    for label in np.unique(unit_stratum):
        members = unit_stratum == label
        m = members.sum()
        centred = G_unit[members] - (G_unit[members].mean(axis=0) if m > 1 else 0.0)
        deviations[members] = centred * np.sqrt(m / max(m - 1, 1) * factor[members])[:, None]
    return np.sqrt(np.maximum(((deviations @ Q) ** 2).sum(axis=0), 0.0))


def hc3_terms(X: np.ndarray, w: np.ndarray, residual: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-row estimating-equation terms w_r x_r e_r / (1 - h_r), shape (rows, n), with h_r = w_r x_r^T Q x_r the
    row's leverage: the HC3 jackknife correction, so a near-interpolating fit (few rows) does not report
    vanishing residuals as certainty."""
    h = w * ((X @ Q) * X).sum(axis=1)
    return X * (w * residual / (1.0 - np.clip(h, 0.0, 0.95)))[:, None]


def canonical_pairs(masks: np.ndarray) -> np.ndarray:
    """Label (rows,) of each coalition's pair {S, N \\ S}: rows S and N \\ S share a label."""
    canonical = np.where(masks[:, :1], ~masks, masks)
    _, label = np.unique(np.packbits(canonical, axis=1), axis=0, return_inverse=True)
    return label.ravel()


def _draw_utilities(
    masks: np.ndarray, utilities: np.ndarray, draw_ids: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a with-replacement design as draws: (masks (d, n), y (d,)), each draw with its coalition's pooled
    mean utility. Rows sharing a draw id are repeated evaluations of one draw and count once."""
    pooled = pool_duplicates(masks, utilities)
    y = pooled.mean[pooled.inverse]
    if draw_ids is None:
        return masks, y
    if len(draw_ids) != len(masks):
        raise ValueError(f"draw_ids must give one id per mask row ({len(masks)}), got {len(draw_ids)}")
    _, first, label = np.unique(np.asarray(draw_ids), return_index=True, return_inverse=True)
    if not (pooled.inverse == pooled.inverse[first][label.ravel()]).all():
        raise ValueError("rows sharing a draw id have different masks: a draw id must name one coalition")
    return masks[first], y[first]


def _iid_regression(
    masks: np.ndarray, y: np.ndarray, v0: float, v1: float, unit: np.ndarray, method: str, n_evaluations: int
) -> ShapleyResult:
    """Equal weights 1/M over draws (the design already follows the Shapley kernel); i.i.d. units."""
    X = masks.astype(float)
    M = X.shape[0]
    A = X.T @ X / M
    b = X.T @ (y - v0) / M
    phi, Q = constrained_solve(A, b, v1 - v0)
    G = hc3_terms(X, np.full(M, 1.0 / M), y - v0 - X @ phi, Q)
    std = sandwich_std(G, unit, np.zeros(M, dtype=int), np.ones(1), Q)
    if len(np.unique(unit)) <= np.linalg.matrix_rank(Q, hermitian=True):
        # no more independent units than free values: the fit interpolates them and its residuals say nothing
        # about the error (paired designs reach this below 2 n coalitions); unknown, not zero
        std = np.full(X.shape[1], np.nan)
    return make_result(phi, std, masks, n_evaluations, method)


def estimate_kernelshap_paper(
    masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float, draw_ids: Sequence[str] | None = None
) -> ShapleyResult:
    """The paper's estimator (sampler "kernel"): A = X^T X / M, b = X^T (y - v0) / M over i.i.d. kernel draws.

    Rows are draws of a with-replacement design, so a coalition drawn twice counts twice (as in the paper);
    repeated evaluations of one draw should share a draw id (`draw_ids`) and then count once. std: i.i.d. draws.
    """
    X, y = _draw_utilities(masks, utilities, draw_ids)
    return _iid_regression(X, y, v0, v1, np.arange(len(X)), "kernelshap-paper", len(masks))


def estimate_kernelshap_paired(
    masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float, draw_ids: Sequence[str] | None = None
) -> ShapleyResult:
    """Paired KernelSHAP (Covert & Lee 2021; sampler "kernel-paired"): the paper's closed form over kernel draws
    each followed by its complement; rows are draws as in kernelshap-paper. std: the pair is the i.i.d. unit."""
    X, y = _draw_utilities(masks, utilities, draw_ids)
    return _iid_regression(X, y, v0, v1, canonical_pairs(X), "kernelshap-paired", len(masks))


def estimate_datamodels(
    masks: np.ndarray, utilities: np.ndarray, *, v0: float, v1: float, ridge: float = 1e-2
) -> ShapleyResult:
    """Datamodels (Ilyas et al. 2022; sampler "alpha"): ridge regression y ~ c + X theta; values are theta.

    Not a Shapley estimator. With a fixed-size design (all coalitions of one size, as sample_alpha draws) theta is
    identified only up to a common shift, which is chosen so that sum(theta) = v1 - v0; otherwise v0 and v1 are
    only validated. Duplicates are pooled.
    The penalty is ridge * mean diagonal of the centred X^T X, so it is scale-free. std: heteroskedasticity-
    robust (HC0) sandwich around the ridge solution.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    pooled = pool_duplicates(masks, utilities)
    X = pooled.masks.astype(float)
    Xc = X - X.mean(axis=0)
    yc = pooled.mean - pooled.mean.mean()
    gram = Xc.T @ Xc
    penalty = ridge * max(np.trace(gram) / gram.shape[0], 1e-12)
    inverse = np.linalg.pinv(gram + penalty * np.eye(gram.shape[0]), hermitian=True)
    theta = inverse @ Xc.T @ yc
    if np.ptp(pooled.masks.sum(axis=1)) == 0:  # fixed size: theta is identified up to a common shift
        theta += (v1 - v0 - theta.sum()) / len(theta)
    residual = yc - Xc @ theta
    std = np.sqrt((((Xc * residual[:, None]) @ inverse) ** 2).sum(axis=0))
    return make_result(theta, std, masks, len(masks), "datamodels")
