"""Config sections: sampling, the external-asset use cases' (assets, LoRA), and the shared validation helpers.

Split from ``shapflow.config`` to keep modules small; import everything from ``shapflow.config``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ASSET_KEYS", "REGISTRY_NAME", "REGISTRY_NAME_RULE", "AssetsConfig", "ConfigError", "InputError",
           "LoraConfig", "SampleConfig", "check"]

# The one rule for names that reach the model registry (model names, aliases; a use case's name, which names its
# models): they also enter MLflow filter strings, whose grammar has no escapes, so no quotes, spaces or operators.
REGISTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
REGISTRY_NAME_RULE = "1 to 128 letters a-z A-Z, digits, '.', '_' or '-', starting with a letter or digit"


class InputError(ValueError):
    """Bad input the user can fix (a config, a data or model file, a name to look up): the message names the thing
    and the fix. Entry points turn it into that message and exit status 2, never a traceback."""


class ConfigError(InputError):
    """A configuration value is invalid; the message names the field, the value and the fix."""


def check(condition: bool, field_name: str, value: Any, fix: str) -> None:
    """Raise ``ConfigError`` naming ``field_name``, ``value`` and ``fix`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{field_name}={value!r} is invalid: {fix}")


@dataclass(frozen=True)
class AssetsConfig:
    """The single place for every external asset (a local path, or a hub id where noted); None = not set.

    Which keys a use case needs follows ``data.source`` (``shapflow.data.assets.USE_CASE_ASSETS``);
    ``shapflow assets check`` lists them with their expected layout and where to obtain them.
    """

    cifar100: str | None = None  # cifar-100-python.tar.gz or its extracted folder
    fid_inception: str | None = None  # pt_inception-2015-12-05-6726825d.pth
    celebahq_images: str | None = None  # folder of CelebA-HQ images
    celebahq_labels: str | None = None  # CSV image,identity
    ldm_celebahq: str | None = None  # snapshot of CompVis/ldm-celebahq-256 (its vqvae/)
    face_encoder: str | None = None  # CLIP/BLIP vision model folder
    artbench_images: str | None = None  # artbench-10-imagefolder-split/
    artbench_metadata: str | None = None  # ArtBench-10.csv
    stable_diffusion: str | None = None  # diffusers SD 1.x snapshot folder, or a hub id
    clip_vit_l14: str | None = None  # CLIP ViT-L/14 folder
    laion_aesthetic_head: str | None = None  # sa_0_4_vit_l_14_linear.pth
    allow_download: bool = False  # hub ids may be downloaded on first use


ASSET_KEYS = tuple(k for k in AssetsConfig.__dataclass_fields__ if k != "allow_download")


@dataclass(frozen=True)
class LoraConfig:
    """The SD + LoRA family's knobs (paper: rank 256, alpha = rank, half the LoRA parameters kept)."""

    caption: str = "a Post-Impressionist painting"
    rank: int = 256
    alpha: float | None = None  # None: alpha = rank (scale 1)
    lora_param_fraction_kept: float = 0.5
    guidance_scale: float = 7.5

    def __post_init__(self) -> None:
        check(self.rank >= 1, "lora.rank", self.rank, "use a rank of at least 1")
        check(0.0 < self.lora_param_fraction_kept <= 1.0, "lora.lora_param_fraction_kept",
              self.lora_param_fraction_kept, "give the fraction of LoRA parameters kept, in (0, 1]")
        check(self.guidance_scale >= 1.0, "lora.guidance_scale", self.guidance_scale,
              "use 1 (no guidance) or more")


@dataclass(frozen=True)
class SampleConfig:
    """DDIM generation with common random numbers: image i always starts from the same noise."""

    num_images: int = 512
    num_inference_steps: int = 25
    eta: float = 0.0
    batch_size: int = 512
    seed: int = 42

    def __post_init__(self) -> None:
        check(self.num_images >= 2, "sampling.num_images", self.num_images, "generate at least 2 images")
        check(self.num_inference_steps >= 1, "sampling.num_inference_steps", self.num_inference_steps,
              "use at least one DDIM step")
        check(0.0 <= self.eta <= 1.0, "sampling.eta", self.eta, "use eta in [0, 1] (0 = deterministic DDIM)")
        check(self.batch_size >= 1, "sampling.batch_size", self.batch_size, "use a positive batch size")
