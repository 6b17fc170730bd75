"""Surrogates of the utility v(S): cheap models fitted to logged coalitions whose Shapley and Banzhaf values are
EXACT for any n, so the surrogate's values cost nothing (the costly part, evaluating v, is already done).

- "saturating": v0' + A (1 - exp(-w . x)) + b . x, w >= 0, by penalised least squares (L-BFGS-B, analytic
  gradient), one candidate per penalty (a warm-started path). The shape of a data market: value saturates in the
  amount of useful data (w: each contributor's rate of approach to saturation), plus an additive residue b
  (negative for harmful contributors). Values by 1-D quadrature (saturating.py), plus b.
- "trees": gradient-boosted regression trees on the 0/1 masks (scikit-learn). A leaf reached when the features in
  P are 1 and those in Q are 0 is the game val [P in S, Q out of S], whose values are closed-form:
  Shapley val (|P|-1)! |Q|! / (|P|+|Q|)! for i in P and -val |P|! (|Q|-1)! / (|P|+|Q|)! for i in Q; Banzhaf
  +-val 2^-(|P|+|Q|-1). Summing over leaves gives the exact values of the fitted ensemble.

A fit returns a list of candidates (the caller keeps the one with the least out-of-fold error). Fits include the
empty and full coalitions (v0, v1) as rows, so the surrogate is anchored where the values' sum is decided and is
evaluated there consistently (`predict` of the all-False and all-True masks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import lgamma

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from sklearn.ensemble import GradientBoostingRegressor

from .saturating import INDICES, saturating_values

__all__ = ["PENALTIES", "SURROGATES", "Surrogate", "fit_saturating", "fit_surrogate", "fit_trees", "tree_values"]

# ridge on b and on w's spread around the common rate, in units of one standardised observation: the candidates
PENALTIES = (1.0, 0.1, 0.01, 0.001, 0.0001)
OPTIMIZER = {"maxiter": 3000, "ftol": 1e-12, "gtol": 1e-9}  # L-BFGS-B: tight, so in-class games are recovered
TREES = {"n_estimators": 150, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8}


@dataclass(frozen=True)
class Surrogate:
    """A fitted surrogate: predict(masks bool (m, n)) -> (m,), and its exact values per index ((n,) arrays)."""

    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    values: dict[str, np.ndarray]


def _with_ends(masks: np.ndarray, y: np.ndarray, v0: float, v1: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows plus the empty and full coalitions: X float (m + 2, n), targets (m + 2,)."""
    n = masks.shape[1]
    return np.vstack([masks, np.zeros(n), np.ones(n)]).astype(float), np.concatenate([y, [v0, v1]])


def _size_rate(X: np.ndarray, y: np.ndarray) -> float:
    """The best common rate kappa of a size-only curve y ~ c + A (1 - exp(-kappa |S|)), on a grid: the start of
    fit_saturating and the centre its penalty shrinks the rates to."""
    size = X.sum(axis=1)
    losses = []
    grid = np.geomspace(0.01 / X.shape[1], 20.0, 61)
    for kappa in grid:
        F = np.column_stack([np.ones_like(size), -np.expm1(-kappa * size)])
        coef, *_ = np.linalg.lstsq(F, y, rcond=None)
        losses.append(float(np.sum((F @ coef - y) ** 2)))
    return float(grid[int(np.argmin(losses))])


