"""Control variates: a cheap proxy game q(S) beside the expensive utilities v(S), in an estimator that stays unbiased.

A proxy is any cheap, deterministic batched game q(masks bool (m, n)) -> (m,) that correlates with v: e.g. the
property of a coalition's own real images, computed with no training. Its values phi(q) cost only proxy calls, so
they are computed to negligible error (exactly by enumeration for small n, else by antithetic permutations around a
surrogate of q itself); only the part of v that b q does not explain is left to the logged coalitions. On the
folds of the surrogate-assisted estimator (crossfit.py):

1. assign the rows to K folds (pairs and repeats together), as the plain cross-fit does;
2. per fold k, b_k = the kernel-weighted least-squares slope of v on q WITHIN coalition sizes over the rows not in
   fold k (a function of |S| alone only moves the equal split, so the slope is taken where the values are decided);
3. fit the surrogate f_k to v - b_k q on the rows not in fold k; fold k's rows get the residual v - b_k q - f_k,
   fold k's values b_k phi(q) + phi(f_k): no row is predicted by a b or a surrogate that saw it.

The residual game is estimated as before (leverage / Banzhaf regression on all rows), so the estimate is unbiased
whatever q is; the estimator keeps the proxy only where its out-of-fold residual spread is below the plain
cross-fit's (a useless q then changes nothing), and q = v gives b = 1, a zero residual and phi(q) itself: exact
values. Efficiency stays exact (permutation estimates of phi(q) are efficient). The Monte Carlo error of phi(q),
times b, is added to the reported variance; b's own uncertainty is in the jackknife over folds.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from .crossfit import CrossFit, crossfit, fold_labels, kernel_weights
from .exact import all_masks, banzhaf_from_table, shapley_from_table
from .samplers import sample_leverage
from .surrogates import fit_surrogate

__all__ = [
    "PROXY_BATCH",
    "PROXY_BUDGET",
    "ProxyValues",
    "control_crossfit",
    "evaluate_proxy",
    "proxy_control",
    "proxy_crossfits",
    "proxy_report",
    "proxy_rows",
    "proxy_values",
    "residual_spread",
    "shared_proxy_values",
    "with_proxy_values",
    "within_size_slopes",
]

# proxy calls (coalitions) spent on phi(q): exact up to n = 20, ~1000 pairs of chains at n = 258; a proxy built from
# per-image statistics (sums, counts, cluster histograms) answers 2^20 coalitions in seconds
PROXY_BUDGET = 2**20
PROXY_BATCH = 4096  # coalitions per proxy call
SHRINK_T = 2.0  # slopes of v on q with a t-statistic below this are noise: shrunk to 0


@dataclass(frozen=True)
class ProxyValues:
    """The proxy's values per index (n,), their Monte Carlo std per index (n,; 0 where enumerated) and q at the
    empty and full coalitions ends (2,)."""

    values: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    ends: np.ndarray


def evaluate_proxy(proxy: Callable[[np.ndarray], np.ndarray], masks: np.ndarray) -> np.ndarray:
    """q on masks bool (m, n), in batches of PROXY_BATCH rows: (m,) finite floats, or ValueError saying what to fix."""
    if not callable(proxy):
        raise TypeError(f"proxy must be a callable q(masks bool (m, n)) -> (m,) floats, got {type(proxy).__name__}")
    parts = []
    for start in range(0, len(masks), PROXY_BATCH):
        batch = masks[start : start + PROXY_BATCH]
        q = np.asarray(proxy(batch), dtype=float)
        if q.shape != (len(batch),):
            raise ValueError(f"proxy returned shape {q.shape} for {len(batch)} coalitions: it must return one float "
                             "per mask row, shape (m,)")
        bad = np.flatnonzero(~np.isfinite(q))
        if bad.size:
            raise ValueError(f"proxy returned NaN/inf for {bad.size} of {len(batch)} coalitions (e.g. "
                             f"{batch[bad[0]].nonzero()[0].tolist()}): it must be finite on every coalition, the "
                             "empty and full ones included; guard the empty coalition or drop the proxy")
        parts.append(q)
    return np.concatenate(parts) if parts else np.zeros(0)


def proxy_values(
    proxy: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    seed: int,
    budget: int = PROXY_BUDGET,
    control: tuple[Callable[[np.ndarray], np.ndarray], dict[str, np.ndarray]] | None = None,
    indices: tuple[str, ...] = ("shapley", "banzhaf"),
) -> ProxyValues:
    """Shapley and Banzhaf values of the proxy game with about `budget` proxy calls (module docstring).

    Exact (enumeration, std 0) when 2^n <= budget. Otherwise the budget is split among `indices`: antithetic
    permutation chains (Shapley), antithetic flip samples (Banzhaf: a uniform S and S with each contributor flipped),
    seeded; control = (predict, exact values per index) of a surrogate of q, whose values are added to the
    Monte Carlo estimate of phi(q - surrogate), which has far smaller marginals than q (less error per call).
    """
    corners = np.array([np.zeros(n, bool), np.ones(n, bool)])
    ends = evaluate_proxy(proxy, corners)
    if 2**n <= budget:
        table = evaluate_proxy(proxy, all_masks(n))
        zero = np.zeros(n)
        return ProxyValues({"shapley": shapley_from_table(table), "banzhaf": banzhaf_from_table(table)},
                           {"shapley": zero, "banzhaf": zero}, ends)
    predict, known = control if control is not None else (lambda masks: np.zeros(len(masks)), None)

    def game(masks: np.ndarray) -> np.ndarray:
        return evaluate_proxy(proxy, masks) - predict(masks)

    rng = np.random.default_rng(seed)
    share = budget // len(indices)
    sampler = {"shapley": lambda: _permutation_units(game, n, max(share // (2 * (n - 1)), 2), rng),
               "banzhaf": lambda: _flip_units(game, n, max(share // (2 * (n + 1)), 2), rng)}
    values, std = {}, {}
    for index in indices:
        marginal = sampler[index]()
        values[index] = marginal.mean(axis=0) + (known[index] if known is not None else 0.0)
        std[index] = marginal.std(axis=0, ddof=1) / np.sqrt(len(marginal))
    return ProxyValues(values, std, ends)


def _permutation_units(game: Callable, n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Per antithetic pair of permutations (pi, reversed pi), the mean marginal of each contributor: (pairs, n);
    chains in chunks of about 2^24 mask entries."""
    ends = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    chunk = max(1, 2**23 // (n * n))
    units = []
    for start in range(0, pairs, chunk):
        order = np.array([rng.permutation(n) for _ in range(min(chunk, pairs - start))])
        order = np.concatenate([order, order[:, ::-1]])  # (2 c, n)
        rank = np.argsort(order, axis=1)  # position of each contributor in its permutation
        prefixes = rank[:, None, :] < np.arange(1, n)[None, :, None]  # (2 c, n - 1, n): sizes 1..n-1
        inner = game(prefixes.reshape(-1, n)).reshape(len(order), n - 1)
        chain = np.concatenate([np.full((len(order), 1), ends[0]), inner, np.full((len(order), 1), ends[1])], axis=1)
        marginal = np.zeros((len(order), n))
        np.put_along_axis(marginal, order, np.diff(chain, axis=1), axis=1)
        half = len(order) // 2
        units.append((marginal[:half] + marginal[half:]) / 2)
    return np.concatenate(units)


def _flip_units(game: Callable, n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Per antithetic pair (S, N \\ S) of uniform coalitions, the mean Banzhaf marginal of each contributor from S
    and its n one-flip neighbours: (pairs, n); in chunks of about 2^24 mask entries."""
    chunk = max(1, 2**23 // (n * n))
    units = []
    for start in range(0, pairs, chunk):
        base = rng.random((min(chunk, pairs - start), n)) < 0.5
        base = np.concatenate([base, ~base])  # (2 c, n)
        flipped = base[:, None, :] ^ np.eye(n, dtype=bool)[None]  # (2 c, n, n): S with contributor i flipped
        at_base = game(base)
        at_flip = game(flipped.reshape(-1, n)).reshape(len(base), n)
        marginal = np.where(base, at_base[:, None] - at_flip, at_flip - at_base[:, None])  # v(S + i) - v(S - i)
        half = len(base) // 2
        units.append((marginal[:half] + marginal[half:]) / 2)
    return np.concatenate(units)


def within_size_slopes(utilities: np.ndarray, q_rows: np.ndarray, masks: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Step 2: per fold k (K,), the kernel-weighted least-squares slope of v on q within coalition sizes (both
    centred on their mean per size) over the rows not in fold k, shrunk by max(0, 1 - (SHRINK_T / t)^2), t its
    sandwich t-statistic: a slope that noise could have made (|t| <= SHRINK_T) is 0, a clear one is kept whole.
    0 where q does not vary within sizes there."""
    weight, size = kernel_weights(masks), masks.sum(axis=1)
    b = np.zeros(int(fold.max()) + 1)
    for k in range(b.size):
        train = fold != k
        w = np.where(train, weight, 0.0)
        x, y = _within_size(q_rows, size, train), _within_size(utilities, size, train)
        spread = float(w @ x**2)
        if spread <= 1e-24 * max(float(w @ q_rows**2), 1e-300):
            continue
        slope = float(w @ (x * y)) / spread
        se2 = float((w * x * (y - slope * x)) @ (w * x * (y - slope * x))) / spread**2
        b[k] = slope * max(0.0, 1.0 - SHRINK_T**2 * se2 / max(slope**2, 1e-300))
    return b


def _within_size(z: np.ndarray, size: np.ndarray, train: np.ndarray) -> np.ndarray:
    """z (m,) minus the mean of the training rows of its coalition size (0 where a size has no training row)."""
    count = np.bincount(size[train], minlength=size.max() + 1)
    mean = np.bincount(size[train], weights=z[train], minlength=count.size) / np.maximum(count, 1)
    return z - mean[size]


def residual_spread(fit: CrossFit, masks: np.ndarray) -> float:
    """Kernel-weighted variance of a cross-fit's out-of-fold residuals: the criterion that picks among fits."""
    w = kernel_weights(masks)
    w = w / w.sum()
    return float(w @ (fit.residuals - w @ fit.residuals) ** 2)


def control_crossfit(
    masks: np.ndarray,
    utilities: np.ndarray,
    v0: float,
    v1: float,
    q_rows: np.ndarray,
    q_ends: np.ndarray,
    options: dict[str, object],
) -> tuple[CrossFit, np.ndarray]:
    """Steps 1-3 of the module docstring without phi(q): the cross-fit of the surrogate to v - b_k q (its values,
    ends and predictions are the surrogate's alone; residuals v - b_k q - f_k) and b (K,)."""
    fold = fold_labels(masks, int(options["seed"]), int(options["folds"]))
    b = within_size_slopes(utilities, q_rows, masks, fold)
    fit = crossfit(masks, utilities, v0, v1, **options, offset=(b[:, None] * q_rows, b[:, None] * q_ends))
    return fit, b


def with_proxy_values(
    fit: CrossFit, b: np.ndarray, q: ProxyValues, proxy: Callable[[np.ndarray], np.ndarray]
) -> CrossFit:
    """Step 3: the surrogate of fold k becomes h_k = b_k q + f_k, with values b_k phi(q) + phi(f_k); the Monte
    Carlo variance of phi(q), times mean(b)^2, is carried as extra_var."""
    fold_values = {index: fit.fold_values[index] + b[:, None] * q.values[index] for index in fit.fold_values}
    ends = fit.ends + b[:, None] * q.ends
    predict = tuple(_combined(f, float(b_k), proxy) for f, b_k in zip(fit.predict, b, strict=True))
    extra_var = {index: b.mean() ** 2 * q.std[index] ** 2 for index in fit.fold_values}
    return CrossFit(f"{fit.surrogate}+proxy", fold_values, ends, fit.residuals, fit.fold, predict, extra_var)


def _combined(f: Callable, b: float, proxy: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """h = b q + f: one fold's surrogate of v with the proxy as control."""
    return lambda masks: b * evaluate_proxy(proxy, masks) + f(masks)


def proxy_control(
    proxy: Callable[[np.ndarray], np.ndarray], n: int, q_ends: np.ndarray, *, surrogate: str, seed: int
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, np.ndarray]]:
    """A surrogate of q itself (predict, exact values per index) for proxy_values' permutations: fitted to
    max(4n, 128) fresh leverage-design coalitions (q is cheap), the candidate chosen on max(2n, 64) others. It
    depends on (proxy, n, seed) alone, not on the logged rows, so phi(q) can be computed once per proxy."""
    train = sample_leverage(n, max(4 * n, 128), seed + 2).masks
    candidates = fit_surrogate(surrogate, train, evaluate_proxy(proxy, train), float(q_ends[0]), float(q_ends[1]),
                               seed)
    fresh = sample_leverage(n, max(2 * n, 64), seed + 1).masks
    q_fresh = evaluate_proxy(proxy, fresh)
    best = min(candidates, key=lambda g: float(np.sum((g.predict(fresh) - q_fresh) ** 2)))
    return best.predict, best.values


def shared_proxy_values(
    proxy: Callable[[np.ndarray], np.ndarray], n: int, *, seed: int, budget: int, surrogate: str
) -> ProxyValues:
    """proxy_values around proxy_control's surrogate, computed once per (proxy, n, seed, budget, surrogate) and
    remembered while the proxy object lives: every estimate of a run (values, convergence curve, forecasts, each
    batch of a target design) re-uses one phi(q), since a proxy is deterministic. A proxy that cannot be weakly
    referenced (e.g. a bound method, made anew at each access) is computed each time."""
    key = (n, seed, budget, surrogate)
    try:
        known = _SHARED.setdefault(proxy, {})
    except TypeError:
        known = {}
    if key not in known:
        q_ends = evaluate_proxy(proxy, np.array([np.zeros(n, bool), np.ones(n, bool)]))
        control = proxy_control(proxy, n, q_ends, surrogate=surrogate, seed=seed)
        known[key] = proxy_values(proxy, n, seed=seed, budget=budget, control=control)
    return known[key]


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # proxy -> {(n, seed, budget, surrogate): values}


def proxy_rows(proxy: Callable[[np.ndarray], np.ndarray] | None, masks: np.ndarray) -> np.ndarray | None:
    """The proxy on the rows (m,), checked before any fitting; None (with a warning) for a constant proxy."""
    if proxy is None:
        return None
    q_rows = evaluate_proxy(proxy, masks)
    if np.ptp(q_rows) <= 1e-12 * max(float(np.abs(q_rows).max()), 1e-300):
        warnings.warn("surrogate estimators: the proxy is constant on the logged coalitions, so it carries no "
                      "information about their differences; the estimate is the plain one (no proxy)", stacklevel=4)
        return None
    return q_rows


def proxy_crossfits(
    masks: np.ndarray,
    utilities: np.ndarray,
    v0: float,
    v1: float,
    plain: CrossFit,
    q_rows: np.ndarray,
    proxy: Callable[[np.ndarray], np.ndarray],
    options: dict[str, object],
    budget: int,
) -> tuple[CrossFit | None, CrossFit | None]:
    """The cross-fits with the proxy as control variate, on the folds of `plain` (v's own cross-fit): with the
    surrogate fitted to v - b_k q, and with no surrogate at all (the residual is v - b_k q: for games no surrogate
    fits). Each is None where its out-of-fold residual spread is not below the same fit's without the proxy."""
    n = masks.shape[1]
    q_ends = evaluate_proxy(proxy, np.array([np.zeros(n, bool), np.ones(n, bool)]))
    fit, b = control_crossfit(masks, utilities, v0, v1, q_rows, q_ends, options)
    K = len(b)
    zeros = {index: np.zeros((K, n)) for index in plain.fold_values}
    no_surrogate = (lambda query: np.zeros(len(query)),) * K
    bare = CrossFit("none", zeros, np.zeros((K, 2)), utilities, plain.fold, no_surrogate, {})
    direct = CrossFit("none", zeros, np.zeros((K, 2)), utilities - b[plain.fold] * q_rows, plain.fold, no_surrogate, {})
    kept = [candidate if residual_spread(candidate, masks) < residual_spread(reference, masks) else None
            for candidate, reference in ((fit, plain), (direct, bare))]
    if all(candidate is None for candidate in kept):
        return None, None
    q = shared_proxy_values(proxy, n, seed=int(options["seed"]), budget=budget, surrogate=str(options["surrogate"]))
    fit_proxy, direct_proxy = (None if c is None else with_proxy_values(c, b, q, proxy) for c in kept)
    return fit_proxy, direct_proxy


def proxy_report(
    masks: np.ndarray,
    utilities: np.ndarray,
    q_rows: np.ndarray,
    *,
    v0: float,
    v1: float,
    q0: float,
    q1: float,
    seed: int = 0,
    folds: int = 5,
    surrogate: str = "saturating",
) -> dict[str, float]:
    """How much a proxy helps, from the logged rows: masks bool (m, n), utilities (m,), the proxy on those rows
    q_rows (m,), and both games at the empty and full coalitions.

    "pearson", "spearman": q vs v over the rows; "b": the control coefficient (mean over folds, step 2 of the
    module docstring); "variance_removed": the share of the kernel-weighted variance of v around its cross-fitted
    surrogate that b q removes, out of fold (negative when the proxy only adds noise; 1 for q = v).
    """
    masks = np.asarray(masks, dtype=bool)
    utilities, q_rows = np.asarray(utilities, dtype=float), np.asarray(q_rows, dtype=float)
    if q_rows.shape != utilities.shape or not np.isfinite(q_rows).all():
        raise ValueError(f"q_rows must be {utilities.shape[0]} finite floats, one per row; got shape {q_rows.shape}")
    options = {"seed": seed, "folds": folds, "surrogate": surrogate}
    plain = crossfit(masks, utilities, v0, v1, **options)
    fit, b = control_crossfit(masks, utilities, v0, v1, q_rows, np.array([q0, q1]), options)
    before = residual_spread(plain, masks)
    constant = np.ptp(q_rows) == 0
    return {
        "pearson": float("nan") if constant else float(np.corrcoef(utilities, q_rows)[0, 1]),
        "spearman": float("nan") if constant else float(spearmanr(utilities, q_rows).statistic),
        "b": float(b.mean()),
        "variance_removed": 1.0 - residual_spread(fit, masks) / before if before > 0 else 0.0,
    }
