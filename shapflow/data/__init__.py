"""Contributor datasets and their loaders."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shapflow.config import AssetsConfig, DataConfig, InputError
from shapflow.data.artbench import load_artbench
from shapflow.data.base import ContributorDataset, DataError
from shapflow.data.celebahq import load_celebahq
from shapflow.data.cifar import load_cifar20
from shapflow.data.digits import MARKET, MARKETS, digits_reference_images, load_digits_classes, load_digits_market
from shapflow.data.manifest import load_manifest

__all__ = [
    "LOADERS",
    "MARKET",
    "MARKETS",
    "ContributorDataset",
    "DataError",
    "digits_reference_images",
    "first_contributors",
    "load_data",
    "load_digits_classes",
    "load_digits_market",
    "load_manifest",
]


# The registry of data sources: config.DATA_SOURCES names them (the CLI checks a name without importing this),
# each maps to its loader here (a test keeps the two equal).
Loader = Callable[[DataConfig, AssetsConfig], ContributorDataset]
LOADERS: dict[str, Loader] = {
    "digits-market": lambda cfg, assets: load_digits_market(cfg.seed),
    **{f"digits-market-{size}": (lambda cfg, assets, size=size: load_digits_market(cfg.seed, MARKETS[size]))
       for size in MARKETS if MARKETS[size] is not MARKET},
    "digits-classes": lambda cfg, assets: load_digits_classes(),
    "manifest": lambda cfg, assets: load_manifest(cfg.path, channels=cfg.channels, image_size=cfg.image_size),
    "cifar20": lambda cfg, assets: load_cifar20(assets.cifar100, split=cfg.split),
    "celebahq": lambda cfg, assets: load_celebahq(assets.celebahq_images, assets.celebahq_labels,
                                                  num_identities=cfg.num_identities, image_size=cfg.image_size),
    "artbench": lambda cfg, assets: load_artbench(assets.artbench_images, assets.artbench_metadata, style=cfg.style,
                                                  split=cfg.split, image_size=cfg.image_size),
}


def load_data(cfg: DataConfig, assets: AssetsConfig | None = None) -> ContributorDataset:
    """The contributor dataset a use case's ``data`` section describes (files of the asset sources: ``assets``).

    A file the loaders cannot use raises ``DataError`` (the loader's message, which names the file, prefixed
    with the data source), so every entry point reports it as the user's input, not as a crash.
    """
    try:
        data = _load(cfg, assets or AssetsConfig())
    except InputError:
        raise
    except (ValueError, OSError) as err:
        raise DataError(f"data.source={cfg.source}: {err}") from None
    return data if cfg.max_contributors is None else first_contributors(data, cfg.max_contributors)


def _load(cfg: DataConfig, assets: AssetsConfig) -> ContributorDataset:
    return LOADERS[cfg.source](cfg, assets)


def first_contributors(data: ContributorDataset, k: int) -> ContributorDataset:
    """``data`` restricted to its first ``k`` contributors (their images and names, in order)."""
    kept = data.subset(np.arange(data.n_contributors) < k)
    return type(data)(kept.images, kept.contributor, data.names[:k], data.info[:k])
