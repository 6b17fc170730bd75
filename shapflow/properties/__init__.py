"""Global properties F of a generated image set, registered by name.

A property object has ``name``, ``higher_is_better``, ``score(images) -> float`` and
``score_all(images) -> dict`` (every property its feature model can compute in the same pass), and its data
proxy: ``image_quantities(images) -> (N, k)`` per-image quantities of real images, computed once per study, and
``proxy_game(quantities, owner, n)`` -> q(masks (m, n)) -> (m,), the property of each coalition's own images
(``shapflow.properties.proxy``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from shapflow.config import AssetsConfig, PropertyConfig
from shapflow.properties.digit_scores import HIGHER_IS_BETTER, DigitsScorer

__all__ = ["FEATURE_PROPERTIES", "PROPERTIES", "Property", "load_property"]


class Property(Protocol):
    name: str
    higher_is_better: bool

    def score(self, images: torch.Tensor) -> float: ...

    def score_all(self, images: torch.Tensor) -> dict[str, float]: ...

    def utility(self, value: float) -> float: ...

    def image_quantities(self, images: torch.Tensor) -> np.ndarray: ...

    def proxy_game(self, quantities: np.ndarray, owner: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]: ...


PROPERTIES: dict[str, Callable[[PropertyConfig], Property]] = dict.fromkeys(HIGHER_IS_BETTER, DigitsScorer)
# Properties on pretrained feature networks (external assets): name -> whether they need reference images.
FEATURE_PROPERTIES = {"inception_score_v3": False, "fid": True, "neg_log_fid": True, "cluster_entropy": True,
                      "aesthetic_p90": False}


def load_property(cfg: PropertyConfig, assets: AssetsConfig | None = None,
                  reference_images: torch.Tensor | None = None) -> Property:
    """The scorer of the property a use case names; feature properties read their networks from ``assets``.

    ``reference_images`` (N, 3, H, W) in [-1, 1]: the real images of fid/neg_log_fid and cluster_entropy.
    """
    if cfg.name in PROPERTIES:
        return PROPERTIES[cfg.name](cfg)
    assets = assets or AssetsConfig()
    if FEATURE_PROPERTIES[cfg.name] and reference_images is None:
        raise ValueError(f"property {cfg.name} needs reference images (the contributors' real images)")
    if cfg.name == "cluster_entropy":
        from shapflow.properties.diversity import load_diversity_property

        return load_diversity_property(assets.face_encoder, reference_images, n_clusters=cfg.n_clusters)
    if cfg.name == "aesthetic_p90":
        from shapflow.properties.aesthetic import load_aesthetic_property

        return load_aesthetic_property(assets.clip_vit_l14, assets.laion_aesthetic_head, quantile=cfg.quantile)
    from shapflow.properties.inception_score import load_inception_property

    name = "inception_score" if cfg.name == "inception_score_v3" else cfg.name
    return load_inception_property(assets.fid_inception, name=name, reference_images=reference_images,
                                   splits=cfg.is_splits, resize_to=cfg.inception_resize)
