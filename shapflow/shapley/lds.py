"""Linear datamodeling score (LDS) against retrained ground truth, its noise floor, and related statistics.

A method's attribution values (n,) predict the property of a held-out coalition S as sum_{i in S} values_i
(`masks @ values`). The ground truth is the property of a model retrained on S from scratch, once per
training seed: truth (n_seeds, m), NaN where a run is missing. LDS per seed = 100 * Spearman(prediction,
truth[seed]) over the coalitions that seed has. Spearman is undefined when either side is constant (e.g.
equal values on equal-size coalitions): the LDS is then NaN and `LDSResult.note` says why, never an error.

Beside any LDS, report the noise floor (`random_floor`: LDS of i.i.d. N(0, 1) attributions) and, where the
held-out coalitions vary in size, the size-only predictor (`size_only`): size alone correlates with most
properties, so a method has to beat both to mean anything. Pure numpy/scipy: no torch, no mlflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "LDSResult",
    "NoiseFloor",
    "lds",
    "lds_of_predictions",
    "random_floor",
    "rank_agreement",
    "relative_change",
    "size_only",
    "t_half_width",
    "worst_ranks",
]

MIN_COALITIONS = 3  # Spearman of 2 points is always +-1: it says nothing
_SNAP = 1e-9  # predictions equal up to this fraction of their scale are ties (float sums of equal values)


@dataclass(frozen=True)
class LDSResult:
    """LDS of one method on one set of held-out coalitions.

    per_seed: LDS per training seed (NaN where undefined); mean: mean over the seeds where it is defined;
    ci: 95% t-interval half-width over those seeds (NaN with fewer than 2); boot_low, boot_high: 95%
    percentile interval of the mean-over-seeds LDS when coalitions are resampled with replacement (NaN when
    n_boot = 0 or undefined); n_coalitions: m; n_seeds: rows of truth; note: why a number is NaN ("" if none).
    """

    method: str
    per_seed: tuple[float, ...]
    mean: float
    ci: float
    boot_low: float
    boot_high: float
    n_coalitions: int
    n_seeds: int
    note: str = ""

    @property
    def boot_half_width(self) -> float:
        """Half the width of the bootstrap interval, comparable to `ci` and to `NoiseFloor.half_width`."""
        return (self.boot_high - self.boot_low) / 2


@dataclass(frozen=True)
class NoiseFloor:
    """LDS of random attributions: mean and 95% band (2.5 / 97.5 percentiles) over `draws` random draws."""

    mean: float
    low: float
    high: float
    half_width: float
    draws: int


def t_half_width(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> float:
    """Half-width of the two-sided t confidence interval of the mean of the finite samples (NaN if < 2)."""
    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    return float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be (m coalitions, n contributors), got shape {masks.shape}")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1): entry [S, i] says whether contributor i is in S")
        masks = masks.astype(bool)
    return masks


def _check_truth(truth: np.ndarray, m: int) -> np.ndarray:
    """Truth as (n_seeds, m) floats; a 1-d truth (m,) is one seed."""
    truth = np.asarray(truth, dtype=float)
    if truth.ndim == 1:
        truth = truth[None, :]
    if truth.ndim != 2 or truth.shape[1] != m:
        raise ValueError(f"truth must be (n_seeds, m={m}) retrained properties, got shape {truth.shape}")
    if np.isinf(truth).any():
        raise ValueError("truth has infinite entries; mark missing runs with NaN")
    return truth


def _snap(x: np.ndarray) -> np.ndarray:
    """Round each row (last axis) to a grid relative to its largest entry, so that float-rounding differences
    (sums of equal values in another order) become exact ties instead of spurious orderings."""
    scale = np.max(np.abs(x), axis=-1, keepdims=True, initial=0.0)
    scale = np.where(scale == 0, 1.0, scale)
    return np.round(x / scale, int(-np.log10(_SNAP))) * scale


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Spearman of x and y (B, k) over the columns where y is not NaN; NaN where undefined.

    Undefined: fewer than MIN_COALITIONS columns, or either side constant (zero rank variance).
    """
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    x = np.where(np.isnan(y), np.nan, x)
    rx = stats.rankdata(x, axis=1, nan_policy="omit")
    ry = stats.rankdata(y, axis=1, nan_policy="omit")
    count = np.sum(~np.isnan(ry), axis=1, keepdims=True)
    centre = (count + 1) / 2  # ranks 1..k (ties averaged) always have mean (k + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        dx, dy = rx - centre, ry - centre
        sxx, syy = np.nansum(dx * dx, axis=1), np.nansum(dy * dy, axis=1)
        rho = np.nansum(dx * dy, axis=1) / np.sqrt(sxx * syy)
    defined = (count[:, 0] >= MIN_COALITIONS) & (sxx > 0) & (syy > 0)
    return np.where(defined, np.clip(rho, -1.0, 1.0), np.nan)


