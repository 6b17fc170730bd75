"""benchmarks/triton_conv.py (the Triton implicit-GEMM conv the kernels benchmark measures against cuDNN):
still correct under TRITON_INTERPRET=1, so its benchmark rows measure a right answer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1")

_SPEC = importlib.util.spec_from_file_location(
    "triton_conv", Path(__file__).resolve().parents[2] / "benchmarks" / "triton_conv.py")
triton_conv = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(triton_conv)


@pytest.mark.parametrize(("residual", "silu"), [(True, True), (False, False)])
def test_triton_implicit_gemm_conv_matches_conv2d(residual, silu):
    torch.manual_seed(0)
    x, wt, bias = torch.randn(1, 4, 5, 7), torch.randn(9, 7, 3, 3), torch.randn(9)
    res = torch.randn(1, 4, 5, 9) if residual else None
    y = triton_conv.conv3x3_nhwc(x, triton_conv.pack_conv3x3_weight(wt), bias, res, silu, block=(16, 16, 16))
    y0 = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), wt, bias, padding=1).permute(0, 2, 3, 1)
    y0 = y0 + res if residual else y0
    y0 = torch.nn.functional.silu(y0) if silu else y0
    assert (y - y0).abs().max().item() <= 1e-4
