"""Attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA), made explicit and checkable.

diffusers 0.42 already gives every ``Attention`` of ``UNet2DModel`` and ``UNet2DConditionModel``
``AttnProcessor2_0`` (SDPA: flash / memory-efficient / cuDNN kernels on CUDA, the fused CPU kernel on CPU)
whenever torch has SDPA and the layer scales q.k (``scale_qk``, the default). ``sdpa_attention`` makes that
a guarantee: a layer left on the classic ``AttnProcessor`` (explicit scores, softmax, matmul) is switched,
a layer with any other processor (LoRA, custom) is left alone. ``VmapAttnProcessor`` is the same computation
with a contiguous output, for models called under ``torch.func.vmap`` (stacked training and sampling).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

__all__ = ["VmapAttnProcessor", "attention_processors", "sdpa_attention", "vmap_safe_attention"]


class VmapAttnProcessor(AttnProcessor2_0):
    """``AttnProcessor2_0`` whose (N, C, H, W) output is contiguous.

    SDPA's output comes back channels-last strided; the next GroupNorm asks for that memory format, which a
    tensor batched by ``torch.func.vmap`` cannot answer ("NYI: querying is_contiguous inside of vmap"). One
    copy per attention layer; same values.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args,
                 **kwargs) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args,
                                **kwargs).contiguous()


def _layers(model: torch.nn.Module) -> list[tuple[str, Attention]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, Attention)]


def attention_processors(model: torch.nn.Module) -> dict[str, str]:
    """{attention layer name: its processor's class name} (empty for a model without attention)."""
    return {name: type(layer.processor).__name__ for name, layer in _layers(model)}


def sdpa_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Put every attention layer still on the classic ``AttnProcessor`` on SDPA (``AttnProcessor2_0``); returns
    ``model``. Parameters, buffers and ``state_dict`` are untouched."""
    for _, layer in _layers(model):
        if type(layer.processor) is AttnProcessor:
            layer.set_processor(AttnProcessor2_0())
    return model


def vmap_safe_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Put every SDPA attention layer on ``VmapAttnProcessor`` (for a model called under vmap); returns ``model``."""
    for _, layer in _layers(sdpa_attention(model)):
        if type(layer.processor) is AttnProcessor2_0:
            layer.set_processor(VmapAttnProcessor())
    return model
