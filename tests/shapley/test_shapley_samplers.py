"""Samplers: prefix-stable, seeded, never the empty or full coalition, designs as documented."""

import numpy as np
import pytest

from shapflow.shapley.samplers import SAMPLERS, kernel_size_probabilities, mask_key, stratum_shares


@pytest.mark.parametrize("design", sorted(SAMPLERS))
@pytest.mark.parametrize("n", [5, 12, 30])
def test_prefix_stable_and_proper(design, n):
    if design == "all" and n > 12:
        pytest.skip("enumeration only for small n")
    small, large = SAMPLERS[design](n, 40, seed=7), SAMPLERS[design](n, 97, seed=7)
    assert len(small) <= 40 and len(large) <= 97
    assert np.array_equal(large.masks[: len(small)], small.masks)
    assert large.ids[: len(small)] == small.ids
    assert len(set(large.ids)) == len(large)
    assert large.masks.shape == (len(large), n) and large.masks.dtype == bool
    assert large.masks.any(axis=1).all() and not large.masks.all(axis=1).any()
    assert large.log_weights.shape == (len(large),) and np.isfinite(large.log_weights).all()
    assert not large.masks.flags.writeable


def test_seeds_change_draws_and_are_required():
    assert not np.array_equal(SAMPLERS["kernel"](20, 30, seed=0).masks, SAMPLERS["kernel"](20, 30, seed=1).masks)
    with pytest.raises(TypeError, match="seed"):
        SAMPLERS["kernel"](20, 30, seed=None)


@pytest.mark.parametrize("design", ["kernel-paired", "leverage"])
def test_paired_designs_emit_complements(design):
    coalitions = SAMPLERS[design](11, 41, seed=0)
    assert len(coalitions) == 40
    assert np.array_equal(coalitions.masks[1::2], ~coalitions.masks[::2])


@pytest.mark.parametrize("design", ["leverage", "uniform", "alpha"])
def test_without_replacement_designs_have_no_duplicates(design):
    coalitions = SAMPLERS[design](8, 10_000, seed=0)
    keys = [mask_key(m) for m in coalitions.masks]
    assert len(set(keys)) == len(keys)
    if design in ("leverage", "uniform"):
        assert len(keys) == 2**8 - 2  # a finite design ends when exhausted


def test_kernel_sizes_follow_the_shapley_kernel():
    n = 10
    sizes = SAMPLERS["kernel"](n, 20_000, seed=0).masks.sum(axis=1)
    observed = np.bincount(sizes, minlength=n)[1:] / len(sizes)
    assert np.allclose(observed, kernel_size_probabilities(n), atol=0.015)


def test_leverage_allocation_is_stratified():
    masks = SAMPLERS["leverage"](40, 400, seed=0, gamma=0.0).masks
    strata = np.minimum(masks.sum(axis=1), 40 - masks.sum(axis=1))
    rows = np.bincount(strata, minlength=21)[1:]
    expected = 400 * stratum_shares(40, 0.0)  # uniform over sizes 1..39: stratum 20 holds one size, the others two
    assert np.abs(rows - expected).max() <= 2.5  # whole pairs, as close to the target as the schedule allows


def test_permutation_rows_are_chains_and_loo_is_complete():
    perm = SAMPLERS["permutation"](6, 25, seed=0)
    assert len(perm) == 20  # two antithetic pairs of 5 prefixes each
    assert np.array_equal(perm.masks[:5].sum(axis=1), np.arange(1, 6))
    loo = SAMPLERS["loo"](6, 100, seed=0)
    assert np.array_equal(loo.masks, ~np.eye(6, dtype=bool))


def test_mask_key_is_stable_and_distinct():
    a = np.array([True, False, True])
    assert mask_key(a) == "3:5" and mask_key(a) == mask_key(a.copy())
    assert mask_key(np.array([True, False, True, False])) != mask_key(a)


def test_ends_first_sampler_spends_the_first_2n_rows_on_singletons_and_leave_one_outs():
    n = 9
    coalitions = SAMPLERS["leverage"](n, 40, seed=1, ends_first=True)
    sizes = coalitions.masks.sum(axis=1)
    assert sorted(sizes[: 2 * n].tolist()) == [1] * n + [n - 1] * n
    assert np.array_equal(coalitions.masks[: 2 * n : 2].sum(axis=0), np.ones(n))
    assert coalitions.design == "leverage-ends" and coalitions.ids[0].startswith("leverage-ends-s1-")
    longer = SAMPLERS["leverage"](n, 90, seed=1, ends_first=True)
    assert np.array_equal(longer.masks[:40], coalitions.masks)
    assert len({m.tobytes() for m in longer.masks}) == len(longer)
    assert not np.array_equal(SAMPLERS["leverage"](n, 40, seed=1).masks, coalitions.masks)
