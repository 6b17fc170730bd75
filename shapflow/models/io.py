"""Safe model files: safetensors weights + a JSON of the architecture, including pruned widths.

``UNet2DModel.from_pretrained`` cannot reload a pruned UNet (its config keeps the original
widths). We store the diffusers config plus, for every submodule, the attributes that define its
shape (channels, features, groups, heads); loading rebuilds the model from the config, sets those
attributes and installs the saved tensors. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

__all__ = ["architecture", "load_unet", "save_unet"]

FORMAT = "shapflow-unet/1"
# Attributes that define a module's tensor shapes or forward arithmetic, pruned or not.
SHAPE_ATTRS = ("in_channels", "out_channels", "num_channels", "num_groups", "in_features", "out_features",
               "channels", "heads", "inner_dim", "inner_kv_dim", "normalized_shape", "num_features")


def architecture(model: torch.nn.Module) -> dict[str, dict[str, object]]:
    """Shape attributes of every submodule, JSON-ready: {module name: {attribute: value}}."""
    widths: dict[str, dict[str, object]] = {}
    for name, module in model.named_modules():
        if not name:
            continue  # the root's widths live in its diffusers config
        attrs = {}
        for attr in SHAPE_ATTRS:
            value = getattr(module, attr, None)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int) or (isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
                attrs[attr] = list(value) if isinstance(value, tuple) else value
        if attrs:
            widths[name] = attrs
    return widths


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
    """Rebuild a (pruned) UNet saved by ``save_unet``: returns (model, ema state or None, extra)."""
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: expected a folder written by shapflow.models.save_unet")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    config = {k: v for k, v in meta["config"].items() if not k.startswith("_")}
    model = UNet2DModel.from_config(config)
    for name, attrs in meta["widths"].items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
    _install(model, load_file(folder / "model.safetensors"))
    ema_path = folder / "ema.safetensors"
    ema = load_file(ema_path) if ema_path.is_file() else None
    return model.eval(), ema, meta.get("extra", {})
