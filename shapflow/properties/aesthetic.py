"""Aesthetic quality: a high quantile (paper: the 90th percentile) of the LAION aesthetic score.

The LAION aesthetic predictor v1 (``sa_0_4_vit_l_14_linear.pth``) is one ``Linear(768, 1)`` on
L2-normalised CLIP ViT-L/14 image embeddings; the file is a state dict ``{weight: (1, 768),
bias: (1,)}``, loaded with ``weights_only=True``. CLIP is transformers'
``CLIPVisionModelWithProjection`` from a local folder (no open_clip, which needs torchvision).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from shapflow.models.vision import ImageEncoder, embed_images, load_image_encoder
from shapflow.properties.proxy import QuantileProxy

__all__ = ["AestheticProperty", "load_aesthetic_property", "load_laion_head"]


def load_laion_head(path: str | Path, dim: int = 768) -> torch.nn.Linear:
    """The LAION linear head (dim -> 1) from its state-dict file; errors name the file and the bad keys/shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAION aesthetic head {path} not found: download sa_0_4_vit_l_14_linear.pth "
                                "from github.com/LAION-AI/aesthetic-predictor")
    state = torch.load(path, map_location="cpu", weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else None
    if shapes != {"weight": (1, dim), "bias": (1,)}:
        raise ValueError(f"{path} is not a Linear({dim}, 1) state dict: found {shapes}, "
                         f"expected {{'weight': (1, {dim}), 'bias': (1,)}}")
    head = torch.nn.Linear(dim, 1)
    head.load_state_dict(state)
    return head.eval().requires_grad_(False)


class AestheticProperty:
    """``aesthetic_p<q>`` of (N, 3, H, W) image sets in [-1, 1]; also reports the mean score."""

    higher_is_better = True

    def __init__(self, encoder: ImageEncoder, head: torch.nn.Linear, *, quantile: float = 0.9) -> None:
        if encoder.kind != "clip" or encoder.dim != head.in_features:
            raise ValueError(f"the aesthetic head takes {head.in_features}-d CLIP embeddings; the encoder gives "
                             f"{encoder.dim}-d {encoder.kind} embeddings (use CLIP ViT-L/14)")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile={quantile} is invalid: use a value in (0, 1]")
        self.encoder, self.head, self.quantile = encoder, head, quantile
        self.name = f"aesthetic_p{round(quantile * 100)}"

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> np.ndarray:
        """Per-image aesthetic scores (N,)."""
        embeddings = embed_images(self.encoder, images)  # L2-normalised, as the head was trained
        return self.head(embeddings).squeeze(1).double().numpy()

    def score_all(self, images: torch.Tensor) -> dict[str, float]:
        values = self.scores(images)
        return {self.name: float(np.quantile(values, self.quantile)), "aesthetic_mean": float(values.mean())}

    def score(self, images: torch.Tensor) -> float:
        return self.score_all(images)[self.name]

    def image_quantities(self, images: torch.Tensor) -> np.ndarray:
        """The data proxy's per-image quantities: the aesthetic score of each image (N, 1)."""
        return self.scores(images)[:, None]

    def proxy_game(self, quantities: np.ndarray, owner: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
        """q(masks (m, n)) -> (m,): the same quantile of each coalition's own images' scores."""
        return QuantileProxy.of(quantities[:, 0], owner, self.quantile)

    def utility(self, value: float) -> float:
        """Higher aesthetic scores are better: the utility is the value itself."""
        return value


def load_aesthetic_property(clip_folder: str | Path, head_path: str | Path, *,
                            quantile: float = 0.9) -> AestheticProperty:
    """CLIP ViT-L/14 vision tower from ``clip_folder`` + the LAION head file at ``head_path``."""
    encoder = load_image_encoder(clip_folder)
    return AestheticProperty(encoder, load_laion_head(head_path, encoder.dim), quantile=quantile)
