"""Typed use-case configuration: frozen dataclasses loaded from YAML, validated, with overrides.

A use case is one YAML file (``shapflow/usecases/<name>.yaml`` or a user's path). Every stage of the
method has its own section; ``keys`` hashes the sections each stage's output depends on.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from shapflow.config.sections import (
    REGISTRY_NAME,
    REGISTRY_NAME_RULE,
    AssetsConfig,
    ConfigError,
    LoraConfig,
    SampleConfig,
)
from shapflow.config.sections import check as _check

__all__ = [
    "FAMILIES",
    "PRECISIONS",
    "PRECISION_AUTO",
    "DataConfig",
    "DiffusionConfig",
    "EMAConfig",
    "ModelConfig",
    "PropertyConfig",
    "PruneConfig",
    "TrainConfig",
    "UseCaseConfig",
    "UtilityConfig",
    "apply_overrides",
    "available_use_cases",
    "from_dict",
    "load_use_case",
    "to_dict",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the contributors' images come from and how they are dealt."""

    source: str = "digits-market"  # DATA_SOURCES: digits-market(-48, -128) | digits-classes | manifest | cifar20 | ...
    path: str | None = None  # manifest CSV for source=manifest (the other sources' files are in `assets`)
    channels: int = 1  # manifest images are converted to 1 (L) or 3 (RGB) channels
    image_size: int = 8
    seed: int = 0
    num_identities: int = 50  # celebahq: the most frequent identities kept
    style: str = "post_impressionism"  # artbench
    split: str = "train"  # cifar20, artbench
    max_contributors: int | None = None  # keep only the first k contributors (smoke runs); None = all

    def __post_init__(self) -> None:
        _check(self.source in DATA_SOURCES, "data.source", self.source, f"use one of {', '.join(DATA_SOURCES)}")
        _check(self.max_contributors is None or self.max_contributors >= 2, "data.max_contributors",
               self.max_contributors, "keep at least 2 contributors, or null for all")
        _check(self.source != "manifest" or bool(self.path), "data.path", self.path,
               "source=manifest needs data.path pointing to a CSV with columns path,contributor")
        _check(self.channels in (1, 3), "data.channels", self.channels, "use 1 (grayscale) or 3 (RGB)")
        _check(self.image_size >= 4, "data.image_size", self.image_size, "use a size of at least 4 pixels")


@dataclass(frozen=True)
class ModelConfig:
    """A diffusers ``UNet2DModel`` described as data (built by ``shapflow.models.build_unet``).

    ``family``: ``pixel`` (the UNet denoises images), ``latent`` (it denoises the latents of
    ``assets.ldm_celebahq``'s autoencoder) or ``sd_lora`` (LoRA on ``assets.stable_diffusion``'s UNet;
    only ``sample_size``/``in_channels`` are read, as the latent shape).
    """

    family: str = "pixel"
    sample_size: int = 8
    in_channels: int = 1
    block_out_channels: tuple[int, ...] = (16, 32)
    layers_per_block: int = 1
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D")
    # 4 groups, not diffusers' 32: after removing half the channels every group keeps >= 2 channels.
    norm_num_groups: int = 4
    add_attention: bool = False
    attention_head_dim: int = 8

    def __post_init__(self) -> None:
        _check(self.family in FAMILIES, "model.family", self.family, f"use one of {', '.join(FAMILIES)}")
        n = len(self.block_out_channels)
        _check(n >= 1, "model.block_out_channels", self.block_out_channels, "give at least one width")
        _check(len(self.down_block_types) == n and len(self.up_block_types) == n, "model.down_block_types",
               self.down_block_types, f"give one down and one up block type per width ({n})")
        for width in self.block_out_channels:
            _check(width % self.norm_num_groups == 0, "model.norm_num_groups", self.norm_num_groups,
                   f"every width in block_out_channels must be divisible by it (width {width})")


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process: DDPM with a linear (or, for SD 1.x, scaled_linear) beta schedule, epsilon prediction."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"  # linear | scaled_linear (what Stable Diffusion 1.x was trained with)

    def __post_init__(self) -> None:
        _check(self.num_train_timesteps >= 10, "diffusion.num_train_timesteps", self.num_train_timesteps,
               "use at least 10 timesteps (the paper uses 1000)")
        _check(0 < self.beta_start < self.beta_end < 1, "diffusion.beta_end", self.beta_end,
               "need 0 < beta_start < beta_end < 1")
        _check(self.beta_schedule in ("linear", "scaled_linear"), "diffusion.beta_schedule", self.beta_schedule,
               "use linear or scaled_linear")


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of weights, made explicit (the reference code's trap).

    ``decay=0`` turns EMA off. ``sample_with_ema`` says whether the stage's images (and the model it
    hands downstream) use the EMA weights. ``init`` says where the EMA starts: ``fresh`` = from the
    weights this stage starts training from; ``continue`` = from the EMA loaded with the upstream
    model (which, with few steps and a high decay, samples mostly the upstream weights).
    """

    decay: float = 0.0
    sample_with_ema: bool = False
    init: str = "fresh"

    def __post_init__(self) -> None:
        _check(0.0 <= self.decay < 1.0, "ema.decay", self.decay, "use 0 (off) or a decay in (0, 1)")
        _check(self.init in ("fresh", "continue"), "ema.init", self.init, "use fresh or continue")
        _check(not self.sample_with_ema or self.decay > 0, "ema.sample_with_ema", self.sample_with_ema,
               "sampling with EMA weights needs ema.decay > 0")


@dataclass(frozen=True)
class TrainConfig:
    """One recipe of the single training loop (full training, pruned fine-tune, sFT, plain FT)."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adamw"  # adam | adamw
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant
    grad_clip: float = 1.0  # 0 = no clipping
    seed: int = 0
    ema: EMAConfig = field(default_factory=EMAConfig)

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "steps", self.steps, "train for at least one step")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "use a positive batch size")
        _check(self.lr > 0, "lr", self.lr, "use a positive learning rate")
        _check(self.optimizer in ("adam", "adamw"), "optimizer", self.optimizer, "use adam or adamw")
        _check(self.schedule in ("cosine", "constant"), "schedule", self.schedule, "use cosine or constant")
        _check(0 <= self.warmup_steps <= self.steps, "warmup_steps", self.warmup_steps,
               "use between 0 and steps warm-up steps")
        _check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "use 0 (off) or a positive norm")