def _profiled_loss(X: np.ndarray, target: np.ndarray, kappa: float, penalty: float) -> tuple[Callable, Callable]:
    """Variable projection for fit_saturating: for given rates w (n,), (c, A, b) solve a ridge least squares in
    closed form; returns solve(w) -> (c, A, b) and loss(w) -> (value, gradient in w) of the profiled objective.

    The (n + 2)-dimensional normal equations are solved by a Cholesky factor of X^T X + penalty I, computed once,
    and a 2 x 2 Schur complement for (c, A), so an evaluation costs O(m n + n^2).
    """
    m, n = X.shape
    s2 = max(float(np.var(target)), 1e-24)
    factor = cho_factor(X.T @ X + penalty * np.eye(n))
    X_target, ones_X = cho_solve(factor, X.T @ target), X.sum(axis=0)

    def solve(w: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        u = -np.expm1(-X @ w)  # 1 - exp(-w . x): the saturating column
        C = np.vstack([ones_X, u @ X])  # cross terms of (c, A) with b, (2, n)
        BC = cho_solve(factor, C.T)
        schur = np.array([[m, u.sum()], [u.sum(), u @ u]]) - C @ BC
        (c, amplitude), *_ = np.linalg.lstsq(schur, np.array([target.sum(), u @ target]) - C @ X_target, rcond=None)
        return float(c), float(amplitude), X_target - BC @ np.array([c, amplitude]), u

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        c, amplitude, b, u = solve(w)
        res = c + amplitude * u + X @ b - target
        spread = (w - kappa) / kappa
        value = (res @ res + penalty * (b @ b)) / s2 + penalty * (spread @ spread)
        return float(value), 2 * X.T @ (res * amplitude * (1.0 - u)) / s2 + 2 * penalty * spread / kappa

    return solve, loss


def _saturating_surrogate(theta: np.ndarray, penalty: float) -> Surrogate:
    """The Surrogate of parameters theta = (c, A, w (n), b (n)): predictions and exact values."""
    n = (theta.size - 2) // 2
    c, amplitude, w, b = theta[0], theta[1], theta[2 : 2 + n], theta[2 + n :]

    def predict(query: np.ndarray) -> np.ndarray:
        Q = np.asarray(query, dtype=float)
        return c + amplitude * -np.expm1(-Q @ w) + Q @ b

    values = {index: saturating_values(amplitude, w, np.arange(n), index) + b for index in INDICES}
    return Surrogate(f"saturating(penalty={penalty:g})", predict, values)


def fit_saturating(
    masks: np.ndarray, y: np.ndarray, v0: float, v1: float, penalties: tuple[float, ...] = PENALTIES
) -> list[Surrogate]:
    """v(S) ~ c + A (1 - exp(-w . x_S)) + b . x_S with w >= 0 (module docstring), masks (m, n), y (m,): one fit
    per penalty, from the largest down, each started at the previous solution (a warm-started path).

    Minimises sum_r (f_r - y_r)^2 / s^2 + penalty (|b|^2 / s^2 + |w - kappa|^2 / kappa^2), s the std of the
    targets and kappa the common rate of a size-only fit (the first start): a large penalty shrinks rates to the
    common one and the residue to zero (a size curve), a small one fits each contributor; the caller picks by
    out-of-fold error.
    """
    X, target = _with_ends(masks, y, v0, v1)
    n = X.shape[1]
    kappa = _size_rate(X, target)
    w = np.full(n, kappa)
    fits = []
    for penalty in sorted(penalties, reverse=True):
        solve, loss = _profiled_loss(X, target, kappa, penalty)
        w = minimize(loss, w, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * n, options=OPTIMIZER).x
        w = np.maximum(w, 0.0)  # L-BFGS-B may step a bounded rate to -1e-17 (round-off): clip onto the bound
        c, amplitude, b, _ = solve(w)
        fits.append(_saturating_surrogate(np.concatenate([[c, amplitude], w, b]), penalty))
    return fits


def tree_values(model: GradientBoostingRegressor, n: int) -> dict[str, np.ndarray]:
    """Exact Shapley and Banzhaf values (n,) of a fitted regressor's game S -> model(x_S) (module docstring)."""
    values = {index: np.zeros(n) for index in INDICES}
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        stack: list[tuple[int, frozenset[int], frozenset[int]]] = [(0, frozenset(), frozenset())]
        while stack:
            node, P, Q = stack.pop()
            feature = int(tree.feature[node])
            if tree.children_left[node] == -1:  # a leaf: the game val [P in S, Q out of S]
                _add_leaf(values, model.learning_rate * float(tree.value[node].ravel()[0]), P, Q)
                continue
            if feature not in Q:  # x_feature = 1 goes right (threshold 0.5)
                stack.append((int(tree.children_right[node]), P | {feature}, Q))
            if feature not in P:
                stack.append((int(tree.children_left[node]), P, Q | {feature}))
    return values


def _add_leaf(values: dict[str, np.ndarray], val: float, P: frozenset[int], Q: frozenset[int]) -> None:
    """Add the values of the leaf game val [P in S, Q out of S] in place (nothing for the constant leaf)."""
    p, q = len(P), len(Q)
    if p + q == 0:
        return
    total = lgamma(p + q + 1)
    if p:
        values["shapley"][list(P)] += val * np.exp(lgamma(p) + lgamma(q + 1) - total)
        values["banzhaf"][list(P)] += val * 2.0 ** -(p + q - 1)
    if q:
        values["shapley"][list(Q)] -= val * np.exp(lgamma(p + 1) + lgamma(q) - total)
        values["banzhaf"][list(Q)] -= val * 2.0 ** -(p + q - 1)


def fit_trees(masks: np.ndarray, y: np.ndarray, v0: float, v1: float, seed: int) -> list[Surrogate]:
    """Gradient-boosted trees (TREES settings, seeded) on masks (m, n) -> y (m,): one candidate."""
    X, target = _with_ends(masks, y, v0, v1)
    model = GradientBoostingRegressor(random_state=seed, **TREES).fit(X, target)
    values = tree_values(model, X.shape[1])
    return [Surrogate("trees", lambda query: model.predict(np.asarray(query, dtype=float)), values)]


# name -> fit(masks, y, v0, v1, seed) -> candidate surrogates (the caller keeps the one with the least
# out-of-fold error)
SURROGATES: dict[str, Callable[[np.ndarray, np.ndarray, float, float, int], list[Surrogate]]] = {
    "saturating": lambda masks, y, v0, v1, seed: fit_saturating(masks, y, v0, v1),
    "trees": fit_trees,
}


def fit_surrogate(kind: str, masks: np.ndarray, y: np.ndarray, v0: float, v1: float, seed: int) -> list[Surrogate]:
    """Candidate surrogates `kind` (a SURROGATES key) fitted to masks bool (m, n), utilities (m,), v0 and v1."""
    if kind not in SURROGATES:
        raise ValueError(f"unknown surrogate {kind!r}; choose one of {sorted(SURROGATES)}")
    return SURROGATES[kind](masks, y, v0, v1, seed)
