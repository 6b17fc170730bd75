"""Precision: the config field and its stage identity, the one context manager, and the training loop and sampler
at bf16 (fp32 master weights) against fp32."""

import pytest
import torch

from shapflow.config import (
    PRECISION_AUTO,
    STAGES,
    ConfigError,
    DiffusionConfig,
    EMAConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    UseCaseConfig,
    apply_overrides,
    from_dict,
    load_use_case,
    stage_key,
)
from shapflow.data import load_digits_market
from shapflow.generation.ddim import sample
from shapflow.models import build_unet
from shapflow.models.precision import compute_precision, resolve_precision
from shapflow.training import train

DIFFUSION = DiffusionConfig()
# The digits use case's stage keys before the precision field existed: fp32 must keep them (caches and MLflow
# runs of today stay valid).
DIGITS_KEYS_BEFORE_PRECISION = {
    "full": "303a14ac0bef565aeb0a4153ac86867e233de0e242bf241311c66b4b2f067bf4",
    "finetune": "840922433b4a4d5e35ce9a4fcac0846939696b8dea03eb589aec488d6eb68899",
    "sampling": "8bc5914e811620480c6bc3bb7a5c08acc8b18ca932a530ea27a5d1188bb0dc7f",
    "coalition": "6928e0dfd1a244fd81165308bff4f2a0a6d9312c85682a6d09f7aa9e757c5fb1",
}


def test_precision_is_validated_and_fp32_by_default():
    assert UseCaseConfig().precision == "fp32"
    with pytest.raises(ConfigError, match=r"precision='fp16' is invalid.*fp32, tf32, bf16, auto"):
        from_dict(UseCaseConfig, {"precision": "fp16"})
    assert apply_overrides(UseCaseConfig(), ["precision=bf16"]).precision == "bf16"


def test_fp32_keeps_the_stage_keys_from_before_the_field():
    cfg = load_use_case("digits")
    assert {stage: stage_key(cfg, stage) for stage in DIGITS_KEYS_BEFORE_PRECISION} == DIGITS_KEYS_BEFORE_PRECISION


@pytest.mark.parametrize("precision", ["tf32", "bf16", "auto"])
def test_precision_is_in_the_identity_of_every_stage_that_trains_or_samples(precision):
    base = load_use_case("digits")
    other = apply_overrides(base, [f"precision={precision}"])
    changed = {stage for stage in STAGES if stage_key(base, stage) != stage_key(other, stage)}
    assert changed == {"full", "prune", "finetune", "sampling", "coalition"}


def test_auto_keys_the_table_it_resolves_by(monkeypatch):
    cfg = apply_overrides(load_use_case("digits"), ["precision=auto"])
    before = stage_key(cfg, "coalition")
    monkeypatch.setitem(PRECISION_AUTO, "cuda", "bf16")  # a new measurement: a new identity
    assert stage_key(cfg, "coalition") != before


def test_resolve_picks_only_the_measured_table_for_auto():
    assert resolve_precision("auto", "cpu") == PRECISION_AUTO["cpu"] == "fp32"
    assert resolve_precision("auto", "mps") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision='half'"):
        resolve_precision("half", "cpu")


def test_the_context_autocasts_bf16_and_leaves_fp32_and_cpu_tf32_alone():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 5, 5)
    matmul, cudnn = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    for precision, dtype in (("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)):
        with compute_precision(precision, "cpu") as concrete:
            assert concrete == precision and conv(x).dtype == dtype
            assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
    assert not torch.is_autocast_enabled("cpu")
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == (matmul, cudnn)


@pytest.fixture(scope="module")
def data():
    return load_digits_market(0)


def test_bf16_training_keeps_fp32_weights_and_ema_and_tracks_fp32(data):
    cfg = TrainConfig(steps=6, batch_size=16, ema=EMAConfig(decay=0.9))
    runs = {p: train(build_unet(ModelConfig()), data, cfg, DIFFUSION, precision=p) for p in ("fp32", "bf16")}
    bf16 = runs["bf16"]
    assert all(v.dtype == torch.float32 for v in bf16.model.state_dict().values())
    assert all(v.dtype == torch.float32 for v in bf16.ema.values())
    # same data, noise and timesteps: the losses agree to bf16 rounding, and really are computed in bf16
    for a, b in zip(runs["fp32"].losses, bf16.losses, strict=True):
        assert abs(a - b) < 0.02 * a
    assert runs["fp32"].losses != bf16.losses


def test_bf16_sampling_returns_fp32_images_close_to_fp32():
    model = build_unet(ModelConfig(), seed=3)
    cfg = SampleConfig(num_images=8, num_inference_steps=4, batch_size=8)
    fp32, bf16 = sample(model, cfg, DIFFUSION), sample(model, cfg, DIFFUSION, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert 0 < (bf16 - fp32).abs().mean() < 0.05
    assert torch.equal(sample(model, cfg, DIFFUSION, precision="fp32"), fp32)
