"""Global properties F of a generated image set, registered by name.

A property object has ``name``, ``higher_is_better``, ``score(images) -> float`` and
``score_all(images) -> dict`` (every property its feature model can compute in the same pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from shapflow.config import PropertyConfig
from shapflow.properties.digits import HIGHER_IS_BETTER, DigitsScorer

__all__ = ["PROPERTIES", "Property", "load_property"]


class Property(Protocol):
    name: str
    higher_is_better: bool

    def score(self, images: torch.Tensor) -> float: ...

    def score_all(self, images: torch.Tensor) -> dict[str, float]: ...

    def utility(self, value: float) -> float: ...


PROPERTIES: dict[str, Callable[[PropertyConfig], Property]] = dict.fromkeys(HIGHER_IS_BETTER, DigitsScorer)


def load_property(cfg: PropertyConfig) -> Property:
    """The scorer of the property a use case names."""
    return PROPERTIES[cfg.name](cfg)
