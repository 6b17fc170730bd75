"""The ``sd_lora`` family: a LoRA adapter on a frozen Stable Diffusion UNet, conditioned on one caption
(the paper's ArtBench use case: ``lambdalabs/miniSD-diffusers`` + rank-256 LoRA on attention q/k/v/out).

Only LoRA weights train, so a stage's output is ``LoraModels``: the LoRA state and the caption-conditioned
denoiser whose adapter it fits (the full-rank adapter on the shared UNet, or, after rank pruning, an adapter
of lower rank on one copy of the UNet made once per study). Every use installs the state it needs first, so
no UNet is ever copied per coalition. v(empty) is the base model with the adapter switched off. Stages are
stored as PEFT adapter folders (``adapter_config.json`` with the ranks + ``adapter_model.safetensors``) that
``peft`` loads onto the base UNet named in ``stage.json``'s use case (``assets.stable_diffusion``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from safetensors.torch import load_file

from shapflow.cache import cache_dir
from shapflow.config import ConfigError, TrainConfig, UseCaseConfig
from shapflow.data import ContributorDataset
from shapflow.generation.latent_sampling import sample_latent_images
from shapflow.models.latent import cached_latent_dataset
from shapflow.models.sd_lora import (
    ADAPTER_WEIGHTS,
    CaptionConditionedDenoiser,
    SDComponents,
    add_lora,
    encode_caption,
    fresh_lora_state,
    load_sd_components,
    lora_disabled,
    lora_state,
    save_lora,
    set_lora_state,
)
from shapflow.training import prune_lora_ranks, train
from shapflow.utility.protocol import Context

__all__ = ["LoraContext", "LoraFamily", "LoraModels"]


@dataclass
class LoraModels:
    """A LoRA stage's output: ``state`` (None: adapter off, the base model) and the denoiser it fits."""

    denoiser: CaptionConditionedDenoiser
    state: dict[str, torch.Tensor] | None

    def install(self) -> CaptionConditionedDenoiser:
        """The denoiser with this state's LoRA weights in place (the adapter stays off for ``state=None``)."""
        if self.state is not None:
            set_lora_state(self.denoiser.unet, self.state)
        return self.denoiser


@dataclass
class LoraContext(Context):
    """The frozen parts: SD's UNet (with the full-rank adapter), VAE and encoded captions, and the denoiser."""

    components: SDComponents | None = None
    denoiser: CaptionConditionedDenoiser | None = None

    def denoiser_for(self, unet: torch.nn.Module) -> CaptionConditionedDenoiser:
        """A caption-conditioned denoiser (with guidance) around ``unet``, sharing the encoded captions."""
        shared = self.denoiser
        return CaptionConditionedDenoiser(unet, shared.caption, uncond_embedding=shared.uncond,
                                          guidance_scale=self.cfg.lora.guidance_scale)


