"""Cross-fitting a surrogate to logged coalitions: every row gets a residual from a surrogate that never saw it.

Steps 1-2 of the surrogate-assisted estimators (adjusted.py), shared with the control variate (control.py), which
cross-fits the proxy game on the same folds:

1. split the coalitions into `folds` folds at random (seeded); a pair {S, N \\ S} and repeats of one coalition stay
   in one fold, so a row is never predicted by a surrogate that saw it or its complement;
2. fit the surrogate on all folds but k (plus v0, v1) and predict the rows of fold k: every row gets an out-of-fold
   residual e_r = v(S_r) - f_k(r)(S_r) (cross-fitting, as in double machine learning: a surrogate that overfits
   cannot fake a small residual). Where the surrogate has candidates (the saturating fit's penalties), the one with
   the least Shapley-kernel-weighted out-of-fold squared residual is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .regression import canonical_pairs
from .surrogates import fit_surrogate

__all__ = ["CrossFit", "SurrogateFitError", "crossfit", "fold_labels", "jackknife_var", "kernel_weights"]


class SurrogateFitError(ArithmeticError):
    """A surrogate could not be fitted to the logged coalitions (a numerical failure, not bad input): the
    estimators then return the plain fit and say so, since finite utilities must always give values."""


@dataclass(frozen=True)
class CrossFit:
    """The chosen candidate surrogate's name; per fold k its values fold_values[index] (K, n), f_k at the empty
    and full coalitions ends (K, 2) and f_k itself predict[k] (masks (q, n) -> (q,)); per row r its fold (m,) and
    out-of-fold residual (m,); extra_var[index] (n,): variance of the values known from outside the folds (the
    proxy's Monte Carlo error), empty when there is none."""

    surrogate: str
    fold_values: dict[str, np.ndarray]
    ends: np.ndarray
    residuals: np.ndarray
    fold: np.ndarray
    predict: tuple[Callable[[np.ndarray], np.ndarray], ...]
    extra_var: dict[str, np.ndarray]


def kernel_weights(masks: np.ndarray) -> np.ndarray:
    """Per row (m,): Shapley-kernel mass of its size, (n-1)/(k(n-k)), shared among the rows of that size."""
    n = masks.shape[1]
    k = masks.sum(axis=1)
    return (n - 1) / (k * (n - k)) / np.bincount(k, minlength=n)[k]


def jackknife_var(fold_values: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife variance (n,) of the mean of K fold estimates (K, n)."""
    K = fold_values.shape[0]
    return (K - 1) / K * ((fold_values - fold_values.mean(axis=0)) ** 2).sum(axis=0)


def fold_labels(masks: np.ndarray, seed: int, folds: int) -> np.ndarray:
    """Step 1: the fold (m,) of each row, labels 0..K-1, K = min(folds, distinct pairs); depends only on (masks,
    seed, folds), so every cross-fit on the same masks and seed shares it."""
    unit = canonical_pairs(masks)  # a pair and repeats of one coalition share a label
    n_units = int(unit.max()) + 1
    if folds < 2 or n_units < 2:
        raise ValueError(f"cross-fitting needs folds >= 2 (got {folds!r}) and 2 distinct coalition pairs (got "
                         f"{n_units}): evaluate more coalitions")
    folds = min(folds, n_units)  # fewer pairs than folds: leave one pair out
    return (np.random.default_rng(seed).permutation(n_units) % folds)[unit]


def crossfit(
    masks: np.ndarray,
    utilities: np.ndarray,
    v0: float,
    v1: float,
    *,
    seed: int,
    folds: int,
    surrogate: str,
    offset: tuple[np.ndarray, np.ndarray] | None = None,
) -> CrossFit:
    """Steps 1-2 of the module docstring on masks bool (m, n) and utilities (m,); where the surrogate has several
    candidates (e.g. penalties), the one with the least kernel-weighted out-of-fold squared residual is kept.
    With fewer distinct pairs than ``folds``, each pair is its own fold.

    offset = (per-fold offsets on the rows (K, m), at the empty and full coalitions (K, 2)): fold k's surrogate is
    fitted to the utilities minus its offset and the residuals are taken after both (control.py: b_k q); the
    values, ends and predictions returned are the surrogate's alone."""
    n = masks.shape[1]
    fold = fold_labels(masks, seed, folds)
    K = int(fold.max()) + 1
    rows, corners_offset = offset if offset is not None else (np.zeros((K, len(utilities))), np.zeros((K, 2)))
    target = utilities - rows  # (K, m)
    ends_target = np.array([v0, v1]) - corners_offset  # (K, 2)
    corners = np.array([np.zeros(n, bool), np.ones(n, bool)])
    try:
        fits = [fit_surrogate(surrogate, masks[fold != k], target[k, fold != k], *ends_target[k], seed + k)
                for k in range(K)]
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:  # a numerical failure of the fit
        raise SurrogateFitError(f"the {surrogate} surrogate could not be fitted ({err})") from err
    candidates = []
    for j in range(len(fits[0])):
        residuals = np.empty(len(utilities))
        for k, candidate in enumerate(fits):
            residuals[fold == k] = target[k, fold == k] - candidate[j].predict(masks[fold == k])
        fold_values = {index: np.array([f[j].values[index] for f in fits]) for index in fits[0][j].values}
        ends = np.array([f[j].predict(corners) for f in fits])
        if all(np.isfinite(a).all() for a in (residuals, ends, *fold_values.values())):
            predict = tuple(f[j].predict for f in fits)
            candidates.append(CrossFit(fits[0][j].name, fold_values, ends, residuals, fold, predict, {}))
    if not candidates:
        raise SurrogateFitError(f"every {surrogate} surrogate candidate predicted a non-finite utility")
    weight = kernel_weights(masks)
    return min(candidates, key=lambda c: float(weight @ c.residuals**2))
