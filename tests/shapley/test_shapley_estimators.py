"""One contract over every estimator: budget respected, exact on additive games, efficiency, exact at full
budget, convergence on non-additive games, honest std, duplicates unbiased, clear errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shapflow.shapley import (
    DEFAULT_METHOD,
    METHODS,
    SAMPLERS,
    approximate,
    convergence,
    default_sampler,
    estimate,
    make_game,
    min_budget,
)
from shapflow.shapley.exact import all_masks

SHAPLEY_REGRESSIONS = ["leverage", "kernelshap-paired", "kernelshap-paper"]
EFFICIENT = [*SHAPLEY_REGRESSIONS, "permutation", "exact-shapley", "surrogate-shapley"]
SAMPLED = [m for m in METHODS if not m.startswith("exact")]


def _rel_error(values, truth):
    return np.linalg.norm(values - truth) / np.linalg.norm(truth)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_budget_respected_and_additive_game_recovered(method):
    n = 8
    game = make_game("additive", n, seed=1)
    budget = max(min_budget(method, n), 6 * n) if not method.startswith("exact") else 2**n
    result = approximate(game, n, budget, method, seed=0)
    assert game.n_evaluations == result.n_evaluations <= budget
    # ridge shrinks datamodels slightly; MSR is a difference of means, unbiased but not exact on additive games
    tolerance = {"datamodels": 0.05, "banzhaf-msr": 0.6}.get(method, 1e-8)
    assert np.allclose(result.values, game.shapley_values(), atol=tolerance)  # additive: Shapley = Banzhaf = LOO
    # a method may qualify its name with the estimator it fell back to (surrogate-*: leverage is exact here)
    assert not result.values.flags.writeable and result.method.split(":")[0] == method


@pytest.mark.parametrize("method", EFFICIENT)
def test_efficiency_is_exact(method):
    n = 9
    game = make_game("voting", n, seed=2, noise=0.3)
    budget = 2**n if method.startswith("exact") else 5 * n
    result = approximate(game, n, budget, method, seed=4)
    v = game.value(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    assert abs(result.values.sum() - (v[1] - v[0])) < 0.3 * 5  # noise-free grand value up to v0/v1 noise
    masks = SAMPLERS[default_sampler(method)](n, budget - 2, seed=4).masks
    exact_run = estimate(masks, game.value(masks), method, v0=0.0, v1=1.5)
    assert np.isclose(exact_run.values.sum(), 1.5, atol=1e-9)


@pytest.mark.parametrize("method", ["leverage", "banzhaf-msr", "surrogate-shapley", "surrogate-banzhaf"])
def test_full_enumeration_is_exact_with_zero_std(method):
    n = 7
    game = make_game("airport", n, seed=5)
    result = approximate(game, n, 2**n, method, seed=0)
    truth = game.banzhaf_values() if "banzhaf" in method else game.shapley_values()
    assert np.allclose(result.values, truth, atol=1e-10)
    assert np.allclose(result.std, 0.0, atol=1e-10) and result.converged


@pytest.mark.parametrize("method", ["leverage", "kernelshap-paired", "kernelshap-paper", "permutation", "banzhaf-msr"])
@pytest.mark.parametrize("name", ["glove", "airport"])
def test_converges_on_non_additive_games(method, name):
    n = 10
    game = make_game(name, n, seed=0)
    truth = game.banzhaf_values() if method == "banzhaf-msr" else game.shapley_values()
    errors = [
        np.mean([_rel_error(approximate(game, n, b, method, seed=s).values, truth) for s in range(6)])
        for b in (5 * n, 60 * n)
    ]
    assert errors[1] < 0.6 * errors[0]
    assert errors[1] < 0.35


def test_default_method_beats_the_paper_at_small_budget():
    n = 20
    err = {m: [] for m in (DEFAULT_METHOD, "kernelshap-paper")}
    for name in ("glove", "voting", "airport"):
        game = make_game(name, n, seed=0)
        truth = game.shapley_values()
        for method, errors in err.items():
            errors += [_rel_error(approximate(game, n, 5 * n, method, seed=s).values, truth) for s in range(8)]
    assert np.mean(err[DEFAULT_METHOD]) < 0.7 * np.mean(err["kernelshap-paper"])


@pytest.mark.parametrize("method", ["leverage", "kernelshap-paper", "permutation"])
def test_std_shrinks_and_covers(method):
    n = 10
    game = make_game("glove", n, seed=0, noise=0.3)
    truth = game.shapley_values()
    runs = {b: [approximate(game, n, b, method, seed=s) for s in range(30)] for b in (8 * n, 30 * n)}
    mean_std = {b: np.mean([r.std.mean() for r in rs]) for b, rs in runs.items()}
    assert mean_std[30 * n] < 0.8 * mean_std[8 * n]
    coverage = np.mean([np.abs(r.values - truth) <= 1.96 * r.std for r in runs[30 * n]])
    assert 0.75 <= coverage <= 1.0  # nominal 0.95, loosely


def test_convergence_rule_and_forecast():
    n = 10
    game = make_game("glove", n, seed=0)
    small = approximate(game, n, 6 * n, DEFAULT_METHOD, seed=0)
    converged, more = convergence(small, threshold=0.01)
    assert not converged and more > 0
    assert convergence(small, threshold=1e6) == (True, 0)
    big = approximate(game, n, 2**n, DEFAULT_METHOD, seed=0)
    assert big.converged and convergence(big) == (True, 0)


@pytest.mark.parametrize("method", ["leverage", "banzhaf-msr", "permutation", "datamodels", "exact-shapley"])
def test_repeated_evaluations_do_not_bias(method):
    """Repeats with mean-zero noise are pooled into their mean: the result equals the noise-free one."""
    n = 6
    game = make_game("glove", n, seed=0)
    masks = SAMPLERS[default_sampler(method)](n, 62 if method.startswith("exact") else 30, seed=1).masks
    r = 10 if method == "permutation" else 7  # permutation rows are chains read in order: repeat whole chains
    repeated = np.concatenate([masks, masks[:r], masks[:r]])
    noise = np.concatenate([np.zeros(len(masks)), np.full(r, 0.5), np.full(r, -0.5)])
    pooled = estimate(repeated, game.value(repeated) + noise, method, v0=0.0, v1=2.0)
    # the noise-free reference: the same rows (a repeated chain is a repeated permutation draw), no noise
    reference = repeated if method == "permutation" else masks
    clean = estimate(reference, game.value(reference), method, v0=0.0, v1=2.0)
    assert np.allclose(pooled.values, clean.values, atol=1e-10)


def test_draw_ids_make_repeats_count_once_for_the_paper():
    n = 8
    game = make_game("glove", n, seed=0)
    c = SAMPLERS["kernel"](n, 40, seed=0)
    once = estimate(c.masks, game.value(c.masks), "kernelshap-paper", v0=0.0, v1=2.0)
    masks = np.concatenate([c.masks, c.masks[:5]])
    ids = [*c.ids, *c.ids[:5]]
    twice = estimate(masks, game.value(masks), "kernelshap-paper", v0=0.0, v1=2.0, draw_ids=ids)
    assert np.allclose(once.values, twice.values)


def test_bad_input_raises_clear_errors():
    n = 6
    masks = all_masks(n)[1:20]
    utilities = np.ones(len(masks))
    with pytest.raises(ValueError, match="n_players"):
        estimate(masks, utilities, v0=0.0, v1=1.0, n_players=7)
    with pytest.raises(ValueError, match="one per mask row"):
        estimate(masks, utilities[:-1], v0=0.0, v1=1.0)
    bad = utilities.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="rows \\[3\\]"):
        estimate(masks, bad, v0=0.0, v1=1.0)
    with pytest.raises(ValueError, match="v0/v1"):
        estimate(all_masks(n)[:20], np.ones(20), v0=0.0, v1=1.0)
    with pytest.raises(TypeError, match="unknown option"):
        estimate(masks, utilities, "leverage", v0=0.0, v1=1.0, ridg=False)
    with pytest.raises(ValueError, match="unknown method"):
        estimate(masks, utilities, "kernelshap", v0=0.0, v1=1.0)
    game = make_game("glove", n, seed=0)
    with pytest.raises(ValueError, match="below"):
        approximate(game, n, n, "permutation", seed=0)
    with pytest.raises(ValueError, match="all 2\\^n - 2"):
        estimate(masks, utilities, "exact-shapley", v0=0.0, v1=1.0)
    with pytest.raises(ValueError, match="shape"):
        approximate(lambda m: np.ones(len(m) + 1), n, 30, seed=0)
    with pytest.raises(TypeError, match="seed"):
        approximate(game, n, 30, seed=None)
    with pytest.raises(ValueError, match="chains"):
        estimate(masks[:10], utilities[:10], "permutation", v0=0.0, v1=1.0)


def test_no_torch_or_mlflow_imported():
    root = Path(__file__).resolve().parents[2]
    code = (  # load shapflow.shapley alone: the parent package may import torch for other stages
        "import sys, types; pkg = types.ModuleType('shapflow'); pkg.__path__ = [r'%s']; sys.modules['shapflow'] = pkg;"
        "import importlib, pkgutil, shapflow.shapley as s;"  # every module of the package, new ones included
        "[importlib.import_module('shapflow.shapley.' + m.name) for m in pkgutil.iter_modules(s.__path__)];"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'mlflow')]; print(bad); assert not bad"
    ) % (root / "shapflow")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("method", ["kernelshap-paired", "kernelshap-paper"])
def test_std_is_unknown_not_zero_when_the_fit_interpolates(method):
    """At the minimum budget a paired design has n/2 independent pairs for n - 1 free values: the residuals
    are zero by construction, so the std is NaN (and never converges), not 0; with 4 n coalitions it is known."""
    n = 10
    rng = np.random.default_rng(0)
    weights = rng.normal(size=n)
    for budget, known in ((n, method == "kernelshap-paper"), (4 * n, True)):
        masks = SAMPLERS[default_sampler("kernelshap-paired")](n, budget, 0).masks
        utilities = masks @ weights + 0.1 * masks.sum(axis=1) ** 2 + rng.normal(scale=0.1, size=len(masks))
        result = estimate(masks, utilities, method, v0=0.0, v1=weights.sum() + 0.1 * n**2)
        assert np.isfinite(result.values).all()
        assert (np.isfinite(result.std).all() and (result.std > 0).any()) if known else np.isnan(result.std).all()
        assert known or convergence(result) == (False, -1)


def test_an_estimator_on_another_design_is_named_biased():
    from shapflow.shapley import METHODS, design_bias

    assert "biased" in design_bias("banzhaf-msr", "leverage")
    assert "biased" in design_bias("permutation", "uniform")
    assert design_bias("banzhaf-msr", "uniform") is None
    for method in METHODS:  # an estimator on its own design, and a surrogate on any design, are not flagged
        assert design_bias(method, METHODS[method].sampler) is None
        assert method.startswith("surrogate-") or design_bias(method, "alpha" if method != "datamodels" else "all")
    assert design_bias("surrogate-shapley", "uniform") is None
