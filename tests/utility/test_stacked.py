"""Stacked coalitions: K coalitions trained in one vmapped loop and sampled in one vmapped DDIM loop give the
utilities and images of one at a time (fp32, CPU), through the Study, the local executor and the request."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from shapflow.attribution import load_config, parse_request
from shapflow.config import ConfigError, apply_overrides
from shapflow.execution import evaluate_many
from shapflow.execution.local import evaluate_here
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.utility import FAMILIES, load_study, no_store
from shapflow.utility.unet_family import PixelFamily

# Member k's utility equals its lone run's to this (the bar, fp32 on CPU).
UTILITY_TOL = 1e-5
# Images sampled stacked from the SAME weights equal the lone sampler's to this.
SAMPLER_TOL = 1e-5
# Images after stacked sFT: Adam's first steps move every weight by ~lr * sign(gradient), so a gradient element
# that is zero up to rounding (~1e-9) can move by up to lr in one path and not the other; the vmapped (grouped)
# convolutions round differently from the lone ones. Measured <= 6e-5 at these settings.
IMAGES_TOL = 2e-4


@pytest.fixture(scope="module")
def study():
    return load_study(load_config("digits", FAST_SETTINGS), store=no_store)


def _masks(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random(n) < p for p in (0.3, 0.6, 0.9)]


def test_stacked_coalitions_equal_one_at_a_time(study):
    masks = _masks(study.data.n_contributors)
    lone = [study.evaluate(mask) for mask in masks]
    stacked = study.evaluate_many(masks)
    for a, b in zip(lone, stacked, strict=True):
        assert abs(a.utility - b.utility) < UTILITY_TOL
        assert a.properties.keys() == b.properties.keys()
        assert (a.images - b.images).abs().max() < IMAGES_TOL
        assert set(b.timings) == {"train_seconds", "sample_seconds", "score_seconds"}
    assert len({round(r.utility, 6) for r in stacked}) == len(masks)  # the members really differ


def test_the_stacked_sampler_equals_the_lone_one_on_the_same_weights(study):
    family, ctx = study.family, study.ctx
    trained = [family.train(ctx, study.pruned, study.data.subset(mask), study.cfg.sft)
               for mask in _masks(study.data.n_contributors)]
    lone = [family.images(ctx, models) for models in trained]
    for a, b in zip(lone, family.images_stacked(ctx, trained), strict=True):
        assert (a - b).abs().max() < SAMPLER_TOL


def test_stacked_sft_leaves_the_start_untouched_and_one_mask_takes_the_lone_path(study):
    before = study.images(study.pruned)
    mask = _masks(study.data.n_contributors)[0]
    study.evaluate_many(_masks(study.data.n_contributors))
    assert torch.equal(study.images(study.pruned), before)
    assert study.evaluate_many([mask])[0].utility == study.evaluate(mask).utility


def test_the_local_executor_evaluates_chunks_and_skips_finished_coalitions(study):
    masks = dict(enumerate(_masks(study.data.n_contributors)))
    keys = {index: f"key-{index}" for index in masks}
    lone = {o.index: o for o in evaluate_here(study, masks, keep_images=4)}
    stacked = {o.index: o for o in evaluate_many(study, masks, workers=1, folders={}, keep_images=4, keys=keys,
                                                 lookup=lambda key: key == "key-1", stack=2)}
    assert sorted(stacked) == [0, 1, 2] and [i for i, o in stacked.items() if o.skipped] == [1]
    for outcome in (stacked[0], stacked[2]):
        assert abs(outcome.utility - lone[outcome.index].utility) < UTILITY_TOL
        assert outcome.images.shape[0] == 4


def test_a_stacked_request_needs_a_stackable_family_eager_kernels_and_the_local_executor():
    request = parse_request("digits", overrides=FAST_SETTINGS, budget=20, workers=1, stack=4)
    assert request.stack == 4 and parse_request("digits", overrides=FAST_SETTINGS, budget=20).stack == 1
    with pytest.raises(ConfigError, match="stack=0 is invalid"):
        parse_request("digits", overrides=FAST_SETTINGS, budget=20, stack=0)
    with pytest.raises(ConfigError, match=r"kernels=cpp.*kernels=eager"):
        parse_request("digits", overrides=(*FAST_SETTINGS, "kernels=cpp"), budget=20, stack=2)
    with pytest.raises(ConfigError, match="executor=ray"):
        parse_request("digits", overrides=FAST_SETTINGS, budget=20, stack=2, executor="ray")
    with pytest.raises(ConfigError, match=r"model\.family=latent"):
        parse_request("celebahq", tiny=True, budget=20, stack=2)


def test_the_executor_gives_the_same_utilities_with_stack_3_as_with_stack_1(study):
    masks = dict(enumerate([*_masks(study.data.n_contributors), ~_masks(study.data.n_contributors)[0]]))
    runs = {stack: {o.index: o.utility for o in evaluate_many(study, masks, workers=1, folders={}, stack=stack)}
            for stack in (1, 3)}  # stack=3: a group of three, then one alone
    assert sorted(runs[3]) == sorted(runs[1]) == [0, 1, 2, 3]
    assert all(abs(runs[3][i] - runs[1][i]) < UTILITY_TOL for i in masks)


def test_a_family_that_cannot_stack_takes_the_lone_path_and_stacking_refuses(study):
    """Study.evaluate_many degrades to one at a time (sd_lora, latent); the family's own stacked calls refuse."""
    lone_only = replace(study, family=_NotStackable())
    masks = _masks(study.data.n_contributors)[:2]
    assert [r.utility for r in lone_only.evaluate_many(masks)] == [study.evaluate(m).utility for m in masks]
    with pytest.raises(ValueError, match="stack=1"):
        lone_only.family.images_stacked(study.ctx, [study.pruned] * 2)
    assert not FAMILIES["sd_lora"].stackable and not FAMILIES["latent"].stackable
    cpp = type(study.ctx)(apply_overrides(study.cfg, ["kernels=cpp"]))
    with pytest.raises(ConfigError, match="kernels=eager"):
        study.family.train_stacked(cpp, study.pruned, [study.data] * 2, study.cfg.sft)


class _NotStackable(PixelFamily):
    stackable = False
