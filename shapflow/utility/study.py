"""The study of a use case: its stages trained once, then v(empty), v(all) and v(S) for any coalition S.

full model -> prune -> pruned fine-tune (once, on all data) -> per coalition S: sFT for k steps on S's
data, sample with common random numbers, score. The utility ``method`` picks what a coalition starts from:
``sft`` (the pruned fine-tuned model, ``sft`` recipe), ``ft`` (the full model, ``sft`` recipe) or
``retrain`` (fresh weights, the full ``train`` recipe: the ground truth sFT approximates). The same code
serves every model family (``shapflow.utility.families``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from shapflow.config import TrainConfig, UseCaseConfig
from shapflow.data import ContributorDataset, load_data
from shapflow.properties import FEATURE_PROPERTIES, Property, load_property
from shapflow.utility.families import family_of
from shapflow.utility.protocol import CoalitionResult, Context, Family, Models, StageIO, Store, timed_score
from shapflow.utility.stages import cached_store, run_stages

__all__ = ["UTILITY_METHODS", "Study", "load_scorer", "load_study", "stage_properties"]

UTILITY_METHODS = ("sft", "ft", "retrain")


@dataclass
class Study:
    """Everything a coalition evaluation needs, prepared once per use case.

    data: what the denoiser trains on (images or latents), with the contributors' names and info;
    stages: {"full", "prune", "finetune"} -> the family's models; prune_report: parameters/MACs before/after.
    """

    family: Family
    ctx: Context
    data: ContributorDataset
    scorer: Property
    stages: dict[str, Models]
    prune_report: dict[str, float] = field(default_factory=dict)

    @property
    def cfg(self) -> UseCaseConfig:
        return self.ctx.cfg

    @property
    def full(self) -> Models:
        return self.stages["full"]

    @property
    def pruned(self) -> Models:
        """The pruned, fine-tuned model every sFT starts from."""
        return self.stages["finetune"]

    def images(self, models: Models | None = None, num_images: int | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] of ``models`` (default: the full model)."""
        return self.family.images(self.ctx, self.full if models is None else models, num_images)

    def score(self, models: Models) -> CoalitionResult:
        """A model's utility and properties, from its generated image set (timed)."""
        utility, properties, images, timings = timed_score(self.scorer, lambda: self.images(models))
        return CoalitionResult(utility, properties, timings, images)

    def v0(self) -> CoalitionResult:
        """Utility of the empty coalition: the untrained model (or the base model, for an adapter family)."""
        return self.score(self.family.empty(self.ctx))

    def v1(self) -> CoalitionResult:
        """Utility of the grand coalition: the full model (or the pruned fine-tuned one, per ``utility.v1``)."""
        return self.score(self.full if self.cfg.utility.v1 == "full" else self.pruned)

    def evaluate(self, mask: np.ndarray, method: str | None = None, seed: int | None = None) -> CoalitionResult:
        """v(S) for the coalition ``mask`` (bool, (n_contributors,)) by sft, ft or retrain; ``seed`` overrides
        the recipe's training seed (the sFT seed, or the retraining seed)."""
        method, recipe = self._recipe(method, seed)
        start = {"sft": lambda: self.pruned, "ft": lambda: self.full,
                 "retrain": lambda: self.family.untrained(self.ctx, recipe.seed)}[method]()
        began = time.perf_counter()
        trained = self.family.train(self.ctx, start, self.data.subset(mask), recipe)
        trained_seconds = time.perf_counter() - began
        result = self.score(trained)
        result.timings = {"train_seconds": trained_seconds, **result.timings}
        return result

    def evaluate_many(self, masks: list[np.ndarray], method: str | None = None,
                      seeds: list[int] | None = None) -> list[CoalitionResult]:
        """``evaluate`` of each mask (``seeds[k]`` as its ``seed``), the K coalitions trained in one vmapped loop
        and sampled in one vmapped DDIM loop: the same utilities as one at a time, up to float rounding. One
        mask, retraining (each from its own fresh weights) or a family that cannot stack take the lone path.
        The timings are the group's, shared equally by its members."""
        method, recipe = self._recipe(method, None)
        seeds = [recipe.seed] * len(masks) if seeds is None else list(seeds)
        if len(masks) <= 1 or method == "retrain" or not self.family.stackable:
            return [self.evaluate(mask, method, seed) for mask, seed in zip(masks, seeds, strict=True)]
        start = self.pruned if method == "sft" else self.full
        began = time.perf_counter()
        trained = self.family.train_stacked(self.ctx, start, [self.data.subset(mask) for mask in masks], recipe,
                                            seeds=seeds)
        trained_seconds = time.perf_counter() - began
        image_sets = self.family.images_stacked(self.ctx, trained)
        sampled_seconds = time.perf_counter() - began - trained_seconds
        results = []
        for images in image_sets:
            result = self.score_images(images)
            result.timings = {"train_seconds": trained_seconds / len(masks),
                              "sample_seconds": sampled_seconds / len(masks), **result.timings}
            results.append(result)
        return results

    def score_images(self, images: torch.Tensor) -> CoalitionResult:
        """The utility and properties of an image set already generated (timed scoring)."""
        began = time.perf_counter()
        properties = self.scorer.score_all(images)
        timings = {"score_seconds": time.perf_counter() - began}
        return CoalitionResult(self.scorer.utility(properties[self.scorer.name]), properties, timings, images)

    def _recipe(self, method: str | None, seed: int | None) -> tuple[str, TrainConfig]:
        """The utility method (default the config's) and its training recipe, ``seed`` overriding its seed."""
        method = method or self.cfg.utility.method
        if method not in UTILITY_METHODS:
            raise ValueError(f"method={method!r} is invalid: use one of {', '.join(UTILITY_METHODS)}")
        recipe = self.cfg.train if method == "retrain" else self.cfg.sft
        return method, recipe if seed is None else replace(recipe, seed=seed)