class LoraFamily:
    """``model.family: sd_lora``: LoRA on ``assets.stable_diffusion``'s UNet; ``model.sample_size`` and
    ``model.in_channels`` give the latent shape."""

    name = "sd_lora"
    stackable = False
    light = False  # every worker process holds its own Stable Diffusion

    def check(self, cfg: UseCaseConfig) -> None:
        for section in ("train", "finetune", "sft"):
            if getattr(cfg, section).ema.decay > 0:
                raise ConfigError(f"{section}.ema.decay={getattr(cfg, section).ema.decay} is invalid for "
                                  f"model.family={self.name}: use 0 (an EMA of the whole frozen UNet would double "
                                  "its memory and change nothing but the LoRA)")
        if cfg.diffusion.beta_schedule != "scaled_linear":
            raise ConfigError(f"diffusion.beta_schedule={cfg.diffusion.beta_schedule!r} is invalid for "
                              f"model.family={self.name}: Stable Diffusion 1.x was trained with scaled_linear")

    def context(self, cfg: UseCaseConfig) -> LoraContext:
        """Load SD (local snapshot, or the hub id when ``assets.allow_download``), add the full-rank adapter."""
        components = load_sd_components(cfg.assets.stable_diffusion, allow_download=cfg.assets.allow_download)
        add_lora(components.unet, rank=cfg.lora.rank, alpha=cfg.lora.alpha, seed=cfg.train.seed)
        denoiser = CaptionConditionedDenoiser(components.unet, encode_caption(components, cfg.lora.caption),
                                              uncond_embedding=encode_caption(components, ""),
                                              guidance_scale=cfg.lora.guidance_scale)
        return LoraContext(cfg, components, denoiser)

    def training_data(self, ctx: LoraContext, data: ContributorDataset) -> ContributorDataset:
        """``data`` encoded once (cached by content) by SD's VAE."""
        return cached_latent_dataset(data, ctx.components.vae, folder=cache_dir("latents"))

    def untrained(self, ctx: LoraContext, seed: int) -> LoraModels:
        return LoraModels(ctx.denoiser, fresh_lora_state(ctx.denoiser.unet, seed))

    def empty(self, ctx: LoraContext) -> LoraModels:
        return LoraModels(ctx.denoiser, None)

    def train(self, ctx: LoraContext, start: LoraModels, data: ContributorDataset, recipe: TrainConfig, *,
              progress: bool = False, desc: str = "train") -> LoraModels:
        """Train the LoRA weights from ``start``'s state in place on its denoiser; the new state is a copy."""
        denoiser = start.install()
        train(denoiser, data, recipe, ctx.cfg.diffusion, progress=progress, desc=desc, precision=ctx.cfg.precision)
        return LoraModels(denoiser, lora_state(denoiser.unet))

    def prune(self, ctx: LoraContext, full: LoraModels, data: ContributorDataset) -> tuple[LoraModels, dict]:
        """Keep ``lora.lora_param_fraction_kept`` of the LoRA parameters, on a copy of the UNet (made once)."""
        unet = copy.deepcopy(full.install().unet)
        report = prune_lora_ranks(unet, ctx.cfg.lora.lora_param_fraction_kept)
        return LoraModels(ctx.denoiser_for(unet), lora_state(unet)), report.as_dict()

    def images(self, ctx: LoraContext, models: LoraModels, num_images: int | None = None) -> torch.Tensor:
        cfg = ctx.cfg
        shape = (cfg.model.in_channels, cfg.model.sample_size, cfg.model.sample_size)
        denoiser = models.install()
        if models.state is not None:
            return sample_latent_images(denoiser, ctx.components.vae, shape, cfg.sampling, cfg.diffusion,
                                        num_images=num_images, precision=cfg.precision)
        with lora_disabled(denoiser.unet):
            return sample_latent_images(denoiser, ctx.components.vae, shape, cfg.sampling, cfg.diffusion,
                                        num_images=num_images, precision=cfg.precision)

    def save(self, models: LoraModels, folder: Path) -> None:
        if models.state is None:
            raise ValueError("the base model (adapter off) is not a stage: there is no LoRA to save")
        save_lora(models.denoiser.unet, folder, models.state)

    def load(self, ctx: LoraContext, folder: Path, stage: str) -> LoraModels:
        """The adapter folder's state on the shared denoiser (same ranks), or on one copy of the UNet whose
        adapter is rebuilt with the saved ranks (a rank-pruned stage)."""
        saved = json.loads((Path(folder) / "adapter_config.json").read_text())
        current = ctx.denoiser.unet.peft_config["default"]
        state = load_file(Path(folder) / ADAPTER_WEIGHTS)
        if saved.get("r") == current.r and saved.get("lora_alpha") == current.lora_alpha:
            return LoraModels(ctx.denoiser, state)
        unet = copy.deepcopy(ctx.denoiser.unet)
        unet.delete_adapters("default")
        unet.add_adapter(PeftLoraConfig.from_pretrained(str(folder)))  # the base stays frozen, the LoRA trains
        return LoraModels(ctx.denoiser_for(unet), state)
