"""Games shaped like the paper's properties, each with a correlated proxy game: the benchmark of the control variate.

Each contributor holds data summarised by per-contributor quantities; v(S) is a property of the pooled data of S:

- "diversity": entropy of the mixed cluster distribution sum_i a_i p_i / sum_i a_i (a_i: amount, p_i: the
  contributor's distribution over G clusters, most of its mass on a few): the cluster-entropy property;
- "quality": a smooth mean of the top ~10% of the pooled per-image scores, tau log mean exp(score / tau) (each
  contributor: 8 scores around its own level): an aesthetic-p90-like property; low-quality data dilutes it;
- "fid": minus the squared distance between the mixed feature mean sum_i a_i mu_i / sum_i a_i and a reference mean,
  plus a spread term: an FID-like distance of mixed feature means;
- "coverage": coverage of M modes, 1 - prod_{i in S} (1 - c_ij) per mode, with a bonus for pairs of covered modes
  (interactions): a recall-like property.

The empty coalition has the property of no data (entropy 0, no quality, the reference distance of a zero mean, no
coverage). `proxy(scale)` is the same shape on perturbed per-contributor quantities (the property of S's real
images instead of S's trained model: correlated, not equal). Values: exact by enumeration for n <= 16;
otherwise `reference_values` estimates them by antithetic permutations around a fitted saturating surrogate
(control.proxy_values), with their Monte Carlo std, to be cached by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .control import proxy_values
from .games import Game
from .samplers import MAX_ENUMERATION_PLAYERS, sample_leverage
from .surrogates import fit_saturating

__all__ = ["PROPERTY_GAMES", "PropertyGame", "make_property_game", "reference_values"]

ENUMERATE_UP_TO = 16  # exact values by enumeration up to this n (2^16 evaluations)


class PropertyGame(Game):
    """A property of the pooled data of S, from per-contributor quantities `params` (perturbed by `proxy`)."""

    def __init__(self, shape: str, params: dict[str, np.ndarray], noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(len(params["a"]), noise_std, seed)
        self.shape, self.params = shape, params

    def value(self, masks: np.ndarray) -> np.ndarray:
        return SHAPES[self.shape](masks.astype(float), self.params)

    def proxy(self, scale: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        """The same property on per-contributor quantities perturbed by `scale` (relative, seeded): a proxy."""
        rng = np.random.default_rng(seed)
        perturbed = {key: _perturb(key, value, scale, rng) for key, value in self.params.items()}
        shape = SHAPES[self.shape]
        return lambda masks: shape(np.asarray(masks, dtype=float), perturbed)

    def shapley_values(self) -> np.ndarray:
        if self.n > ENUMERATE_UP_TO:
            raise NotImplementedError("no closed form: use reference_values (permutations, cache the result)")
        return super().shapley_values()

    def banzhaf_values(self) -> np.ndarray:
        if self.n > ENUMERATE_UP_TO:
            raise NotImplementedError("no closed form: use reference_values (permutations, cache the result)")
        return super().banzhaf_values()


def _perturb(key: str, value: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A quantity with relative log-normal noise (positive ones), additive noise (means, scores) or kept (targets)."""
    if key in ("target", "bonus"):
        return value
    if key in ("a", "p", "c"):
        noisy = value * np.exp(scale * rng.standard_normal(value.shape))
        if key == "p":
            return noisy / noisy.sum(axis=-1, keepdims=True)
        if key == "c":  # coverage also gained or lost at random: which modes a proxy sees covered differs
            return np.clip(noisy + 0.3 * scale * rng.random(value.shape) * (rng.random(value.shape) < 0.2), 0, 0.999)
        return noisy
    return value + scale * np.std(value) * rng.standard_normal(value.shape)


