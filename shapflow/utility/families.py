"""Studies of the latent model families: v(empty), v(all) and v(S) for latent diffusion and SD + LoRA.

``LatentStudy`` (CelebA-HQ) is ``pipeline.Study`` on cached latents whose images are decoded before
scoring: the UNet, its pruning and the training loop are unchanged. ``LoraStudy`` (artworks)
trains only LoRA weights on one shared frozen Stable Diffusion UNet per stage: the full LoRA
(rank ``LoraConfig.rank``), and the rank-pruned, fine-tuned LoRA that every sFT starts from. A
coalition run installs its start LoRA state, trains it in place with the ONE training loop,
samples, scores and restores the start state, so no UNet is ever copied per coalition. v(empty)
of the LoRA family is the base model with the adapter switched off.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from shapflow.cache import cache_dir
from shapflow.config import LoraConfig, TrainConfig, UseCaseConfig
from shapflow.data.base import ContributorDataset
from shapflow.generation.ddim import sample
from shapflow.models.latent import Autoencoder, cached_latent_dataset, load_autoencoder, sample_latent_images
from shapflow.models.sd_lora import (
    CaptionConditionedDenoiser,
    SDComponents,
    add_lora,
    encode_caption,
    load_sd_components,
    lora_disabled,
    lora_state,
    set_lora_state,
)
from shapflow.models.unet import build_unet
from shapflow.properties import Property
from shapflow.training.loop import train
from shapflow.training.prune_lora import prune_lora_ranks
from shapflow.utility.study import CoalitionResult, Store, Study, optimize_for, timed_score, train_stages

__all__ = ["LatentStudy", "LoraStudy", "build_family_study", "build_latent_study", "build_lora_study",
           "stage_images"]


def _no_store(_cfg: UseCaseConfig, _stage: str, _recipe: TrainConfig | None, build) -> tuple:
    return build()


@dataclass
class LatentStudy(Study):
    """``Study`` whose models denoise latents of ``autoencoder``; images are decoded before scoring."""

    autoencoder: Autoencoder | None = None
    latent_shape: tuple[int, int, int] = (3, 64, 64)

    def sample_full(self, model: torch.nn.Module | None = None, num_images: int | None = None) -> torch.Tensor:
        """Decoded images (N, 3, H, W) of ``model`` (default: the full model's sampling weights)."""
        model = self.full.for_sampling() if model is None else model
        return sample_latent_images(optimize_for(model, self.cfg.kernels), self.autoencoder, self.latent_shape,
                                    self.cfg.sampling, self.cfg.diffusion,
                                    beta_schedule=self.cfg.diffusion.beta_schedule, num_images=num_images)


def build_latent_study(cfg: UseCaseConfig, data: ContributorDataset, autoencoder: Autoencoder, scorer: Property, *,
                       latents_folder: str | None = None, store: Store = _no_store,
                       progress: bool = False) -> LatentStudy:
    """Encode ``data`` (pixels) once, then train (or load through ``store``) full -> prune -> finetune on latents."""
    latents = cached_latent_dataset(data, autoencoder, folder=latents_folder)
    shape = tuple(latents.images.shape[1:])
    expected = (cfg.model.in_channels, cfg.model.sample_size, cfg.model.sample_size)
    if shape != expected:
        raise ValueError(f"the autoencoder's latents are {shape} but model expects {expected}: set "
                         f"model.in_channels={shape[0]} and model.sample_size={shape[1]}")
    stages = train_stages(cfg, latents, store=store, progress=progress)
    (full, _), (pruned, extra) = stages["full"], stages["finetune"]
    return LatentStudy(cfg, latents, scorer, build_unet(cfg.model, seed=cfg.train.seed), full, pruned,
                       extra["prune_report"], autoencoder=autoencoder, latent_shape=shape)


@dataclass
class LoraStudy:
    """Everything a LoRA coalition evaluation needs; LoRA states are the only per-stage weights."""

    cfg: UseCaseConfig
    data: ContributorDataset  # latents of the SD VAE
    scorer: Property
    recipe: LoraConfig
    vae: Autoencoder
    full: CaptionConditionedDenoiser
    pruned: CaptionConditionedDenoiser
    states: dict[str, dict[str, torch.Tensor]]  # "init" and "full" (full adapter), "pruned" (pruned, fine-tuned)
    prune_report: dict[str, float] = field(default_factory=dict)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.images.shape[1:])

    def score(self, denoiser: CaptionConditionedDenoiser) -> tuple[float, dict[str, float], torch.Tensor,
                                                                    dict[str, float]]:
        """(utility, properties, images, timings) of a denoiser's generated image set."""
        return timed_score(self.scorer, lambda: self.sample_full(denoiser))

    def sample_full(self, denoiser: CaptionConditionedDenoiser | None = None,
                    num_images: int | None = None) -> torch.Tensor:
        """Decoded images (N, 3, H, W) of ``denoiser`` (default: the full LoRA)."""
        return sample_latent_images(denoiser or self.full, self.vae, self.latent_shape, self.cfg.sampling,
                                    self.cfg.diffusion, beta_schedule=self.cfg.diffusion.beta_schedule,
                                    num_images=num_images)

    def v0(self) -> CoalitionResult:
        """The empty coalition: the pretrained base model, LoRA off."""
        with lora_disabled(self.full.unet):
            utility, properties, images, timings = self.score(self.full)
        return CoalitionResult(utility, properties, timings, images)

    def v1(self) -> CoalitionResult:
        """The grand coalition: the full LoRA (or the pruned fine-tuned one, per ``utility.v1``)."""
        denoiser = self.full if self.cfg.utility.v1 == "full" else self.pruned
        utility, properties, images, timings = self.score(denoiser)
        return CoalitionResult(utility, properties, timings, images)

    @contextmanager
    def _started_from(self, denoiser: CaptionConditionedDenoiser, start: str, after: str) -> Iterator[None]:
        """Install LoRA state ``start`` for the block, then restore ``after`` (the stage's own state)."""
        set_lora_state(denoiser.unet, self.states[start])
        try:
            yield
        finally:
            set_lora_state(denoiser.unet, self.states[after])

    def evaluate(self, mask: np.ndarray, method: str | None = None, seed: int | None = None) -> CoalitionResult:
        """v(S): sft (pruned LoRA, sft recipe), ft (full LoRA, sft recipe) or retrain (fresh LoRA, train recipe)."""
        method = method or self.cfg.utility.method
        subset = self.data.subset(mask)
        denoiser, start, recipe = {
            "sft": (self.pruned, "pruned", self.cfg.sft), "ft": (self.full, "full", self.cfg.sft),
            "retrain": (self.full, "init", self.cfg.train)}[method]
        recipe = recipe if seed is None else replace(recipe, seed=seed)
        after = "pruned" if denoiser is self.pruned else "full"
        with self._started_from(denoiser, start, after):
            began = time.perf_counter()
            train(denoiser, subset, recipe, self.cfg.diffusion)
            trained_seconds = time.perf_counter() - began
            utility, properties, images, timings = self.score(denoiser)
        return CoalitionResult(utility, properties, {"train_seconds": trained_seconds, **timings}, images)


