"""The proxy as control variate: exact with q = v, unbiased and nearly free with a useless q, efficient, better with a
correlated q, its values by permutations agree with enumeration, bad proxies are refused before any fitting."""

import warnings

import numpy as np
import pytest

from shapflow.shapley import SAMPLERS, approximate, estimate, make_game, proxy_report
from shapflow.shapley.adjusted import crossfit, crossfit_values, estimate_indices
from shapflow.shapley.control import evaluate_proxy, proxy_crossfits, proxy_values
from shapflow.shapley.exact import exact_values
from shapflow.shapley.property_games import PropertyGame, make_property_game

ENDS = np.array([[False], [True]])


def _logged(name, n, budget, seed, noise=0.0):
    """(masks, utilities, v0, v1, noise-free game) on the leverage design."""
    game = make_game(name, n, seed=0, noise=noise)
    masks = SAMPLERS["leverage"](n, budget, seed).masks
    v0, v1 = game(np.repeat(ENDS, n, axis=1))
    return masks, game(masks), float(v0), float(v1), make_game(name, n, seed=0)


def _rel_error(values, truth):
    return np.linalg.norm(values - truth) / np.linalg.norm(truth)


def _random_proxy(n, seed):
    """A deterministic game unrelated to any test game: random weights and a random interaction."""
    rng = np.random.default_rng(1000 + seed)
    w, pairs = rng.normal(size=n), rng.normal(size=(n, n)) / n
    return lambda masks: masks @ w + np.einsum("mi,ij,mj->m", masks * 1.0, pairs, masks * 1.0)


def _misjudged(game, shift):
    """The game's shape with misjudged values: correlated with it, not equal."""
    return lambda masks: game.value(masks) + masks @ shift


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
def test_the_game_itself_as_proxy_gives_exact_values(index):
    masks, y, v0, v1, game = _logged("market-mix", 10, 40, seed=1)
    result = estimate_indices(masks, y, v0=v0, v1=v1, proxy=game.value)[index]
    assert result.method == f"surrogate-{index}+proxy"
    assert np.allclose(result.values, exact_values(game.value, 10, index), atol=1e-9)
    assert np.all(result.std < 1e-8)


def test_efficiency_is_exact_with_a_proxy_of_permutation_values():
    n = 24  # 2^n > the proxy budget: phi(q) by permutation chains
    masks, y, v0, v1, game = _logged("market-copies", n, 4 * n, seed=0, noise=0.2)
    shift = np.random.default_rng(0).normal(0.0, 0.5 * np.std(game.shapley_values()), n)
    proxy = _misjudged(game, shift)
    result = estimate(masks, y, v0=v0, v1=v1, proxy=proxy, safeguard=False)
    assert result.method == "surrogate-shapley+proxy"
    assert result.values.sum() == pytest.approx(v1 - v0, abs=1e-9)
    assert np.isfinite(result.std).all() and (result.std > 0).all()


def test_a_useless_proxy_costs_at_most_a_few_percent():
    errors = {"none": [], "random": []}
    for seed in range(8):
        n = 12
        masks, y, v0, v1, game = _logged("market-mix", n, 4 * n, seed=seed, noise=0.3)
        truth = game.shapley_values()
        for name, proxy in (("none", None), ("random", _random_proxy(n, seed))):
            errors[name].append(_rel_error(estimate(masks, y, v0=v0, v1=v1, seed=seed, proxy=proxy).values, truth))
    assert np.mean(errors["random"]) <= 1.05 * np.mean(errors["none"])


def test_a_correlated_proxy_lowers_the_error_and_the_std():
    n, errors, stds = 16, {"none": [], "proxy": []}, {"none": [], "proxy": []}
    for seed in range(4):
        masks, y, v0, v1, game = _logged("market-mix", n, 5 * n, seed=seed, noise=0.25)
        truth = game.shapley_values()
        rng = np.random.default_rng(seed)
        shift = rng.normal(0.0, 0.5 * np.std(truth), n)  # the same shape, misjudged values: correlated, not equal
        for name, proxy in (("none", None), ("proxy", _misjudged(game, shift))):
            result = estimate(masks, y, v0=v0, v1=v1, seed=seed, proxy=proxy)
            errors[name].append(_rel_error(result.values, truth))
            stds[name].append(result.std.mean())
    assert np.mean(errors["proxy"]) < 0.9 * np.mean(errors["none"])
    assert np.mean(stds["proxy"]) < np.mean(stds["none"])


