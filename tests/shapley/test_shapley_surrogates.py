"""Surrogate-assisted estimators: exact surrogate values, exact recovery in the model class, consistency outside it,
cross-fit determinism, one fit for both indices, fallbacks and clear errors."""

import warnings

import numpy as np
import pytest

from shapflow.shapley import SAMPLERS, approximate, estimate, make_game
from shapflow.shapley.adjusted import crossfit, estimate_indices
from shapflow.shapley.exact import exact_values
from shapflow.shapley.saturating import saturating_values
from shapflow.shapley.surrogates import fit_saturating, fit_trees


def _rel_error(values, truth):
    return np.linalg.norm(values - truth) / np.linalg.norm(truth)


def _logged(name, n, budget, seed, noise=0.0, **sampler_options):
    """(masks, utilities, v0, v1, game) of a game evaluated on the leverage design."""
    game = make_game(name, n, seed=0, noise=noise)
    masks = SAMPLERS["leverage"](n, budget, seed, **sampler_options).masks
    v0, v1 = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    return masks, game(masks), v0, v1, game


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
def test_saturating_values_match_enumeration_with_copies(index):
    rng = np.random.default_rng(0)
    n, groups = 9, 5
    group, w = rng.integers(0, groups, n), rng.uniform(0.0, 2.0, groups)
    cover = np.eye(groups)[group]

    def game(masks):
        return 1.7 * -np.expm1(-(((masks @ cover) > 0) * 1.0) @ w)

    assert np.allclose(saturating_values(1.7, w, group, index), exact_values(game, n, index), atol=1e-13)


def test_surrogate_values_are_the_exact_values_of_the_fitted_functions():
    n = 7
    masks, y, v0, v1, _ = _logged("market-mix", n, 60, seed=0, noise=0.3)
    for surrogate in [*fit_saturating(masks, y, v0, v1), *fit_trees(masks, y, v0, v1, seed=0)]:
        for index in ("shapley", "banzhaf"):
            exact = exact_values(surrogate.predict, n, index)
            assert np.allclose(surrogate.values[index], exact, atol=1e-10), (surrogate.name, index)


@pytest.mark.parametrize("method", ["surrogate-shapley", "surrogate-banzhaf"])
def test_exact_recovery_in_the_model_class(method):
    n = 12
    game = make_game("market", n, seed=1)  # v0 + A (1 - exp(-w.x)) + b.x: the saturating surrogate's class
    result = approximate(game, n, 10 * n, method, seed=0)
    truth = game.banzhaf_values() if method.endswith("banzhaf") else game.shapley_values()
    assert result.method == method  # no fallback: the surrogate is the better estimate here
    assert np.abs(result.values - truth).max() < 1e-3 * np.abs(truth).max()


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
def test_residual_correction_is_consistent_outside_the_model_class(index):
    """Voting (a threshold) is far from any saturating curve: with the safeguard off, the surrogate part is wrong
    and only the residual correction can fix it; its error must fall with the budget towards 0 at enumeration (not
    exactly 0: the cross-fitted fold surrogates still differ there; with the safeguard on, enumeration is exact)."""
    n = 9
    game = make_game("voting", n, seed=0)
    truth = game.banzhaf_values() if index == "banzhaf" else game.shapley_values()
    errors = []
    for budget in (4 * n, 30 * n, 2**n):
        runs = [approximate(game, n, budget, f"surrogate-{index}", seed=s, safeguard=False) for s in range(3)]
        errors.append(np.mean([_rel_error(r.values, truth) for r in runs]))
    assert errors[1] < 0.7 * errors[0]
    assert errors[2] < 0.1 * errors[0]


def test_crossfit_is_deterministic_per_seed_and_seeds_agree_within_error_bars():
    n = 16
    masks, y, v0, v1, _ = _logged("market", n, 158, seed=0, noise=0.5)
    first, again = (estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, seed=3) for _ in range(2))
    assert np.array_equal(first.values, again.values) and np.array_equal(first.std, again.std)
    other = estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, seed=4)
    assert not np.array_equal(first.values, other.values)
    gap = np.abs(first.values - other.values)
    assert np.mean(gap <= 1.96 * np.sqrt(first.std**2 + other.std**2)) >= 0.9


def test_indices_come_from_one_fit_and_match_the_methods():
    n = 10
    masks, y, v0, v1, _ = _logged("market-copies", n, 80, seed=1, noise=0.2)
    both = estimate_indices(masks, y, v0=v0, v1=v1, seed=2)
    assert set(both) == {"shapley", "banzhaf"}
    for index, result in both.items():
        alone = estimate(masks, y, f"surrogate-{index}", v0=v0, v1=v1, seed=2)
        assert np.array_equal(alone.values, result.values) and alone.method == result.method
    assert np.isclose(both["shapley"].values.sum(), v1 - v0, atol=1e-10)


