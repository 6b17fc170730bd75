"""Coalition samplers: which coalitions S of the n contributors get a (costly) utility evaluation.

Every sampler is ``sample_<design>(n, budget, seed, ...) -> Coalitions`` and is PREFIX-STABLE: for the
same ``(n, seed, design, options)`` the coalitions drawn for budget B are the first coalitions drawn for
any larger budget B' (paired designs round down to whole pairs, permutation designs to whole antithetic
pairs of permutations). The pipeline relies on this to extend a budget adaptively and to resume an
interrupted run by coalition id. The empty and the full coalition are never emitted: they are v0 and v1.

``log_weights[r]`` is log p(S_r), the probability that the design's nominal distribution assigns to one
draw of coalition S_r (before any without-replacement adjustment); it is informational, since every
estimator recomputes the weights it needs from the masks alone, so logged runs can be re-estimated
without the sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import comb, lgamma, log

import numpy as np

__all__ = [
    "SAMPLERS",
    "Coalitions",
    "kernel_size_probabilities",
    "mask_key",
    "sample_all",
    "sample_alpha",
    "sample_kernel",
    "sample_kernel_paired",
    "sample_leverage",
    "sample_loo",
    "sample_permutation",
    "sample_uniform",
    "stratum_shares",
]

MAX_ENUMERATION_PLAYERS = 20  # 2^20 coalitions: the largest table exact enumeration builds.


@dataclass(frozen=True)
class Coalitions:
    """Sampled coalitions, in sampler order.

    masks: bool (m, n), row r is coalition S_r; log_weights: float (m,), log p(S_r);
    ids: stable id of each coalition within the sampler's sequence, e.g. "kernel-s0-000042";
    design: the sampler's registry name.
    """

    masks: np.ndarray
    log_weights: np.ndarray
    ids: tuple[str, ...]
    design: str

    def __post_init__(self) -> None:
        for name in ("masks", "log_weights"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "ids", tuple(self.ids))

    def __len__(self) -> int:
        return len(self.ids)


def mask_key(mask: np.ndarray) -> str:
    """Stable hex key of one coalition mask (bool (n,)): bit i of the integer is contributor i; the width
    is part of the key so masks of different n never collide."""
    mask = np.asarray(mask, dtype=bool).ravel()
    value = int(np.packbits(mask[::-1]).tobytes().hex() or "0", 16) >> (-mask.size % 8)
    return f"{mask.size}:{value:x}"


def kernel_size_probabilities(n: int) -> np.ndarray:
    """p(k) proportional to (n-1)/(k(n-k)) for k = 1..n-1 (the Shapley kernel's mass per size), shape (n-1,)."""
    k = np.arange(1, n)
    p = (n - 1) / (k * (n - k))
    return p / p.sum()


def _check(n: int, budget: int, seed: int) -> None:
    """Reject bad sampler arguments before any work (seeds are always required)."""
    if not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"n must be an int >= 2 (there is nothing to share among fewer players), got {n!r}")
    if not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be a non-negative int number of coalitions, got {budget!r}")
    if not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int (samplers are always seeded), got {seed!r}")


def _log_subset_prob(n: int, k: int, size_prob: float) -> float:
    """log of size_prob / C(n, k): a uniform subset of size k drawn with probability size_prob."""
    return log(size_prob) - (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1))


def _collect(stream: Iterator[tuple[np.ndarray, float]], budget: int, n: int, design: str, seed: int) -> Coalitions:
    """Take at most `budget` (mask, log p) items from a (possibly finite) stream into Coalitions."""
    masks, log_weights = [], []
    for mask, log_p in stream:
        if len(masks) >= budget:
            break
        masks.append(mask)
        log_weights.append(log_p)
    ids = [f"{design}-s{seed}-{r:06d}" for r in range(len(masks))]
    return Coalitions(np.array(masks, dtype=bool).reshape(-1, n), np.array(log_weights, dtype=float), ids, design)


