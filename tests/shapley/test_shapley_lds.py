"""LDS, its confidence intervals, the noise floor, the size-only predictor and the counterfactual statistics,
checked on synthetic additive games whose answers are known."""

import math

import numpy as np
import pytest
from scipy import stats

from shapflow.shapley.lds import (
    lds,
    lds_of_predictions,
    random_floor,
    rank_agreement,
    relative_change,
    size_only,
    t_half_width,
    worst_ranks,
)


def _unique_masks(n: int, m: int, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """m distinct coalitions of n contributors, all of `size` members (or random sizes 1..n-1)."""
    rows: set[tuple[bool, ...]] = set()
    while len(rows) < m:
        k = size if size is not None else int(rng.integers(1, n))
        row = np.zeros(n, dtype=bool)
        row[rng.choice(n, k, replace=False)] = True
        rows.add(tuple(row))
    return np.array(sorted(rows))


@pytest.fixture
def game():
    """Additive game: n = 12 contributors, 60 distinct half-size coalitions, 3 seeds of tiny noise."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=12)
    masks = _unique_masks(12, 60, rng, size=6)
    truth = masks @ values + 1e-9 * rng.normal(size=(3, 60))
    return values, masks, truth


def test_oracle_is_100_and_reversed_is_minus_100(game):
    values, masks, truth = game
    oracle = lds(values, masks, truth, method="oracle")
    reverse = lds(-values, masks, truth, method="reverse")
    assert oracle.method == "oracle" and oracle.n_coalitions == 60 and oracle.n_seeds == 3
    assert len(oracle.per_seed) == 3 and min(oracle.per_seed) > 99.9 and oracle.mean > 99.9
    assert max(reverse.per_seed) < -99.9 and reverse.mean < -99.9
    assert oracle.note == "" and reverse.note == ""


def test_matches_scipy_spearman_with_ties():
    rng = np.random.default_rng(2)
    predictions = rng.integers(0, 6, size=40).astype(float)  # many ties
    truth = predictions + rng.normal(scale=3.0, size=(4, 40))
    result = lds_of_predictions(predictions, truth, n_boot=0)
    expected = [100 * stats.spearmanr(predictions, row).statistic for row in truth]
    np.testing.assert_allclose(result.per_seed, expected, rtol=1e-10)
    assert result.mean == pytest.approx(np.mean(expected))
    assert result.ci == pytest.approx(stats.t.ppf(0.975, 3) * np.std(expected, ddof=1) / 2)
    assert math.isnan(result.boot_low) and math.isnan(result.boot_high)


def test_bootstrap_interval_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(3)
    values = rng.normal(size=10)
    masks = _unique_masks(10, 50, rng, size=5)
    truth = masks @ values + rng.normal(scale=1.0, size=(3, 50))
    result = lds(values, masks, truth, n_boot=400, seed=7)
    assert result.boot_low < result.mean < result.boot_high
    assert 0 < result.boot_half_width < 50
    again = lds(values, masks, truth, n_boot=400, seed=7)
    other = lds(values, masks, truth, n_boot=400, seed=8)
    assert (again.boot_low, again.boot_high) == (result.boot_low, result.boot_high)
    assert (other.boot_low, other.boot_high) != (result.boot_low, result.boot_high)


def test_noise_floor_centres_on_zero_and_shrinks_with_more_coalitions():
    rng = np.random.default_rng(4)
    n = 30
    small_masks = _unique_masks(n, 20, rng, size=15)
    large_masks = _unique_masks(n, 400, rng, size=15)
    small = random_floor(small_masks, rng.normal(size=(2, 20)), draws=600, seed=0)
    large = random_floor(large_masks, rng.normal(size=(2, 400)), draws=600, seed=0)
    for floor in (small, large):
        assert floor.low < 0 < floor.high and floor.draws == 600
        assert abs(floor.mean) < floor.half_width / 4
        assert floor.half_width == pytest.approx((floor.high - floor.low) / 2)
    assert large.half_width < small.half_width / 2  # ~ 1 / sqrt(m): 20 -> 400 coalitions is ~4.5x narrower
    truth = rng.normal(size=(2, 20))
    assert random_floor(small_masks, truth, draws=50, seed=1) == random_floor(small_masks, truth, draws=50, seed=1)


def test_size_only_is_none_for_equal_sizes_and_strong_when_truth_is_size():
    rng = np.random.default_rng(5)
    equal = _unique_masks(10, 30, rng, size=5)
    assert size_only(equal, rng.normal(size=(2, 30))) is None
    varied = _unique_masks(10, 40, rng)
    truth = varied.sum(axis=1) + 0.01 * rng.normal(size=(3, 40))
    result = size_only(varied, truth, n_boot=100)
    assert result is not None and result.method == "size-only"
    assert result.mean > 95


def test_missing_runs_are_dropped_per_seed(game):
    values, masks, truth = game
    truth = truth.copy()
    truth[1, [0, 5, 9]] = np.nan  # three runs of seed 1 missing
    truth[2, :] = np.nan  # seed 2 never ran
    result = lds(values, masks, truth, n_boot=50)
    assert result.n_seeds == 3 and result.n_coalitions == 60
    assert result.per_seed[0] > 99.9 and result.per_seed[1] > 99.9 and math.isnan(result.per_seed[2])
    assert result.mean > 99.9 and math.isfinite(result.ci) and "seed 2" in result.note
    keep = ~np.isnan(truth[1])
    alone = lds(values, masks[keep], truth[1, keep], n_boot=0)
    assert alone.per_seed[0] == pytest.approx(result.per_seed[1])


def test_constant_predictions_give_nan_not_an_error(game):
    _, masks, truth = game
    for constant in (np.zeros(12), np.full(12, 0.1), np.full(12, 1 / 3)):  # equal-size coalitions: equal sums
        result = lds(constant, masks, truth, n_boot=20)
        assert math.isnan(result.mean) and math.isnan(result.ci) and math.isnan(result.boot_low)
        assert all(math.isnan(v) for v in result.per_seed) and "constant predictions" in result.note
    flat = lds(np.arange(12.0), masks, np.ones((2, 60)), n_boot=0)
    assert math.isnan(flat.mean) and "constant ground truth" in flat.note


def test_one_seed_has_no_t_interval_and_few_coalitions_are_undefined(game):
    values, masks, truth = game
    single = lds(values, masks, truth[0], n_boot=50)
    assert single.n_seeds == 1 and single.mean > 99.9 and math.isnan(single.ci)
    assert math.isfinite(single.boot_low)
    two = lds_of_predictions(np.array([1.0, 2.0]), np.array([[1.0, 2.0]]), n_boot=0)
    assert math.isnan(two.mean) and "< 3" in two.note


def test_inputs_are_checked(game):
    values, masks, truth = game
    with pytest.raises(ValueError, match="values"):
        lds(values[:-1], masks, truth)
    with pytest.raises(ValueError, match="truth"):
        lds(values, masks, truth[:, :-1])
    with pytest.raises(ValueError, match="masks"):
        lds(values, masks * 2, truth)
    with pytest.raises(ValueError, match="n_boot"):
        lds(values, masks, truth, n_boot=-1)
    with pytest.raises(ValueError, match="predictions"):
        lds_of_predictions(np.array([1.0, np.nan, 2.0]), np.ones((1, 3)))


def test_relative_change_on_known_numbers():
    mean, ci = relative_change(np.array([10.0, 20.0]), np.array([9.0, 22.0]))  # -10% and +10%
    assert mean == pytest.approx(0.0)
    assert ci == pytest.approx(stats.t.ppf(0.975, 1) * np.std([-10.0, 10.0], ddof=1) / np.sqrt(2))
    mean, ci = relative_change(np.array([-10.0, np.nan, 4.0]), np.array([-12.0, 3.0, np.nan]))
    assert mean == pytest.approx(-20.0) and math.isnan(ci)  # |before| in the denominator; NaN pairs dropped
    mean, ci = relative_change(np.array([-2.0, -4.0, -5.0]), np.array([-1.0, -5.0, -5.0]))
    assert mean == pytest.approx((50.0 - 25.0 + 0.0) / 3) and ci > 0
    with pytest.raises(ValueError, match="shape"):
        relative_change(np.ones(2), np.ones(3))


def test_rank_agreement_and_worst_ranks_on_known_orderings():
    values = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    degradation = np.array([0.0, 0.1, 0.2, 0.6, 0.9])
    assert rank_agreement(values, -degradation) == pytest.approx(1.0)
    assert rank_agreement(-values, -degradation) == pytest.approx(-1.0)
    assert math.isnan(rank_agreement(np.ones(5), -degradation))
    assert worst_ranks(values, -degradation, 2) == [5, 4]  # the most degraded is placed last
    assert worst_ranks(-values, -degradation, 2) == [1, 2]
    assert worst_ranks(np.array([3.0, 1.0, 2.0, 1.0, 0.5]), -degradation, 4) == [5, 3, 2, 3]  # ties share a rank
    with pytest.raises(ValueError, match="k="):
        worst_ranks(values, degradation, 0)


def test_t_half_width():
    assert math.isnan(t_half_width([1.0])) and math.isnan(t_half_width([1.0, np.nan]))
    assert t_half_width([1.0, 3.0, np.nan]) == pytest.approx(stats.t.ppf(0.975, 1) * np.sqrt(2) / np.sqrt(2))
