"""Image generation with common random numbers: DDIM in pixel space (and latent decoding)."""

from shapflow.generation.ddim import initial_noise, sample

__all__ = ["initial_noise", "sample"]