def _mean_over_seeds(per_seed: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries; NaN where none is finite."""
    finite = np.isfinite(per_seed)
    total = np.where(finite, per_seed, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _why_undefined(predictions: np.ndarray, truth: np.ndarray, per_seed: np.ndarray) -> str:
    """A short reason for each kind of NaN in per_seed ("" when every seed is defined)."""
    if np.ptp(predictions) == 0:
        return "constant predictions: Spearman undefined"
    reasons = []
    for s in np.flatnonzero(np.isnan(per_seed)):
        row = truth[s][~np.isnan(truth[s])]
        if row.size < MIN_COALITIONS:
            reasons.append(f"seed {s}: {row.size} coalitions with ground truth (< {MIN_COALITIONS})")
        elif np.ptp(row) == 0:
            reasons.append(f"seed {s}: constant ground truth")
        else:
            reasons.append(f"seed {s}: predictions constant on its coalitions")
    return "; ".join(reasons)


def lds_of_predictions(
    predictions: np.ndarray,
    truth: np.ndarray,
    *,
    method: str = "",
    n_boot: int = 1000,
    seed: int = 0,
) -> LDSResult:
    """LDS of any direct predictor: predictions (m,) of the coalitions' property against truth (n_seeds, m).

    Step 1: per seed, 100 * Spearman over the coalitions with ground truth for that seed.
    Step 2: mean and t half-width over the seeds where it is defined.
    Step 3: bootstrap over coalitions: n_boot resamples of the m indices with replacement (seeded), each
    scored as the mean-over-seeds LDS; the 95% percentile interval of the draws where it is defined.
    """
    predictions = np.asarray(predictions, dtype=float)
    if predictions.ndim != 1 or not np.isfinite(predictions).all():
        raise ValueError(f"predictions must be a finite (m,) vector, got shape {predictions.shape}")
    truth = _check_truth(truth, predictions.size)
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot} must be >= 0 (0 skips the bootstrap)")
    x = _snap(predictions)
    per_seed = 100 * _spearman_rows(x[None, :], truth)  # (n_seeds,)
    mean = float(_mean_over_seeds(per_seed))
    boot_low = boot_high = float("nan")
    if n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
        draws = np.stack([100 * _spearman_rows(x[idx], row[idx]) for row in truth], axis=-1)  # (n_boot, seeds)
        boot = _mean_over_seeds(draws)
        boot = boot[np.isfinite(boot)]
        if boot.size:
            boot_low, boot_high = (float(q) for q in np.percentile(boot, [2.5, 97.5]))
    return LDSResult(
        method=method,
        per_seed=tuple(float(v) for v in per_seed),
        mean=mean,
        ci=t_half_width(per_seed),
        boot_low=boot_low,
        boot_high=boot_high,
        n_coalitions=int(x.size),
        n_seeds=int(truth.shape[0]),
        note=_why_undefined(x, truth, per_seed),
    )


def lds(
    values: np.ndarray,
    masks: np.ndarray,
    truth: np.ndarray,
    *,
    method: str = "",
    n_boot: int = 1000,
    seed: int = 0,
) -> LDSResult:
    """LDS of an attribution values (n,) on held-out coalitions masks (m, n) against truth (n_seeds, m).

    The prediction for coalition S is the sum of the values over S (additive model of the property).
    """
    masks = _check_masks(masks)
    values = np.asarray(values, dtype=float)
    if values.shape != (masks.shape[1],) or not np.isfinite(values).all():
        raise ValueError(f"values must be a finite ({masks.shape[1]},) vector for masks {masks.shape}, "
                         f"got shape {values.shape}")
    return lds_of_predictions(masks @ values, truth, method=method, n_boot=n_boot, seed=seed)


def random_floor(masks: np.ndarray, truth: np.ndarray, *, draws: int = 1000, seed: int = 0) -> NoiseFloor:
    """Noise floor: LDS (mean over seeds) of `draws` random attributions with values i.i.d. N(0, 1).

    An LDS inside the band [low, high] cannot be told apart from chance on these coalitions; the band
    shrinks roughly like 1 / sqrt(m).
    """
    masks = _check_masks(masks)
    truth = _check_truth(truth, masks.shape[0])
    if draws < 1:
        raise ValueError(f"draws={draws} must be >= 1")
    values = np.random.default_rng(seed).standard_normal((draws, masks.shape[1]))
    predictions = _snap(values @ masks.T.astype(float))  # (draws, m)
    scores = _mean_over_seeds(np.stack([100 * _spearman_rows(predictions, row[None, :]) for row in truth], -1))
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        nan = float("nan")
        return NoiseFloor(mean=nan, low=nan, high=nan, half_width=nan, draws=draws)
    low, high = (float(q) for q in np.percentile(scores, [2.5, 97.5]))
    return NoiseFloor(mean=float(scores.mean()), low=low, high=high, half_width=(high - low) / 2, draws=draws)


def size_only(masks: np.ndarray, truth: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> LDSResult | None:
    """LDS of the coalition-size predictor (values = ones); None when all held-out coalitions have one size,
    where size carries no information and its Spearman is undefined."""
    masks = _check_masks(masks)
    sizes = masks.sum(axis=1)
    if np.ptp(sizes) == 0:
        return None
    return lds_of_predictions(sizes, truth, method="size-only", n_boot=n_boot, seed=seed)


def relative_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Relative change of a property in percent, 100 * (after - before) / |before| per seed: (mean, 95% t
    half-width) over the seeds where both runs exist and before != 0 (half-width NaN with one seed).

    before, after: (n_seeds,) property of the full retrained model and of the model retrained after removing
    (or keeping only) a method's top contributors, same seeds in the same order.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"before and after must be (n_seeds,) of one shape, got {before.shape}, {after.shape}")
    keep = np.isfinite(before) & np.isfinite(after) & (before != 0)
    if not keep.any():
        return float("nan"), float("nan")
    change = 100 * (after[keep] - before[keep]) / np.abs(before[keep])
    return float(change.mean()), t_half_width(change)


def rank_agreement(values: np.ndarray, reference: np.ndarray) -> float:
    """Spearman correlation (in [-1, 1]) of a method's values (n,) with a reference score (n,) where higher
    means more valuable (e.g. minus the documented degradation level); NaN if either is constant."""
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if values.shape != reference.shape or values.ndim != 1:
        raise ValueError(f"values and reference must be (n,) of one shape, got {values.shape}, {reference.shape}")
    return float(_spearman_rows(values[None, :], reference[None, :])[0])


def worst_ranks(values: np.ndarray, reference: np.ndarray, k: int) -> list[int]:
    """Where a method puts the k contributors the reference marks worst.

    Returns, for the k lowest reference scores (worst first; ties broken by index), the method's rank of
    that contributor: 1 = highest value, n = lowest; tied values share the best rank (1 + number of
    contributors valued strictly higher). A method that agrees with the reference returns [n, n-1, ...].
    """
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if values.shape != reference.shape or values.ndim != 1:
        raise ValueError(f"values and reference must be (n,) of one shape, got {values.shape}, {reference.shape}")
    if not 1 <= k <= values.size:
        raise ValueError(f"k={k} must be between 1 and n={values.size}")
    worst = np.argsort(reference, kind="stable")[:k]
    return [int(1 + np.sum(values > values[i])) for i in worst]
