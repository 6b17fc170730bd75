"""Latent diffusion sampling: DDIM in latent space from the common noise, then decoding to images."""

from __future__ import annotations

import torch

from shapflow.config import DiffusionConfig, SampleConfig
from shapflow.generation.ddim import denoise
from shapflow.models.latent import Autoencoder, decode_latents

__all__ = ["sample_latent_images"]


def sample_latent_images(denoiser: torch.nn.Module, autoencoder: Autoencoder, latent_shape: tuple[int, int, int],
                         cfg: SampleConfig, diffusion: DiffusionConfig, *,
                         num_images: int | None = None, precision: str = "fp32") -> torch.Tensor:
    """DDIM in latent space with common random numbers (no clipping: latents are not in [-1, 1]), then decode:
    images (N, 3, H, W) in [-1, 1]. ``diffusion.beta_schedule`` must match training (``scaled_linear`` for SD).
    ``precision``: the denoiser's arithmetic (the decoder runs as loaded)."""
    latents = denoise(denoiser, latent_shape, cfg, diffusion, pixel_space=False, num_images=num_images,
                      precision=precision)
    return decode_latents(autoencoder, latents)
