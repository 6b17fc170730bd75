"""Image encoders of the properties (CLIP or BLIP vision towers via transformers), from local folders only.

``load_image_encoder(folder)`` reads ``config.json`` to pick the class (a CLIP vision model with
projection, or BLIP's vision model) and loads it with ``local_files_only=True``: nothing is ever
downloaded. ``embed_images`` does the preprocessing in torch (no torchvision, no PIL round trip):
[-1, 1] images -> [0, 1] -> bicubic resize to the encoder's ``image_size`` -> per-channel
normalisation with the mean/std of ``preprocessor_config.json`` (CLIP's if absent) -> embeddings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageEncoder", "embed_images", "load_image_encoder"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ImageEncoder:
    """A vision tower and its preprocessing; ``kind`` is ``clip`` (projected embeds) or ``blip`` (pooled)."""

    model: torch.nn.Module
    kind: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def dim(self) -> int:
        """Width of the embeddings ``embed_images`` returns."""
        cfg = self.model.config
        return int(cfg.projection_dim if self.kind == "clip" else cfg.hidden_size)


def _weights_present(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def _preprocessing(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return CLIP_MEAN, CLIP_STD
    cfg = json.loads(path.read_text())
    return tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))


def load_image_encoder(folder: str | Path) -> ImageEncoder:
    """A CLIP (``CLIPVisionModelWithProjection``) or BLIP vision encoder from a local snapshot folder."""
    from transformers import BlipVisionModel, CLIPVisionModelWithProjection

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file() or not _weights_present(folder):
        raise FileNotFoundError(f"image encoder folder {folder} must hold config.json and *.safetensors (or *.bin) "
                                "weights: save a CLIP/BLIP vision model there with save_pretrained")
    model_type = json.loads(config_path.read_text()).get("model_type", "")
    if model_type.startswith("clip"):
        model, kind = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True), "clip"
    elif model_type.startswith("blip"):
        model, kind = BlipVisionModel.from_pretrained(folder, local_files_only=True), "blip"
    else:
        raise ValueError(f"{config_path} has model_type={model_type!r}: expected a CLIP or BLIP (vision) model")
    vision_cfg = getattr(model.config, "vision_config", model.config)
    mean, std = _preprocessing(folder)
    return ImageEncoder(model.eval().requires_grad_(False), kind, int(vision_cfg.image_size), mean, std)


@torch.no_grad()
def embed_images(encoder: ImageEncoder, images: torch.Tensor, *, batch_size: int = 64,
                 normalize: bool = True) -> torch.Tensor:
    """Embeddings (N, encoder.dim) of images (N, 3, H, W) in [-1, 1]; L2-normalised unless ``normalize=False``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be RGB (N, 3, H, W), got shape {tuple(images.shape)}")
    device = next(encoder.model.parameters()).device
    mean = torch.tensor(encoder.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(encoder.std, device=device).view(1, 3, 1, 1)
    chunks = []
    for batch in images.split(batch_size):
        x = (batch.to(device).float() + 1.0) / 2.0
        x = F.interpolate(x, size=(encoder.image_size, encoder.image_size), mode="bicubic", align_corners=False)
        x = (x.clamp(0.0, 1.0) - mean) / std
        out = encoder.model(pixel_values=x)
        chunks.append(out.image_embeds if encoder.kind == "clip" else out.pooler_output)
    embeddings = torch.cat(chunks).float().cpu()
    return F.normalize(embeddings, dim=1) if normalize else embeddings