@dataclass(frozen=True)
class PruneConfig:
    """Structured channel pruning; the ratio is the fraction of channels REMOVED."""

    channel_fraction_removed: float = 0.5
    importance: str = "magnitude"  # magnitude | taylor
    # Kept channels rounded to this multiple (per GroupNorm group: Torch-Pruning prunes the same
    # positions in every group, so GroupNorm stays valid without rounding). None = no rounding.
    round_to: int | None = None
    taylor_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        _check(0.0 <= self.channel_fraction_removed < 1.0, "prune.channel_fraction_removed",
               self.channel_fraction_removed, "give the fraction of channels to remove, in [0, 1)")
        _check(self.importance in ("magnitude", "taylor"), "prune.importance", self.importance,
               "use magnitude or taylor")
        _check(self.round_to is None or self.round_to >= 1, "prune.round_to", self.round_to,
               "use a positive multiple, or null for no rounding")


# The digits family scores with its own classifier; the *_v3/fid names use the FID InceptionV3 network.
PROPERTY_NAMES = ("neg_log_fd", "frechet_distance", "inception_score", "class_entropy",
                  "inception_score_v3", "fid", "neg_log_fid", "cluster_entropy", "aesthetic_p90")
DATA_SOURCES = ("digits-market", "digits-market-48", "digits-market-128", "digits-classes", "manifest", "cifar20",
                "celebahq", "artbench")
FAMILIES = ("pixel", "latent", "sd_lora")
# Arithmetic of the training loop's forward + loss and of the sampler's denoiser (shapflow.models.precision):
# fp32; tf32 (CUDA matmuls and convolutions in TF32, a no-op on CPU); bf16 (autocast, fp32 master weights);
# auto (PRECISION_AUTO's pick for the device the model is on).
PRECISIONS = ("fp32", "tf32", "bf16", "auto")
# What precision=auto runs per device type: only a precision measured faster than fp32 whose utilities agree
# with fp32's (Pearson >= 0.99 over digits coalitions). CPU, 2026-12-03 (docs/results/2026-12-03-precision-cpu.md):
# the run did not finish on the loaded 2-core machine, so bf16 is not shown faster or in agreement: fp32.
# CUDA: not measured yet (benchmarks/gpu_check.sh), so fp32. Part of the stage key of a precision=auto study.
PRECISION_AUTO: dict[str, str] = {"cpu": "fp32", "cuda": "fp32"}


@dataclass(frozen=True)
class PropertyConfig:
    """The global property F scored on generated images; utility = F, sign-flipped if lower is better."""

    name: str = "neg_log_fd"
    classifier_steps: int = 600
    classifier_seed: int = 0
    n_clusters: int = 20  # cluster_entropy
    quantile: float = 0.9  # aesthetic_p90: the quantile of per-image aesthetic scores
    is_splits: int = 1  # inception_score_v3
    inception_resize: int = 299  # the FID InceptionV3 input size

    def __post_init__(self) -> None:
        _check(self.name in PROPERTY_NAMES, "property.name", self.name, f"use one of {', '.join(PROPERTY_NAMES)}")
        _check(self.classifier_steps >= 1, "property.classifier_steps", self.classifier_steps,
               "train the feature classifier for at least one step")
        _check(self.n_clusters >= 2, "property.n_clusters", self.n_clusters, "use at least 2 clusters")
        _check(0.0 < self.quantile < 1.0, "property.quantile", self.quantile, "use a quantile in (0, 1)")
        _check(self.name != "aesthetic_p90" or self.quantile == 0.9, "property.quantile", self.quantile,
               "aesthetic_p90 is the 0.9 quantile")
        _check(self.is_splits >= 1, "property.is_splits", self.is_splits, "use at least one split")
        _check(self.inception_resize >= 75, "property.inception_resize", self.inception_resize,
               "InceptionV3 needs inputs of at least 75 pixels")


