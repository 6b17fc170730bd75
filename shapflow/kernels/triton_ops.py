"""Triton kernels of the fused GroupNorm(+per-sample affine)+SiLU, forward and backward.

Registered as ``torch.ops.shapflow_triton.group_norm_silu`` (+ ``_backward``) with fake kernels and
autograd, same schema as the C++ op. One program per (sample, group); runs on CUDA tensors, and on
CPU tensors under ``TRITON_INTERPRET=1`` (the tests). Statistics are accumulated in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shapflow.kernels.registration import register_fake_kernels, register_python_autograd

__all__ = ["group_norm_silu_op"]


@triton.jit
def _gn_fwd_kernel(X, GAMMA, BETA, Y, MEAN, RSTD, C, HW, G, CG, eps,
                   SILU: tl.constexpr, BLOCK: tl.constexpr):
    ng = tl.program_id(0).to(tl.int64)
    coff = (ng // G) * C + (ng % G) * CG
    D = CG * HW
    base = ng * D
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, D, BLOCK):
        acc += tl.load(X + base + start + offs, mask=start + offs < D, other=0.0).to(tl.float32)
    mu = tl.sum(acc, axis=0) / D
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, D, BLOCK):
        m = start + offs < D
        d = tl.where(m, tl.load(X + base + start + offs, mask=m, other=0.0).to(tl.float32) - mu, 0.0)
        acc += d * d
    rs = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / D + eps)
    tl.store(MEAN + ng, mu)
    tl.store(RSTD + ng, rs)
    for start in range(0, D, BLOCK):
        idx = start + offs
        m = idx < D
        c = idx // HW
        a = tl.load(GAMMA + coff + c, mask=m, other=0.0).to(tl.float32) * rs
        b = tl.load(BETA + coff + c, mask=m, other=0.0).to(tl.float32) - mu * a
        z = tl.load(X + base + idx, mask=m, other=0.0).to(tl.float32) * a + b
        if SILU:
            z = z * tl.sigmoid(z)
        tl.store(Y + base + idx, z.to(Y.dtype.element_ty), mask=m)


@triton.jit
def _grad_z(dy, z, SILU: tl.constexpr):
    if SILU:
        sg = tl.sigmoid(z)
        dy = dy * sg * (1.0 + z * (1.0 - sg))
    return dy


@triton.jit
def _gn_bwd_kernel(DY, X, GAMMA, BETA, MEAN, RSTD, DX, DGAMMA, DBETA, C, HW, G, CG,
                   SILU: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK: tl.constexpr):
    ng = tl.program_id(0).to(tl.int64)
    coff = (ng // G) * C + (ng % G) * CG
    D = CG * HW
    base = ng * D
    mu = tl.load(MEAN + ng)
    rs = tl.load(RSTD + ng)
    g1 = 0.0
    g2 = 0.0
    offs_hw = tl.arange(0, BLOCK_HW)
    for c in range(0, CG):
        gc = tl.load(GAMMA + coff + c).to(tl.float32)
        a = gc * rs
        b = tl.load(BETA + coff + c).to(tl.float32) - mu * a
        s1 = tl.zeros([BLOCK_HW], dtype=tl.float32)
        s2 = tl.zeros([BLOCK_HW], dtype=tl.float32)
        for start in range(0, HW, BLOCK_HW):
            m = start + offs_hw < HW
            k = base + c * HW + start + offs_hw
            xv = tl.load(X + k, mask=m, other=0.0).to(tl.float32)
            dz = _grad_z(tl.load(DY + k, mask=m, other=0.0).to(tl.float32), xv * a + b, SILU)
            s1 += dz
            s2 += dz * (xv - mu) * rs
        t1 = tl.sum(s1, axis=0)
        t2 = tl.sum(s2, axis=0)
        tl.store(DBETA + coff + c, t1.to(DBETA.dtype.element_ty))
        tl.store(DGAMMA + coff + c, t2.to(DGAMMA.dtype.element_ty))
        g1 += gc * t1
        g2 += gc * t2
    m1 = g1 / D
    m2 = g2 / D
    offs = tl.arange(0, BLOCK)
    for start in range(0, D, BLOCK):
        idx = start + offs
        m = idx < D
        ch = idx // HW
        gc = tl.load(GAMMA + coff + ch, mask=m, other=0.0).to(tl.float32)
        b = tl.load(BETA + coff + ch, mask=m, other=0.0).to(tl.float32) - mu * gc * rs
        xv = tl.load(X + base + idx, mask=m, other=0.0).to(tl.float32)
        dz = _grad_z(tl.load(DY + base + idx, mask=m, other=0.0).to(tl.float32), xv * gc * rs + b, SILU)
        dx = rs * (dz * gc - m1 - (xv - mu) * rs * m2)
        tl.store(DX + base + idx, dx.to(DX.dtype.element_ty), mask=m)


def _check(x: torch.Tensor, gamma: torch.Tensor, num_groups: int) -> tuple[int, int, int]:
    """Validate inputs; return (N, C, HW)."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"triton group_norm_silu: x must be float32/float16/bfloat16, got {x.dtype}")
    n, c = x.shape[0], x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"triton group_norm_silu: num_groups={num_groups} must divide C={c}")
    if gamma.shape != (n, c):
        raise ValueError(f"triton group_norm_silu: gamma/beta must be (N, C)=({n}, {c}), got {tuple(gamma.shape)}")
    return n, c, x.numel() // max(n * c, 1)


def _blocks(hw: int, d: int) -> tuple[int, int]:
    """(BLOCK_HW, BLOCK): power-of-two tile sizes for one channel and for one whole group."""
    return min(triton.next_power_of_2(hw), 1024), min(triton.next_power_of_2(d), 2048)


@torch.library.custom_op("shapflow_triton::group_norm_silu", mutates_args=())
def group_norm_silu_op(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int, eps: float, silu: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward: (y, mean, rstd); x (N, C, *spatial) contiguous, gamma/beta (N, C), stats (N, G) float32."""
    n, c, hw = _check(x, gamma, num_groups)
    y = torch.empty_like(x)
    mean = x.new_empty((n, num_groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    cg = c // num_groups
    _, block = _blocks(hw, cg * hw)
    _gn_fwd_kernel[(n * num_groups,)](x, gamma, beta, y, mean, rstd, c, hw, num_groups, cg, eps,
                                      SILU=silu, BLOCK=block, num_warps=4 if block <= 1024 else 8)
    return y, mean, rstd


@torch.library.custom_op("shapflow_triton::group_norm_silu_backward", mutates_args=())
def group_norm_silu_backward_op(
    grad_y: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, mean: torch.Tensor,
    rstd: torch.Tensor, num_groups: int, silu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward: (dx, dgamma, dbeta) with dgamma/dbeta (N, C) per-sample affine gradients."""
    n, c, hw = _check(x, gamma, num_groups)
    dx = torch.empty_like(x)
    dgamma = torch.empty_like(gamma)
    dbeta = torch.empty_like(beta)
    cg = c // num_groups
    block_hw, block = _blocks(hw, cg * hw)
    _gn_bwd_kernel[(n * num_groups,)](grad_y, x, gamma, beta, mean, rstd, dx, dgamma, dbeta, c, hw, num_groups,
                                      cg, SILU=silu, BLOCK_HW=block_hw, BLOCK=block,
                                      num_warps=4 if block <= 1024 else 8)
    return dx, dgamma, dbeta


register_fake_kernels("shapflow_triton::group_norm_silu", "shapflow_triton::group_norm_silu_backward", torch.float32)
register_python_autograd("shapflow_triton::group_norm_silu", "shapflow_triton::group_norm_silu_backward")
