"""Sequential design: the next batch of coalitions where the estimate's variance falls most.

The candidates are a pool of the leverage design (``sample_leverage``: pairs {S, N \\ S}, uniform within a
size). The estimators weigh each size by its kernel mass over the number of coalitions of that size evaluated
(per-size Horvitz-Thompson), so any allocation over sizes stays unbiased as long as the coalitions of one size
are uniform; a batch therefore moves only the allocation and takes the pool's pairs of a size in pool order.

Which sizes: the stratified variance of a size s is ~ w_s^2 sigma_s^2 / c_s (c_s pairs evaluated, sigma_s the
spread of what the values do not explain there), which a fixed number of pairs minimises at c_s ~ w_s sigma_s
(Neyman allocation). Here w_s is the design's own share of size s and sigma_s the root mean square of the pair
residuals (half the difference of the two rows' residuals under the additive model of the current values: the
part of v(S) the estimate has not explained and pairing does not cancel) of size s; a size with no pair yet gets
the largest sigma seen. With equal sigmas this is the leverage design itself. Deterministic in its inputs.
"""

from __future__ import annotations

import numpy as np

from .samplers import stratum_shares

__all__ = ["batch_sizes", "design_minimum", "neyman_batch", "pair_residuals"]


def batch_sizes(n: int, workers: int = 1, stack: int = 1) -> tuple[int, int]:
    """(first batch, later batches): n coalitions (whole pairs) first, then max(n / 2, 2 per worker's stack)."""
    step = max(n // 2, 2 * workers * stack, 2)
    return n + n % 2, step + step % 2


def design_minimum(n: int, workers: int = 1, stack: int = 1) -> int:
    """The fewest coalitions a sequential design needs: its first batch and one chosen batch."""
    first, step = batch_sizes(n, workers, stack)
    return first + step


def pair_residuals(masks: np.ndarray, utilities: np.ndarray, values: np.ndarray, v0: float) -> np.ndarray:
    """Half-differences of the additive model's residuals over consecutive pairs (rows 2j, 2j+1), (m // 2,)."""
    residual = np.asarray(utilities, float) - v0 - np.asarray(masks, float) @ np.asarray(values, float)
    pairs = len(residual) // 2
    return (residual[0:2 * pairs:2] - residual[1:2 * pairs:2]) / 2.0


def _stratum(masks: np.ndarray) -> np.ndarray:
    """Stratum of each coalition: min(|S|, n - |S|), (m,)."""
    size = masks.sum(axis=1)
    return np.minimum(size, masks.shape[1] - size)


def neyman_batch(pool: np.ndarray, chosen: list[int], residuals: np.ndarray, size: int,
                 gamma: float = 0.25) -> list[int]:
    """Pool rows of the next ``size`` coalitions (whole pairs), chosen by Neyman allocation over sizes.

    pool: bool (P, n), pairs at rows (2j, 2j+1); chosen: pool rows already in the design (whole pairs, in order);
    residuals: (len(chosen) // 2,) pair residuals of the chosen pairs (``pair_residuals``; NaN ignored); gamma:
    the design's allocation exponent (``stratum_shares``). Returns pool rows in the order picked (fewer when the
    pool runs out).
    """
    n = pool.shape[1]
    strata = _stratum(pool[0::2])  # one per pool pair
    pair_ids = np.array([r // 2 for r in chosen[0::2]], dtype=int)  # aligned with residuals
    chosen_strata = strata[pair_ids]
    counts = np.bincount(chosen_strata, minlength=n // 2 + 1).astype(float)
    sigma = np.full(n // 2 + 1, np.nan)
    residuals = np.asarray(residuals, float)
    for s in np.unique(chosen_strata):
        known = residuals[(chosen_strata == s) & np.isfinite(residuals)]  # NaN: a pair not logged
        if known.size:
            sigma[s] = np.sqrt(np.mean(known**2))
    seen = sigma[np.isfinite(sigma)]
    fallback = float(seen.max()) if seen.size and seen.max() > 0 else 1.0
    sigma = np.where(np.isfinite(sigma), sigma, fallback)
    weight = np.zeros(n // 2 + 1)
    weight[1:] = stratum_shares(n, gamma) * np.maximum(sigma[1:], 1e-12 * fallback)
    taken = set(pair_ids.tolist())
    free: dict[int, list[int]] = {s: [] for s in range(1, n // 2 + 1)}
    for j, s in enumerate(strata):
        if j not in taken:
            free[int(s)].append(j)
    picked: list[int] = []
    for _ in range(size // 2):
        open_strata = [s for s in free if free[s]]
        if not open_strata:
            break
        s = max(open_strata, key=lambda t: (weight[t] / (2 * counts[t] + 1), -t))
        j = free[s].pop(0)
        counts[s] += 1
        picked += [2 * j, 2 * j + 1]
    return picked
