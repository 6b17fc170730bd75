"""Typed front of the fused GroupNorm+SiLU op: C++/CUDA (``torch.ops.shapflow``), Triton, or eager.

All backends share one formulation: one kernel computes ``act((x - mean_g) * rstd_g * gamma + beta)``
with an affine ``gamma, beta`` that is either the GroupNorm's own (C,) weight/bias, shared by every
sample, or per-sample (N, C) rows into which the time embedding's scale/shift are folded by cheap
torch ops (so autograd reduces their gradients). The C++ backend chooses and folds in C++
(``shapflow::group_norm_silu_affine``: a plain GroupNorm runs the kernel alone) and differentiates in
C++ (the core op's autograd), so no Python op runs per call; Triton always folds to (N, C) with
``registration.fold_affine`` and gets autograd from ``registration.register_python_autograd``.
"""

from __future__ import annotations

import torch

from shapflow.kernels._loader import load_extension
from shapflow.kernels.reference import group_norm_silu_reference
from shapflow.kernels.registration import fold_affine, register_fake_kernels

__all__ = ["group_norm_silu"]


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
        # Triton only when asked: importing it costs seconds, and TRITON_INTERPRET must be set before it on CPU
        from shapflow.kernels.triton_ops import group_norm_silu_op

        gamma, beta = fold_affine(x, weight, bias, scale, shift)
        return group_norm_silu_op(x.contiguous(), gamma, beta, num_groups, eps, silu)[0]
    raise ValueError(f"group_norm_silu: backend={backend!r} is not one of 'cpp', 'triton', 'eager'")
