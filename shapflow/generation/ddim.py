"""Deterministic DDIM generation with common random numbers (CRN), in pixel or latent space.

The initial noise of all ``num_images`` images is drawn at once from a generator seeded with
``cfg.seed`` BEFORE batching, so image i starts from the same noise for every model and every
batch size: differences between coalitions' images come from the models, not from the noise.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DModel

from shapflow.config import DiffusionConfig, SampleConfig
from shapflow.training.precision import compute_precision

__all__ = ["denoise", "initial_noise", "sample"]


def initial_noise(cfg: SampleConfig, shape: tuple[int, int, int], num_images: int | None = None) -> torch.Tensor:
    """(N, C, H, W) standard normal noise, a function of the seed only (prefix-stable in N)."""
    n = cfg.num_images if num_images is None else num_images
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.randn((n, *shape), generator=generator)


def _scheduler(cfg: SampleConfig, diffusion: DiffusionConfig, pixel_space: bool) -> DDIMScheduler:
    scheduler = DDIMScheduler(num_train_timesteps=diffusion.num_train_timesteps, beta_start=diffusion.beta_start,
                              beta_end=diffusion.beta_end, beta_schedule=diffusion.beta_schedule,
                              prediction_type="epsilon", clip_sample=pixel_space, set_alpha_to_one=pixel_space)
    scheduler.set_timesteps(cfg.num_inference_steps)
    return scheduler


@torch.no_grad()
def denoise(denoiser: torch.nn.Module, shape: tuple[int, int, int], cfg: SampleConfig, diffusion: DiffusionConfig,
            *, pixel_space: bool, num_images: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """Run DDIM from the common noise: (N, *shape) on the CPU, computed on the denoiser's device.

    ``denoiser(x_t, t).sample`` predicts the noise (a ``UNet2DModel`` or the caption-conditioned SD UNet).
    ``pixel_space``: samples are images, clipped to [-1, 1] at every step and at the end; otherwise latents
    (no clipping, and the final step keeps alpha_prod of the last timestep, as latent diffusion samples).
    eta from ``cfg``; eta=0 is deterministic. The noise is drawn on the CPU, so every device starts from the
    same numbers. ``precision``: the denoiser's arithmetic (``compute_precision``); the DDIM update runs in fp32.
    """
    scheduler = _scheduler(cfg, diffusion, pixel_space)
    noise = initial_noise(cfg, shape, num_images)
    step_generator = torch.Generator().manual_seed(cfg.seed + 1)  # only used when eta > 0
    was_training = denoiser.training
    denoiser.eval()
    outputs = []
    device = next(denoiser.parameters()).device
    for x in noise.split(cfg.batch_size):
        x = x.to(device)
        for t in scheduler.timesteps:
            with compute_precision(precision, device):
                eps = denoiser(x, t).sample.float()
            x = scheduler.step(eps, t, x, eta=cfg.eta, generator=step_generator).prev_sample
        outputs.append((x.clamp(-1.0, 1.0) if pixel_space else x).cpu())
    denoiser.train(was_training)
    return torch.cat(outputs)


def sample(model: UNet2DModel, cfg: SampleConfig, diffusion: DiffusionConfig, *,
           num_images: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """Generate images in [-1, 1], (N, C, H, W), on the CPU, with DDIM on the pixel-space model's device."""
    size = model.config.sample_size
    return denoise(model, (model.config.in_channels, size, size), cfg, diffusion, pixel_space=True,
                   num_images=num_images, precision=precision)