def _check_no_ema(cfg: UseCaseConfig) -> None:
    for section in ("train", "finetune", "sft"):
        if getattr(cfg, section).ema.decay > 0:
            raise ValueError(f"{section}.ema.decay must be 0 for the LoRA family (an EMA of the whole frozen UNet "
                             "would double its memory and change nothing but the LoRA)")


def build_lora_study(cfg: UseCaseConfig, data: ContributorDataset, components: SDComponents, scorer: Property,
                     recipe: LoraConfig, *, latents_folder: str | None = None) -> LoraStudy:
    """Encode ``data`` with the SD VAE (cached), train the full LoRA, prune its ranks, fine-tune the pruned LoRA."""
    _check_no_ema(cfg)
    latents = cached_latent_dataset(data, components.vae, folder=latents_folder)
    caption, uncond = encode_caption(components, recipe.caption), encode_caption(components, "")
    add_lora(components.unet, rank=recipe.rank, alpha=recipe.alpha, seed=cfg.train.seed)
    states = {"init": lora_state(components.unet)}
    full = CaptionConditionedDenoiser(components.unet, caption, uncond_embedding=uncond,
                                      guidance_scale=recipe.guidance_scale)
    train(full, latents, cfg.train, cfg.diffusion)
    states["full"] = lora_state(components.unet)
    pruned_unet = copy.deepcopy(components.unet)  # once per study: the pruned adapter needs its own layers
    report = prune_lora_ranks(pruned_unet, recipe.lora_param_fraction_kept)
    pruned = CaptionConditionedDenoiser(pruned_unet, caption, uncond_embedding=uncond,
                                        guidance_scale=recipe.guidance_scale)
    train(pruned, latents, cfg.finetune, cfg.diffusion)
    states["pruned"] = lora_state(pruned_unet)
    return LoraStudy(cfg, latents, scorer, recipe, components.vae, full, pruned, states, report.as_dict())


def build_family_study(cfg: UseCaseConfig, data: ContributorDataset, scorer: Property, *, store: Store = _no_store,
                       progress: bool = False) -> LatentStudy | LoraStudy:
    """The study of a latent (``model.family=latent``) or SD + LoRA (``sd_lora``) use case, from ``cfg.assets``.

    Latents are cached by content under the cache folder. The LoRA family trains its adapters in process:
    ``store`` applies to the latent family only (LoRA stages are not yet stored as runs).
    """
    latents_folder = str(cache_dir("latents"))
    if cfg.model.family == "latent":
        return build_latent_study(cfg, data, load_autoencoder(cfg.assets.ldm_celebahq), scorer,
                                  latents_folder=latents_folder, store=store, progress=progress)
    if cfg.model.family == "sd_lora":
        components = load_sd_components(cfg.assets.stable_diffusion, allow_download=cfg.assets.allow_download)
        return build_lora_study(cfg, data, components, scorer, cfg.lora, latents_folder=latents_folder)
    raise ValueError(f"model.family={cfg.model.family!r} has no family study: pixel models use pipeline.Study")


def stage_images(cfg: UseCaseConfig, model: torch.nn.Module, num_images: int | None = None) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] of a stage's UNet: sampled directly (pixel) or decoded (latent)."""
    if cfg.model.family == "pixel":
        return sample(model, cfg.sampling, cfg.diffusion, num_images=num_images)
    if cfg.model.family != "latent":
        raise ValueError(f"model.family={cfg.model.family!r}: stage models are UNets of the pixel or latent family")
    shape = (cfg.model.in_channels, cfg.model.sample_size, cfg.model.sample_size)
    return sample_latent_images(model, load_autoencoder(cfg.assets.ldm_celebahq), shape, cfg.sampling, cfg.diffusion,
                                beta_schedule=cfg.diffusion.beta_schedule, num_images=num_images)
