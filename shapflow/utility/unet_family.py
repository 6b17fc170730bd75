"""The UNet families: ``pixel`` (the UNet denoises images) and ``latent`` (it denoises the latents of a frozen
autoencoder, e.g. CelebA-HQ's VQ-VAE; images are decoded before scoring).

Both train a diffusers ``UNet2DModel`` with the one training loop, prune its channels with Torch-Pruning and
store it as safetensors + JSON (pruned widths included). A stage's output is ``UNetModels``: the raw weights,
the EMA (if the recipe kept one) and the weights it samples with. Training and sampling run at the use case's
``precision``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel

from shapflow.cache import cache_dir
from shapflow.config import ConfigError, TrainConfig, UseCaseConfig
from shapflow.data import ContributorDataset
from shapflow.generation.ddim import sample, sample_stacked
from shapflow.generation.latent_sampling import sample_latent_images
from shapflow.models import build_unet, load_unet, save_unet
from shapflow.models.latent import Autoencoder, cached_latent_dataset, load_autoencoder
from shapflow.training import Member, prune_unet, sampling_state, train, train_many
from shapflow.utility.protocol import Context, stage_recipe

__all__ = ["LatentContext", "LatentFamily", "PixelFamily", "UNetModels", "optimize_for"]


@dataclass
class UNetModels:
    """A UNet stage's output: raw weights (the module), the EMA state if the stage kept one, and the weights
    it samples with (the EMA or the raw ones, per its recipe)."""

    model: UNet2DModel
    ema: dict[str, torch.Tensor] | None
    sample_state: dict[str, torch.Tensor]

    def for_sampling(self) -> UNet2DModel:
        """A copy of the module holding the weights this stage samples with."""
        clone = copy.deepcopy(self.model)
        clone.load_state_dict(self.sample_state)
        return clone.eval()


def optimize_for(model: UNet2DModel, backend: str) -> UNet2DModel:
    """Swap in fused kernels (``shapflow.kernels``) unless the backend is eager.

    Imported here, not at the top: ``shapflow.kernels`` pulls in torch._dynamo and Triton (seconds), which an
    eager run (every default) never needs.
    """
    if backend == "eager":
        return model
    from shapflow.kernels import optimize

    return optimize(model, backend=backend)


class PixelFamily:
    """``model.family: pixel``: a UNet on the images themselves (digits, CIFAR-20)."""

    name = "pixel"
    stackable = True
    light = True

    def check(self, cfg: UseCaseConfig) -> None:
        if cfg.data.image_size != cfg.model.sample_size:
            raise ConfigError(f"model.sample_size={cfg.model.sample_size} is invalid: must equal data.image_size "
                              f"({cfg.data.image_size}) for model.family={self.name}")

    def context(self, cfg: UseCaseConfig) -> Context:
        return Context(cfg)

    def training_data(self, ctx: Context, data: ContributorDataset) -> ContributorDataset:
        return data

    def untrained(self, ctx: Context, seed: int) -> UNetModels:
        model = build_unet(ctx.cfg.model, seed=seed)
        return UNetModels(model, None, {k: v.detach().clone() for k, v in model.state_dict().items()})

    def empty(self, ctx: Context) -> UNetModels:
        return self.untrained(ctx, ctx.cfg.train.seed)

    def train(self, ctx: Context, start: UNetModels, data: ContributorDataset, recipe: TrainConfig, *,
              progress: bool = False, desc: str = "train") -> UNetModels:
        """Train a copy of ``start``'s sampling weights (its EMA handed on for ``ema.init=continue``)."""
        model = optimize_for(start.for_sampling(), ctx.cfg.kernels)
        result = train(model, data, recipe, ctx.cfg.diffusion, ema_init=start.ema, progress=progress, desc=desc,
                       precision=ctx.cfg.precision)
        return UNetModels(result.model, result.ema, sampling_state(result, recipe))

    def train_stacked(self, ctx: Context, start: UNetModels, datasets: list[ContributorDataset], recipe: TrainConfig,
                      *, seeds: list[int] | None = None) -> list[UNetModels]:
        """``train`` of a copy of ``start`` on each dataset, all in one vmapped loop (``train_many``); member k
        trains with seed ``seeds[k]`` (default the recipe's) and ends where its lone ``train`` would."""
        self._check_stack(ctx)
        seeds = [recipe.seed] * len(datasets) if seeds is None else seeds
        members = [Member(start.for_sampling(), data, seed, start.ema)
                   for data, seed in zip(datasets, seeds, strict=True)]
        results = train_many(members, recipe, ctx.cfg.diffusion, desc=f"sft x{len(members)}",
                             precision=ctx.cfg.precision)
        return [UNetModels(result.model, result.ema, sampling_state(result, recipe)) for result in results]

    def images_stacked(self, ctx: Context, models: list[UNetModels], num_images: int | None = None
                       ) -> list[torch.Tensor]:
        """``images`` of each model, sampled in one vmapped DDIM loop from the same common random numbers."""
        self._check_stack(ctx)
        stacked = sample_stacked([m.for_sampling() for m in models], ctx.cfg.sampling, ctx.cfg.diffusion,
                                 num_images=num_images, precision=ctx.cfg.precision)
        return list(stacked.unbind(0))

    def _check_stack(self, ctx: Context) -> None:
        """Stacking runs the plain modules through torch.func: a stackable family and eager kernels only."""
        if not self.stackable:
            raise ValueError(f"model.family={self.name} cannot stack coalitions: evaluate them with stack=1")
        if ctx.cfg.kernels != "eager":
            raise ConfigError(f"kernels={ctx.cfg.kernels} cannot stack coalitions (its fused modules do not vmap): "
                              "use kernels=eager, or stack=1")

    def prune(self, ctx: Context, full: UNetModels, data: ContributorDataset) -> tuple[UNetModels, dict[str, float]]:
        model, report = prune_unet(full.for_sampling(), ctx.cfg.prune, data=data, diffusion=ctx.cfg.diffusion)
        return UNetModels(model, None, model.state_dict()), report.as_dict()

    def images(self, ctx: Context, models: UNetModels, num_images: int | None = None) -> torch.Tensor:
        model = optimize_for(models.for_sampling(), ctx.cfg.kernels)
        return sample(model, ctx.cfg.sampling, ctx.cfg.diffusion, num_images=num_images, precision=ctx.cfg.precision)

    def save(self, models: UNetModels, folder: Path) -> None:
        save_unet(models.model, folder, ema=models.ema)

    def load(self, ctx: Context, folder: Path, stage: str) -> UNetModels:
        model, ema, _ = load_unet(folder)
        recipe = stage_recipe(ctx.cfg, stage)
        use_ema = recipe is not None and recipe.ema.sample_with_ema and ema is not None
        state = ema if use_ema else model.state_dict()
        return UNetModels(model, ema, {k: v.clone() for k, v in state.items()})


