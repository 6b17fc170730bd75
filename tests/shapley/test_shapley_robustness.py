"""The default estimator never raises on finite utilities: seeded loops over random games, designs and scales,
including the near-saturated, near-constant utilities of the fast settings that once made a fitted rate -1e-17."""

import warnings
import zlib

import numpy as np
import pytest

from shapflow.shapley import DEFAULT_METHOD, SAMPLERS, estimate, make_game
from shapflow.shapley.adjusted import estimate_indices
from shapflow.shapley.games import GAMES

DESIGNS = ("leverage", "kernel", "kernel-paired", "uniform", "permutation", "alpha")


def _utilities(kind: str, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """(utilities (m,), v0, v1) of a random game of one of the shapes that stress a fit."""
    m, n = masks.shape
    size = masks.sum(axis=1)
    if kind == "constant":
        return np.full(m, 2.5), 2.5, 2.5
    if kind == "saturated":  # fast settings: flat from one contributor on, tiny noise, v0 far below
        return -3.0 + 1e-9 * rng.standard_normal(m), -9.0, -3.0
    if kind == "round-off":  # differences at the last bits of a double
        return 1.0 + np.spacing(1.0) * rng.integers(-4, 5, m), 1.0, 1.0 + 4 * np.spacing(1.0)
    if kind == "huge":
        return 1e9 * (rng.standard_normal(m) + size), 0.0, 1e9 * n
    if kind == "tiny":
        return 1e-12 * (rng.standard_normal(m) + size), 0.0, 1e-12 * n
    if kind == "step":  # a cliff at one size
        return (size >= rng.integers(1, n)).astype(float), 0.0, 1.0
    if kind == "decreasing":  # more data is worse: rates of a saturating fit want to be negative
        return -np.log1p(size) + 0.05 * rng.standard_normal(m), 0.0, -np.log1p(n)
    game = make_game(kind, n, seed=int(rng.integers(1000)), noise=float(rng.choice([0.0, 0.3])))
    v0, v1 = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    return game(masks), float(v0), float(v1)


KINDS = ("constant", "saturated", "round-off", "huge", "tiny", "step", "decreasing", *GAMES)


@pytest.mark.parametrize("kind", KINDS)
def test_default_estimator_gives_finite_efficient_values_on_any_finite_game(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    for trial in range(6):
        n = int(rng.integers(3, 19))
        design = DESIGNS[trial % len(DESIGNS)]
        budget = int(rng.integers(n + 2, 8 * n))
        masks = SAMPLERS[design](n, budget, int(rng.integers(10**6))).masks
        if len(masks) < n:
            continue
        utilities, v0, v1 = _utilities(kind, masks, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fallbacks say so; here only their values matter
            results = estimate_indices(masks, utilities, v0=v0, v1=v1, seed=trial)
            default = estimate(masks, utilities, DEFAULT_METHOD, v0=v0, v1=v1, seed=trial)
        for index, result in results.items():
            assert np.isfinite(result.values).all() and np.isfinite(result.std).all(), (kind, n, design, index)
            assert (result.std >= 0).all()
        scale = max(abs(v1 - v0), abs(v0), abs(v1), 1e-300)
        assert abs(default.values.sum() - (v1 - v0)) <= 1e-6 * scale, (kind, n, design)


def test_a_surrogate_that_fails_numerically_falls_back_to_the_plain_fit_and_says_so(monkeypatch):
    from shapflow.shapley import surrogates

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setitem(surrogates.SURROGATES, "saturating", broken)
    game = make_game("market", 8, seed=0)
    masks = SAMPLERS["leverage"](8, 40, 0).masks
    v0, v1 = game(np.array([np.zeros(8, bool), np.ones(8, bool)]))
    with pytest.warns(UserWarning, match="could not be fitted"):
        result = estimate(masks, game(masks), DEFAULT_METHOD, v0=v0, v1=v1)
    assert result.method == "surrogate-shapley:fallback-leverage"
    assert np.isclose(result.values.sum(), v1 - v0)


def test_fitted_rates_are_never_negative_even_where_the_optimizer_rounds_below_the_bound(monkeypatch):
    from shapflow.shapley import surrogates

    real = surrogates.minimize

    def rounding(*args, **kwargs):  # what L-BFGS-B returned on the fast-settings run: a bound missed by 1e-17
        result = real(*args, **kwargs)
        result.x[0] = -1.39e-17
        return result

    monkeypatch.setattr(surrogates, "minimize", rounding)
    game = make_game("market-copies", 10, seed=0)
    masks = SAMPLERS["leverage"](10, 60, 0).masks
    v0, v1 = game(np.array([np.zeros(10, bool), np.ones(10, bool)]))
    fits = surrogates.fit_saturating(masks, game(masks), v0, v1)
    assert fits and all(np.isfinite(f.values["shapley"]).all() for f in fits)


def _proxy(kind: str, n: int, rng: np.random.Generator):
    """A deterministic proxy of one of the shapes that stress the control variate."""
    w = rng.normal(size=n)
    if kind == "random":
        return lambda masks: masks @ w + np.sin(masks @ np.arange(n))
    if kind == "huge":
        return lambda masks: 1e9 * (masks @ w)
    if kind == "step":
        return lambda masks: (masks.sum(axis=1) >= n // 2) * 1.0
    return lambda masks: np.log1p(masks @ np.abs(w))  # "saturating"


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_path_gives_finite_efficient_values_on_any_finite_game(kind):
    rng = np.random.default_rng(zlib.crc32(f"proxy-{kind}".encode()))
    for trial in range(4):
        n = int(rng.integers(3, 19))
        masks = SAMPLERS[DESIGNS[trial % len(DESIGNS)]](n, int(rng.integers(n + 2, 8 * n)), trial).masks
        if len(masks) < n:
            continue
        utilities, v0, v1 = _utilities(kind, masks, rng)
        proxy = _proxy(("random", "huge", "step", "saturating")[trial], n, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = estimate_indices(masks, utilities, v0=v0, v1=v1, seed=trial, proxy=proxy, proxy_budget=2000)
        for index, result in results.items():
            assert np.isfinite(result.values).all() and np.isfinite(result.std).all(), (kind, n, index)
        scale = max(abs(v1 - v0), abs(v0), abs(v1), 1e-300)
        assert abs(results["shapley"].values.sum() - (v1 - v0)) <= 1e-6 * scale, (kind, n)
