"""The schema of a saved model folder, checked BEFORE anything is built or a tensor is read.

A folder holds ``model.json`` = {"format", "config" (diffusers ``UNet2DModel`` config), "widths" ({module:
{shape attribute: int or [int]}}), "extra" (free metadata)} and ``model.safetensors`` (+ ``ema.safetensors``).
A tampered file could set any attribute of any module through ``widths`` or ask for giant tensors, so
``check_model_folder`` accepts, in this order:

1. JSON of at most ``MAX_JSON_BYTES`` with exactly those keys and the ``FORMAT`` tag;
2. ``config``: only ``UNet2DModel``'s own keys, each of a known type within bounds;
3. a build of that config on the ``meta`` device (no memory) with at most ``MAX_PARAMETERS`` parameters;
4. ``widths``: only modules of that build, only the ``SHAPE_ATTRS`` each of them has, of the same type,
   integers in [1, ``MAX_WIDTH``], groups and heads dividing their channels;
5. the tensor shapes these widths imply (at most ``MAX_PARAMETERS`` parameters in all), equal to the
   safetensors headers' shapes, with floating dtypes; only the headers are read.

Each refusal is a ``ModelFileError`` (a ``ValueError``, and the user's input error) naming the file, the field, the
bad value and the fix. Nothing is unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel

from shapflow.config import InputError

__all__ = ["FORMAT", "MAX_PARAMETERS", "SHAPE_ATTRS", "ModelFileError", "ModelFiles", "architecture",
           "check_model_folder"]


class ModelFileError(InputError):
    """A model folder's files are missing, damaged or tampered with; the message names the file and the fix."""


FORMAT = "shapflow-unet/1"
# Attributes that define a module's tensor shapes or forward arithmetic, pruned or not.
SHAPE_ATTRS = ("in_channels", "out_channels", "num_channels", "num_groups", "in_features", "out_features",
               "channels", "heads", "inner_dim", "inner_kv_dim", "normalized_shape", "num_features")
MAX_WIDTH = 65536
MAX_PARAMETERS = 2**29  # 537M, 2 GiB of float32: twice the largest shipped use case (celebahq, 274M)
MAX_JSON_BYTES = 16 * 2**20
FIX = "model.json must be the one shapflow.models.save_unet wrote; restore it from the run's artifacts"

_DOWN = ("DownBlock2D", "ResnetDownsampleBlock2D", "AttnDownBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D",
         "DownEncoderBlock2D", "AttnDownEncoderBlock2D", "KDownBlock2D")
_UP = ("UpBlock2D", "ResnetUpsampleBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D",
       "UpDecoderBlock2D", "AttnUpDecoderBlock2D", "KUpBlock2D")
_IGNORED = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values")  # bookkeeping, dropped
_KEYS = {"format", "config", "widths", "extra"}
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}  # a floating tensor may be saved in any of these
_DTYPES = {torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}  # others: exactly
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}


