"""The game profile: utilities by coalition size and the share one contributor earns alone."""

import itertools

import numpy as np
import pandas as pd
import pytest

from shapflow.evaluation.game import first_contributor_share, plot_profile, size_profile


def _table(n: int, value) -> pd.DataFrame:
    """A utilities table of every coalition of n players under the game ``value(mask)``."""
    rows = []
    for bits in itertools.product("01", repeat=n):
        mask = np.array([b == "1" for b in bits])
        rows.append({"mask": "".join(bits), "size": int(mask.sum()), "utility": value(mask)})
    return pd.DataFrame(rows)


def test_additive_game_earns_one_nth_per_contributor():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    profile = size_profile(_table(5, lambda m: float(weights @ m)))
    assert profile["size"].tolist() == [0, 1, 2, 3, 4, 5]
    assert profile["count"].tolist() == [1, 5, 10, 10, 5, 1]
    assert profile.loc[1, "mean"] == pytest.approx(3.0)  # mean single weight
    assert first_contributor_share(profile) == pytest.approx(1 / 5)


def test_saturating_game_is_earned_by_the_first_contributor():
    profile = size_profile(_table(5, lambda m: float(min(m.sum(), 1))))
    assert first_contributor_share(profile) == pytest.approx(1.0)
    assert profile["std"].fillna(0).max() == 0.0


def test_repeated_masks_count_once_and_empty_tables_are_refused():
    table = _table(3, lambda m: float(m.sum()))
    doubled = pd.concat([table, table])
    assert size_profile(doubled)["count"].sum() == 8
    with pytest.raises(ValueError, match="run the study first"):
        size_profile(pd.DataFrame())


def test_share_is_nan_without_single_contributor_coalitions(tmp_path):
    table = _table(4, lambda m: float(m.sum()))
    profile = size_profile(table[table["size"] != 1])
    assert np.isnan(first_contributor_share(profile))
    path = plot_profile(size_profile(table), tmp_path / "profile.png", retrained=(2, np.ones((3, 4))))
    assert path.stat().st_size > 0
