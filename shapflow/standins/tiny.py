"""The tiny configuration's stand-ins: tiny random-weight models and random images, in the REAL asset layouts.

``tiny=true`` proves the plumbing, not the science: every value computed with these stand-ins is
meaningless. Each stand-in is built from a small config with seeded random weights and saved
where and how the real asset would be (a diffusers snapshot with ``model_index.json``, a
transformers folder, a state-dict file, an image folder + CSV), so the real loading code runs
end to end on CPU in seconds. Nothing is downloaded; the CLIP tokenizer is built in code from a
generated character vocabulary. ``write_tiny_assets(use_case, folder)`` returns the asset paths.
"""

from __future__ import annotations

import contextlib
import csv
import json
import pickle
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shapflow.config import ConfigError, UseCaseConfig, apply_overrides
from shapflow.data.base import ContributorDataset

__all__ = [
    "TINY_LABEL",
    "TINY_OVERRIDES",
    "tiny_clip_tokenizer",
    "tiny_config",
    "tiny_images",
    "write_tiny_artbench",
    "write_tiny_assets",
    "write_tiny_celebahq",
    "write_tiny_cifar100",
    "write_tiny_clip_vision",
    "write_tiny_inception",
    "write_tiny_laion_head",
    "write_tiny_sd",
    "write_tiny_vq",
]

