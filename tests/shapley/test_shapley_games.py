"""Test games: every closed form agrees with brute-force enumeration; counters and noise behave."""

import numpy as np
import pytest

from shapflow.shapley.exact import all_masks, exact_values
from shapflow.shapley.games import GAMES, AirportGame, GloveGame, VotingGame, make_game


@pytest.mark.parametrize("name", sorted(GAMES))
@pytest.mark.parametrize("n", [5, 9])
def test_closed_forms_match_enumeration(name, n):
    game = make_game(name, n, seed=3)
    assert np.allclose(game.shapley_values(), exact_values(game.value, n, "shapley"), atol=1e-12)
    assert np.allclose(game.banzhaf_values(), exact_values(game.value, n, "banzhaf"), atol=1e-12)


def test_closed_forms_hold_for_asymmetric_and_tied_parameters():
    games = [
        AirportGame(np.array([0.5, 0.5, 0.2, 1.0, 0.9])),
        VotingGame(np.array([3, 1, 1, 4, 2, 2]), 7),
        GloveGame(2, 5),
    ]
    for game in games:
        assert np.allclose(game.shapley_values(), exact_values(game.value, game.n), atol=1e-12)


def test_large_games_have_efficient_closed_forms():
    for name in sorted(GAMES):
        game = make_game(name, 258, seed=0)
        grand = game.value(np.ones((1, 258), bool))[0] - game.value(np.zeros((1, 258), bool))[0]
        assert np.isclose(game.shapley_values().sum(), grand)
        assert np.isfinite(game.banzhaf_values()).all()


def test_counter_and_noise():
    game = make_game("glove", 8, seed=0, noise=0.5)
    masks = np.repeat(all_masks(8)[[37]], 4000, axis=0)
    utilities = game(masks)
    assert game.n_evaluations == 4000
    assert utilities.std() > 0
    assert abs(utilities.mean() - game.value(masks[:1])[0]) < 4 * game.noise_std / np.sqrt(4000)
    with pytest.raises(ValueError, match="shape"):
        game(np.ones((2, 7), bool))
