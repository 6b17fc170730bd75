"""C++ CPU kernels of shapflow::group_norm_silu against the eager reference (fp32 <= 1e-5)."""

from __future__ import annotations

import pytest
import torch

from shapflow.kernels import backend_info, group_norm_silu, group_norm_silu_reference
from shapflow.kernels.ops import _ensure_cpp_registered, fold_affine

pytestmark = pytest.mark.skipif(not _ensure_cpp_registered(), reason="C++ extension not built")

SHAPES = [(1, 15, 7, 5), (3, 9, 5, 3), (2, 90, 8, 30), (4, 8, 8, 4), (2, 7, 2, 7)]


def _leaves(n, c, h, dtype=torch.float32, per_sample=True):
    g = torch.Generator().manual_seed(n * 1000 + c * 10 + h)
    x = torch.randn(n, c, h, h, generator=g, dtype=dtype) * 2 + 0.5
    w, b = torch.randn(c, generator=g, dtype=dtype), torch.randn(c, generator=g, dtype=dtype)
    extra = [torch.randn(n, c, generator=g, dtype=dtype) for _ in range(2)] if per_sample else [None, None]
    return [t if t is None else t.requires_grad_(True) for t in (x, w, b, *extra)]


@pytest.mark.parametrize(("n", "c", "h", "g"), SHAPES)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("silu", [True, False])
def test_forward_and_gradients_match_eager(n, c, h, g, per_sample, silu):
    x, w, b, sc, sh = _leaves(n, c, h, per_sample=per_sample)
    y = group_norm_silu(x, w, b, g, scale=sc, shift=sh, silu=silu, backend="cpp")
    y0 = group_norm_silu_reference(x, w, b, g, scale=sc, shift=sh, silu=silu)
    assert (y - y0).abs().max().item() <= 1e-5
    leaves = [t for t in (x, w, b, sc, sh) if t is not None]
    dy = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, dy), torch.autograd.grad(y0, leaves, dy), strict=True):
        assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_gradcheck_float64():
    x, w, b, sc, sh = _leaves(2, 6, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda *a: group_norm_silu(a[0], a[1], a[2], 3, scale=a[3], shift=a[4], backend="cpp"), (x, w, b, sc, sh))


@pytest.mark.parametrize(("n", "c", "h", "g"), [(2, 9, 3, 3), (1, 4, 2, 2)])
def test_opcheck(n, c, h, g):
    x, w, b, sc, sh = _leaves(n, c, h)
    gamma, beta = (t.detach().requires_grad_(True) for t in fold_affine(x, w, b, sc, sh))
    torch.library.opcheck(torch.ops.shapflow.group_norm_silu.default, (x.detach().requires_grad_(True), gamma, beta,
                                                                       g, 1e-5, True))


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(2, 6, 4, 4)
    gamma = torch.ones(2, 6)
    with pytest.raises(RuntimeError, match="must be positive and divide"):
        torch.ops.shapflow.group_norm_silu(x, gamma, gamma, 4, 1e-5, True)
    with pytest.raises(RuntimeError, match=r"gamma and beta must be \(N, C\)"):
        torch.ops.shapflow.group_norm_silu(x, torch.ones(6), torch.ones(6), 3, 1e-5, True)
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.shapflow.group_norm_silu(x.transpose(2, 3), gamma, gamma, 3, 1e-5, True)


def test_backend_info_reports_the_extension():
    info = backend_info()
    assert info["extension"] in ("prebuilt", "jit")
    assert info["build_info"]["with_cuda"] in (True, False)
    assert info["auto_cpu"] in ("cpp", "eager")