def _is_int(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _int(lo: int, hi: int, none: bool = False):
    def check(value: object) -> str | None:
        if (none and value is None) or _is_int(value, lo, hi):
            return None
        return f"must be an integer in [{lo}, {hi}]" + (" or null" if none else "")
    return check


def _float(lo: float, hi: float):
    def check(value: object) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok and lo <= value <= hi else f"must be a number in [{lo}, {hi}]"
    return check


def _choice(*options: object):
    def check(value: object) -> str | None:
        return None if any(value is o or (type(value) is type(o) and value == o) for o in options) \
            else f"must be one of {list(options)}"
    return check


def _list(item, lo: int, hi: int):
    def check(value: object) -> str | None:
        if not isinstance(value, list) or not lo <= len(value) <= hi:
            return f"must be a list of {lo} to {hi} items"
        return next((f"item {i} {why}" for i, v in enumerate(value) if (why := item(v))), None)
    return check


def _size(value: object) -> str | None:
    if _is_int(value, 1, 4096) or (isinstance(value, list) and len(value) == 2
                                   and all(_is_int(v, 1, 4096) for v in value)):
        return None
    return "must be an integer in [1, 4096] or a list of two"


CONFIG_RULES = {
    "sample_size": _size, "in_channels": _int(1, 1024), "out_channels": _int(1, 1024),
    "center_input_sample": _choice(True, False), "time_embedding_type": _choice("positional", "fourier", "learned"),
    "time_embedding_dim": _int(1, MAX_WIDTH, none=True), "freq_shift": _int(0, 1024),
    "flip_sin_to_cos": _choice(True, False), "down_block_types": _list(_choice(*_DOWN), 1, 8),
    "mid_block_type": _choice("UNetMidBlock2D", None), "up_block_types": _list(_choice(*_UP), 1, 8),
    "block_out_channels": _list(_int(1, MAX_WIDTH), 1, 8), "layers_per_block": _int(1, 16),
    "mid_block_scale_factor": _float(0, 1e3), "downsample_padding": _int(0, 8),
    "downsample_type": _choice("conv", "resnet"), "upsample_type": _choice("conv", "resnet"),
    "dropout": _float(0, 1), "act_fn": _choice("silu", "swish", "mish", "gelu", "relu"),
    "attention_head_dim": _int(1, MAX_WIDTH, none=True), "norm_num_groups": _int(1, MAX_WIDTH, none=True),
    "attn_norm_num_groups": _int(1, MAX_WIDTH, none=True), "norm_eps": _float(1e-12, 1.0),
    "resnet_time_scale_shift": _choice("default", "scale_shift"), "add_attention": _choice(True, False),
    "class_embed_type": _choice(None, "timestep", "identity"), "num_class_embeds": _int(1, 2**20, none=True),
    "num_train_timesteps": _int(1, 2**20, none=True),
}


@dataclass(frozen=True)
class ModelFiles:
    """A checked folder: the config to build, the widths to set (tuples for lists), the metadata, the files."""

    config: dict
    widths: dict[str, dict[str, int | tuple[int, ...]]]
    extra: dict
    weights: Path
    ema: Path | None


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


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(path: Path, field: str, value: object, why: str, fix: str = FIX) -> ModelFileError:
    return ModelFileError(f"{path}: {field} = {_short(value)} {why}; {fix}")


def _cap(path: Path, field: str, count: int) -> None:
    if count > MAX_PARAMETERS:
        raise ModelFileError(f"{path}: {field} implies {count:,} parameters, over the cap of {MAX_PARAMETERS:,}; {FIX} "
                         f"(if the model really is that large, raise shapflow.models.schema.MAX_PARAMETERS)")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFileError(f"{path} not found: expected a folder written by shapflow.models.save_unet")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise _refuse(path, "size", path.stat().st_size, f"bytes is over {MAX_JSON_BYTES}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}); {FIX}") from None
    if not isinstance(meta, dict) or not {"format", "config", "widths"} <= set(meta) <= _KEYS:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise _refuse(path, "keys", keys, "must be format, config, widths and optionally extra")
    meta.setdefault("extra", {})
    if meta["format"] != FORMAT:
        raise _refuse(path, "format", meta["format"], f"is not {FORMAT!r}",
                      "write it with this version of shapflow.models.save_unet")
    for key in ("config", "widths", "extra"):
        if not isinstance(meta[key], dict):
            raise _refuse(path, key, meta[key], "must be a JSON object")
    return meta


def _check_config(path: Path, config: dict) -> dict:
    """The config without bookkeeping keys, every key known and within bounds."""
    for key, value in config.items():
        rule = CONFIG_RULES.get(key)
        if rule is None and key not in _IGNORED:
            raise _refuse(path, f"config.{key}", value, "is not a UNet2DModel config key",
                          f"remove it (known keys: {', '.join(CONFIG_RULES)})")
        if rule is not None and (why := rule(value)):
            raise _refuse(path, f"config.{key}", value, why)
    return {k: v for k, v in config.items() if k in CONFIG_RULES}


def _meta_model(path: Path, config: dict) -> UNet2DModel:
    """The config's model on the meta device (shapes, no memory), its parameter count capped."""
    try:
        with torch.device("meta"):
            model = UNet2DModel.from_config(config)
    except Exception as err:  # diffusers' own consistency checks (block counts, group sizes)
        raise _refuse(path, "config", config, f"does not build a UNet2DModel ({err})") from None
    _cap(path, "config", sum(p.numel() for p in model.parameters()))
    return model


def _check_divisible(path: Path, name: str, module: torch.nn.Module, attrs: dict) -> None:
    """Groups and heads divide their channels (``attrs``: the module's values overridden by model.json's)."""
    pairs = {"num_channels": "num_groups", "inner_dim": "heads", "inner_kv_dim": "heads"}
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        pairs = {"in_channels": "groups", "out_channels": "groups"}
        attrs = {**attrs, "groups": module.groups}
    for attr, divisor in pairs.items():
        if isinstance(attrs.get(attr), int) and isinstance(attrs.get(divisor), int) and attrs[attr] % attrs[divisor]:
            raise _refuse(path, f"widths[{name!r}].{attr}", attrs[attr], f"is not divisible by {divisor} = "
                          f"{attrs[divisor]}")


def _check_widths(path: Path, widths: dict, model: UNet2DModel) -> dict[str, dict[str, int | tuple[int, ...]]]:
    """Only modules of ``model``, only the shape attributes each has, same type, sane integers."""
    reference = architecture(model)
    checked = {}
    for name, attrs in widths.items():
        if name not in reference:
            raise _refuse(path, f"widths[{name!r}]", attrs, "names no module with shape attributes in this model",
                          "remove it")
        if not isinstance(attrs, dict):
            raise _refuse(path, f"widths[{name!r}]", attrs, "must be a JSON object")
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            field, known = f"widths[{name!r}].{attr}", reference[name]
            if attr not in known:
                raise _refuse(path, field, value, f"is not a shape attribute of {type(module).__name__} "
                              f"(it has {', '.join(known)})", "remove it")
            same = _is_int(value, 1, MAX_WIDTH) if isinstance(known[attr], int) else (
                isinstance(value, list) and len(value) == len(known[attr])
                and all(_is_int(v, 1, MAX_WIDTH) for v in value))
            if not same:
                what = "an integer" if isinstance(known[attr], int) else f"a list of {len(known[attr])} integers"
                raise _refuse(path, field, value, f"must be {what} in [1, {MAX_WIDTH}]")
        current = {a: getattr(module, a) for a in reference[name]}
        _check_divisible(path, name, module, {**current, **attrs})
        checked[name] = {a: tuple(v) if isinstance(v, list) else v for a, v in attrs.items()}
    return checked


def _shape(module: torch.nn.Module, leaf: str, attrs: dict, default: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``module``'s tensor ``leaf`` once its shape attributes are ``attrs``."""
    nn = torch.nn
    if isinstance(module, nn.modules.conv._ConvNd):
        out, inp = attrs["out_channels"], attrs["in_channels"]
        return (out, inp // module.groups, *module.kernel_size) if leaf == "weight" else (out,)
    if isinstance(module, nn.Linear):
        return (attrs["out_features"], attrs["in_features"]) if leaf == "weight" else (attrs["out_features"],)
    if isinstance(module, nn.GroupNorm):
        return (attrs["num_channels"],)
    if isinstance(module, nn.LayerNorm):
        return tuple(attrs["normalized_shape"])
    if isinstance(module, nn.modules.batchnorm._NormBase) and leaf != "num_batches_tracked":
        return (attrs["num_features"],)
    return default


def _expected(path: Path, model: UNet2DModel, widths: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{tensor name: (shape implied by the widths, dtype of the build)}, the implied parameter count capped."""
    expected = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        owner_name, _, leaf = key.rpartition(".")
        owner = model.get_submodule(owner_name)
        attrs = {a: getattr(owner, a) for a in SHAPE_ATTRS if hasattr(owner, a)} | widths.get(owner_name, {})
        expected[key] = (_shape(owner, leaf, attrs, tuple(tensor.shape)), tensor.dtype)
    _cap(path, "widths", sum(math.prod(shape) for shape, _ in expected.values()))
    return expected


def _check_tensors(path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    """The safetensors header (only) against the expected names, shapes and dtypes; total bytes capped."""
    from safetensors import SafetensorError, safe_open

    fix = "restore it from the run's artifacts together with its model.json"
    try:
        with safe_open(str(path), framework="pt") as weights:
            header = {k: (tuple(weights.get_slice(k).get_shape()), weights.get_slice(k).get_dtype())
                      for k in weights.keys()}
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{path} is not a readable safetensors file ({err}); {fix}") from None
    if set(header) != set(expected):
        missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
        raise _refuse(path, "tensors", f"missing {missing[:3]}, unexpected {unexpected[:3]}",
                      "do not match the architecture in model.json", fix)
    total = 0
    for key, (shape, dtype) in header.items():
        want_shape, want_dtype = expected[key]
        if shape != want_shape:
            raise _refuse(path, f"{key}.shape", list(shape), f"does not match model.json's widths ({list(want_shape)})",
                          fix)
        if dtype not in (_FLOAT_DTYPES if want_dtype.is_floating_point else {_DTYPES.get(want_dtype)}):
            raise _refuse(path, f"{key}.dtype", dtype, f"is not a dtype for {want_dtype}", fix)
        total += math.prod(shape) * _ITEMSIZE.get(dtype, 8)
    if total > 8 * MAX_PARAMETERS:
        raise _refuse(path, "size", f"{total:,} bytes", f"is over the cap of {8 * MAX_PARAMETERS:,}", fix)


def check_model_folder(folder: str | Path) -> ModelFiles:
    """Check ``folder``'s model.json and safetensors headers (see the module docstring); what to build from."""
    folder = Path(folder)
    path = folder / "model.json"
    meta = _read_json(path)
    config = _check_config(path, meta["config"])
    model = _meta_model(path, config)
    widths = _check_widths(path, meta["widths"], model)
    expected = _expected(path, model, widths)
    weights, ema = folder / "model.safetensors", folder / "ema.safetensors"
    _check_tensors(weights, expected)
    if ema.exists():
        _check_tensors(ema, expected)
    return ModelFiles(config, widths, meta["extra"], weights, ema if ema.exists() else None)