TINY_LABEL = "SMOKE (tiny random stand-ins: plumbing only, values meaningless)"
_STAGE = ("steps=2", "batch_size=4", "lr=0.001", "warmup_steps=0", "ema.decay=0.0", "ema.sample_with_ema=false")
# The one home of the smoke configuration (-P tiny=true): tiny UNet, 2 steps per training, 3 images with
# 2 DDIM steps, 3 contributors; then per model family the image and latent sizes of the tiny autoencoders.
TINY_OVERRIDES: dict[str, tuple[str, ...]] = {
    "common": ("model.block_out_channels=[8,16]", "model.layers_per_block=1", "model.norm_num_groups=4",
               "model.add_attention=false", "model.down_block_types=[DownBlock2D,DownBlock2D]",
               "model.up_block_types=[UpBlock2D,UpBlock2D]", "diffusion.num_train_timesteps=50",
               *(f"{section}.{item}" for section in ("train", "finetune", "sft") for item in _STAGE),
               "prune.channel_fraction_removed=0.5", "prune.round_to=null", "sampling.num_images=3",
               "sampling.num_inference_steps=2", "sampling.batch_size=3", "property.inception_resize=75",
               "property.n_clusters=4", "lora.rank=4", "lora.guidance_scale=2.0", "data.max_contributors=3"),
    "pixel": ("data.image_size=32", "model.sample_size=32"),  # CIFAR images stay 32x32
    "latent": ("data.image_size=16", "model.sample_size=8", "model.in_channels=3", "data.num_identities=3"),
    "sd_lora": ("data.image_size=16", "model.sample_size=8", "model.in_channels=4"),
}
TEXT_DIM, TOKEN_LENGTH, CLIP_PROJECTION = 32, 16, 32


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seeded torch RNG inside the block; the global RNG state is restored on exit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_images(n_contributors: int = 4, per_contributor: int = 6, *, size: int = 16, seed: int = 0,
                names: tuple[str, ...] | None = None) -> ContributorDataset:
    """Random RGB images (N, 3, size, size) in [-1, 1]: each contributor has its own mean colour plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-0.8, 0.8, (n_contributors, 3, 1, 1))
    noise = rng.normal(0.0, 0.3, (n_contributors, per_contributor, 3, size, size))
    images = np.clip(colours[:, None] + noise, -1.0, 1.0).reshape(-1, 3, size, size).astype(np.float32)
    owners = np.repeat(np.arange(n_contributors), per_contributor)
    names = names or tuple(f"smoke-contributor-{i}" for i in range(n_contributors))
    return ContributorDataset(torch.from_numpy(images), torch.from_numpy(owners), names,
                              tuple({"source": "smoke"} for _ in names)).check_market()


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((array.transpose(1, 2, 0) + 1.0) * 127.5).round().astype(np.uint8)).save(path)


def write_tiny_celebahq(folder: Path, *, n_identities: int = 4, per_identity: int = 5, size: int = 16,
                        seed: int = 0) -> tuple[Path, Path]:
    """A CelebA-HQ-layout image folder + ``labels.csv`` (image,identity); returns (images_dir, labels_csv)."""
    data = tiny_images(n_identities, per_identity, size=size, seed=seed)
    images_dir, labels = folder / "celeba-hq" / "images", folder / "celeba-hq" / "labels.csv"
    rows = []
    for i, (image, owner) in enumerate(zip(data.images.numpy(), data.contributor.tolist(), strict=True)):
        _save_png(image, images_dir / f"{i}.png")
        rows.append({"image": f"{i}.png", "identity": str(1000 + owner)})
    _write_csv(labels, ["image", "identity"], rows)
    return images_dir, labels


def write_tiny_artbench(folder: Path, *, n_artists: int = 4, per_artist: int = 5, size: int = 16,
                        seed: int = 1) -> tuple[Path, Path]:
    """An ArtBench ImageFolder layout (<split>/<style>/<name>) + ``ArtBench-10.csv``; also a decoy style."""
    data = tiny_images(n_artists, per_artist, size=size, seed=seed)
    root, metadata = folder / "artbench" / "artbench-10-imagefolder-split", folder / "artbench" / "ArtBench-10.csv"
    rows = []
    for i, (image, owner) in enumerate(zip(data.images.numpy(), data.contributor.tolist(), strict=True)):
        style = "post_impressionism" if i % 7 else "realism"  # rows of another style must be filtered out
        name = f"smoke-artist-{owner}_{i}.jpg"
        _save_png(image, root / "train" / style / name)
        rows.append({"name": name, "artist": f"smoke-artist-{owner}", "url": "", "is_public_domain": "True",
                     "length": size, "width": size, "style": style, "split": "train"})
    _write_csv(metadata, list(rows[0]), rows)
    return root, metadata


def _write_csv(path: Path, header: list[str], rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def tiny_clip_tokenizer(max_length: int = TOKEN_LENGTH):
    """A CLIP BPE tokenizer over single characters (a-z, digits, punctuation), built in code."""
    from transformers import CLIPTokenizer

    symbols = list("abcdefghijklmnopqrstuvwxyz0123456789-.,'!?")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def write_tiny_sd(folder: Path, *, seed: int = 0) -> Path:
    """A Stable-Diffusion-1.x-layout snapshot (model_index.json, unet, vae, text_encoder, tokenizer, scheduler)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    with _seeded(seed):
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=8, sample_size=16)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=TOKEN_LENGTH, bos_token_id=0, eos_token_id=1,
            pad_token_id=1))
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDPMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder


def write_tiny_vq(folder: Path, *, seed: int = 0) -> Path:
    """A snapshot in the layout of ``CompVis/ldm-celebahq-256`` holding a tiny ``vqvae/`` (3 latent channels, /2)."""
    from diffusers import VQModel

    with _seeded(seed):
        vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                     up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                     latent_channels=3, num_vq_embeddings=32, vq_embed_dim=3, norm_num_groups=8, sample_size=16)
    vq.save_pretrained(folder / "vqvae")
    index = {"_class_name": "LDMPipeline", "vqvae": ["diffusers", "VQModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def write_tiny_clip_vision(folder: Path, *, projection_dim: int = CLIP_PROJECTION, seed: int = 0) -> Path:
    """A ``CLIPVisionModelWithProjection`` folder (32x32 inputs, 8x8 patches) saved with ``save_pretrained``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=projection_dim)
    with _seeded(seed):
        CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def write_tiny_laion_head(path: Path, *, dim: int = CLIP_PROJECTION, seed: int = 0) -> Path:
    """A LAION-head-format state dict {weight: (1, dim), bias: (1,)} (a dict of tensors, not a module)."""
    generator = torch.Generator().manual_seed(seed)
    state = {"weight": torch.randn(1, dim, generator=generator), "bias": torch.randn(1, generator=generator)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_tiny_inception(path: Path, *, seed: int = 0) -> Path:
    """A random state dict with the key names and shapes of the FID Inception weights file (about 95 MB)."""
    from shapflow.models.inception import FIDInceptionV3

    with _seeded(seed):
        state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_tiny_cifar100(folder: Path, *, per_class: int = 2, seed: int = 0) -> Path:
    """An extracted ``cifar-100-python/`` (train, test, meta pickles) with random images of the CIFAR-20 classes."""
    from shapflow.data.cifar import CIFAR20_CLASSES

    names = [*CIFAR20_CLASSES, *(f"smoke_filler_{i}" for i in range(100 - len(CIFAR20_CLASSES)))]
    labels = [label for label in range(len(CIFAR20_CLASSES)) for _ in range(per_class)]
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    batch = {b"fine_labels": labels, b"coarse_labels": [0] * len(labels), b"data": pixels}
    meta = {b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"smoke"] * 20}
    root = folder / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    for member, content in (("train", batch), ("test", batch), ("meta", meta)):
        (root / member).write_bytes(pickle.dumps(content, protocol=2))
    return folder


def tiny_config(cfg: UseCaseConfig, folder: str | Path) -> UseCaseConfig:
    """The tiny configuration of ``cfg``: stand-ins written under ``folder`` (reused when present) as its
    assets, ``TINY_OVERRIDES``, ``tiny=true`` and the name ``SMOKE-<name>``. Idempotent."""
    from shapflow.data.assets import SOURCE_ASSETS

    if cfg.name.startswith("SMOKE-"):
        return cfg
    kind = SOURCE_ASSETS.get(cfg.data.source)
    if kind is None:
        raise ConfigError(f"tiny=true is invalid for data.source={cfg.data.source!r}: it stands in for the external "
                          f"assets of the sources {', '.join(SOURCE_ASSETS)} (digits needs none)")
    index = Path(folder) / "assets.json"
    if not index.is_file():
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(json.dumps(write_tiny_assets(kind, folder)))
    paths = json.loads(index.read_text())
    cfg = apply_overrides(cfg, (*TINY_OVERRIDES["common"], *TINY_OVERRIDES[cfg.model.family]))
    return replace(cfg, name=f"SMOKE-{cfg.name}", description=TINY_LABEL, tiny=True,
                   assets=replace(cfg.assets, **paths))


def write_tiny_assets(use_case: str, folder: str | Path) -> dict[str, str]:
    """Write every external asset of ``use_case`` as a tiny stand-in under ``folder``; returns {asset key: path}."""
    folder = Path(folder)
    if use_case == "cifar20":
        return {"cifar100": str(write_tiny_cifar100(folder / "cifar100")), "fid_inception": str(write_tiny_inception(
            folder / "pt_inception-2015-12-05-smoke.pth"))}
    if use_case == "celebahq":
        images, labels = write_tiny_celebahq(folder)
        return {"celebahq_images": str(images), "celebahq_labels": str(labels),
                "ldm_celebahq": str(write_tiny_vq(folder / "ldm-celebahq-256")),
                "face_encoder": str(write_tiny_clip_vision(folder / "face-encoder"))}
    if use_case == "artworks":
        images, metadata = write_tiny_artbench(folder)
        return {"artbench_images": str(images), "artbench_metadata": str(metadata),
                "stable_diffusion": str(write_tiny_sd(folder / "stable-diffusion")),
                "clip_vit_l14": str(write_tiny_clip_vision(folder / "clip-vit-l-14")),
                "laion_aesthetic_head": str(write_tiny_laion_head(folder / "sa_0_4_vit_l_14_linear.pth"))}
    raise ValueError(f"use_case={use_case!r} has no tiny stand-ins: use cifar20, celebahq or artworks")