@dataclass
class LatentContext(Context):
    """The latent family's frozen part: the autoencoder whose latents the UNet denoises."""

    autoencoder: Autoencoder | None = None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        model = self.cfg.model
        return model.in_channels, model.sample_size, model.sample_size


class LatentFamily(PixelFamily):
    """``model.family: latent``: a UNet on cached latents of ``assets.ldm_celebahq``'s autoencoder (CelebA-HQ)."""

    name = "latent"
    stackable = False  # ground-truth retraining and stacked coalitions sample in pixel space only

    def check(self, cfg: UseCaseConfig) -> None:
        """The autoencoder fixes the latent size: checked against the model when the latents exist."""

    def context(self, cfg: UseCaseConfig) -> LatentContext:
        return LatentContext(cfg, load_autoencoder(cfg.assets.ldm_celebahq))

    def training_data(self, ctx: LatentContext, data: ContributorDataset) -> ContributorDataset:
        """``data`` encoded once (cached by content) by the autoencoder."""
        latents = cached_latent_dataset(data, ctx.autoencoder, folder=cache_dir("latents"))
        shape = tuple(latents.images.shape[1:])
        if shape != ctx.latent_shape:
            raise ConfigError(f"the autoencoder's latents are {shape} but model expects {ctx.latent_shape}: set "
                              f"model.in_channels={shape[0]} and model.sample_size={shape[1]}")
        return latents

    def images(self, ctx: LatentContext, models: UNetModels, num_images: int | None = None) -> torch.Tensor:
        model = optimize_for(models.for_sampling(), ctx.cfg.kernels)
        return sample_latent_images(model, ctx.autoencoder, ctx.latent_shape, ctx.cfg.sampling, ctx.cfg.diffusion,
                                    num_images=num_images, precision=ctx.cfg.precision)
