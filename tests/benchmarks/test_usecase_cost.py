"""benchmarks/usecase_cost.py: the projection follows the use cases' recipes (steps x coalitions, images x DDIM
steps, linear batch scaling), and the miniSD UNet written in code is Stable Diffusion 1.x's architecture."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from shapflow.config import load_use_case

_SPEC = importlib.util.spec_from_file_location(
    "usecase_cost", Path(__file__).resolve().parents[2] / "benchmarks" / "usecase_cost.py")
usecase_cost = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(usecase_cost)


def test_projection_scales_step_times_to_the_recipes():
    cfg = load_use_case("cifar20")
    row = {"measured_batch": {"train": 8, "sampling": 10}, "full": {"train_step_s": 2.0, "sampling_step_s": 1.0},
           "pruned": {"train_step_s": 1.0, "sampling_step_s": 0.5}}
    p = usecase_cost.project("cifar20", row, budget=None)
    assert p["sft_s"] == pytest.approx(cfg.sft.steps * 1.0 * cfg.sft.batch_size / 8)
    assert p["retrain_s"] == pytest.approx(cfg.train.steps * 2.0 * cfg.train.batch_size / 8)
    batches = math.ceil(cfg.sampling.num_images / cfg.sampling.batch_size)
    per_batch = 0.5 * cfg.sampling.batch_size / 10
    assert p["sampling_sft_s"] == pytest.approx(batches * cfg.sampling.num_inference_steps * per_batch)
    assert p["coalitions"] == 200 and p["scaled_from_batch"]
    assert p["sft_hours"] == pytest.approx(200 * (p["sft_s"] + p["sampling_sft_s"]) / 3600)
    assert p["ratio_training"] == pytest.approx(p["retrain_s"] / p["sft_s"])


def test_the_minisd_unet_is_stable_diffusion_1_at_a_32_latent():
    """diffusers' UNet2DConditionModel defaults are SD 1.x's UNet except the text width (CLIP ViT-L/14: 768) and
    the latent size (miniSD: 32, i.e. 256 px)."""
    import inspect

    from diffusers import UNet2DConditionModel

    defaults = {k: v.default for k, v in inspect.signature(UNet2DConditionModel.__init__).parameters.items()}
    def plain(value: object) -> object:
        return tuple(value) if isinstance(value, (tuple, list)) else value

    differs = {k for k, v in usecase_cost.MINISD_UNET.items() if plain(v) != plain(defaults[k])}
    assert differs == {"sample_size", "cross_attention_dim"}
    assert usecase_cost.MINISD_UNET["sample_size"] == 32 and usecase_cost.MINISD_UNET["cross_attention_dim"] == 768
