"""Fused kernels for the pruned UNet: GroupNorm(+time scale/shift)+SiLU in C++/CUDA and Triton.

``optimize(unet, backend)`` swaps a diffusers UNet's blocks for fused ones (state_dict unchanged);
``group_norm_silu`` is the op itself; ``backend_info()`` says what is active and why.
"""

from __future__ import annotations

from shapflow.kernels._loader import load_error, load_extension
from shapflow.kernels.ops import group_norm_silu
from shapflow.kernels.optimize import BACKENDS, available_backends, optimize, resolve_backend
from shapflow.kernels.reference import group_norm_silu_reference

__all__ = [
    "BACKENDS",
    "available_backends",
    "backend_info",
    "group_norm_silu",
    "group_norm_silu_reference",
    "optimize",
    "resolve_backend",
]


def backend_info() -> dict[str, object]:
    """What is active: extension source ('prebuilt'/'jit'/None), its build info, load error, and
    the backend 'auto' picks on CPU and (if a GPU is visible) on CUDA."""
    import torch

    ext = load_extension()
    source, error = load_error()
    info: dict[str, object] = {
        "extension": source,
        "build_info": dict(ext.build_info()) if ext is not None else None,
        "error": error,
        "auto_cpu": resolve_backend("auto", "cpu"),
    }
    if torch.cuda.is_available():
        info["auto_cuda"] = resolve_backend("auto", "cuda")
    return info
