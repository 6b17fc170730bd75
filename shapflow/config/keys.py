"""Identity and hashing: the stage chain, the sections each stage's output depends on, and the sha256 keys that
name a stage's output (``stage_key``) or any run's (``identity``), so changing, say, the sFT steps invalidates
coalition utilities but not the trained full model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shapflow.config.sections import ConfigError
from shapflow.config.usecase import PRECISION_AUTO, UseCaseConfig, to_dict

__all__ = ["STAGES", "STAGE_CHAIN", "STAGE_ORDER", "Stage", "identity", "stage_key"]


@dataclass(frozen=True)
class Stage:
    """One stage of the chain every study trains once: its name, the one before it, the MLproject entry point
    that runs it alone, and the config section of its training recipe (None: pruning trains nothing)."""

    name: str
    upstream: str | None
    entry_point: str
    recipe: str | None


# The stage chain full -> prune -> finetune: the one table every other place reads.
STAGE_CHAIN: tuple[Stage, ...] = (Stage("full", None, "train", "train"), Stage("prune", "full", "prune", None),
                                  Stage("finetune", "prune", "finetune", "finetune"))
STAGE_ORDER = tuple(stage.name for stage in STAGE_CHAIN)


# Each stage's output depends on its own section and on every section upstream of it (``precision``: the
# arithmetic of every stage that trains or samples).
_INPUTS = ("tiny", "assets", "data")
STAGES: dict[str, tuple[str, ...]] = {
    "data": _INPUTS,
    "full": (*_INPUTS, "model", "diffusion", "lora", "precision", "train"),
    "prune": (*_INPUTS, "model", "diffusion", "lora", "precision", "train", "prune"),
    "finetune": (*_INPUTS, "model", "diffusion", "lora", "precision", "train", "prune", "finetune"),
    "sampling": ("precision", "sampling"),
    "property": (*_INPUTS, "property"),
    "coalition": (*_INPUTS, "model", "diffusion", "lora", "precision", "train", "prune", "finetune", "sft",
                  "sampling", "property", "utility"),
}


def identity(*parts: object) -> str:
    """sha256 of the canonical JSON of ``parts``: the identity of a run's output (``shapflow.key`` tags), a job."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stage_key(cfg: UseCaseConfig, stage: str) -> str:
    """sha256 of the canonical JSON of a stage's sections: the identity used for caching and resume."""
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r} is invalid: use one of {', '.join(STAGES)}")
    payload = {section: _identity_of(cfg, section) for section in STAGES[stage]
               if not (section == "precision" and cfg.precision == "fp32")}  # fp32 keeps the keys from before
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _identity_of(cfg: UseCaseConfig, section: str) -> Any:
    """A section as hashed: its data; precision=auto with the table it resolves by (a new measurement, a new key)."""
    if section == "precision" and cfg.precision == "auto":
        return {"auto": dict(sorted(PRECISION_AUTO.items()))}
    return to_dict(getattr(cfg, section))
