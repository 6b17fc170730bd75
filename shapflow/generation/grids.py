"""Image grids: a batch of generated (or real) images as one PNG, the picture every stage and report logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["image_grid"]


def image_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 4) -> Path:
    """PNG grid of the first nrow*nrow images (N, C, H, W) in [-1, 1], upscaled ``scale`` times."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images = images[: nrow * nrow].detach().cpu().clamp(-1, 1)
    count, channels, height, width = images.shape
    rows = -(-count // nrow)
    canvas = torch.ones(channels, rows * (height + 1) + 1, nrow * (width + 1) + 1)
    for k in range(count):
        r, c = divmod(k, nrow)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        canvas[:, top:top + height, left:left + width] = (images[k] + 1) / 2
    pixels = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)
    return path
