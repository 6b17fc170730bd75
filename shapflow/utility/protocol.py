"""v(S) as one protocol: what every model family provides, and how a study's stages are stored.

A model family (pixel UNet, latent UNet, Stable Diffusion + LoRA) is an object with the methods of
``Family``; the study (``shapflow.utility.study``) is written once against it, so sFT, plain FT and
retraining, the endpoints v(empty) and v(all), the stage chain and every store work the same for all of
them. A stage's weights (``Models``) are opaque outside their family. A store decides where a stage's
output lives (the disk cache, MLflow runs, folders a worker was given) and reaches the family only through
``StageIO``, which also writes ``stage.json``: the family, the stage, the use-case config and the stage's
facts, so any stage folder can be loaded back knowing nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from shapflow.config import STAGE_CHAIN, TrainConfig, UseCaseConfig, from_dict, to_dict
from shapflow.data import ContributorDataset
from shapflow.models.schema import ModelFileError
from shapflow.properties import Property

__all__ = ["STAGE_META", "CoalitionResult", "Context", "Family", "Models", "StageIO", "Store",
           "read_stage_meta", "stage_recipe", "timed_score"]

STAGE_META = "stage.json"
_FORMAT = "shapflow-stage/1"


class Models(Protocol):
    """A stage's output, opaque outside its family (UNet weights and EMA, or a LoRA state)."""


@dataclass
class Context:
    """What a family needs besides a stage's weights, built once per use case: the config and any frozen
    networks (an autoencoder, Stable Diffusion's UNet and text encoder). Families subclass it."""

    cfg: UseCaseConfig


@dataclass
class CoalitionResult:
    """v(S) and what it took: the utility, every property value, timings (s) and the images."""

    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    images: torch.Tensor = field(repr=False)


class Family(Protocol):
    """A generative model family: how its models start, train, prune, generate, save and load.

    ``name`` is the ``model.family`` value that selects it. ``stackable``: its models are plain UNets of one
    architecture that ``training.train_many`` trains, and the stacked DDIM sampler samples, in one vmapped loop
    (ground-truth retraining, ``Study.evaluate_many``); only such a family has ``train_stacked`` and
    ``images_stacked``, the others (LoRA on a big UNet) are evaluated one coalition at a time.
    ``light``: small enough that one worker process per CPU core pays (the default of ``workers=0``).
    """

    name: str
    stackable: bool
    light: bool

    def check(self, cfg: UseCaseConfig) -> None:
        """Raise ``ConfigError`` for a config this family cannot run, naming the field and the fix."""

    def context(self, cfg: UseCaseConfig) -> Context:
        """Load the frozen parts (from ``cfg.assets``) once."""

    def training_data(self, ctx: Context, data: ContributorDataset) -> ContributorDataset:
        """What the denoiser trains on: the images themselves, or their latents (cached)."""

    def untrained(self, ctx: Context, seed: int) -> Models:
        """The model a retraining starts from (fresh weights from ``seed``)."""

    def empty(self, ctx: Context) -> Models:
        """The model of v(empty): untrained, or the pretrained base without an adapter."""

    def train(self, ctx: Context, start: Models, data: ContributorDataset, recipe: TrainConfig, *,
              progress: bool = False, desc: str = "train") -> Models:
        """Train a copy of ``start`` (``start`` itself is left as it was) with the one training loop."""

    def train_stacked(self, ctx: Context, start: Models, datasets: list[ContributorDataset], recipe: TrainConfig,
                      *, seeds: list[int] | None = None) -> list[Models]:
        """(``stackable`` only) ``train`` of a copy of ``start`` per dataset, in one vmapped loop."""

    def images_stacked(self, ctx: Context, models: list[Models], num_images: int | None = None
                       ) -> list[torch.Tensor]:
        """(``stackable`` only) ``images`` of each model, in one vmapped DDIM loop with the same noise."""

    def prune(self, ctx: Context, full: Models, data: ContributorDataset) -> tuple[Models, dict[str, float]]:
        """The pruned model and the pruning report (parameters and MACs before and after)."""

    def images(self, ctx: Context, models: Models, num_images: int | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] generated with the use case's common random numbers."""

    def save(self, models: Models, folder: Path) -> None:
        """Write the weights (safetensors; PEFT adapter folders for LoRA), never a pickle."""

    def load(self, ctx: Context, folder: Path, stage: str) -> Models:
        """Read back what ``save`` wrote; ``stage`` says which weights the stage samples with (EMA or raw)."""


def stage_recipe(cfg: UseCaseConfig, stage: str) -> TrainConfig | None:
    """The training recipe of a stage (None for pruning): it says whether the stage samples with its EMA."""
    recipe = {s.name: s.recipe for s in STAGE_CHAIN}[stage]
    return None if recipe is None else getattr(cfg, recipe)


def read_stage_meta(folder: Path) -> dict[str, Any]:
    """The ``stage.json`` of a stage folder: format, family, stage, use_case (config as data), extra facts."""
    path = Path(folder) / STAGE_META
    fix = "restore the folder from its stage run's model artifacts (or rerun that stage)"
    if not path.is_file():
        raise ModelFileError(f"{path} not found: expected a stage folder written by shapflow (its model files "
                             f"and stage.json); {fix}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"{path} has format {found!r}, expected {_FORMAT!r}; {fix}")
    missing = [key for key in ("family", "stage", "use_case") if not isinstance(meta.get(key), str | dict)]
    if missing:
        raise ModelFileError(f"{path} lacks {', '.join(missing)}; {fix}")
    return meta


@dataclass(frozen=True)
class StageIO:
    """How a store saves, loads and scores the stages of one use case: its family, bound to a context.

    ``score(models)``: every property of a stage's images plus ``utility`` (logged with the stage's run).
    """

    cfg: UseCaseConfig
    family: Family
    ctx: Context
    score: Callable[[Models], dict[str, float]] | None = None

    def save(self, models: Models, extra: dict[str, Any], folder: Path, stage: str) -> None:
        """The family's weight files plus ``stage.json`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.family.save(models, folder)
        meta = {"format": _FORMAT, "family": self.family.name, "stage": stage, "use_case": to_dict(self.cfg),
                "extra": extra}
        (folder / STAGE_META).write_text(json.dumps(meta, indent=1, sort_keys=True))

    def load(self, folder: Path, stage: str) -> tuple[Models, dict[str, Any]]:
        """(models, extra facts) of a stage folder written by ``save`` for this use case's family."""
        meta = read_stage_meta(folder)
        if meta["family"] != self.family.name:
            raise ValueError(f"{folder} holds a {meta['family']} model, not {self.family.name}")
        from_dict(UseCaseConfig, meta["use_case"])  # validates what the folder claims to be
        return self.family.load(self.ctx, Path(folder), stage), meta.get("extra", {})


# store(io, stage, build) -> (models, extra): the stored copy of ``stage``, calling ``build`` only when it has none
Store = Callable[[StageIO, str, Callable[[], tuple[Models, dict[str, Any]]]], tuple[Models, dict[str, Any]]]


def timed_score(scorer: Property, generate: Callable[[], torch.Tensor]) -> tuple[float, dict[str, float],
                                                                                torch.Tensor, dict[str, float]]:
    """(utility, properties, images, timings): generate an image set, score it, time both steps."""
    start = time.perf_counter()
    images = generate()
    sampled = time.perf_counter()
    properties = scorer.score_all(images)
    timings = {"sample_seconds": sampled - start, "score_seconds": time.perf_counter() - sampled}
    return scorer.utility(properties[scorer.name]), properties, images, timings
