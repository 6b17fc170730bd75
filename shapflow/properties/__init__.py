"""Global properties F of a generated image set, registered by name.

A property object has ``name``, ``higher_is_better``, ``score(images) -> float`` and
``score_all(images) -> dict`` (every property its feature model can compute in the same pass), and its data
proxy: ``image_quantities(images) -> (N, k)`` per-image quantities of real images, computed once per study, and
``proxy_game(quantities, owner, n)`` -> q(masks (m, n)) -> (m,), the property of each coalition's own images
(``shapflow.properties.proxy``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from shapflow.config import AssetsConfig, PropertyConfig
from shapflow.properties.digit_scores import HIGHER_IS_BETTER, DigitsScorer

__all__ = ["FEATURE_PROPERTIES", "FEATURE_REGISTRY", "PROPERTIES", "FeatureProperty", "Property", "load_property"]


class Property(Protocol):
    name: str
    higher_is_better: bool

    def score(self, images: torch.Tensor) -> float: ...

    def score_all(self, images: torch.Tensor) -> dict[str, float]: ...

    def utility(self, value: float) -> float: ...

    def image_quantities(self, images: torch.Tensor) -> np.ndarray: ...

    def proxy_game(self, quantities: np.ndarray, owner: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]: ...


PROPERTIES: dict[str, Callable[[PropertyConfig], Property]] = dict.fromkeys(HIGHER_IS_BETTER, DigitsScorer)


def _cluster_entropy(cfg: PropertyConfig, assets: AssetsConfig, reference: torch.Tensor | None) -> Property:
    from shapflow.properties.diversity import load_diversity_property  # transformers: only when named

    return load_diversity_property(assets.face_encoder, reference, n_clusters=cfg.n_clusters)


def _aesthetic_p90(cfg: PropertyConfig, assets: AssetsConfig, reference: torch.Tensor | None) -> Property:
    from shapflow.properties.aesthetic import load_aesthetic_property  # transformers: only when named

    return load_aesthetic_property(assets.clip_vit_l14, assets.laion_aesthetic_head, quantile=cfg.quantile)


def _inception(cfg: PropertyConfig, assets: AssetsConfig, reference: torch.Tensor | None) -> Property:
    from shapflow.properties.inception_score import load_inception_property  # the FID Inception: only when named

    name = "inception_score" if cfg.name == "inception_score_v3" else cfg.name
    return load_inception_property(assets.fid_inception, name=name, reference_images=reference,
                                   splits=cfg.is_splits, resize_to=cfg.inception_resize)


@dataclass(frozen=True)
class FeatureProperty:
    """A property on a pretrained feature network (an external asset): whether it needs the contributors' real
    images as reference, and its loader (property config, assets, reference images or None)."""

    needs_reference: bool
    load: Callable[[PropertyConfig, AssetsConfig, torch.Tensor | None], Property]


# The registry of feature properties: one entry per name, no if-chain beside it.
FEATURE_REGISTRY: dict[str, FeatureProperty] = {
    "inception_score_v3": FeatureProperty(False, _inception), "fid": FeatureProperty(True, _inception),
    "neg_log_fid": FeatureProperty(True, _inception), "cluster_entropy": FeatureProperty(True, _cluster_entropy),
    "aesthetic_p90": FeatureProperty(False, _aesthetic_p90)}
FEATURE_PROPERTIES = {name: entry.needs_reference for name, entry in FEATURE_REGISTRY.items()}  # a view of it


def load_property(cfg: PropertyConfig, assets: AssetsConfig | None = None,
                  reference_images: torch.Tensor | None = None) -> Property:
    """The scorer of the property a use case names; feature properties read their networks from ``assets``.

    ``reference_images`` (N, 3, H, W) in [-1, 1]: the real images of fid/neg_log_fid and cluster_entropy.
    """
    if cfg.name in PROPERTIES:
        return PROPERTIES[cfg.name](cfg)
    entry = FEATURE_REGISTRY[cfg.name]
    if entry.needs_reference and reference_images is None:
        raise ValueError(f"property {cfg.name} needs reference images (the contributors' real images)")
    return entry.load(cfg, assets or AssetsConfig(), reference_images)
