"""How much a held-out ground truth can say: which coalitions and seeds it covers, and its seed-to-seed noise.

A partial ground truth (a fixture still being filled) holds some coalitions for some training seeds; an LDS
is computed on the coalitions with at least one retrained utility and the seeds with at least one, and says
so (``coverage``). Where two or more seeds exist, ``seed_to_seed`` is the LDS that the retrained utilities of
one seed score as the prediction of another seed's (100 x Spearman over their common coalitions, mean over
seed pairs). It measures the noise of the ground truth itself, not the random floor: when a retrained utility
is the seed-free property plus independent seed noise and this row reads r, an attribution that predicted the
property exactly would score about 100 x sqrt(r / 100) against one seed (r = 94: ~97), which is the ceiling of a
per-seed LDS. Pure numpy/scipy.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import stats

from shapflow.shapley.lds import MIN_COALITIONS, LDSResult

__all__ = ["SEED_TO_SEED", "coverage", "covered", "seed_to_seed"]

SEED_TO_SEED = "seed-to-seed"


def covered(masks: np.ndarray, truth: np.ndarray, seeds: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray,
                                                                                  tuple[int, ...]]:
    """(masks (m', n), truth (s', m'), seeds (s',)): the coalitions with a retrained utility under at least one
    seed, and the seeds with at least one retrained utility (truth (s, m), NaN where missing)."""
    truth = np.asarray(truth, dtype=float)
    has = np.isfinite(truth)
    rows, columns = has.any(axis=1), has.any(axis=0)
    return masks[columns], truth[np.ix_(rows, columns)], tuple(s for s, keep in zip(seeds, rows, strict=True) if keep)


def coverage(truth: np.ndarray, seeds: tuple[int, ...], asked: tuple[int, int]) -> str:
    """One line: on how many coalitions and seeds an LDS on ``truth`` (s, m) stands, of the ``asked``
    (coalitions, seeds), with the count per seed."""
    has = np.isfinite(np.asarray(truth, dtype=float))
    per_seed = ", ".join(f"seed {s}: {int(n)}" for s, n in zip(seeds, has.sum(axis=1), strict=True))
    return (f"LDS on {int(has.any(axis=0).sum())} held-out coalitions x {int(has.any(axis=1).sum())} seed(s) "
            f"({int(has.sum())} of the {asked[0] * asked[1]} retrainings of {asked[0]} x {asked[1]} asked; "
            f"{per_seed})")


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """100 x Spearman of each row of x and y (B, m) over the columns where both are finite; NaN where fewer
    than MIN_COALITIONS columns are, or either side is constant there."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    both = np.isfinite(x) & np.isfinite(y)
    rx = stats.rankdata(np.where(both, x, np.nan), axis=-1, nan_policy="omit")
    ry = stats.rankdata(np.where(both, y, np.nan), axis=-1, nan_policy="omit")
    count = both.sum(axis=-1, keepdims=True)
    dx, dy = rx - (count + 1) / 2, ry - (count + 1) / 2  # ranks 1..k (ties averaged) have mean (k + 1) / 2
    sxx, syy = np.nansum(dx * dx, axis=-1), np.nansum(dy * dy, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.nansum(dx * dy, axis=-1) / np.sqrt(sxx * syy)
    defined = (count[..., 0] >= MIN_COALITIONS) & (sxx > 0) & (syy > 0)
    return np.where(defined, 100 * np.clip(rho, -1.0, 1.0), np.nan)


def seed_to_seed(truth: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> LDSResult | None:
    """The LDS of one seed's retrained utilities against another's: per seed pair (in ``per_seed``), their mean,
    and its 95% bootstrap interval over coalitions (the same resamples for every pair). None with fewer than two
    seeds sharing ``MIN_COALITIONS`` coalitions. ``ci`` is NaN: the pairs share seeds, so a t-interval over them
    would be too narrow."""
    truth = np.asarray(truth, dtype=float)
    pairs = [(a, b) for a, b in combinations(range(truth.shape[0]), 2)
             if (np.isfinite(truth[a]) & np.isfinite(truth[b])).sum() >= MIN_COALITIONS]
    if not pairs:
        return None
    per_pair = np.array([float(_spearman(truth[a], truth[b])) for a, b in pairs])
    low = high = float("nan")
    if n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, truth.shape[1], size=(n_boot, truth.shape[1]))
        draws = np.stack([_spearman(truth[a][idx], truth[b][idx]) for a, b in pairs], axis=-1)  # (n_boot, pairs)
        draws = draws[np.isfinite(draws).all(axis=1)].mean(axis=1)
        if draws.size:
            low, high = (float(q) for q in np.percentile(draws, [2.5, 97.5]))
    common = int((np.isfinite(truth).sum(axis=0) >= 2).sum())
    return LDSResult(method=SEED_TO_SEED, per_seed=tuple(float(v) for v in per_pair), mean=float(np.nanmean(per_pair)),
                     ci=float("nan"), boot_low=low, boot_high=high, n_coalitions=common, n_seeds=truth.shape[0],
                     note=f"one seed's retrained utilities as the prediction of another's, mean over {len(pairs)} "
                          "seed pair(s); a per-seed LDS can reach about 100 x sqrt(this / 100)")