def _random_subset(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """A uniform subset of size k of range(n), as a bool mask (n,)."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=k, replace=False)] = True
    return mask


def _kernel_stream(n: int, seed: int, paired: bool) -> Iterator[tuple[np.ndarray, float]]:
    """i.i.d. draws: size k ~ p(k), then a uniform subset (the paper's design); optionally each with its complement."""
    rng = np.random.default_rng(seed)
    p = kernel_size_probabilities(n)
    while True:
        k = int(rng.choice(np.arange(1, n), p=p))
        mask = _random_subset(rng, n, k)
        yield mask, _log_subset_prob(n, k, p[k - 1])
        if paired:
            yield ~mask, _log_subset_prob(n, n - k, p[n - k - 1])


def sample_kernel(n: int, budget: int, seed: int) -> Coalitions:
    """The paper's design: i.i.d. (with replacement) coalitions with size k ~ (n-1)/(k(n-k)), uniform given k."""
    _check(n, budget, seed)
    return _collect(_kernel_stream(n, seed, paired=False), budget, n, "kernel", seed)


def sample_kernel_paired(n: int, budget: int, seed: int) -> Coalitions:
    """Covert & Lee's paired KernelSHAP design: each i.i.d. kernel draw S is followed by its complement N \\ S."""
    _check(n, budget, seed)
    return _collect(_kernel_stream(n, seed, paired=True), budget - budget % 2, n, "kernel-paired", seed)


def stratum_shares(n: int, gamma: float) -> np.ndarray:
    """Target share of pairs for stratum s = 1..floor(n/2) (sizes {s, n-s}), shape (floor(n/2),).

    Proportional to (number of sizes in the stratum) * (kernel mass per size)^gamma: gamma = 0 is uniform over
    sizes, the leverage-score distribution of Musco & Witter; gamma = 1 is the Shapley kernel's distribution.
    """
    s = np.arange(1, n // 2 + 1)
    sizes_in_stratum = np.where(2 * s == n, 1.0, 2.0)
    shares = sizes_in_stratum * (1.0 / (s * (n - s))) ** gamma
    return shares / shares.sum()


def _leverage_stream(n: int, seed: int, gamma: float, ends_first: bool) -> Iterator[tuple[np.ndarray, float]]:
    """Pairs (S, N \\ S) without replacement, stratified by size; the stratum schedule is deterministic.

    The t-th pair goes to the stratum with the largest Sainte-Lague quotient share_s / (2 count_s + 1) among
    strata not yet exhausted, so every prefix is as close to the target allocation as whole pairs allow and a
    stratum smaller than its allocation is enumerated completely (the "border" trick falls out of this).
    ends_first: the n pairs ({i}, N \\ {i}) come first, in a seeded random order, then the schedule goes on with
    that stratum exhausted.
    """
    rng = np.random.default_rng(seed)
    shares = stratum_shares(n, gamma)
    sizes = np.arange(1, n // 2 + 1)
    n_pairs = np.array([comb(n, s) // (2 if 2 * s == n else 1) for s in sizes], dtype=float)
    counts = np.zeros(len(sizes))
    if ends_first:
        log_p = log(shares[0]) - log(n_pairs[0]) - log(2.0)
        for i in rng.permutation(n):
            mask = np.arange(n) == i
            yield mask, log_p
            yield ~mask, log_p
        counts[0] = n_pairs[0]
    seen: set[bytes] = set()
    while np.any(counts < n_pairs):
        quotient = np.where(counts < n_pairs, shares / (2 * counts + 1), -np.inf)
        j = int(np.argmax(quotient))
        s = int(sizes[j])
        while True:  # rejection: the stratum still holds unseen pairs, and a pair's key is its canonical half
            mask = _random_subset(rng, n, s)
            key = np.packbits(mask if not mask[0] else ~mask).tobytes()
            if key not in seen:
                break
        seen.add(key)
        counts[j] += 1
        log_p = log(shares[j]) - log(n_pairs[j]) - log(2.0)
        yield mask, log_p
        yield ~mask, log_p


def sample_leverage(n: int, budget: int, seed: int, gamma: float = 0.25, ends_first: bool = False) -> Coalitions:
    """Paired, without replacement, size-stratified coalitions for the "leverage" estimator (see regression.py).

    gamma interpolates the allocation over sizes between leverage scores (0) and the Shapley kernel (1);
    ends_first evaluates every ({i}, N \\ {i}) pair first (2n rows), then continues the schedule.
    """
    _check(n, budget, seed)
    design = "leverage-ends" if ends_first else "leverage"  # ids of the two sequences must never collide
    return _collect(_leverage_stream(n, seed, gamma, ends_first), budget - budget % 2, n, design, seed)


def _codes_to_masks(codes: np.ndarray, n: int) -> np.ndarray:
    """Integer codes (m,) -> bool masks (m, n) with bit i of the code = contributor i."""
    return ((np.asarray(codes, dtype=np.int64)[:, None] >> np.arange(n)) & 1).astype(bool)


def _uniform_stream(n: int, seed: int) -> Iterator[tuple[np.ndarray, float]]:
    """Uniform coalitions (each contributor in w.p. 1/2) without replacement, excluding empty and full."""
    rng = np.random.default_rng(seed)
    log_p = -n * log(2.0)
    if n <= MAX_ENUMERATION_PLAYERS:  # a random order of all 2^n - 2 codes: exact without-replacement
        for code in rng.permutation(np.arange(1, 2**n - 1)):
            yield _codes_to_masks(np.array([code]), n)[0], log_p
        return
    seen: set[bytes] = set()
    while True:
        mask = rng.random(n) < 0.5
        key = np.packbits(mask).tobytes()
        if mask.any() and not mask.all() and key not in seen:
            seen.add(key)
            yield mask, log_p


def sample_uniform(n: int, budget: int, seed: int) -> Coalitions:
    """Uniform (Banzhaf) design without replacement, for Banzhaf by maximum sample reuse."""
    _check(n, budget, seed)
    return _collect(_uniform_stream(n, seed), budget, n, "uniform", seed)


def _permutation_stream(n: int, seed: int) -> Iterator[tuple[np.ndarray, float]]:
    """Antithetic permutations: pi then reversed(pi); each yields its n-1 proper prefixes, sizes 1..n-1 in order."""
    rng = np.random.default_rng(seed)
    log_p = -lgamma(n + 1)
    while True:
        pi = rng.permutation(n)
        for order in (pi, pi[::-1]):
            rank = np.argsort(order)  # rank[j] = position of contributor j in the order
            prefixes = rank[None, :] < np.arange(1, n)[:, None]  # row k-1: the first k contributors
            yield from ((row, log_p) for row in prefixes)


def sample_permutation(n: int, budget: int, seed: int) -> Coalitions:
    """Antithetic permutation design; the budget is rounded down to whole pairs of permutations, 2(n-1) each."""
    _check(n, budget, seed)
    return _collect(_permutation_stream(n, seed), budget - budget % (2 * (n - 1)), n, "permutation", seed)


def sample_loo(n: int, budget: int, seed: int) -> Coalitions:
    """Leave-one-out coalitions N \\ {i} for i = 0..n-1 (deterministic; seed kept for the common contract)."""
    _check(n, budget, seed)
    stream = ((~np.eye(n, dtype=bool)[i], 0.0) for i in range(n))
    return _collect(stream, budget, n, "loo", seed)


def _alpha_stream(n: int, seed: int, alpha: float) -> Iterator[tuple[np.ndarray, float]]:
    """Uniform subsets of the fixed size round(alpha n), without replacement."""
    k = round(alpha * n)
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    while len(seen) < comb(n, k):
        mask = _random_subset(rng, n, k)
        key = np.packbits(mask).tobytes()
        if key not in seen:
            seen.add(key)
            yield mask, _log_subset_prob(n, k, 1.0)


def sample_alpha(n: int, budget: int, seed: int, alpha: float = 0.5) -> Coalitions:
    """Fixed-fraction design: each coalition holds round(alpha n) contributors (datamodels; LDS test sets)."""
    _check(n, budget, seed)
    if not 0.0 < alpha < 1.0 or round(alpha * n) in (0, n):
        raise ValueError(f"alpha must give a coalition size in 1..n-1, got alpha={alpha!r} with n={n}")
    return _collect(_alpha_stream(n, seed, alpha), budget, n, "alpha", seed)


def sample_all(n: int, budget: int, seed: int) -> Coalitions:
    """All 2^n - 2 proper non-empty coalitions in binary-code order, for exact enumeration (n <= 20)."""
    _check(n, budget, seed)
    if n > MAX_ENUMERATION_PLAYERS:
        raise ValueError(f"enumeration needs 2^n coalitions; n={n} > {MAX_ENUMERATION_PLAYERS}: use an estimator")
    codes = np.arange(1, min(2**n - 1, budget + 1))
    masks = _codes_to_masks(codes, n)
    ids = [f"all-s{seed}-{r:06d}" for r in range(len(codes))]
    return Coalitions(masks, np.full(len(codes), -n * log(2.0)), ids, "all")


SAMPLERS: dict[str, Callable[..., Coalitions]] = {
    "kernel": sample_kernel,
    "kernel-paired": sample_kernel_paired,
    "leverage": sample_leverage,
    "uniform": sample_uniform,
    "permutation": sample_permutation,
    "loo": sample_loo,
    "alpha": sample_alpha,
    "all": sample_all,
}
