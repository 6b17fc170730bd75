"""Latent diffusion helpers: load a local autoencoder, encode a dataset once (cached), sample and decode.

CelebA-HQ uses the VQ-VAE of ``CompVis/ldm-celebahq-256`` (a ``VQModel`` in the snapshot's ``vqvae/``
folder); Stable Diffusion uses its ``AutoencoderKL`` (``vae/``). Training runs on latents: the
dataset's images are encoded once and the latents stored as safetensors under the cache folder,
keyed by a sha256 of the images AND of the autoencoder (config + weights), so a different data
set or autoencoder can never reuse stale latents. The UNet then trains with the ONE training
loop on a ``ContributorDataset`` whose "images" are latents (sampling and decoding:
``shapflow.generation.latent_sampling``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, VQModel
from safetensors.torch import load_file, save_file

from shapflow.cache import cache_dir
from shapflow.data.base import ContributorDataset

__all__ = ["Autoencoder", "cached_latent_dataset", "content_key", "decode_latents", "encode_latents",
           "load_autoencoder"]

Autoencoder = VQModel | AutoencoderKL
_CLASSES = {"VQModel": VQModel, "AutoencoderKL": AutoencoderKL}


def load_autoencoder(folder: str | Path) -> Autoencoder:
    """A ``VQModel`` or ``AutoencoderKL`` from a local folder: a pipeline snapshot (its ``vqvae/`` or ``vae/``)
    or the autoencoder's own folder. Never downloads."""
    folder = Path(folder)
    candidates = [folder / "vqvae", folder / "vae", folder]
    found = next((c for c in candidates if (c / "config.json").is_file()), None)
    if found is None:
        raise FileNotFoundError(f"no autoencoder at {folder}: expected config.json in {folder}/vqvae (a snapshot of "
                                "CompVis/ldm-celebahq-256), {folder}/vae (a Stable Diffusion snapshot) or the folder")
    class_name = json.loads((found / "config.json").read_text()).get("_class_name")
    if class_name not in _CLASSES:
        raise ValueError(f"{found}/config.json describes a {class_name!r}, expected VQModel or AutoencoderKL")
    model = _CLASSES[class_name].from_pretrained(found, local_files_only=True)
    return model.eval().requires_grad_(False)


def _scaling(autoencoder: Autoencoder) -> float:
    """SD's latent scale (0.18215 for SD 1.x); the LDM VQ latents are used unscaled."""
    return float(autoencoder.config.scaling_factor) if isinstance(autoencoder, AutoencoderKL) else 1.0


@torch.no_grad()
def encode_latents(autoencoder: Autoencoder, images: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
    """Latents (N, c, h, w) of images (N, 3, H, W) in [-1, 1]: VQ pre-quantisation latents (the LDM recipe;
    decoding quantises) or the KL posterior mean times the scaling factor (deterministic, hence cacheable)."""
    device = next(autoencoder.parameters()).device
    chunks = []
    for batch in images.split(batch_size):
        encoded = autoencoder.encode(batch.to(device))
        latents = encoded.latents if isinstance(autoencoder, VQModel) else encoded.latent_dist.mode()
        chunks.append((latents * _scaling(autoencoder)).float().cpu())
    return torch.cat(chunks)


@torch.no_grad()
def decode_latents(autoencoder: Autoencoder, latents: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] of latents (N, c, h, w)."""
    device = next(autoencoder.parameters()).device
    chunks = [autoencoder.decode(batch.to(device) / _scaling(autoencoder)).sample.float().cpu()
              for batch in latents.split(batch_size)]
    return torch.cat(chunks).clamp(-1.0, 1.0)


def content_key(images: torch.Tensor, autoencoder: Autoencoder) -> str:
    """sha256 of the images' bytes, the autoencoder's config and its weights: the identity of their latents."""
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.detach().contiguous().cpu().float().numpy().tobytes())
    digest.update(json.dumps(dict(autoencoder.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(autoencoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def cached_latent_dataset(data: ContributorDataset, autoencoder: Autoencoder, *,
                          folder: str | Path | None = None, batch_size: int = 32) -> ContributorDataset:
    """``data`` with its images replaced by their latents, encoded once and then read from the cache.

    ``folder``: where latents are stored (default: the shapflow cache, ``latents/``).
    """
    key = content_key(data.images, autoencoder)
    root = Path(folder) if folder is not None else cache_dir("latents")
    path = root / f"{key[:32]}.safetensors"
    if path.is_file():
        latents = load_file(path)["latents"]
    else:
        latents = encode_latents(autoencoder, data.images, batch_size=batch_size)
        root.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file({"latents": latents.contiguous()}, partial)
        partial.replace(path)  # atomic: a crash never leaves a truncated cache entry
    return ContributorDataset(latents, data.contributor, data.names, data.info)
