"""The registry of model families: ``model.family`` names one of these objects (``protocol.Family``).

The config validates ``model.family`` against ``config.FAMILIES``; a test keeps the two lists equal.
"""

from __future__ import annotations

from shapflow.config import ConfigError, UseCaseConfig
from shapflow.utility.lora import LoraFamily
from shapflow.utility.protocol import Family
from shapflow.utility.unet_family import LatentFamily, PixelFamily

__all__ = ["FAMILIES", "family_of"]

FAMILIES: dict[str, Family] = {family.name: family for family in (PixelFamily(), LatentFamily(), LoraFamily())}


def family_of(cfg: UseCaseConfig) -> Family:
    """The family object of a use case (``model.family``)."""
    if cfg.model.family not in FAMILIES:
        raise ConfigError(f"model.family={cfg.model.family!r} is invalid: use one of {', '.join(FAMILIES)}")
    return FAMILIES[cfg.model.family]
