"""One contract over every model family (as diffusers runs one common test over every scheduler): a family that
passes it can be attributed; a new family must pass it before it is registered.

Each family runs its tiny configuration (tiny random stand-ins of its real assets, in their real layouts):
stages, v(empty) and v(all), a two-contributor coalition by sFT, FT and retraining, determinism, sFT leaving
the stage it starts from untouched, the save/load round trip of every stage, and exact Shapley values on three
contributors that add up to v(all) - v(empty).
"""

import numpy as np
import pytest
import torch

from shapflow.attribution import load_config
from shapflow.config import FAMILIES as FAMILY_NAMES
from shapflow.config import ConfigError, apply_overrides
from shapflow.shapley import estimate
from shapflow.shapley.samplers import sample_all
from shapflow.utility import FAMILIES, UTILITY_METHODS, StageIO, family_of, load_study, no_store

USE_CASES = {"pixel": "cifar20", "latent": "celebahq", "sd_lora": "artworks"}


def test_every_configurable_family_is_registered_and_has_a_smoke_use_case():
    assert tuple(FAMILIES) == FAMILY_NAMES and set(USE_CASES) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert family.name == name and isinstance(family.stackable, bool) and isinstance(family.light, bool)


@pytest.fixture(scope="module", params=list(USE_CASES.values()))
def study(request):
    cfg = load_config(request.param, tiny=True)
    return load_study(cfg, store=no_store)


def _pair(study) -> np.ndarray:
    mask = np.zeros(study.data.n_contributors, bool)
    mask[[0, 2]] = True
    return mask


def test_stages_and_endpoints(study):
    assert study.family is family_of(study.cfg)
    assert set(study.stages) == {"full", "prune", "finetune"} and study.prune_report
    v0, v1 = study.v0(), study.v1()
    for result in (v0, v1):
        assert np.isfinite(result.utility) and study.scorer.name in result.properties
        assert result.images.ndim == 4 and result.images.shape[0] == study.cfg.sampling.num_images
        assert result.images.min() >= -1.0 and result.images.max() <= 1.0
    assert not torch.equal(v0.images, v1.images)  # the full model is not the empty one


@pytest.mark.parametrize("method", UTILITY_METHODS)
def test_a_coalition_by_each_utility_method_is_deterministic(study, method):
    first = study.evaluate(_pair(study), method=method)
    assert np.isfinite(first.utility) and set(first.timings) >= {"train_seconds", "sample_seconds"}
    study.evaluate(~_pair(study), method=method)  # another coalition in between must not leak into the next
    again = study.evaluate(_pair(study), method=method)
    assert again.utility == first.utility and torch.equal(again.images, first.images)


def test_sft_leaves_the_stage_it_starts_from_untouched(study):
    before = study.images(study.pruned)
    study.evaluate(_pair(study), method="sft")
    assert torch.equal(study.images(study.pruned), before)


def test_every_stage_round_trips_through_its_files(study, tmp_path):
    io = StageIO(study.cfg, study.family, study.ctx)
    for stage, models in study.stages.items():
        io.save(models, {"note": stage}, tmp_path / stage, stage)
        loaded, extra = io.load(tmp_path / stage, stage)
        assert extra == {"note": stage}
        assert torch.equal(study.images(loaded), study.images(models)), stage
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))  # safetensors + JSON only


def test_exact_values_on_three_contributors_add_up(study):
    n = study.data.n_contributors
    coalitions = sample_all(n, 2**n - 2, 0)
    utilities = np.array([study.evaluate(mask).utility for mask in coalitions.masks])
    v0, v1 = study.v0().utility, study.v1().utility
    result = estimate(coalitions.masks, utilities, "exact-shapley", v0=v0, v1=v1, n_players=n)
    assert np.isfinite(result.values).all() and result.values.sum() == pytest.approx(v1 - v0, abs=1e-6)


@pytest.mark.parametrize(("use_case", "override", "field"), [
    ("digits", "model.sample_size=16", "model.sample_size"),
    ("artworks", "sft.ema.decay=0.9", "sft.ema.decay"),
    ("artworks", "diffusion.beta_schedule=linear", "diffusion.beta_schedule"),
])
def test_a_family_rejects_a_config_it_cannot_run(use_case, override, field):
    cfg = apply_overrides(load_config(use_case), [override])
    with pytest.raises(ConfigError, match=field):
        family_of(cfg).check(cfg)
