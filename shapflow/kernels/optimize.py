"""Swap a diffusers UNet's GroupNorm+SiLU pairs for the fused kernels, in place.

``optimize(unet, backend)`` changes the classes of ``ResnetBlock2D`` blocks (and of the UNet's
output norm) to subclasses whose forward calls the fused op; no parameter or buffer is added,
removed or renamed, so ``state_dict()`` keys and shapes are unchanged and EMA copies, safetensors
files and ``copy.deepcopy`` keep working. Works for any (pruned, odd) widths the GroupNorms accept.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from shapflow.kernels._loader import load_extension
from shapflow.kernels.ops import group_norm_silu

__all__ = [
    "AUTO_MEASURED_FASTER",
    "BACKENDS",
    "FusedGroupNorm",
    "FusedResnetBlock2D",
    "available_backends",
    "optimize",
    "resolve_backend",
]

BACKENDS = ("auto", "cpp", "triton", "eager")

# Fused backends that benchmarks/kernels.py measured faster than eager end to end (sFT and sampling
# steps of the pruned UNets), per device; 'auto' uses only these so it is never slower than eager.
# Measured 2026-11-28 (H200, torch 2.11) and 2026-12-01 (CPU, torch 2.13: C++ 1.03-1.08 on the digits steps,
# parity on cifar20): none is faster on both models, so 'auto' is eager.
AUTO_MEASURED_FASTER: dict[str, tuple[str, ...]] = {"cpu": (), "cuda": ()}


@functools.cache
def available_backends(device_type: str) -> tuple[str, ...]:
    """Fused backends that can run on ``device_type`` ('cpu' or 'cuda'), fastest first."""
    found = []
    ext = load_extension()
    if ext is not None and (device_type == "cpu" or ext.build_info()["with_cuda"]):
        found.append("cpp")
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if importlib.util.find_spec("triton") is not None and (device_type == "cuda" or interpret):
        found.append("triton")
    return tuple(found)


def resolve_backend(backend: str, device_type: str) -> str:
    """The concrete backend for a requested one: 'auto' -> the first available backend measured
    faster than eager on this device (``AUTO_MEASURED_FASTER``), else 'eager'.

    Raises ValueError for an unknown name and RuntimeError for an explicit unavailable one.
    """
    if backend not in BACKENDS:
        raise ValueError(f"kernels backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "eager":
        return "eager"
    found = available_backends(device_type)
    if backend == "auto":
        return next((b for b in found if b in AUTO_MEASURED_FASTER.get(device_type, ())), "eager")
    if backend not in found:
        raise RuntimeError(
            f"kernels backend={backend!r} is not available on {device_type} (available: {found or 'none'}); "
            "build the extension (`pip install --no-build-isolation -e .`), install triton, or use backend='auto'."
        )
    return backend


class FusedGroupNorm(nn.GroupNorm):
    """nn.GroupNorm (+ SiLU when ``apply_silu``) through one fused kernel; same parameters."""

    apply_silu: bool = False
    shapflow_backend: str = "eager"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = resolve_backend(self.shapflow_backend, x.device.type)
        return group_norm_silu(x, self.weight, self.bias, self.num_groups, self.eps,
                               silu=self.apply_silu, backend=backend)


class FusedResnetBlock2D(ResnetBlock2D):
    """ResnetBlock2D whose norm1+SiLU and norm2(+time scale/shift)+SiLU each run as one kernel."""

    shapflow_backend: str = "eager"

    def _norm_act(self, norm: nn.GroupNorm, x: torch.Tensor, backend: str, scale=None, shift=None) -> torch.Tensor:
        return group_norm_silu(x, norm.weight, norm.bias, norm.num_groups, norm.eps,
                               scale=scale, shift=shift, silu=True, backend=backend)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None, *args, **kwargs) -> torch.Tensor:
        """Same computation as ResnetBlock2D.forward: x (N, C_in, H, W), temb (N, T) -> (N, C_out, H', W')."""
        backend = resolve_backend(self.shapflow_backend, input_tensor.device.type)
        hidden = self._norm_act(self.norm1, input_tensor, backend)
        if self.upsample is not None:
            input_tensor, hidden = self.upsample(input_tensor.contiguous()), self.upsample(hidden.contiguous())
        elif self.downsample is not None:
            input_tensor, hidden = self.downsample(input_tensor), self.downsample(hidden)
        hidden = self.conv1(hidden)
        if self.time_emb_proj is not None and temb is not None:
            if not self.skip_time_act:
                temb = self.nonlinearity(temb)
            temb = self.time_emb_proj(temb)
        if self.time_embedding_norm == "scale_shift":
            if temb is None:
                raise ValueError("`temb` must not be None when `time_embedding_norm` is 'scale_shift'")
            scale, shift = torch.chunk(temb, 2, dim=1)
            hidden = self._norm_act(self.norm2, hidden, backend, scale=scale, shift=shift)
        else:
            if temb is not None:
                hidden = hidden + temb[:, :, None, None]
            hidden = self._norm_act(self.norm2, hidden, backend)
        hidden = self.conv2(self.dropout(hidden))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor.contiguous() if self.training else input_tensor)
        return (input_tensor + hidden) / self.output_scale_factor


def _fusable(block: ResnetBlock2D) -> bool:
    """True when the block's nonlinearity is SiLU and its time-embedding mode is one we fuse."""
    return isinstance(block.nonlinearity, nn.SiLU) and block.time_embedding_norm in ("default", "scale_shift")


def optimize(unet: nn.Module, backend: str = "auto") -> nn.Module:
    """Make ``unet``'s GroupNorm+SiLU pairs run fused with ``backend``; returns the same module.

    backend: 'auto' (a backend measured faster on the device each call runs on, else eager), 'cpp', 'triton' or
    'eager' (model returned untouched). Idempotent; state_dict keys and shapes never change.
    """
    if backend == "eager":
        return unet
    param = next(unet.parameters(), None)
    resolve_backend(backend, param.device.type if param is not None else "cpu")  # fail early, clearly
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D) and _fusable(module):
            module.__class__ = FusedResnetBlock2D
            module.shapflow_backend = backend
    norm_out, act = getattr(unet, "conv_norm_out", None), getattr(unet, "conv_act", None)
    if isinstance(norm_out, nn.GroupNorm) and isinstance(act, nn.SiLU):
        norm_out.__class__ = FusedGroupNorm
        norm_out.apply_silu, norm_out.shapflow_backend = True, backend
        unet.conv_act = nn.Identity()
    elif isinstance(norm_out, FusedGroupNorm):
        norm_out.shapflow_backend = backend
    return unet