def test_estimates_are_better_than_leverage_on_a_market_and_cover():
    n = 16
    errors, covered = {"leverage": [], "surrogate-shapley": []}, []
    for seed in range(4):
        masks, y, v0, v1, game = _logged("market", n, 158, seed=seed, noise=0.5)
        truth = game.shapley_values()
        for method, errs in errors.items():
            result = estimate(masks, y, method, v0=v0, v1=v1)
            errs.append(_rel_error(result.values, truth))
            if method != "leverage":
                covered.append(np.abs(result.values - truth) <= 1.96 * result.std)
    assert np.mean(errors["surrogate-shapley"]) < 0.6 * np.mean(errors["leverage"])
    assert np.mean(covered) >= 0.85


def test_any_design_is_accepted():
    n = 8
    game = make_game("market", n, seed=0, noise=0.2)
    v0, v1 = game.value(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    for design in ("leverage", "kernel", "kernel-paired", "uniform", "permutation"):
        masks = SAMPLERS[design](n, 84, seed=0).masks
        for method in ("surrogate-shapley", "surrogate-banzhaf"):
            result = estimate(masks, game(masks), method, v0=v0, v1=v1)
            assert np.isfinite(result.values).all() and np.isfinite(result.std).all(), (design, method)


def test_fallbacks_and_bad_input():
    n = 8
    masks, y, v0, v1, _ = _logged("market", n, 40, seed=0)
    with pytest.raises(ValueError, match="at least n=8 coalitions"):
        estimate(masks[:6], y[:6], "surrogate-shapley", v0=v0, v1=v1)
    with pytest.raises(ValueError, match="unknown surrogate"):
        estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, surrogate="forest")
    with pytest.raises(ValueError, match="folds"):
        estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, folds=1)
    with pytest.raises(TypeError, match="seed"):
        estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, seed=None)
    with pytest.raises(TypeError, match="unknown option"):
        estimate(masks, y, "surrogate-shapley", v0=v0, v1=v1, penalty=0.1)
    constant = estimate(masks, np.full(len(y), 2.0), "surrogate-shapley", v0=2.0, v1=2.0)
    assert np.allclose(constant.values, 0.0, atol=1e-12)
    symmetric = estimate(masks, np.full(len(y), 1.0), "surrogate-shapley", v0=0.0, v1=1.0)
    assert np.allclose(symmetric.values, 1.0 / n, atol=1e-6)
    half = SAMPLERS["alpha"](n, 30, seed=0).masks  # one coalition size: no saturation curve is identified
    with pytest.warns(UserWarning, match="one size"):
        fallback = estimate(half, np.ones(len(half)), "surrogate-shapley", v0=v0, v1=v1)
    assert fallback.method == "surrogate-shapley:fallback-leverage"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ordinary path warns about nothing
        estimate(masks, y, "surrogate-banzhaf", v0=v0, v1=v1)


def test_folds_keep_pairs_and_repeats_together():
    n = 8
    masks, y, v0, v1, _ = _logged("glove", n, 40, seed=0)
    repeated = np.concatenate([masks, masks[:4]])
    fit = crossfit(repeated, np.concatenate([y, y[:4]]), v0, v1, seed=0, folds=5, surrogate="saturating")
    # a repeat shares its fold, hence its out-of-fold surrogate and residual, with the original row
    assert np.allclose(fit.residuals[-4:], fit.residuals[:4])
    assert fit.fold_values["shapley"].shape == (5, n) and fit.ends.shape == (5, 2)


def test_fewer_pairs_than_folds_leaves_one_pair_out():
    n = 8
    masks, y, v0, v1, _ = _logged("glove", n, 40, seed=0)
    fit = crossfit(masks[:6], y[:6], v0, v1, seed=0, folds=5, surrogate="saturating")  # 3 pairs
    assert fit.fold_values["shapley"].shape == (3, n)
    with pytest.raises(ValueError, match="2 distinct coalition pairs"):
        crossfit(masks[:2], y[:2], v0, v1, seed=0, folds=5, surrogate="saturating")


def test_residuals_are_out_of_fold():
    """On pure noise, trees memorise their training rows: only out-of-fold residuals keep the noise's variance, so a
    surrogate that overfits cannot fake a small residual game."""
    n = 10
    masks = SAMPLERS["leverage"](n, 120, seed=0).masks
    noise = np.random.default_rng(0).normal(0.0, 1.0, len(masks))
    fit = crossfit(masks, noise, 0.0, 0.0, seed=0, folds=5, surrogate="trees")
    assert np.mean(fit.residuals**2) > 0.8
