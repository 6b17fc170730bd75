"""SMOKE: the whole attribute chain of each use case on tiny random stand-ins (plumbing, not science).

For each use case: assets (tiny stand-ins in the real layouts) -> real loaders -> full model -> prune
-> pruned fine-tune -> v0, v1 and every coalition of 3 contributors (sFT, sample, score) -> exact
Shapley values, which must be finite and sum to v1 - v0 (efficiency).
"""

import numpy as np
import pytest

from shapflow.config import (
    DataConfig,
    DiffusionConfig,
    LoraConfig,
    ModelConfig,
    PruneConfig,
    SampleConfig,
    TrainConfig,
    UseCaseConfig,
)
from shapflow.data.artbench import load_artbench
from shapflow.data.celebahq import load_celebahq
from shapflow.models.latent import load_autoencoder
from shapflow.models.sd_lora import load_sd_components
from shapflow.models.unet import build_unet
from shapflow.properties.aesthetic import load_aesthetic_property
from shapflow.properties.diversity import load_diversity_property
from shapflow.properties.inception_score import load_inception_property
from shapflow.shapley import estimate
from shapflow.shapley.samplers import sample_all
from shapflow.testing.smoke import SMOKE_LABEL, tiny_images, write_tiny_assets
from shapflow.utility.families import build_latent_study, build_lora_study
from shapflow.utility.study import Study, train_stages

STEPS = TrainConfig(steps=2, batch_size=4, lr=1e-3)


def _cfg(name: str, size: int, channels: int, widths: tuple[int, ...] = (8, 16)) -> UseCaseConfig:
    """A smoke config: tiny UNet, 2 training steps per stage, 3 images with 2 DDIM steps."""
    return UseCaseConfig(
        name=f"{name}-smoke", description=SMOKE_LABEL, data=DataConfig(source="digits-classes", image_size=size),
        model=ModelConfig(sample_size=size, in_channels=channels, block_out_channels=widths),
        diffusion=DiffusionConfig(num_train_timesteps=50), train=STEPS, finetune=STEPS, sft=STEPS,
        prune=PruneConfig(channel_fraction_removed=0.5),
        sampling=SampleConfig(num_images=3, num_inference_steps=2, batch_size=3))


def _no_store(_cfg, _stage, _recipe, build):
    return build()


def _run_coalitions(study) -> tuple[np.ndarray, float, float]:
    """Utilities of every coalition of 3 players, then exact Shapley values; logged as a dict per run."""
    coalitions = sample_all(3, 6, 0)
    log = {"v0": study.v0().utility, "v1": study.v1().utility}
    utilities = np.array([study.evaluate(np.array(mask)).utility for mask in coalitions.masks])
    log |= {f"v{mask.astype(int).tolist()}": u for mask, u in zip(coalitions.masks, utilities, strict=True)}
    assert all(np.isfinite(v) for v in log.values()), log
    result = estimate(coalitions.masks, utilities, "exact-shapley", v0=log["v0"], v1=log["v1"], n_players=3)
    assert np.isfinite(result.values).all() and result.values.sum() == pytest.approx(log["v1"] - log["v0"], abs=1e-6)
    return result.values, log["v0"], log["v1"]


def test_cifar20_smoke_chain(tmp_path):
    assets = write_tiny_assets("cifar20", tmp_path)
    cfg = _cfg("cifar20", 16, 3)
    data = tiny_images(3, 4, size=16)  # the CIFAR-20 loader is tested on a miniature archive elsewhere
    scorer = load_inception_property(assets["fid_inception"], name="inception_score", resize_to=75)
    stages = train_stages(cfg, data, store=_no_store)
    (full, _), (pruned, extra) = stages["full"], stages["finetune"]
    study = Study(cfg, data, scorer, build_unet(cfg.model, seed=0), full, pruned, extra["prune_report"])
    values, v0, _ = _run_coalitions(study)
    assert v0 >= 1.0 and values.shape == (3,)  # an Inception Score is at least 1


def test_celebahq_smoke_chain(tmp_path):
    assets = write_tiny_assets("celebahq", tmp_path)
    pixels = load_celebahq(assets["celebahq_images"], assets["celebahq_labels"], num_identities=3, image_size=16)
    scorer = load_diversity_property(assets["face_encoder"], pixels.images, n_clusters=4)
    cfg = _cfg("celebahq", 8, 3)  # the model sees 3x8x8 VQ latents of 16x16 images
    study = build_latent_study(cfg, pixels, load_autoencoder(assets["ldm_celebahq"]), scorer,
                               latents_folder=str(tmp_path / "latents"))
    assert study.data.images.shape[1:] == (3, 8, 8) and study.v1().images.shape == (3, 3, 16, 16)
    values, _, _ = _run_coalitions(study)
    assert values.shape == (3,)


def test_artworks_smoke_chain(tmp_path):
    assets = write_tiny_assets("artworks", tmp_path)
    pixels = load_artbench(assets["artbench_images"], assets["artbench_metadata"], image_size=16)
    pixels = pixels.subset(np.arange(pixels.n_contributors) < 3)
    pixels = type(pixels)(pixels.images, pixels.contributor, pixels.names[:3], pixels.info[:3])
    scorer = load_aesthetic_property(assets["clip_vit_l14"], assets["laion_aesthetic_head"])
    cfg = _cfg("artworks", 8, 4)
    recipe = LoraConfig(rank=4, lora_param_fraction_kept=0.5, guidance_scale=2.0)
    study = build_lora_study(cfg, pixels, load_sd_components(assets["stable_diffusion"]), scorer, recipe,
                             latents_folder=str(tmp_path / "latents"))
    assert study.prune_report["lora_rank_after"] == 2
    assert study.prune_report["lora_param_fraction_kept"] == pytest.approx(0.5)
    pruned_before = {k: v.clone() for k, v in study.states["pruned"].items()}
    values, v0, _ = _run_coalitions(study)
    assert values.shape == (3,) and np.isfinite(v0)
    from shapflow.models.sd_lora import lora_state  # sFT must leave the pruned LoRA as it found it

    after = lora_state(study.pruned.unet)
    assert all(np.allclose(after[k].numpy(), v.numpy()) for k, v in pruned_before.items())
