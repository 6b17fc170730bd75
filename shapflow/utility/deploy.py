"""A stage folder as a deployable model: load it knowing nothing but the folder, generate the image of a seed,
score the image set of a seed.

Every way of using a registered model goes through these functions (``shapflow.tracking.load_registered``,
the MLflow pyfunc model of ``shapflow.tracking.pyfunc``, ``shapflow models check``), so they all give the
same images. The image of seed ``s`` is the first image of the use case's common-random-number noise with
``sampling.seed = s``, generated alone (a batch of one); the image set of seed ``s`` is the
``sampling.num_images`` images from that noise, which for ``s = sampling.seed`` is the set a stage run scored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from shapflow.config import ConfigError, UseCaseConfig, from_dict
from shapflow.properties import Property
from shapflow.utility.families import family_of
from shapflow.utility.protocol import Context, Family, Models, read_stage_meta
from shapflow.utility.study import stage_properties

__all__ = ["MAX_SEED", "LoadedStage", "load_stage_folder", "seed_image", "seed_properties", "seeded_context"]

MAX_SEED = 2**32 - 1  # seeds beyond 32 bits are refused, never folded onto another seed's image


@dataclass
class LoadedStage:
    """A stage folder loaded back: its stage name, use case, family, context (frozen parts) and models."""

    stage: str
    cfg: UseCaseConfig
    family: Family
    ctx: Context
    models: Models


def load_stage_folder(folder: str | Path) -> LoadedStage:
    """The models of a stage folder (the family's safetensors / PEFT files + ``stage.json``), ready to sample.

    The use case comes from ``stage.json``; its frozen parts (an autoencoder, Stable Diffusion's base UNet)
    are loaded from the asset paths recorded there, so they must exist where the model is used.
    """
    meta = read_stage_meta(Path(folder))
    cfg = from_dict(UseCaseConfig, meta["use_case"])
    family = family_of(cfg)
    ctx = family.context(cfg)
    return LoadedStage(meta["stage"], cfg, family, ctx, family.load(ctx, Path(folder), meta["stage"]))


def seeded_context(loaded: LoadedStage, seed: int, num_inference_steps: int | None = None) -> Context:
    """The stage's context with ``sampling.seed = seed`` (and ``num_inference_steps`` when given, None: the use
    case's). ``ConfigError`` for a seed outside [0, MAX_SEED] or steps outside [1, diffusion.num_train_timesteps].

    A shallow copy: the frozen networks are shared, only the config differs.
    """
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={seed} is invalid: use an integer in [0, {MAX_SEED}] (the sampling noise's seed)")
    steps = loaded.cfg.sampling.num_inference_steps if num_inference_steps is None else num_inference_steps
    most = loaded.cfg.diffusion.num_train_timesteps
    if not 1 <= steps <= most:
        raise ConfigError(f"num_inference_steps={steps} is invalid: use 1 to {most} DDIM steps (the model's "
                          f"timesteps; the use case samples with {loaded.cfg.sampling.num_inference_steps})")
    sampling = replace(loaded.cfg.sampling, seed=int(seed), num_inference_steps=int(steps))
    return replace(loaded.ctx, cfg=replace(loaded.cfg, sampling=sampling))


def seed_image(loaded: LoadedStage, seed: int, num_inference_steps: int | None = None) -> torch.Tensor:
    """The image (C, H, W) in [-1, 1] of ``seed``: the first image of its common noise, sampled alone."""
    ctx = seeded_context(loaded, seed, num_inference_steps)
    return loaded.family.images(ctx, loaded.models, num_images=1)[0]


def seed_properties(loaded: LoadedStage, scorer: Property, seed: int,
                    num_inference_steps: int | None = None) -> dict[str, float]:
    """Every property (and the utility) of the ``sampling.num_images`` images of ``seed``."""
    return stage_properties(scorer, loaded.family, seeded_context(loaded, seed, num_inference_steps),
                            loaded.models)
