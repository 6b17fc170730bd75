"""What every backend of the fused op shares: folding the time embedding's scale/shift into per-sample affine
rows, and registering an op's fake (meta) kernels and Python autograd with the dispatcher."""

from __future__ import annotations

import torch

__all__ = ["fold_affine", "register_fake_kernels", "register_python_autograd"]


def fold_affine(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gamma, beta), each (N, C) contiguous: weight * (1 + scale) and bias * (1 + scale) + shift."""
    n, c = x.shape[0], x.shape[1]
    gamma = weight if weight is not None else x.new_ones(c)
    beta = bias if bias is not None else x.new_zeros(c)
    if scale is not None:
        one_plus = 1 + scale.reshape(n, c)
        gamma, beta = gamma * one_plus, beta * one_plus
    if shift is not None:
        beta = beta + shift.reshape(n, c)
    return gamma.expand(n, c).contiguous(), beta.expand(n, c).contiguous()


def register_fake_kernels(op: str, backward_op: str, stats_dtype: torch.dtype | None) -> None:
    """Register fake (meta) kernels of ``op`` and its ``backward_op``, which torch.compile traces with.

    stats_dtype: dtype of the (N, G) mean/rstd outputs; None means float64 for float64 x, else float32.
    """

    def _stats(x: torch.Tensor) -> torch.dtype:
        if stats_dtype is not None:
            return stats_dtype
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    @torch.library.register_fake(op)
    def _fake(x, gamma, beta, num_groups, eps, silu):
        stats = x.new_empty((x.shape[0], num_groups), dtype=_stats(x))
        return torch.empty_like(x), stats, torch.empty_like(stats)

    @torch.library.register_fake(backward_op)
    def _fake_backward(grad_y, x, gamma, beta, mean, rstd, num_groups, silu):
        return torch.empty_like(x), torch.empty_like(gamma), torch.empty_like(beta)


def register_python_autograd(op: str, backward_op: str) -> None:
    """Register autograd of ``op`` in Python: its backward calls ``backward_op``; mean/rstd get no gradient.

    For ops without a C++ autograd kernel (the Triton ones); the C++ op has its own (csrc/).
    """

    def _setup_context(ctx, inputs, output):
        x, gamma, beta, num_groups, _eps, silu = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, gamma, beta, mean, rstd)
        ctx.num_groups, ctx.silu = num_groups, silu
        ctx.mark_non_differentiable(mean, rstd)

    namespace, name = backward_op.split("::")
    backward_fn = getattr(getattr(torch.ops, namespace), name)

    def _backward(ctx, grad_y, _grad_mean, _grad_rstd):
        x, gamma, beta, mean, rstd = ctx.saved_tensors
        dx, dgamma, dbeta = backward_fn(grad_y.contiguous(), x, gamma, beta, mean, rstd, ctx.num_groups, ctx.silu)
        return dx, dgamma, dbeta, None, None, None

    torch.library.register_autograd(op, _backward, setup_context=_setup_context)
