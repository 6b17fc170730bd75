"""Precision targets parse strictly, measure what they say, forecast from 1/sqrt(m); the sequential design's
batches follow the residual's spread over sizes and are a function of their inputs alone."""

import numpy as np
import pytest

from shapflow.shapley import ShapleyResult
from shapflow.shapley.samplers import sample_leverage
from shapflow.shapley.sequential import batch_sizes, design_minimum, neyman_batch, pair_residuals
from shapflow.shapley.targets import Target, forecast, pairs_separated, parse_target


def _result(values, std, m=40) -> ShapleyResult:
    values, std = np.asarray(values, float), np.asarray(std, float)
    return ShapleyResult(values, std, np.zeros(len(values)), m, False, "surrogate-shapley")


@pytest.mark.parametrize(("text", "fix"), [
    ("pairs-separated=abc", "share of contributor pairs"), ("pairs-separated=1.5", "share"),
    ("pairs-separated=0", "share"), ("mean-std=1", "fraction"), ("speed=3", "measure of"),
    ("pairs-separated", "<measure>=<goal>"), ("top-k-stable=10", "n = 10"), ("top-k-stable=2.5", "whole number")])
def test_bad_targets_name_the_fix(text, fix):
    with pytest.raises(ValueError, match=fix):
        parse_target(text, n=10)


def test_targets_measure_what_they_say():
    assert parse_target(" Pairs-Separated=0.44 ", 16) == Target("pairs-separated", 0.44)
    assert str(parse_target("top-k-stable=5", 16)) == "top-k-stable=5"
    values, std = np.array([3.0, 2.0, 1.0, 0.0]), np.full(4, 0.2)  # intervals +-0.39: every pair disjoint
    assert pairs_separated(values, std) == 1.0
    assert pairs_separated(values, std * 3) == pytest.approx(1 / 6)  # +-1.18: only 3 and 0 stay apart
    wide = _result([3.0, 1.5, 1.0, 0.0], [0.2, 0.2, 0.3, 0.3])
    assert Target("mean-std", 0.5).reached(wide) == pytest.approx(0.25 / 3.0)
    assert Target("max-std", 0.5).reached(wide) == pytest.approx(0.3 / 3.0)
    assert Target("top-k-stable", 2).reached(wide) == 1.0  # 3 - 0.39 > 1 + 0.59 > 1.5 - 0.39
    assert not Target("top-k-stable", 2).met(wide) and Target("top-k-stable", 1).met(wide)
    assert not Target("mean-std", 0.5).met(_result(values, [np.nan] * 4))  # unknown std never meets a target


def test_forecast_scales_stds_like_one_over_sqrt_m():
    result = _result([3.0, 2.0, 1.0, 0.0], [0.4] * 4, m=40)  # mean std / range = 0.133
    needed = forecast(result, Target("mean-std", 0.0667))  # halve the std: ~4x the coalitions
    assert 150 <= needed <= 170
    assert forecast(result, Target("mean-std", 0.5)) == 40  # met now
    assert forecast(result, Target("mean-std", 1e-4)) is None  # beyond 100x


def test_neyman_batch_follows_the_residual_and_is_deterministic():
    n = 16
    pool = sample_leverage(n, 400, 0).masks
    first, step = batch_sizes(n, workers=2, stack=1)
    assert (first, step) == (16, 8) and design_minimum(n, 2, 1) == 24 and batch_sizes(7, 1, 1) == (8, 4)
    chosen = list(range(first))
    equal = neyman_batch(pool, chosen, np.full(first // 2, 0.1), step)
    assert equal == list(range(16, 24))  # equal spread: the leverage design's own next pairs
    strata = np.minimum(pool[0:first:2].sum(1), n - pool[0:first:2].sum(1))
    residuals = np.where(strata == 1, 1.0, 0.01)  # singletons unexplained, the rest fitted
    picked = neyman_batch(pool, chosen, residuals, step)
    assert len(picked) == step and all(pool[r].sum() in (1, n - 1) for r in picked)
    assert [picked[i + 1] - picked[i] for i in range(0, step, 2)] == [1] * (step // 2)  # whole pairs
    assert picked == neyman_batch(pool, chosen, residuals, step)  # a function of its inputs
    assert not set(picked) & set(chosen)


def test_pair_residuals_cancel_what_pairing_cancels():
    masks = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], bool)
    values = np.array([1.0, 2.0, 3.0])
    utilities = masks @ values + 5.0  # additive + a constant (an even-order term): residual 0 within a pair
    assert np.allclose(pair_residuals(masks, utilities, values, v0=0.0), 0.0)
