"""Deterministic DDIM generation with common random numbers (CRN), in pixel or latent space.

The initial noise of all ``num_images`` images is drawn at once from a generator seeded with
``cfg.seed`` BEFORE batching, so image i starts from the same noise for every model and every
batch size: differences between coalitions' images come from the models, not from the noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, UNet2DModel

from shapflow.config import DiffusionConfig, SampleConfig
from shapflow.generation.deadline import check_deadline
from shapflow.models.precision import compute_precision
from shapflow.models.stacked import StackedModules

__all__ = ["denoise", "denoise_stacked", "initial_noise", "sample", "sample_stacked"]


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
    was_training = denoiser.training
    denoiser.eval()
    device = next(denoiser.parameters()).device
    out = _ddim(lambda x, t: denoiser(x[0], t).sample[None], 1, shape, cfg, diffusion, pixel_space=pixel_space,
                num_images=num_images, precision=precision, device=device)
    denoiser.train(was_training)
    return out[0]


@torch.no_grad()
def denoise_stacked(denoisers: list[UNet2DModel], shape: tuple[int, int, int], cfg: SampleConfig,
                    diffusion: DiffusionConfig, *, pixel_space: bool, num_images: int | None = None,
                    precision: str = "fp32") -> torch.Tensor:
    """``denoise`` for K architecture-equal UNets in one loop: (K, N, *shape) on the CPU, where member k equals
    ``denoise(denoisers[k], ...)`` up to float rounding. Every member starts from the same common noise (and, for
    eta > 0, gets the same step noise), as K lone runs would; each step runs the K UNets as one vmapped call."""
    stacked = StackedModules([d.eval() for d in denoisers])
    device = next(denoisers[0].parameters()).device
    return _ddim(stacked, len(denoisers), shape, cfg, diffusion, pixel_space=pixel_space, num_images=num_images,
                 precision=precision, device=device)


def _ddim(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], members: int, shape: tuple[int, int, int],
          cfg: SampleConfig, diffusion: DiffusionConfig, *, pixel_space: bool, num_images: int | None,
          precision: str, device: torch.device) -> torch.Tensor:
    """The DDIM loop of ``members`` models at once: ``predict(x, t)`` maps (K, B, *shape) samples to their
    predicted noise. The step noise (eta > 0) is drawn per image, as a lone run draws it, and shared by the K."""
    scheduler = _scheduler(cfg, diffusion, pixel_space)
    noise = initial_noise(cfg, shape, num_images)
    step_generator = torch.Generator().manual_seed(cfg.seed + 1)  # only used when eta > 0
    outputs = []
    for batch in noise.split(cfg.batch_size):
        x = batch.to(device).expand(members, *batch.shape).contiguous()
        for t in scheduler.timesteps:
            check_deadline(step=True)  # a served request's time limit binds between steps (generation.deadline)
            with compute_precision(precision, device):
                eps = predict(x, t).float()
            step_noise = None
            if cfg.eta > 0:
                step_noise = torch.randn(batch.shape, generator=step_generator).to(device).expand_as(x)
            x = scheduler.step(eps, t, x, eta=cfg.eta, variance_noise=step_noise).prev_sample
        outputs.append((x.clamp(-1.0, 1.0) if pixel_space else x).cpu())
    return torch.cat(outputs, dim=1)


def sample(model: UNet2DModel, cfg: SampleConfig, diffusion: DiffusionConfig, *,
           num_images: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """Generate images in [-1, 1], (N, C, H, W), on the CPU, with DDIM on the pixel-space model's device."""
    size = model.config.sample_size
    return denoise(model, (model.config.in_channels, size, size), cfg, diffusion, pixel_space=True,
                   num_images=num_images, precision=precision)


def sample_stacked(models: list[UNet2DModel], cfg: SampleConfig, diffusion: DiffusionConfig, *,
                   num_images: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """``sample`` of K architecture-equal pixel-space models in one vmapped loop: (K, N, C, H, W) on the CPU."""
    size = models[0].config.sample_size
    return denoise_stacked(models, (models[0].config.in_channels, size, size), cfg, diffusion, pixel_space=True,
                           num_images=num_images, precision=precision)
