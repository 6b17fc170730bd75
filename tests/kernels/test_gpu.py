"""CUDA checks of the fused kernels (C++/CUDA extension and compiled Triton): run on a GPU machine."""

from __future__ import annotations

import copy

import pytest
import torch

from shapflow.kernels import available_backends, group_norm_silu, group_norm_silu_reference, optimize
from shapflow.testing.workloads import build_cifar20_unet, make_sampling_step, make_sft_step

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize(("n", "c", "h", "g"), [(1, 15, 7, 5), (4, 90, 32, 30), (3, 180, 8, 30), (2, 9, 5, 3)])
def test_fused_gn_silu_cuda_matches_eager(backend, n, c, h, g):
    """Forward and gradients (with per-sample scale/shift) within 1e-4 of eager on CUDA, fp32."""
    if backend not in available_backends("cuda"):
        pytest.skip(f"{backend} not available on cuda")
    torch.manual_seed(0)
    leaves = [torch.randn(n, c, h, h, device="cuda"), torch.randn(c, device="cuda"), torch.randn(c, device="cuda"),
              torch.randn(n, c, device="cuda"), torch.randn(n, c, device="cuda")]
    for t in leaves:
        t.requires_grad_(True)
    x, w, b, sc, sh = leaves
    y = group_norm_silu(x, w, b, g, scale=sc, shift=sh, backend=backend)
    y0 = group_norm_silu_reference(x, w, b, g, scale=sc, shift=sh)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, dy)
    grads0 = torch.autograd.grad(y0, leaves, dy)
    assert (y - y0).abs().max() < 1e-4
    for got, want in zip(grads, grads0, strict=True):
        assert (got - want).abs().max() / (want.abs().max() + 1) < 1e-4


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_optimized_pruned_unet_cuda_same_loss_and_samples(backend):
    """The pruned cifar20 UNet gives the same sFT loss and sampling output fused as eager on CUDA."""
    if backend not in available_backends("cuda"):
        pytest.skip(f"{backend} not available on cuda")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    base = build_cifar20_unet().cuda()
    fused = optimize(copy.deepcopy(base), backend)
    loss0, loss1 = make_sft_step(base, 4)(), make_sft_step(fused, 4)()
    assert abs(loss0.item() - loss1.item()) < 1e-4
    eps0, eps1 = make_sampling_step(base, 4)(), make_sampling_step(fused, 4)()
    assert (eps0 - eps1).abs().max() < 1e-3
