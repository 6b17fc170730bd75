"""The method's stages as plain functions, and v(S) for one coalition.

full model -> prune -> pruned fine-tune (once, on all data) -> per coalition S: sFT for k steps on
S's data, sample with common random numbers, score. The same ``train`` runs every training; the
utility ``method`` picks what a coalition starts from: ``sft`` (the pruned fine-tuned model,
``sft`` recipe), ``ft`` (the full model, ``sft`` recipe) or ``retrain`` (a fresh model, the full
``train`` recipe: the ground truth sFT approximates).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DModel

from shapflow.config import TrainConfig, UseCaseConfig, stage_key
from shapflow.data import ContributorDataset, load_data
from shapflow.generation.ddim import sample
from shapflow.models import build_unet, load_unet, save_unet
from shapflow.properties import FEATURE_PROPERTIES, Property, load_property
from shapflow.training.loop import sampling_state, train
from shapflow.training.prune import prune_unet

__all__ = [
    "STAGE_ORDER",
    "CoalitionResult",
    "Models",
    "Store",
    "Study",
    "load_models",
    "load_scorer",
    "load_study",
    "optimize_for",
    "timed_score",
    "train_stage",
    "train_stages",
]


@dataclass
class Models:
    """A stage's output: raw weights (the module) and the EMA state, if the stage kept one."""

    model: UNet2DModel
    ema: dict[str, torch.Tensor] | None
    sample_state: dict[str, torch.Tensor]

    def for_sampling(self) -> UNet2DModel:
        """A copy of the module holding the weights this stage samples with."""
        clone = copy.deepcopy(self.model)
        clone.load_state_dict(self.sample_state)
        return clone.eval()


@dataclass
class CoalitionResult:
    """v(S) and what it took: the utility, every property value, timings (s) and the images."""

    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    images: torch.Tensor = field(repr=False)


def optimize_for(model: UNet2DModel, backend: str) -> UNet2DModel:
    """Swap in fused kernels (``shapflow.kernels``) unless the backend is eager."""
    if backend == "eager":
        return model
    from shapflow.kernels import optimize

    return optimize(model, backend=backend)


def train_stage(start: UNet2DModel, data: ContributorDataset, recipe: TrainConfig, cfg: UseCaseConfig, *,
                upstream_ema: dict[str, torch.Tensor] | None = None, progress: bool = False,
                desc: str = "train") -> Models:
    """Train a copy of ``start`` with ``recipe``; the copy's kernels follow ``cfg.kernels``."""
    model = optimize_for(copy.deepcopy(start), cfg.kernels)
    result = train(model, data, recipe, cfg.diffusion, ema_init=upstream_ema, progress=progress, desc=desc)
    return Models(result.model, result.ema, sampling_state(result, recipe))


def timed_score(scorer: Property, generate: Callable[[], torch.Tensor]) -> tuple[float, dict[str, float],
                                                                                torch.Tensor, dict[str, float]]:
    """(utility, properties, images, timings): generate an image set, score it, time both steps."""
    start = time.perf_counter()
    images = generate()
    sampled = time.perf_counter()
    properties = scorer.score_all(images)
    timings = {"sample_seconds": sampled - start, "score_seconds": time.perf_counter() - sampled}
    return scorer.utility(properties[scorer.name]), properties, images, timings


