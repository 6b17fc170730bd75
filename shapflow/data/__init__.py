"""Contributor datasets and their loaders."""

from __future__ import annotations

from shapflow.config import DataConfig
from shapflow.data.base import ContributorDataset
from shapflow.data.digits import MARKET, digits_reference_images, load_digits_classes, load_digits_market
from shapflow.data.manifest import load_manifest

__all__ = [
    "MARKET",
    "ContributorDataset",
    "digits_reference_images",
    "load_data",
    "load_digits_classes",
    "load_digits_market",
    "load_manifest",
]


def load_data(cfg: DataConfig) -> ContributorDataset:
    """The contributor dataset a use case's ``data`` section describes."""
    if cfg.source == "digits-market":
        return load_digits_market(cfg.seed)
    if cfg.source == "digits-classes":
        return load_digits_classes()
    return load_manifest(cfg.path, channels=cfg.channels, image_size=cfg.image_size)
