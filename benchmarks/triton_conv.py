"""Implicit-GEMM 3x3 convolution (stride 1, padding 1) in Triton for pruned, irregular widths.

Channels-last activations (N, H, W, Cin); weights packed once to (9 * Cin_pad, Cout) with Cin
padded with zeros to the tensor-core multiple (16), so odd pruned widths (90, 179) need no
padded activations. Epilogue fuses bias, an optional residual (N, H, W, Cout) and SiLU.
Forward only (sampling); the op-level benchmark compares it with cuDNN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["conv3x3_nhwc", "pack_conv3x3_weight"]

_K_MULTIPLE = 16


@triton.jit
def _conv3x3_kernel(X, WP, BIAS, RES, Y, NPIX, H, W, CIN, CIN_PAD, COUT,
                    HAS_RES: tl.constexpr, SILU: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    n = rm // (H * W)
    oh = (rm // W) % H
    ow = rm % W
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for tap in range(9):
        ih = oh + tap // 3 - 1
        iw = ow + tap % 3 - 1
        valid = (rm < NPIX) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        pix = (n * H + ih) * W + iw
        for k0 in range(0, CIN_PAD, BK):
            kk = k0 + rk
            a = tl.load(X + pix[:, None] * CIN + kk[None, :], mask=valid[:, None] & (kk[None, :] < CIN), other=0.0)
            b = tl.load(WP + (tap * CIN_PAD + kk)[:, None] * COUT + rn[None, :], mask=rn[None, :] < COUT, other=0.0)
            acc += tl.dot(a, b)
    acc += tl.load(BIAS + rn, mask=rn < COUT, other=0.0)[None, :]
    out_mask = (rm[:, None] < NPIX) & (rn[None, :] < COUT)
    if HAS_RES:
        acc += tl.load(RES + rm[:, None] * COUT + rn[None, :], mask=out_mask, other=0.0)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(Y + rm[:, None] * COUT + rn[None, :], acc, mask=out_mask)


def pack_conv3x3_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (9 * Cin_pad, Cout) row-major per tap, zero rows for padded input channels."""
    cout, cin = weight.shape[:2]
    cin_pad = -(-cin // _K_MULTIPLE) * _K_MULTIPLE
    packed = weight.new_zeros(9, cin_pad, cout)
    packed[:, :cin] = weight.permute(2, 3, 1, 0).reshape(9, cin, cout)
    return packed.reshape(9 * cin_pad, cout).contiguous()


def conv3x3_nhwc(
    x: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor | None = None,
    silu: bool = False,
    block: tuple[int, int, int] = (64, 64, 16),
) -> torch.Tensor:
    """act(conv3x3(x) + bias + residual): x (N, H, W, Cin) contiguous -> (N, H, W, Cout), float32."""
    n, h, w, cin = x.shape
    cout = packed_weight.shape[1]
    cin_pad = packed_weight.shape[0] // 9
    if cin_pad < cin or cin_pad % _K_MULTIPLE or x.dtype != torch.float32:
        raise ValueError(f"conv3x3_nhwc: need float32 x and weights packed for Cin={cin} (got rows {9 * cin_pad})")
    y = x.new_empty((n, h, w, cout))
    res = residual.contiguous() if residual is not None else y
    bm, bn, bk = block
    grid = (triton.cdiv(n * h * w, bm), triton.cdiv(cout, bn))
    _conv3x3_kernel[grid](x.contiguous(), packed_weight, bias, res, y, n * h * w, h, w, cin, cin_pad, cout,
                          HAS_RES=residual is not None, SILU=silu, BM=bm, BN=bn, BK=bk)
    return y