def test_approximate_passes_the_proxy_and_names_it():
    game = make_game("market", 12, seed=0, noise=0.1)
    proxy = make_game("market", 12, seed=0).value
    result = approximate(game, 12, 60, seed=0, proxy=proxy)
    assert result.method.endswith("+proxy")  # with the surrogate or, here as good, leverage on v - b q
    assert result.n_evaluations <= 60


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
def test_proxy_values_by_sampling_agree_with_enumeration_and_are_efficient(index):
    n = 13
    game = make_game("market-mix", n, seed=3)
    truth = exact_values(game.value, n, index)
    sampled = proxy_values(game.value, n, seed=0, budget=2**12)
    exact = proxy_values(game.value, n, seed=0, budget=2**13)
    assert np.allclose(exact.values[index], truth, atol=1e-12) and not exact.std[index].any()
    z = (sampled.values[index] - truth) / sampled.std[index]
    assert np.mean(np.abs(z) < 3) >= 0.9  # rare large marginals (copies) can hide from one player's std
    assert _rel_error(sampled.values[index], truth) < 0.2  # ~85 pairs of chains, no control
    if index == "shapley":
        assert sampled.values[index].sum() == pytest.approx(game.value(np.ones((1, n), bool))[0], abs=1e-9)


def test_a_control_surrogate_shrinks_the_monte_carlo_error_without_bias():
    n = 30
    game = make_game("market", n, seed=4)
    near = make_game("market", n, seed=4, noise=0.0)
    values = {index: near.shapley_values() if index == "shapley" else near.banzhaf_values()
              for index in ("shapley", "banzhaf")}
    plain = proxy_values(game.value, n, seed=0, budget=3000)
    controlled = proxy_values(game.value, n, seed=0, budget=3000, control=(near.value, values))
    assert np.allclose(controlled.values["shapley"], near.shapley_values(), atol=1e-12)  # the control is exact here
    assert controlled.std["shapley"].max() < 1e-12 < plain.std["shapley"].max()


def test_bad_proxies_are_refused_with_what_to_do():
    masks, y, v0, v1, _ = _logged("market", 8, 30, seed=0)
    with pytest.raises(ValueError, match="one float per mask row"):
        estimate(masks, y, v0=v0, v1=v1, proxy=lambda m: np.zeros(len(m) + 1))
    with pytest.raises(ValueError, match="NaN/inf"):
        estimate(masks, y, v0=v0, v1=v1, proxy=lambda m: np.where(m[:, 0], np.nan, 1.0) + m.sum(1))
    with pytest.raises(ValueError, match="NaN/inf"), np.errstate(divide="ignore"):
        estimate(masks, y, v0=v0, v1=v1, proxy=lambda m: np.log(m.sum(1) * 1.0))  # -inf on the empty coalition
    with pytest.raises(TypeError, match="callable"):
        estimate(masks, y, v0=v0, v1=v1, proxy=np.zeros(len(masks)))
    with pytest.warns(UserWarning, match="constant"):
        constant = estimate(masks, y, v0=v0, v1=v1, proxy=lambda m: np.full(len(m), 3.0))
    plain = estimate(masks, y, v0=v0, v1=v1)
    assert constant.method == plain.method and np.array_equal(constant.values, plain.values)


def test_proxy_report_on_the_game_itself_and_on_noise():
    masks, y, v0, v1, game = _logged("market-mix", 12, 60, seed=2)
    same = proxy_report(masks, y, game.value(masks), v0=v0, v1=v1, q0=v0, q1=v1)
    assert same["pearson"] == pytest.approx(1.0) and same["b"] == pytest.approx(1.0)
    assert same["variance_removed"] == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(size=len(y))
    useless = proxy_report(masks, y, noise, v0=v0, v1=v1, q0=0.0, q1=0.0)
    assert set(useless) >= {"pearson", "b", "variance_removed"} and useless["variance_removed"] < 0.2
    with pytest.raises(ValueError, match="one per row"):
        proxy_report(masks, y, noise[:-1], v0=v0, v1=v1, q0=0.0, q1=0.0)


