"""Stable Diffusion + a PEFT LoRA, shaped so the ONE training loop can train it.

``load_sd_components`` reads the UNet, VAE, CLIP text encoder and tokenizer of an SD 1.x pipeline
(``lambdalabs/miniSD-diffusers`` in the paper) from a local snapshot folder, or from a hub id only
when downloads are explicitly allowed. ``add_lora`` freezes the UNet and adds a LoRA (paper:
rank 256 on attention ``to_q``/``to_k``/``to_v``/``to_out.0``), so only LoRA weights train.
``CaptionConditionedDenoiser`` wraps the UNet and a fixed caption embedding into the denoiser
interface ``model(x_t, t).sample`` that ``shapflow.training.loop.train`` and the samplers call; in eval mode
it applies classifier-free guidance when ``guidance_scale > 1``. LoRA adapters are saved as
safetensors + PEFT's ``adapter_config.json`` (ranks included), never pickled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from shapflow.models.attention import sdpa_attention

__all__ = ["ADAPTER_WEIGHTS", "LORA_TARGETS", "CaptionConditionedDenoiser", "SDComponents", "add_lora",
           "encode_caption", "fresh_lora_state", "load_lora", "load_sd_components", "lora_disabled", "lora_parameters",
           "lora_state", "save_lora", "set_lora_state"]

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class SDComponents:
    """The parts of an SD 1.x pipeline that LoRA training and sampling need."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer


def _is_hub_id(source: str) -> bool:
    return not Path(source).exists() and source.count("/") == 1 and not source.startswith((".", "/", "~"))


def load_sd_components(source: str | Path, *, allow_download: bool = False) -> SDComponents:
    """SD components from a local snapshot folder (``model_index.json`` + unet/vae/text_encoder/tokenizer),
    or from hub id ``org/name`` (only the local HF cache unless ``allow_download``). All frozen, in eval mode."""
    source = str(source)
    if not _is_hub_id(source):
        folder = Path(source)
        missing = [s for s in SD_SUBFOLDERS if not (folder / s).is_dir()]
        if not (folder / "model_index.json").is_file() or missing:
            raise FileNotFoundError(f"Stable Diffusion snapshot {folder} is incomplete: it needs model_index.json "
                                    f"and the folders {', '.join(SD_SUBFOLDERS)} "
                                    f"(missing: {', '.join(missing) or 'model_index.json'})")
    local = not allow_download
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", local_files_only=local)
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", local_files_only=local)
    text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", local_files_only=local)
    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=local)
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return SDComponents(sdpa_attention(unet), sdpa_attention(vae), text_encoder, tokenizer)


@torch.no_grad()
def encode_caption(components: SDComponents, caption: str) -> torch.Tensor:
    """The text encoder's last hidden states (1, max_length, D) of ``caption`` padded to the tokenizer's length."""
    tokens = components.tokenizer(caption, padding="max_length", truncation=True,
                                  max_length=components.tokenizer.model_max_length, return_tensors="pt")
    device = next(components.text_encoder.parameters()).device
    return components.text_encoder(tokens.input_ids.to(device))[0].float()


def add_lora(unet: UNet2DConditionModel, *, rank: int = 256, alpha: float | None = None,
             target_modules: tuple[str, ...] = LORA_TARGETS, seed: int = 0) -> LoraConfig:
    """Freeze ``unet`` and add a LoRA adapter (alpha defaults to ``rank``: scale 1); only LoRA weights train.
    PEFT initialises B to zero, so the adapted UNet starts equal to the base model."""
    if rank < 1:
        raise ValueError(f"rank={rank} is invalid: use a positive LoRA rank")
    config = LoraConfig(r=rank, lora_alpha=float(alpha if alpha is not None else rank),
                        target_modules=list(target_modules), init_lora_weights=True)
    unet.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(config)
    if not lora_parameters(unet):
        raise ValueError(f"no module of the UNet matches target_modules={list(target_modules)}")
    return config


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The LoRA A/B weights of ``unet`` (the only trainable parameters after ``add_lora``)."""
    return [p for name, p in unet.named_parameters() if ".lora_A." in name or ".lora_B." in name]


def lora_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """A detached copy of the LoRA weights (keys without the adapter name, as PEFT saves them)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(unet).items()}