@dataclass(frozen=True)
class UtilityConfig:
    """How v(S) is computed: sFT of the pruned model, plain FT of the full model, or retraining.

    v(empty) follows the model family (the untrained UNet, or the pretrained base without its adapter);
    ``v1`` picks the grand coalition's model.
    """

    method: str = "sft"  # sft | ft | retrain
    v1: str = "full"  # full | pruned

    def __post_init__(self) -> None:
        _check(self.method in ("sft", "ft", "retrain"), "utility.method", self.method, "use sft, ft or retrain")
        _check(self.v1 in ("full", "pruned"), "utility.v1", self.v1, "use full or pruned")


@dataclass(frozen=True)
class UseCaseConfig:
    """Everything one attribution study needs, section by section."""

    name: str = "digits"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, warmup_steps=100, ema=EMAConfig(decay=0.995, sample_with_ema=True)))
    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1000, warmup_steps=50, ema=EMAConfig(decay=0.995, sample_with_ema=True)))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100))
    sampling: SampleConfig = field(default_factory=SampleConfig)
    property: PropertyConfig = field(default_factory=PropertyConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    assets: AssetsConfig = field(default_factory=AssetsConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    kernels: str = "eager"  # eager | auto | cpp | triton (shapflow.kernels.optimize)
    precision: str = "fp32"  # fp32 | tf32 | bf16 | auto (PRECISIONS); in the key of every stage that trains or samples
    # SMOKE configuration (shapflow.standins.tiny): tiny random stand-ins for every asset; part of every stage key,
    # so a smoke run is never reused as a real one.
    tiny: bool = False

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and REGISTRY_NAME.fullmatch(f"{self.name}-pruned") is not None, "name",
               self.name, f"it names the registered models <name>-full and <name>-pruned: use {REGISTRY_NAME_RULE}")
        _check(self.kernels in ("eager", "auto", "cpp", "triton"), "kernels", self.kernels,
               "use eager, auto, cpp or triton")
        _check(self.precision in PRECISIONS, "precision", self.precision,
               f"use one of {', '.join(PRECISIONS)} (fp32 unless measured otherwise: see PRECISION_AUTO)")


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, building nested dataclasses and tuples."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} is invalid: expected a mapping of {annotation.__name__} fields")
        return from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [a for a in options if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} is invalid: expected a list")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        raise ConfigError(f"{where}={value!r} is invalid: expected {annotation.__name__}, got {type(value).__name__}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build config dataclass ``cls`` from plain data, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}: "
                          f"valid keys of {where or 'the use case'} are {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{where + ': ' if where else ''}{err}") from None


def available_use_cases() -> list[str]:
    """Names of the use cases shipped inside the package."""
    folder = resources.files("shapflow") / "usecases"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_use_case(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> UseCaseConfig:
    """Load a shipped use case by name, or a user's YAML by path, then apply ``key.sub=value`` overrides."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist: pass a YAML path or one of "
                              f"{', '.join(available_use_cases())}")
        text = path.read_text()
    else:
        shipped = available_use_cases()
        if name_or_path not in shipped:
            raise ConfigError(f"unknown use case {name_or_path!r}: use one of {', '.join(shipped)} "
                              "or a path to a YAML file")
        text = (resources.files("shapflow") / "usecases" / f"{name_or_path}.yaml").read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{name_or_path} is not valid YAML{where}: {problem}; fix the syntax there "
                          "(indent with spaces, quote values holding ': ' or '#')") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: the YAML must be a mapping of sections")
    return apply_overrides(from_dict(UseCaseConfig, data), overrides)


def apply_overrides(cfg: UseCaseConfig, overrides: list[str] | tuple[str, ...]) -> UseCaseConfig:
    """Return ``cfg`` with dotted ``section.field=value`` overrides applied (values parsed as YAML)."""
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is invalid: write it as section.field=value, e.g. sft.steps=50")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a config section")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override {item!r}: unknown key {key.strip()!r}")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value {raw!r} is not valid YAML; quote it, e.g. "
                              f"{key.strip()}='\"{raw}\"'") from None
    return from_dict(UseCaseConfig, data)
