"""The estimators' common ground: the result type, input validation, duplicate pooling, the convergence rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shapflow.config.request import DEFAULT_THRESHOLD

__all__ = [
    "DEFAULT_THRESHOLD",
    "Pooled",
    "ShapleyResult",
    "check_inputs",
    "convergence",
    "make_result",
    "pool_duplicates",
]



@dataclass(frozen=True)
class ShapleyResult:
    """Values of the n contributors with their uncertainty; arrays are read-only.

    values: (n,) estimates phi_i; std: (n,) standard errors (coalition sampling + utility noise; 0 where the
    estimate is exact, NaN where the method cannot say); counts: (n,) number of evaluated coalitions that
    contain contributor i; n_evaluations: utility evaluations spent (rows for `estimate`, game calls including
    v0 and v1 for `approximate`); converged: `convergence(self)[0]` at DEFAULT_THRESHOLD; method: its name.
    """

    values: np.ndarray
    std: np.ndarray
    counts: np.ndarray
    n_evaluations: int
    converged: bool
    method: str

    def __post_init__(self) -> None:
        for name in ("values", "std", "counts"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)


def convergence(result: ShapleyResult, threshold: float = DEFAULT_THRESHOLD) -> tuple[bool, int]:
    """Stopping rule and forecast: (converged, forecast_additional).

    Converged when max_i std_i <= threshold * (max_i phi_i - min_i phi_i): the worst error bar is a small part
    of the spread that a ranking of contributors has to resolve. Standard errors of every estimator here shrink
    like 1/sqrt(m), so reaching the threshold needs about m * (max std / (threshold * range))^2 evaluations in
    all; the forecast is the difference (0 when converged). Unknown std (NaN) never converges (forecast -1).
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    spread = float(np.ptp(result.values)) if result.values.size else 0.0
    worst = float(np.max(result.std)) if result.std.size else 0.0
    if np.isnan(worst):
        return False, -1
    if worst <= threshold * spread or worst == 0.0:
        return True, 0
    if spread == 0.0:
        return False, -1
    needed = result.n_evaluations * (worst / (threshold * spread)) ** 2
    return False, int(np.ceil(needed - result.n_evaluations))


def make_result(
    values: np.ndarray, std: np.ndarray, masks: np.ndarray, n_evaluations: int, method: str
) -> ShapleyResult:
    """Assemble a ShapleyResult, filling counts and the converged flag."""
    draft = ShapleyResult(values, std, masks.sum(axis=0), n_evaluations, False, method)
    converged, _ = convergence(draft)
    return ShapleyResult(values, std, draft.counts, n_evaluations, converged, method)


def check_inputs(
    masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, n_players: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (masks (m, n), utilities (m,), v0, v1); return bool masks and float utilities.

    Errors name the bad thing and the fix: masks must be 2-D 0/1, one utility per row, all finite, and the empty
    and full coalitions are passed as v0 and v1, not as rows.
    """
    masks = np.asarray(masks)
    utilities = np.asarray(utilities, dtype=float)
    if masks.ndim != 2:
        raise ValueError(f"masks must be a 2-D (m, n) array of 0/1, got shape {masks.shape}")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must hold only 0/1 (or bool): coalition membership of each contributor")
        masks = masks.astype(bool)
    if n_players is not None and masks.shape[1] != n_players:
        raise ValueError(f"masks have {masks.shape[1]} columns but n_players={n_players}: one column per contributor")
    if utilities.shape != (masks.shape[0],):
        raise ValueError(f"utilities must have shape ({masks.shape[0]},), one per mask row; got {utilities.shape}")
    bad = np.flatnonzero(~np.isfinite(utilities))
    if bad.size:
        raise ValueError(f"utilities are NaN/inf at rows {bad[:10].tolist()}: drop or re-run those coalitions")
    for name, v in (("v0", v0), ("v1", v1)):
        if v is None or not np.isfinite(v):
            raise ValueError(
                f"{name} must be a finite float (utility of the {'empty' if name == 'v0' else 'full'} "
                f"coalition), got {v!r}"
            )
    trivial = np.flatnonzero(~masks.any(axis=1) | masks.all(axis=1))
    if trivial.size:
        raise ValueError(f"rows {trivial[:10].tolist()} are the empty or full coalition: pass their utility as v0/v1")
    return masks, utilities


@dataclass(frozen=True)
class Pooled:
    """Unique coalitions with pooled utilities: masks (u, n), mean utility (u,), evaluations per row (u,), and
    `inverse` (m,) mapping each input row to its unique row."""

    masks: np.ndarray
    mean: np.ndarray
    counts: np.ndarray
    inverse: np.ndarray


def pool_duplicates(masks: np.ndarray, utilities: np.ndarray) -> Pooled:
    """Average the utilities of identical masks (repeated evaluations of one coalition, e.g. sFT seeds).

    Averaging repeats is unbiased for the coalition's expected utility and lowers its noise; estimators then
    weight each unique coalition by their design, so a coalition evaluated twice does not count twice.
    """
    packed = np.packbits(masks, axis=1)
    _, first, inverse, counts = np.unique(packed, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    mean = np.bincount(inverse, weights=utilities, minlength=counts.size) / counts
    return Pooled(masks[first], mean, counts, inverse)
