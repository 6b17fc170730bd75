"""Deterministic DDIM generation with common random numbers (CRN).

The initial noise of all ``num_images`` images is drawn at once from a generator seeded with
``cfg.seed`` BEFORE batching, so image i starts from the same noise for every model and every
batch size: differences between coalitions' images come from the models, not from the noise.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DModel

from shapflow.config import DiffusionConfig, SampleConfig

__all__ = ["initial_noise", "sample"]


def initial_noise(cfg: SampleConfig, shape: tuple[int, int, int], num_images: int | None = None) -> torch.Tensor:
    """(N, C, H, W) standard normal noise, a function of the seed only (prefix-stable in N)."""
    n = cfg.num_images if num_images is None else num_images
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.randn((n, *shape), generator=generator)


@torch.no_grad()
def sample(model: UNet2DModel, cfg: SampleConfig, diffusion: DiffusionConfig, *,
           num_images: int | None = None) -> torch.Tensor:
    """Generate images in [-1, 1], (N, C, H, W), on the CPU, with DDIM on the model's device.

    eta from config; eta=0 is deterministic. The noise is drawn on the CPU, so every device starts
    from the same numbers.
    """
    scheduler = DDIMScheduler(num_train_timesteps=diffusion.num_train_timesteps, beta_start=diffusion.beta_start,
                              beta_end=diffusion.beta_end, beta_schedule=diffusion.beta_schedule,
                              prediction_type="epsilon",
                              clip_sample=True)
    scheduler.set_timesteps(cfg.num_inference_steps)
    size = model.config.sample_size
    noise = initial_noise(cfg, (model.config.in_channels, size, size), num_images)
    step_generator = torch.Generator().manual_seed(cfg.seed + 1)  # only used when eta > 0
    was_training = model.training
    model.eval()
    outputs = []
    device = next(model.parameters()).device
    for x in noise.split(cfg.batch_size):
        x = x.to(device)
        for t in scheduler.timesteps:
            eps = model(x, t).sample
            x = scheduler.step(eps, t, x, eta=cfg.eta, generator=step_generator).prev_sample
        outputs.append(x.clamp(-1.0, 1.0).cpu())
    model.train(was_training)
    return torch.cat(outputs)
