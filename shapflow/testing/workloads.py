"""The UNets and steps the kernels are tuned for, shared by benchmarks, profiling and tests.

Pruned-shaped models are built directly with diffusers at the widths structured pruning leaves:
digits (16, 32) -> (8, 16) with 4 groups; cifar20 (128, 256, 256, 256) minus 30% of channels ->
(90, 180, 180, 180) with 30 groups (3 and 6 channels per group: irregular, not multiples of 8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import UNet2DModel

from shapflow.training.loop import make_optimizer

__all__ = ["build_cifar20_unet", "build_digits_unet", "make_sampling_step", "make_sft_step"]


def build_digits_unet(pruned: bool = True, seed: int = 0) -> UNet2DModel:
    """Digits UNet (8x8, 1 channel); pruned: widths (8, 16), 4 groups."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16) if pruned else (16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, add_attention=False,
    )


def build_cifar20_unet(pruned: bool = True, seed: int = 0) -> UNet2DModel:
    """cifar20 UNet (32x32, 3 channels, 35.7M params); pruned: widths (90, 180, 180, 180), 30 groups."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3,
        block_out_channels=(90, 180, 180, 180) if pruned else (128, 256, 256, 256),
        layers_per_block=2, norm_num_groups=30 if pruned else 32,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )


def _batch(unet: UNet2DModel, batch: int, device: torch.device, seed: int) -> tuple[torch.Tensor, ...]:
    """(x0, eps, t): random images (batch, C, S, S), noise of that shape, timesteps (batch,)."""
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    shape = (batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x0.to(device), eps.to(device), t.to(device)


def make_sft_step(unet: UNet2DModel, batch: int, seed: int = 0, lr: float = 1e-4,
                  fused_optimizer: bool = True) -> Callable[[], torch.Tensor]:
    """One sFT step on a fixed random batch: forward, eps-MSE loss, backward, the training loop's AdamW step
    (``shapflow.training.loop.make_optimizer``; ``fused_optimizer=False``: torch's default AdamW); returns the loss."""
    device = next(unet.parameters()).device
    x0, eps, t = _batch(unet, batch, device, seed)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, device=device), 0)[t].view(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    trained = [p for p in unet.parameters() if p.requires_grad]  # a LoRA'd UNet trains its adapter only
    opt = make_optimizer(trained, "adamw", lr, weight_decay=1e-2, fused=fused_optimizer)
    unet.train()

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(unet(x_t, t).sample, eps)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def make_sampling_step(unet: UNet2DModel, batch: int, seed: int = 0) -> Callable[[], torch.Tensor]:
    """One sampling step: a UNet forward on a noisy batch under no_grad; returns eps_hat."""
    device = next(unet.parameters()).device
    x_t, _, t = _batch(unet, batch, device, seed)
    unet.eval()

    def step() -> torch.Tensor:
        with torch.no_grad():
            return unet(x_t, t).sample

    return step
