"""What a partial ground truth covers, and its seed-to-seed noise ceiling."""

import numpy as np
import pytest

from shapflow.evaluation.reliability import SEED_TO_SEED, coverage, covered, seed_to_seed


def _truth(seeds: int, m: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """(seeds, m): one property per coalition plus independent noise per seed."""
    return rng.standard_normal(m)[None, :] + noise * rng.standard_normal((seeds, m))


def test_covered_keeps_the_coalitions_and_seeds_with_a_retraining_and_says_so():
    masks = np.eye(4, dtype=bool)
    truth = np.array([[1.0, 2.0, np.nan, np.nan], [np.nan, 3.0, np.nan, np.nan], [np.nan] * 4])
    kept_masks, kept, seeds = covered(masks, truth, (0, 1, 2))
    assert kept_masks.tolist() == masks[:2].tolist() and seeds == (0, 1)
    assert np.array_equal(kept, truth[:2, :2], equal_nan=True)
    assert coverage(truth, (0, 1, 2), (4, 3)) == ("LDS on 2 held-out coalitions x 2 seed(s) (3 of the 12 "
                                                  "retrainings of 4 x 3 asked; seed 0: 2, seed 1: 1, seed 2: 0)")


def test_seed_to_seed_is_the_spearman_of_one_seed_against_another():
    rng = np.random.default_rng(0)
    same = np.tile(np.arange(10.0), (3, 1))
    assert seed_to_seed(same).mean == pytest.approx(100) and seed_to_seed(same).per_seed == pytest.approx((100,) * 3)
    quiet, loud = seed_to_seed(_truth(3, 48, 0.2, rng)), seed_to_seed(_truth(3, 48, 3.0, rng))
    assert quiet.method == SEED_TO_SEED and quiet.n_coalitions == 48 and quiet.n_seeds == 3
    assert quiet.mean > 85 and abs(loud.mean) < 40 and loud.boot_low < loud.mean < loud.boot_high
    assert quiet.boot_low > loud.boot_high  # the interval tells the two apart


def test_seed_to_seed_uses_each_pair_s_common_coalitions_and_needs_two_seeds():
    truth = np.tile(np.arange(8.0), (2, 1))
    truth[1, :4] = np.nan  # seed 1 holds the last four coalitions only
    result = seed_to_seed(truth, n_boot=0)
    assert result.per_seed == pytest.approx((100,)) and result.n_coalitions == 4 and np.isnan(result.boot_low)
    assert seed_to_seed(truth[:1]) is None
    truth[1, 4:6] = np.nan  # two common coalitions: no Spearman
    assert seed_to_seed(truth) is None