def set_lora_state(unet: UNet2DConditionModel, state: dict[str, torch.Tensor]) -> None:
    """Install LoRA weights saved by ``lora_state``/``save_lora``; every LoRA weight must be given."""
    result = set_peft_model_state_dict(unet, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"LoRA weights do not fit the adapter: missing {missing[:4]}, "
                         f"unexpected {list(result.unexpected_keys)[:4]}")


@contextlib.contextmanager
def lora_disabled(unet: UNet2DConditionModel) -> Iterator[UNet2DConditionModel]:
    """The base model inside the block (v(empty) of the artworks use case), the LoRA back on exit."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def save_lora(unet: UNet2DConditionModel, folder: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``adapter_model.safetensors`` and PEFT's ``adapter_config.json`` (ranks, alpha, targets) of
    ``unet``'s adapter; the weights are ``state`` (keys as ``lora_state`` gives them), default the installed ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.peft_config["default"].save_pretrained(str(folder))
    state = lora_state(unet) if state is None else state
    save_file({k: v.contiguous().cpu() for k, v in state.items()}, folder / ADAPTER_WEIGHTS)
    return folder


def fresh_lora_state(unet: UNet2DConditionModel, seed: int) -> dict[str, torch.Tensor]:
    """New LoRA weights for ``unet``'s adapter, as PEFT initialises them (A Kaiming-uniform, B zero, so the
    adapted UNet equals the base model), drawn from ``seed`` alone: a retraining's starting point."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in sorted(lora_state(unet).items()):
        fresh = torch.zeros_like(value)
        if ".lora_A." in key:
            torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
        state[key] = fresh
    return state


def load_lora(unet: UNet2DConditionModel, folder: str | Path) -> LoraConfig:
    """Add the adapter saved by ``save_lora`` in ``folder`` to a base ``unet`` (pruned ranks included)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder} must hold adapter_config.json and {ADAPTER_WEIGHTS} (see save_lora)")
    config = LoraConfig.from_pretrained(str(folder))
    unet.requires_grad_(False)
    unet.add_adapter(config)
    set_lora_state(unet, load_file(folder / ADAPTER_WEIGHTS))
    return config


class CaptionConditionedDenoiser(torch.nn.Module):
    """``forward(x_t, t)`` -> UNet output with ``.sample``: the UNet conditioned on a fixed caption.

    caption_embedding: (1, L, D) from ``encode_caption``; uncond_embedding: the empty caption's, used
    with ``guidance_scale > 1`` in eval mode only (training always sees the caption).
    """

    def __init__(self, unet: UNet2DConditionModel, caption_embedding: torch.Tensor, *,
                 uncond_embedding: torch.Tensor | None = None, guidance_scale: float = 1.0) -> None:
        super().__init__()
        if guidance_scale > 1.0 and uncond_embedding is None:
            raise ValueError("guidance_scale > 1 needs the empty caption's embedding (uncond_embedding)")
        self.unet = unet
        self.guidance_scale = guidance_scale
        self.register_buffer("caption", caption_embedding.detach().clone(), persistent=False)
        uncond = uncond_embedding if uncond_embedding is not None else caption_embedding
        self.register_buffer("uncond", uncond.detach().clone(), persistent=False)

    @property
    def config(self):  # the samplers read sample_size and in_channels from here
        return self.unet.config

    def forward(self, x_t: torch.Tensor, t: torch.Tensor):
        batch = x_t.shape[0]
        if self.training or self.guidance_scale <= 1.0:
            return self.unet(x_t, t, encoder_hidden_states=self.caption.expand(batch, -1, -1))
        context = torch.cat([self.uncond.expand(batch, -1, -1), self.caption.expand(batch, -1, -1)])
        out = self.unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=context)
        uncond_eps, cond_eps = out.sample.chunk(2)
        out.sample = uncond_eps + self.guidance_scale * (cond_eps - uncond_eps)
        return out