def test_evaluate_proxy_batches_large_inputs():
    calls = []

    def proxy(masks):
        calls.append(len(masks))
        return masks.sum(axis=1) * 1.0

    masks = np.random.default_rng(0).random((10_000, 5)) < 0.5
    assert np.array_equal(evaluate_proxy(proxy, masks), masks.sum(axis=1))
    assert max(calls) <= 4096 and sum(calls) == 10_000


def test_single_size_masks_ignore_the_proxy_with_the_plain_fit():
    n = 8
    masks = SAMPLERS["alpha"](n, 40, 0).masks
    game = make_game("market", n, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate(masks, game(masks), v0=0.0, v1=float(game(np.ones((1, n), bool))[0]), proxy=game.value)
    assert result.method.startswith("surrogate-shapley:fallback")


def _property_rows(shape, n, budget, seed, noise=0.25):
    """(masks, utilities, v0, v1, exact values, proxy) of a noisy property-shaped game on the leverage design; the
    proxy is the same property on perturbed per-contributor quantities (Pearson ~0.8 with v)."""
    game = make_property_game(shape, n, seed=0)
    truth = game.shapley_values()
    noisy = PropertyGame(shape, game.params, noise * float(np.sqrt(np.mean(truth**2))), seed=1000 + seed)
    masks = SAMPLERS["leverage"](n, budget, seed).masks
    v0, v1 = noisy(np.repeat(ENDS, n, axis=1))
    return masks, noisy(masks), float(v0), float(v1), truth, game.proxy(1.0, seed=7)


def test_the_proxy_fit_without_a_surrogate_has_honest_intervals():
    """Leverage on v - b q, the candidate for games no surrogate fits: its ridge toward the equal split is its own
    bias (no surrogate jackknife counts it), so its intervals must carry it; without it 95% intervals covered ~0.7
    of the exact values here and the safeguard returned them."""
    n, hits = 16, []
    for shape in ("quality", "fid"):
        for seed in range(6):
            masks, y, v0, v1, truth, proxy = _property_rows(shape, n, 3 * n, seed)
            options = {"seed": seed, "folds": 5, "surrogate": "saturating"}
            plain = crossfit(masks, y, v0, v1, **options)
            direct = proxy_crossfits(masks, y, v0, v1, plain, proxy(masks), proxy, options, 2**12)[1]
            if direct is not None:
                values, variance = crossfit_values(masks, v0, v1, direct, "shapley")
                hits.append(np.abs(values - truth) <= 1.96 * np.sqrt(variance))
    assert len(hits) >= 6 and np.mean(hits) >= 0.85


def test_phi_q_is_computed_once_per_proxy_object():
    """Every estimate of a run (values, convergence curve, each batch of a target design) shares one phi(q): a
    second estimate on the same proxy only scores its own rows; a new proxy object pays for phi(q) again."""
    n = 24  # 2^n above the proxy budget: phi(q) by permutations
    masks, y, v0, v1, game = _logged("market-mix", n, 4 * n, seed=0, noise=0.1)
    calls = []

    class Counting:
        def __call__(self, batch):
            calls.append(len(batch))
            return game.value(batch)

    proxy = Counting()
    first = estimate(masks, y, v0=v0, v1=v1, proxy=proxy, proxy_budget=2**14)
    spent = sum(calls)
    second = estimate(masks, y, v0=v0, v1=v1, proxy=proxy, proxy_budget=2**14)
    assert first.method.endswith("+proxy") and np.array_equal(first.values, second.values)
    assert spent > 2**14 and sum(calls) - spent <= len(masks) + 2
    estimate(masks, y, v0=v0, v1=v1, proxy=Counting(), proxy_budget=2**14)
    assert sum(calls) - spent > 2**14