def _diversity(X: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    mass = X @ (params["a"][:, None] * params["p"])  # (m, G)
    total = mass.sum(axis=1, keepdims=True)
    mix = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    return -np.sum(np.where(mix > 0, mix * np.log(np.where(mix > 0, mix, 1.0)), 0.0), axis=1)


def _quality(X: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """tau log(mean over the pooled images of exp(score / tau)): a smooth mean of the top scores (tau = 0.3 puts
    most of the weight on the top ~10% of these scores), O(m n) from per-contributor sums."""
    tau = 0.3
    scores = params["scores"]  # (n, k)
    top = scores.max()
    pooled = X @ np.exp((scores - top) / tau).sum(axis=1)  # sum over S's images, shifted for stability
    count = X @ np.full(len(scores), float(scores.shape[1]))
    ratio = np.divide(pooled, count, out=np.ones_like(pooled), where=count > 0)
    return np.where(count > 0, top + tau * np.log(ratio), 0.0)


def _fid(X: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    weight = X * params["a"]
    total = weight.sum(axis=1, keepdims=True)
    mean = np.divide(weight @ params["mu"], total, out=np.zeros((len(X), params["mu"].shape[1])), where=total > 0)
    spread = np.divide(weight @ params["var"], total[:, 0], out=np.zeros(len(X)), where=total[:, 0] > 0)
    return -np.sum((mean - params["target"]) ** 2, axis=1) - (np.sqrt(spread) - 1.0) ** 2


def _coverage(X: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    covered = -np.expm1(X @ np.log1p(-params["c"]))  # (m, M): 1 - prod (1 - c_ij)
    return covered.sum(axis=1) + np.einsum("mj,jk,mk->m", covered, params["bonus"], covered)


def _draw(shape: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-contributor quantities of one shape; about n/8 contributors hold poor data."""
    a = np.exp(rng.normal(0.0, 0.5, n))
    poor = rng.choice(n, size=max(1, n // 8), replace=False)
    if shape == "diversity":
        p = rng.dirichlet(np.full(12, 0.3), size=n)
        p[poor] = rng.dirichlet(np.full(12, 0.05), size=poor.size)  # one cluster only
        return {"a": a, "p": p}
    if shape == "quality":
        level = rng.normal(0.0, 1.0, n)
        level[poor] -= 2.0
        return {"a": a, "scores": level[:, None] + 0.5 * rng.standard_normal((n, 8))}
    if shape == "fid":
        mu = rng.normal(0.0, 1.0, (n, 8))
        mu[poor] += 3.0  # off-distribution data pulls the mean away
        return {"a": a, "mu": mu, "var": np.exp(rng.normal(0.0, 0.3, n)), "target": np.zeros(8)}
    modes = 24
    c = np.where(rng.random((n, modes)) < 6.0 / n, rng.uniform(0.3, 0.9, (n, modes)), rng.uniform(0, 0.02, (n, modes)))
    bonus = np.triu(rng.normal(0.0, 0.1, (modes, modes)), 1)
    return {"a": a, "c": c, "bonus": bonus + bonus.T}


SHAPES: dict[str, Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]] = {
    "diversity": _diversity,
    "quality": _quality,
    "fid": _fid,
    "coverage": _coverage,
}
PROPERTY_GAMES = tuple(SHAPES)


def make_property_game(shape: str, n: int, seed: int, noise: float = 0.0, scale: float | None = None) -> PropertyGame:
    """A property-shaped game; noise: per-evaluation noise std relative to `scale` (the RMS of its values, which
    the caller passes: computing them is costly at large n)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown property game {shape!r}; choose one of {sorted(SHAPES)}")
    params = _draw(shape, n, np.random.default_rng(seed))
    if noise and scale is None:
        raise ValueError("noise > 0 needs scale: the RMS of the game's Shapley values (from reference_values)")
    return PropertyGame(shape, params, noise * (scale or 0.0), seed + 1)


def reference_values(
    game: Callable[[np.ndarray], np.ndarray],
    n: int,
    budget: int,
    seed: int = 0,
    indices: tuple[str, ...] = ("shapley", "banzhaf"),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Values of a noise-free game per index (values, Monte Carlo std): exact by enumeration (both indices) for
    n <= ENUMERATE_UP_TO, else about `budget` evaluations of antithetic permutations (Shapley) and flips (Banzhaf)
    around a saturating surrogate fitted to 20 n leverage-design coalitions."""
    if n <= min(ENUMERATE_UP_TO, MAX_ENUMERATION_PLAYERS):
        result = proxy_values(game, n, seed=seed, budget=2**n)
        return result.values, result.std
    masks = sample_leverage(n, 20 * n, seed).masks
    ends = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    fit = fit_saturating(masks, game(masks), float(ends[0]), float(ends[1]), penalties=(1e-3,))[0]
    result = proxy_values(game, n, seed=seed, budget=budget, control=(fit.predict, fit.values), indices=indices)
    return result.values, result.std
