"""Plain-PyTorch GroupNorm(+scale/shift)(+SiLU): the eager fallback and the tests' oracle."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["group_norm_silu_reference"]


def group_norm_silu_reference(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    num_groups: int,
    eps: float = 1e-5,
    *,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    silu: bool = True,
) -> torch.Tensor:
    """act((GroupNorm(x) * (1 + scale) + shift)) exactly as diffusers' ResnetBlock2D computes it.

    x: (N, C, *spatial); weight, bias: (C,) or None; scale, shift: (N, C) or None.
    """
    y = F.group_norm(x, num_groups, weight, bias, eps)
    view = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
    if scale is not None:
        y = y * (1 + scale.reshape(view))
    if shift is not None:
        y = y + shift.reshape(view)
    return F.silu(y) if silu else y
