"""Triton kernels under TRITON_INTERPRET=1 (set by conftest) against eager, tiny shapes."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")

from shapflow.kernels import group_norm_silu, group_norm_silu_reference  # noqa: E402


@pytest.mark.parametrize(("n", "c", "h", "g"), [(1, 15, 3, 5), (2, 6, 4, 2)])
def test_triton_gn_silu_matches_eager(n, c, h, g):
    torch.manual_seed(n + c)
    leaves = [torch.randn(n, c, h, h), torch.randn(c), torch.randn(c), torch.randn(n, c), torch.randn(n, c)]
    for t in leaves:
        t.requires_grad_(True)
    x, w, b, sc, sh = leaves
    y = group_norm_silu(x, w, b, g, scale=sc, shift=sh, backend="triton")
    y0 = group_norm_silu_reference(x, w, b, g, scale=sc, shift=sh)
    assert (y - y0).abs().max().item() <= 1e-5
    dy = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, dy), torch.autograd.grad(y0, leaves, dy), strict=True):
        assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
