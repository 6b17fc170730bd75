"""Test games with known Shapley values: batched, counted, optionally noisy.

A game is called on masks bool (m, n) and returns utilities (m,). Every call adds m to `n_evaluations`, so
tests can check that an estimator respects its budget. With noise_std > 0 each evaluation adds independent
N(0, noise_std^2) noise from the game's own seeded generator (like sFT training noise); `shapley_values()` are
the noise-free values. Closed forms are checked against enumeration for small n in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from math import lgamma

import numpy as np

from .exact import exact_values
from .samplers import MAX_ENUMERATION_PLAYERS
from .saturating import saturating_values

__all__ = [
    "GAMES",
    "MARKET_GAMES",
    "AdditivePairwiseGame",
    "AirportGame",
    "Game",
    "GloveGame",
    "MarketGame",
    "VotingGame",
    "make_game",
]


class Game:
    """Base of the test games: input checks, the evaluation counter and noise; subclasses define `value`."""

    def __init__(self, n: int, noise_std: float = 0.0, seed: int = 0) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.n = n
        self.noise_std = float(noise_std)
        self.n_evaluations = 0
        self._rng = np.random.default_rng(seed)

    def value(self, masks: np.ndarray) -> np.ndarray:
        """Noise-free utilities (m,) of coalitions masks (m, n)."""
        raise NotImplementedError

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n:
            raise ValueError(f"masks must have shape (m, {self.n}), got {masks.shape}")
        self.n_evaluations += masks.shape[0]
        v = self.value(masks).astype(float)
        if self.noise_std > 0:
            v = v + self._rng.normal(0.0, self.noise_std, size=v.shape)
        return v

    def shapley_values(self) -> np.ndarray:
        """Exact Shapley values (n,) of the noise-free game (enumeration unless a subclass has a closed form)."""
        return self._enumerate("shapley")

    def banzhaf_values(self) -> np.ndarray:
        """Exact Banzhaf values (n,) of the noise-free game (enumeration unless a subclass has a closed form)."""
        return self._enumerate("banzhaf")

    def _enumerate(self, index: str) -> np.ndarray:
        if self.n > MAX_ENUMERATION_PLAYERS:
            raise NotImplementedError(f"{type(self).__name__} has no closed-form {index} values for n > 20")
        return exact_values(self.value, self.n, index)


class AdditivePairwiseGame(Game):
    """v(S) = sum_{i in S} a_i + sum_{i<j in S} B_ij (B symmetric, zero diagonal): phi = a + B 1 / 2 (both indices)."""

    def __init__(self, a: np.ndarray, B: np.ndarray, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(len(a), noise_std, seed)
        B = np.asarray(B, dtype=float)
        if B.shape != (self.n, self.n) or not np.allclose(B, B.T) or np.any(np.diag(B) != 0):
            raise ValueError("B must be a symmetric (n, n) matrix with a zero diagonal")
        self.a, self.B = np.asarray(a, dtype=float), B

    def value(self, masks: np.ndarray) -> np.ndarray:
        X = masks.astype(float)
        return X @ self.a + 0.5 * np.einsum("mi,ij,mj->m", X, self.B, X)

    def shapley_values(self) -> np.ndarray:
        return self.a + self.B.sum(axis=1) / 2

    banzhaf_values = shapley_values


class AirportGame(Game):
    """v(S) = max_{i in S} c_i (0 for the empty coalition); Littlechild-Owen closed form for Shapley:
    phi_(k) = sum_{j<=k} (c_(j) - c_(j-1)) / (n - j + 1) over costs sorted increasingly; Banzhaf: the segment
    c_(j) - c_(j-1) is paid by (k) when the n - j others of rank >= j are all absent, weight 2^-(n-j)."""

    def __init__(self, costs: np.ndarray, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(len(costs), noise_std, seed)
        self.costs = np.asarray(costs, dtype=float)

    def value(self, masks: np.ndarray) -> np.ndarray:
        return np.max(np.where(masks, self.costs, 0.0), axis=1, initial=0.0)

    def _segments(self, weight: np.ndarray) -> np.ndarray:
        """Values (n,) when rank k pays weight[j] of every segment c_(j) - c_(j-1), j <= k (0-based ranks)."""
        order = np.argsort(self.costs)
        c = np.concatenate([[0.0], self.costs[order]])
        values = np.empty(self.n)
        values[order] = np.cumsum(np.diff(c) * weight)
        return values

    def shapley_values(self) -> np.ndarray:
        return self._segments(1.0 / (self.n - np.arange(self.n)))

    def banzhaf_values(self) -> np.ndarray:
        return self._segments(2.0 ** -(self.n - 1.0 - np.arange(self.n)))


def _log_comb(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """log C(n, k) elementwise (-inf outside 0 <= k <= n)."""
    n, k = np.broadcast_arrays(np.asarray(n, float), np.asarray(k, float))
    ok = (k >= 0) & (k <= n)
    out = np.full(n.shape, -np.inf)
    out[ok] = [lgamma(a + 1) - lgamma(b + 1) - lgamma(a - b + 1) for a, b in zip(n[ok], k[ok], strict=True)]
    return out


def _size_weights(n: int, index: str) -> np.ndarray:
    """Weight (n,) of one coalition S of size k = 0..n-1 not containing i: Shapley 1/(n C(n-1,k)), Banzhaf 2^-(n-1)."""
    if index == "banzhaf":
        return np.full(n, 2.0 ** -(n - 1))
    return np.exp(-_log_comb(n - 1, np.arange(n))) / n


class VotingGame(Game):
    """Weighted voting: v(S) = 1 if sum_{i in S} w_i >= quota else 0, integer weights.

    Closed form by dynamic programming over (size, weight) of the other players' coalitions, once per distinct
    weight (players with equal weights are symmetric): pseudo-polynomial, fine for n = 258.
    """

    def __init__(self, weights: np.ndarray, quota: int, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(len(weights), noise_std, seed)
        self.weights = np.asarray(weights, dtype=int)
        if (self.weights < 1).any() or not 0 < quota <= self.weights.sum():
            raise ValueError("weights must be positive ints and 0 < quota <= sum(weights)")
        self.quota = int(quota)

    def value(self, masks: np.ndarray) -> np.ndarray:
        return (masks.astype(int) @ self.weights >= self.quota).astype(float)

    def _swing_values(self, index: str) -> np.ndarray:
        values = np.empty(self.n)
        for w in np.unique(self.weights):
            i = int(np.flatnonzero(self.weights == w)[0])
            dp = np.zeros((self.n, self.quota))  # dp[k, t]: coalitions of others with k players, weight t < quota
            dp[0, 0] = 1.0
            for wj in np.delete(self.weights, i):
                if wj < self.quota:
                    dp[1:, wj:] += dp[:-1, : self.quota - wj].copy()
            swings = dp[:, max(self.quota - w, 0) :].sum(axis=1)  # (n,): by size k of the coalition joined
            values[self.weights == w] = swings @ _size_weights(self.n, index)
        return values

    def shapley_values(self) -> np.ndarray:
        return self._swing_values("shapley")

    def banzhaf_values(self) -> np.ndarray:
        return self._swing_values("banzhaf")


class GloveGame(Game):
    """Glove market: players 0..n_left-1 hold left gloves, the rest right ones; v(S) = min(#left, #right) in S."""

    def __init__(self, n_left: int, n_right: int, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(n_left + n_right, noise_std, seed)
        self.n_left, self.n_right = n_left, n_right

    def value(self, masks: np.ndarray) -> np.ndarray:
        return np.minimum(masks[:, : self.n_left].sum(axis=1), masks[:, self.n_left :].sum(axis=1)).astype(float)

    def _side_value(self, same: int, other: int, index: str) -> float:
        """Value of a player with `same` - 1 same-side and `other` opposite-side partners: it adds a pair iff the
        coalition it joins has more opposite-side (b) than same-side (a) gloves."""
        a, b = np.meshgrid(np.arange(same), np.arange(other + 1), indexing="ij")
        log_count = _log_comb(same - 1, a) + _log_comb(other, b)
        weight = _size_weights(self.n, index)[a + b]
        return float(np.sum(np.exp(log_count) * weight * (b > a)))

    def _values(self, index: str) -> np.ndarray:
        left = self._side_value(self.n_left, self.n_right, index)
        right = self._side_value(self.n_right, self.n_left, index)
        return np.where(np.arange(self.n) < self.n_left, left, right)

    def shapley_values(self) -> np.ndarray:
        return self._values("shapley")

    def banzhaf_values(self) -> np.ndarray:
        return self._values("banzhaf")


class MarketGame(Game):
    """A data market: v(S) = v0 + sum_c A_c (1 - exp(-sum_g w_cg [S meets group g])) + b . x_S.

    Value saturates in the amount of useful data (rates w_c (n_groups,) per component c, amplitudes A_c);
    contributors in one group are redundant copies (the group counts once); b (n,) is an additive residue
    (negative for harmful contributors). Exact Shapley and Banzhaf values for any n by `saturating_values`
    (1-D Gauss-Legendre quadrature, exact for these polynomials), plus b.
    """

    def __init__(
        self,
        amplitudes: np.ndarray,
        rates: np.ndarray,
        group: np.ndarray,
        b: np.ndarray,
        noise_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(len(b), noise_std, seed)
        self.amplitudes = np.asarray(amplitudes, dtype=float)
        self.rates = np.atleast_2d(np.asarray(rates, dtype=float))  # (components, n_groups)
        self.group = np.asarray(group, dtype=int)
        self.b = np.asarray(b, dtype=float)
        if self.rates.shape[0] != self.amplitudes.size or self.group.shape != (self.n,) or self.group.min() < 0:
            raise ValueError("need one rate row per amplitude and one group label in 0..n_groups-1 per contributor")
        self._cover = np.eye(self.rates.shape[1], dtype=float)[self.group]  # (n, n_groups) membership

    def value(self, masks: np.ndarray) -> np.ndarray:
        covered = ((masks.astype(float) @ self._cover) > 0).astype(float)
        return (self.amplitudes * -np.expm1(-covered @ self.rates.T)).sum(axis=1) + masks.astype(float) @ self.b

    def _values(self, index: str) -> np.ndarray:
        parts = [saturating_values(a, w, self.group, index) for a, w in zip(self.amplitudes, self.rates, strict=True)]
        return np.sum(parts, axis=0) + self.b

    def shapley_values(self) -> np.ndarray:
        return self._values("shapley")

    def banzhaf_values(self) -> np.ndarray:
        return self._values("banzhaf")


def _market(n: int, rng: np.random.Generator, copies: float, mix: bool) -> tuple:
    """Digits-shaped market parameters (amplitudes, rates, group, b).

    At n = 16 a typical contributor alone earns ~74% of the saturating amplitude and ~3 contributors saturate it;
    rates scale like 16/n, so the same fraction of the contributors saturates at any n. About n/8 contributors
    are harmful (no useful data, b < 0); a `copies` share hold a copy of another contributor's data; the rest of b
    is a small residue. mix adds a slow component (a quarter of the amplitude, saturating over all n).
    """
    n_copies = round(copies * n)
    originals = n - n_copies
    group = np.concatenate([np.arange(originals), rng.integers(0, originals, n_copies)])[rng.permutation(n)]
    rates = 1.35 * (16.0 / n) * np.exp(rng.uniform(np.log(0.5), np.log(2.0), originals))
    harmful = rng.choice(n, size=max(1, n // 8), replace=False)
    rates[np.unique(group[harmful])] = 0.0
    b = rng.normal(0.0, 0.01 * 16.0 / n, n)
    b[harmful] = -rng.uniform(0.03, 0.1, harmful.size) * (16.0 / n)
    if not mix:
        return np.array([1.0]), rates, group, b
    slow = rates * (1.5 / rates.sum())  # reaches 1 - exp(-1.5) = 78% of its amplitude with everyone in
    return np.array([0.75, 0.25 / -np.expm1(-1.5)]), np.vstack([rates, slow]), group, b


def _additive(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.0, 1.0, n), np.zeros((n, n))


def _pairwise(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Additive part plus dense pairwise interactions strong enough that an additive fit explains little."""
    B = np.triu(rng.normal(0.0, 4.0 / np.sqrt(n), (n, n)), 1)
    return rng.uniform(0.0, 1.0, n), B + B.T


def make_game(name: str, n: int, seed: int, noise: float = 0.0) -> Game:
    """A test game by name (see GAMES) with n players; noise is the per-evaluation noise std relative to the RMS
    of the exact Shapley values (noise=0.5: each evaluation is off by about half a typical value)."""
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; choose one of {sorted(GAMES)}")
    noise_std = 0.0
    if noise:
        scale = float(np.sqrt(np.mean(GAMES[name](n, np.random.default_rng(seed), 0.0, 0).shapley_values() ** 2)))
        noise_std = noise * scale
    return GAMES[name](n, np.random.default_rng(seed), noise_std, seed + 1)


GAMES: dict[str, Callable[[int, np.random.Generator, float, int], Game]] = {
    "additive": lambda n, rng, noise_std, seed: AdditivePairwiseGame(*_additive(n, rng), noise_std, seed),
    "pairwise": lambda n, rng, noise_std, seed: AdditivePairwiseGame(*_pairwise(n, rng), noise_std, seed),
    "airport": lambda n, rng, noise_std, seed: AirportGame(rng.uniform(0.0, 1.0, n), noise_std, seed),
    "voting": lambda n, rng, noise_std, seed: VotingGame(
        w := rng.integers(1, 11, n), int(np.ceil(0.5 * w.sum())), noise_std, seed
    ),
    "glove": lambda n, rng, noise_std, seed: GloveGame(n // 3, n - n // 3, noise_std, seed),
    "market": lambda n, rng, noise_std, seed: MarketGame(*_market(n, rng, 0.0, False), noise_std, seed),
    "market-copies": lambda n, rng, noise_std, seed: MarketGame(*_market(n, rng, 0.25, False), noise_std, seed),
    "market-mix": lambda n, rng, noise_std, seed: MarketGame(*_market(n, rng, 0.25, True), noise_std, seed),
}
MARKET_GAMES = ("market", "market-copies", "market-mix")  # the shape of the digits sFT game (see _market)