def load_scorer(cfg: UseCaseConfig, data: ContributorDataset | None = None) -> Property:
    """The use case's property; the contributors' images (``data``, loaded if None) when it needs references."""
    needs_reference = FEATURE_PROPERTIES.get(cfg.property.name, False)
    reference = (data or load_data(cfg.data, cfg.assets)).images if needs_reference else None
    return load_property(cfg.property, cfg.assets, reference)


def stage_properties(scorer: Property, family: Family, ctx: Context, models: Models) -> dict[str, float]:
    """Every property (and the utility) of a stage's model, sampled with the use case's fixed seed."""
    properties = scorer.score_all(family.images(ctx, models))
    return {**properties, "utility": scorer.utility(properties[scorer.name])}


def load_study(cfg: UseCaseConfig, *, store: Store = cached_store, progress: bool = False,
               until: str = "finetune") -> Study:
    """Load data and scorer, then train (or load through ``store``) the stages up to ``until`` (the study's
    coalitions need all three: full, prune, finetune).

    ``store``: the disk cache by default; ``tracking.TrackedStore`` keeps stages as MLflow runs,
    ``stages.folder_store`` loads what a driver handed to a worker, ``stages.no_store`` always trains.
    """
    family = family_of(cfg)
    family.check(cfg)
    pixels = load_data(cfg.data, cfg.assets)
    scorer = load_scorer(cfg, pixels)
    ctx = family.context(cfg)
    data = family.training_data(ctx, pixels)
    io = StageIO(cfg, family, ctx, score=lambda models: stage_properties(scorer, family, ctx, models))
    stages = run_stages(io, data, store=store, progress=progress, until=until)
    report = stages["prune"][1].get("prune_report", {}) if "prune" in stages else {}
    return Study(family, ctx, data, scorer, {stage: models for stage, (models, _) in stages.items()}, report)
