"""Typed use-case configuration: frozen, validated, hashed per stage (``usecase``); shared sections and
validation helpers (``sections``). Each module's ``__all__`` is the one list of what it exports."""

from shapflow.config import sections, usecase
from shapflow.config.sections import *  # noqa: F403 (re-exports exactly sections.__all__)
from shapflow.config.usecase import *  # noqa: F403 (re-exports exactly usecase.__all__)

__all__ = [*sections.__all__, *usecase.__all__]
