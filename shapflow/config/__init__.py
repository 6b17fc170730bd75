"""Typed use-case configuration: frozen, validated, hashed per stage (``usecase``); shared sections and
validation helpers (``sections``)."""

from shapflow.config.sections import ASSET_KEYS, AssetsConfig, ConfigError, LoraConfig, SampleConfig, check
from shapflow.config.usecase import (
    FAMILIES,
    STAGES,
    DataConfig,
    DiffusionConfig,
    EMAConfig,
    ModelConfig,
    PropertyConfig,
    PruneConfig,
    TrainConfig,
    UseCaseConfig,
    UtilityConfig,
    apply_overrides,
    available_use_cases,
    from_dict,
    load_use_case,
    stage_key,
    to_dict,
)

__all__ = [
    "ASSET_KEYS",
    "FAMILIES",
    "STAGES",
    "AssetsConfig",
    "ConfigError",
    "DataConfig",
    "DiffusionConfig",
    "EMAConfig",
    "LoraConfig",
    "ModelConfig",
    "PropertyConfig",
    "PruneConfig",
    "SampleConfig",
    "TrainConfig",
    "UseCaseConfig",
    "UtilityConfig",
    "apply_overrides",
    "available_use_cases",
    "check",
    "from_dict",
    "load_use_case",
    "stage_key",
    "to_dict",
]
