"""Property-shaped games: efficient values, a correlated proxy, reference values by permutations close to exact."""

import numpy as np
import pytest

from shapflow.shapley import property_games
from shapflow.shapley.exact import exact_values
from shapflow.shapley.property_games import PROPERTY_GAMES, make_property_game, reference_values
from shapflow.shapley.samplers import sample_leverage


@pytest.mark.parametrize("shape", PROPERTY_GAMES)
def test_values_are_efficient_and_the_proxy_correlates(shape):
    n = 10
    game = make_property_game(shape, n, seed=0)
    values = game.shapley_values()
    ends = game.value(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    assert values.sum() == pytest.approx(ends[1] - ends[0])
    masks = sample_leverage(n, 8 * n, 0).masks
    assert 0.5 < np.corrcoef(game.value(masks), game.proxy(1.0, 1)(masks))[0, 1] < 0.999


@pytest.mark.parametrize("shape", PROPERTY_GAMES)
def test_reference_values_by_permutations_match_enumeration(shape, monkeypatch):
    n = 14
    game = make_property_game(shape, n, seed=1)
    truth = exact_values(game.value, n, "shapley")
    monkeypatch.setattr(property_games, "ENUMERATE_UP_TO", 4)  # the sampled path of large n, checked at small n
    values, std = reference_values(game.value, n, budget=2**15, seed=0)
    error = np.linalg.norm(values["shapley"] - truth) / np.linalg.norm(truth)
    assert error < 0.1 and error < 4 * np.linalg.norm(std["shapley"]) / np.linalg.norm(truth) + 1e-9


def test_noise_needs_the_scale():
    with pytest.raises(ValueError, match="scale"):
        make_property_game("fid", 8, seed=0, noise=0.1)
    with pytest.raises(ValueError, match="unknown property game"):
        make_property_game("fun", 8, seed=0)
