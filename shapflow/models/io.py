"""Safe model files: safetensors weights + a JSON of the architecture, including pruned widths.

``UNet2DModel.from_pretrained`` cannot reload a pruned UNet (its config keeps the original
widths). We store the diffusers config plus, for every submodule, the attributes that define its
shape (channels, features, groups, heads); loading checks all of it against a schema
(``shapflow.models.schema``: known keys and attributes only, sane bounds, tensor headers that
match) before it rebuilds the model from the config, sets those attributes and installs the saved
tensors. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from shapflow.models.attention import sdpa_attention
from shapflow.models.schema import FORMAT, architecture, check_model_folder

__all__ = ["architecture", "load_unet", "save_unet"]


def save_unet(model: UNet2DModel, folder: str | Path, ema: dict[str, torch.Tensor] | None = None,
              extra: dict[str, object] | None = None) -> Path:
    """Write ``model.safetensors`` (+ ``ema.safetensors``) and ``model.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    if ema is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.items()}, folder / "ema.safetensors")
    meta = {"format": FORMAT, "config": dict(model.config), "widths": architecture(model), "extra": extra or {}}
    (folder / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=list))
    return folder


def _install(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Replace every parameter/buffer of ``model`` by the saved tensor of the same name (any shape)."""
    expected = set(model.state_dict())
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"saved weights do not match the architecture: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, tensor in state.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = model.get_submodule(owner_name)
        if leaf in owner._parameters:
            owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=owner._parameters[leaf].requires_grad)
        else:
            owner._buffers[leaf] = tensor


def load_unet(folder: str | Path) -> tuple[UNet2DModel, dict[str, torch.Tensor] | None, dict[str, object]]:
    """Rebuild a (pruned) UNet saved by ``save_unet``: returns (model, ema state or None, extra).

    ``ValueError`` (naming the file, field, value and fix) for anything the schema refuses, before building."""
    files = check_model_folder(folder)
    model = UNet2DModel.from_config(files.config)
    for name, attrs in files.widths.items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    _install(model, load_file(files.weights))
    ema = load_file(files.ema) if files.ema else None
    return sdpa_attention(model).eval(), ema, files.extra
