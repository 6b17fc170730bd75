"""optimize(): state_dict unchanged, same loss/gradients/samples as eager, backends validated."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from diffusers import UNet2DModel

from shapflow.kernels import available_backends, optimize, resolve_backend
from shapflow.kernels.optimize import FusedResnetBlock2D
from shapflow.testing.workloads import build_digits_unet, make_sampling_step, make_sft_step


def _tiny_unet(time_norm: str = "default") -> UNet2DModel:
    """Odd widths and groups (15, 9 channels; 3 groups), scale_shift optional, one attention block."""
    torch.manual_seed(0)
    return UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(15, 9), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D",
                       "UpBlock2D"), norm_num_groups=3, attention_head_dim=3, resnet_time_scale_shift=time_norm)


def _fused_backends() -> list[str]:
    return [b for b in ("cpp", "triton") if b in available_backends("cpu")]


@pytest.mark.parametrize("backend", _fused_backends())
@pytest.mark.parametrize("time_norm", ["default", "scale_shift"])
def test_same_state_dict_loss_grads_and_samples(backend, time_norm):
    base = _tiny_unet(time_norm)
    fused = optimize(copy.deepcopy(base), backend)
    assert isinstance(fused.down_blocks[0].resnets[0], FusedResnetBlock2D)
    assert {k: v.shape for k, v in base.state_dict().items()} == {k: v.shape for k, v in fused.state_dict().items()}
    x, t = torch.randn(3, 1, 4, 4), torch.tensor([1, 500, 999])
    loss0, loss1 = (m(x, t).sample.square().mean() for m in (base, fused))
    assert abs(loss0.item() - loss1.item()) <= 1e-5
    loss0.backward()
    loss1.backward()
    for (name, p0), p1 in zip(base.named_parameters(), fused.parameters(), strict=True):
        assert (p0.grad - p1.grad).abs().max().item() <= 1e-5 * max(1.0, p0.grad.abs().max().item()), name
    assert abs(make_sft_step(base, 3)().item() - make_sft_step(fused, 3)().item()) <= 1e-5
    assert (make_sampling_step(base, 2)() - make_sampling_step(fused, 2)()).abs().max().item() <= 1e-4


@pytest.mark.skipif("cpp" not in available_backends("cpu"), reason="C++ extension not built")
def test_pruned_digits_unet_same_loss_and_deepcopy_keeps_fusion():
    base = build_digits_unet()
    fused = optimize(copy.deepcopy(base), "cpp")
    assert abs(make_sft_step(base, 16)().item() - make_sft_step(fused, 16)().item()) <= 1e-5
    twin = copy.deepcopy(fused)
    assert isinstance(twin.up_blocks[0].resnets[0], FusedResnetBlock2D)
    assert (make_sampling_step(fused, 8)() - make_sampling_step(twin, 8)()).abs().max().item() == 0.0


def test_eager_returns_model_untouched_and_bad_backend_raises():
    unet = _tiny_unet()
    assert optimize(unet, "eager") is unet
    assert not any(isinstance(m, FusedResnetBlock2D) for m in unet.modules())
    with pytest.raises(ValueError, match="choose one of"):
        optimize(unet, "cuda-magic")
    assert resolve_backend("auto", "cpu") in ("cpp", "triton", "eager")


def test_explicit_unavailable_backend_raises(monkeypatch):
    if os.environ.get("TRITON_INTERPRET") == "1":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
    available_backends.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="not available on cpu"):
            resolve_backend("triton", "cpu")
    finally:
        available_backends.cache_clear()
