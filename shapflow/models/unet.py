"""Build diffusers ``UNet2DModel`` from config (no download); its attention runs through SDPA."""

from __future__ import annotations

from diffusers import UNet2DModel

from shapflow.config import ModelConfig
from shapflow.models.attention import sdpa_attention

__all__ = ["build_unet", "count_parameters"]


def build_unet(cfg: ModelConfig, seed: int = 0) -> UNet2DModel:
    """A randomly initialised UNet of the given architecture; ``seed`` fixes the initial weights."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return sdpa_attention(UNet2DModel(
            sample_size=cfg.sample_size,
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            down_block_types=cfg.down_block_types,
            up_block_types=cfg.up_block_types,
            norm_num_groups=cfg.norm_num_groups,
            add_attention=cfg.add_attention,
            attention_head_dim=cfg.attention_head_dim,
        ))


def count_parameters(model) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in model.parameters())
