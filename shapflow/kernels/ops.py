"""Typed front of the fused GroupNorm+SiLU op: C++/CUDA (``torch.ops.shapflow``), Triton, or eager.

All backends share one formulation: one kernel computes ``act((x - mean_g) * rstd_g * gamma + beta)``
with an affine ``gamma, beta`` that is either the GroupNorm's own (C,) weight/bias, shared by every
sample, or per-sample (N, C) rows into which the time embedding's scale/shift are folded by cheap
torch ops (so autograd reduces their gradients). The C++ backend chooses and folds in C++
(``shapflow::group_norm_silu_affine``: a plain GroupNorm runs the kernel alone) and differentiates in
C++ (the core op's autograd), so no Python op runs per call; Triton always folds to (N, C) with
``fold_affine`` and gets autograd from ``register_python_autograd``.
"""

from __future__ import annotations

import torch

from shapflow.kernels._loader import load_extension
from shapflow.kernels.reference import group_norm_silu_reference

__all__ = ["fold_affine", "group_norm_silu", "register_fake_kernels", "register_python_autograd"]


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


_cpp_available: bool | None = None  # what _ensure_cpp_registered found; None until its first call


@torch.compiler.disable(recursive=False)
def _ensure_cpp_registered() -> bool:
    """Load the extension once and register its fake kernels; False when unavailable."""
    global _cpp_available
    if _cpp_available is None:
        ok = load_extension() is not None
        if ok:
            register_fake_kernels("shapflow::group_norm_silu", "shapflow::group_norm_silu_backward", None)
        _cpp_available = ok
    return _cpp_available


def _cpp_ready() -> bool:
    """Whether the C++ op can run. After the first call this is a read of a global: calling the
    compiler-disabled ``_ensure_cpp_registered`` each time cost 4-7 us per op, a sixth of the whole
    fused op at the digits shapes on CPU."""
    return _cpp_available if _cpp_available is not None else _ensure_cpp_registered()


def group_norm_silu(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float = 1e-5,
    *,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    silu: bool = True,
    backend: str = "cpp",
) -> torch.Tensor:
    """Fused act(GroupNorm(x) * (1 + scale) + shift); x: (N, C, *spatial) -> same shape.

    backend: "cpp" (extension; CPU or CUDA by x's device), "triton", or "eager" (reference).
    "cpp" falls back to eager when the extension is missing (the loader warned once).
    """
    if backend == "eager" or (backend == "cpp" and not _cpp_ready()):
        return group_norm_silu_reference(x, weight, bias, num_groups, eps, scale=scale, shift=shift, silu=silu)
    if backend == "cpp":
        return torch.ops.shapflow.group_norm_silu_affine(x, weight, bias, scale, shift, num_groups, eps, silu)
    if backend == "triton":
        from shapflow.kernels import triton_ops

        gamma, beta = fold_affine(x, weight, bias, scale, shift)
        return triton_ops.group_norm_silu_op(x.contiguous(), gamma, beta, num_groups, eps, silu)[0]
    raise ValueError(f"group_norm_silu: backend={backend!r} is not one of 'cpp', 'triton', 'eager'")
