"""Typed use-case configuration split by meaning: shared sections and validation helpers (``sections``), the
use case's frozen, validated sections with loading and overrides (``usecase``), the stage chain and the keys that
identify outputs (``keys``). Each module's ``__all__`` is the one list of what it exports."""

from shapflow.config import keys, sections, usecase
from shapflow.config.keys import *  # noqa: F403 (re-exports exactly keys.__all__)
from shapflow.config.sections import *  # noqa: F403 (re-exports exactly sections.__all__)
from shapflow.config.usecase import *  # noqa: F403 (re-exports exactly usecase.__all__)

__all__ = [*sections.__all__, *usecase.__all__, *keys.__all__]
