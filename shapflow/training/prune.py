"""Structured channel pruning of diffusers UNets with Torch-Pruning.

The ratio is named for what it is: ``channel_fraction_removed`` (0.5 removes half the channels of
every prunable layer). ``conv_out`` is never pruned (it must emit the image channels); GroupNorm
stays valid because Torch-Pruning removes the same positions in every group (``round_to`` rounds
the channels kept per group); attention q/k/v are pruned head-consistently (head dimension shrinks, head
count stays). After pruning, the cached ``channels``/``out_channels`` attributes of diffusers'
``Upsample2D``/``Downsample2D`` (which their forward asserts on) are rewritten from their convs.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
import torch_pruning as tp
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D

from shapflow.config import DiffusionConfig, PruneConfig
from shapflow.data import ContributorDataset
from shapflow.training.loop import ddpm_scheduler, diffusion_loss

__all__ = ["PruneReport", "prune_unet"]


@dataclass(frozen=True)
class PruneReport:
    """Size of the model before and after pruning."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    block_out_channels_after: tuple[int, ...]

    def as_dict(self) -> dict[str, float]:
        return {"params_before": self.params_before, "params_after": self.params_after,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "params_kept_fraction": self.params_after / self.params_before}


def _example_inputs(model: UNet2DModel) -> dict[str, torch.Tensor]:
    size = model.config.sample_size
    return {"sample": torch.zeros(1, model.config.in_channels, size, size), "timestep": torch.ones(1)}


def _importance(cfg: PruneConfig) -> tp.importance.Importance:
    if cfg.importance == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=2)


def _accumulate_taylor_gradients(model: UNet2DModel, data: ContributorDataset, cfg: PruneConfig,
                                 diffusion: DiffusionConfig) -> None:
    """Taylor importance needs gradients of the training loss on a few batches."""
    generator = torch.Generator().manual_seed(cfg.seed)
    scheduler = ddpm_scheduler(diffusion)
    model.zero_grad()
    for _ in range(cfg.taylor_batches):
        index = torch.randint(0, len(data), (min(64, len(data)),), generator=generator)
        diffusion_loss(model, data.images[index], scheduler, generator).backward()


def _fix_resampling_attributes(model: UNet2DModel) -> None:
    """Rewrite diffusers' cached channel counts that Torch-Pruning cannot see."""
    for module in model.modules():
        if isinstance(module, (Upsample2D, Downsample2D)) and getattr(module, "conv", None) is not None:
            module.channels = module.conv.in_channels
            module.out_channels = module.conv.out_channels
        if isinstance(module, Attention):
            module.inner_dim = module.to_q.out_features
            module.inner_kv_dim = module.to_k.out_features


def _count(model: UNet2DModel, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(MACs, params) of one forward pass; Torch-Pruning's counter prints noise, which we drop."""
    with contextlib.redirect_stdout(io.StringIO()):
        macs, params = tp.utils.count_ops_and_params(model, inputs)
    return int(macs), int(params)


def _block_widths(model: UNet2DModel) -> tuple[int, ...]:
    return tuple(block.resnets[-1].conv2.out_channels for block in model.down_blocks)


def prune_unet(model: UNet2DModel, cfg: PruneConfig, *, data: ContributorDataset | None = None,
               diffusion: DiffusionConfig | None = None) -> tuple[UNet2DModel, PruneReport]:
    """Prune ``model`` in place (Taylor importance needs ``data`` and ``diffusion``); returns it and a report."""
    inputs = _example_inputs(model)
    macs_before, params_before = _count(model, inputs)
    if cfg.channel_fraction_removed > 0:
        attentions = [m for m in model.modules() if isinstance(m, Attention)]
        num_heads = {layer: attn.heads for attn in attentions for layer in (attn.to_q, attn.to_k, attn.to_v)}
        pruner = tp.pruner.MetaPruner(
            model, inputs, importance=_importance(cfg), pruning_ratio=cfg.channel_fraction_removed,
            ignored_layers=[model.conv_out], round_to=cfg.round_to,
            num_heads=num_heads, prune_num_heads=False, prune_head_dims=True)
        if cfg.importance == "taylor":
            if data is None or diffusion is None:
                raise ValueError("importance=taylor needs data and diffusion config to compute gradients")
            _accumulate_taylor_gradients(model, data, cfg, diffusion)
        pruner.step()
        model.zero_grad(set_to_none=True)
        _fix_resampling_attributes(model)
    macs_after, params_after = _count(model, inputs)
    report = PruneReport(params_before, params_after, macs_before, macs_after,
                         _block_widths(model))
    return model.eval(), report