@dataclass
class Study:
    """Everything a coalition evaluation needs, prepared once per use case."""

    cfg: UseCaseConfig
    data: ContributorDataset
    scorer: Property
    untrained: UNet2DModel
    full: Models
    pruned: Models
    prune_report: dict[str, float] = field(default_factory=dict)

    def score(self, model: UNet2DModel) -> tuple[float, dict[str, float], torch.Tensor, dict[str, float]]:
        """(utility, properties, images, timings) of a model's generated image set."""
        return timed_score(self.scorer, lambda: self.sample_full(model))

    def sample_full(self, model: UNet2DModel | None = None, num_images: int | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] of ``model`` (default: the full model's sampling weights)."""
        model = self.full.for_sampling() if model is None else model
        return sample(optimize_for(model, self.cfg.kernels), self.cfg.sampling, self.cfg.diffusion,
                      num_images=num_images)

    def v0(self) -> CoalitionResult:
        """Utility of the empty coalition: the untrained model."""
        return CoalitionResult(*self._scored(self.untrained))

    def v1(self) -> CoalitionResult:
        """Utility of the grand coalition: the full model (or the pruned fine-tuned one)."""
        models = self.full if self.cfg.utility.v1 == "full" else self.pruned
        return CoalitionResult(*self._scored(models.for_sampling()))

    def _scored(self, model: UNet2DModel) -> tuple[float, dict[str, float], dict[str, float], torch.Tensor]:
        utility, properties, images, timings = self.score(model)
        return utility, properties, timings, images

    def evaluate(self, mask: np.ndarray, method: str | None = None, seed: int | None = None) -> CoalitionResult:
        """v(S) for the coalition ``mask`` (bool, (n_contributors,)) by sft, ft or retrain."""
        method = method or self.cfg.utility.method
        subset = self.data.subset(mask)
        start = time.perf_counter()
        if method == "retrain":
            recipe = self.cfg.train if seed is None else _reseeded(self.cfg.train, seed)
            fresh = build_unet(self.cfg.model, seed=recipe.seed)
            trained = train_stage(fresh, subset, recipe, self.cfg)
        else:
            recipe = self.cfg.sft if seed is None else _reseeded(self.cfg.sft, seed)
            upstream = self.pruned if method == "sft" else self.full
            trained = train_stage(upstream.for_sampling(), subset, recipe, self.cfg, upstream_ema=upstream.ema)
        trained_seconds = time.perf_counter() - start
        utility, properties, images, timings = self.score(trained.for_sampling())
        return CoalitionResult(utility, properties, {"train_seconds": trained_seconds, **timings}, images)


def _reseeded(recipe: TrainConfig, seed: int) -> TrainConfig:
    from dataclasses import replace

    return replace(recipe, seed=seed)


Store = Callable[[UseCaseConfig, str, "TrainConfig | None", Callable[[], tuple[Models, dict]]], tuple[Models, dict]]
STAGE_ORDER = ("full", "prune", "finetune")


def load_models(folder: str | Path, recipe: TrainConfig | None) -> tuple[Models, dict]:
    """Models saved by ``save_unet`` in ``folder``; ``recipe`` says whether the stage samples with EMA (None: no)."""
    model, ema, extra = load_unet(folder)
    use_ema = recipe is not None and recipe.ema.sample_with_ema and ema is not None
    state = ema if use_ema else model.state_dict()
    return Models(model, ema, {k: v.clone() for k, v in state.items()}), extra


def _cached(cfg: UseCaseConfig, stage: str, recipe: TrainConfig | None, build) -> tuple[Models, dict]:
    """Load a stage's models (and its ``extra`` facts) from the cache by stage key, or build and save them."""
    from shapflow.cache import cache_dir

    folder = cache_dir("stages", f"{cfg.name}-{stage}-{stage_key(cfg, stage)[:16]}")
    if (folder / "model.json").is_file():
        return load_models(folder, recipe)
    models, extra = build()
    save_unet(models.model, folder, ema=models.ema, extra=extra)
    return models, extra


def _uncached(_cfg: UseCaseConfig, _stage: str, _recipe: TrainConfig | None, build) -> tuple[Models, dict]:
    return build()


def train_stages(cfg: UseCaseConfig, data: ContributorDataset, *, store: Store = _cached, progress: bool = False,
                 until: str = "finetune") -> dict[str, tuple[Models, dict]]:
    """Run (or load through ``store``) the stages full -> prune -> finetune up to ``until``, in order.

    ``store(cfg, stage, recipe, build)`` returns the stage's (Models, extra), calling ``build`` only when it
    has no stored copy: the on-disk cache by default, MLflow run artifacts under ``shapflow.tracking``.
    """
    if until not in STAGE_ORDER:
        raise ValueError(f"until={until!r} is invalid: use one of {', '.join(STAGE_ORDER)}")
    untrained = build_unet(cfg.model, seed=cfg.train.seed)
    out: dict[str, tuple[Models, dict]] = {}

    def full() -> tuple[Models, dict]:
        return train_stage(untrained, data, cfg.train, cfg, progress=progress, desc="full training"), {}

    def pruned() -> tuple[Models, dict]:
        model, report = prune_unet(out["full"][0].for_sampling(), cfg.prune, data=data, diffusion=cfg.diffusion)
        return Models(model, None, model.state_dict()), {"prune_report": report.as_dict()}

    def finetuned() -> tuple[Models, dict]:
        start, extra = out["prune"]
        return train_stage(start.model, data, cfg.finetune, cfg, progress=progress, desc="pruned fine-tune"), extra

    steps = {"full": (cfg.train, full), "prune": (None, pruned), "finetune": (cfg.finetune, finetuned)}
    for stage in STAGE_ORDER[: STAGE_ORDER.index(until) + 1]:
        recipe, build = steps[stage]
        out[stage] = store(cfg, stage, recipe, build)
    return out


def load_scorer(cfg: UseCaseConfig, data: ContributorDataset | None = None) -> Property:
    """The use case's property; the contributors' images (``data``, loaded if None) when it needs references."""
    needs_reference = FEATURE_PROPERTIES.get(cfg.property.name, False)
    reference = (data or load_data(cfg.data, cfg.assets)).images if needs_reference else None
    return load_property(cfg.property, cfg.assets, reference)


def load_study(cfg: UseCaseConfig, *, progress: bool = False, use_cache: bool = True,
               store: Store | None = None) -> Study:
    """Load data and scorer, and train (or load through ``store``) the full and pruned fine-tuned models.

    ``model.family`` picks the study: pixel (``Study``), latent (``studies.LatentStudy``) or sd_lora
    (``studies.LoraStudy``, duck-typed like ``Study``: v0, v1, evaluate, sample_full).
    """
    data = load_data(cfg.data, cfg.assets)
    scorer = load_scorer(cfg, data)
    store = store or (_cached if use_cache else _uncached)
    if cfg.model.family != "pixel":
        from shapflow.utility.families import build_family_study

        return build_family_study(cfg, data, scorer, store=store, progress=progress)
    untrained = build_unet(cfg.model, seed=cfg.train.seed)
    stages = train_stages(cfg, data, store=store, progress=progress)
    (full_models, _), (pruned_models, extra) = stages["full"], stages["finetune"]
    return Study(cfg, data, scorer, untrained, full_models, pruned_models, extra["prune_report"])
