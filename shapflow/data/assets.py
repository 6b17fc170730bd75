"""The external assets of each use case: where they go, what layout they need, how to get them.

``check_assets(use_case, asset_paths)`` inspects every asset cheaply (existence and layout, no
weights loaded), and ``format_table`` renders the result for ``shapflow assets check`` and for the
check that runs before a pipeline starts (``require_assets`` raises ``MissingAssetsError`` whose
message is that table). Nothing here downloads; a hub id counts as found only when the local
Hugging Face cache holds it or downloads were explicitly allowed.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shapflow.config import UseCaseConfig

__all__ = ["SOURCE_ASSETS", "USE_CASE_ASSETS", "AssetSpec", "AssetStatus", "MissingAssetsError", "asset_list",
           "check_assets", "check_use_case", "format_table", "require_assets", "require_use_case"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class MissingAssetsError(FileNotFoundError):
    """Some assets of a use case are missing or malformed; the message is the check table."""


@dataclass(frozen=True)
class AssetSpec:
    """One external asset: its config key, what it is, the layout expected, and where to get it."""

    key: str
    description: str
    layout: str
    obtain: str
    check: Callable[[Path], str | None]  # None if the path looks right, else the problem
    hub_ok: bool = False  # may be a hub id ("org/name") instead of a path


@dataclass(frozen=True)
class AssetStatus:
    """The result of checking one asset."""

    key: str
    path: str
    found: bool
    detail: str
    layout: str
    obtain: str


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def _need_file(path: Path) -> str | None:
    return None if path.is_file() else "no such file"


def _need_csv(*columns: str) -> Callable[[Path], str | None]:
    def check(path: Path) -> str | None:
        if not path.is_file():
            return "no such file"
        missing = [c for c in columns if c not in _csv_header(path)]
        return f"CSV header lacks {', '.join(missing)}" if missing else None
    return check


def _need_image_folder(path: Path) -> str | None:
    if not path.is_dir():
        return "no such folder"
    has_image = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*"))
    return None if has_image else "folder holds no image files"


def _need_cifar(path: Path) -> str | None:
    if path.is_file():
        return None if tarfile.is_tarfile(path) else "not a tar archive"
    folder = path / "cifar-100-python" if (path / "cifar-100-python").is_dir() else path
    missing = [m for m in ("train", "test", "meta") if not (folder / m).is_file()]
    return f"missing {', '.join(missing)}" if missing else None


def _need_fid_weights(path: Path) -> str | None:
    if not path.is_file():
        return "no such file"
    return None if path.match("pt_inception-2015-12-05-*.pth") else "file name is not pt_inception-2015-12-05-*.pth"


def _need_model_folder(model_type: str) -> Callable[[Path], str | None]:
    def check(path: Path) -> str | None:
        config = path / "config.json"
        if not config.is_file():
            return "no config.json"
        if not (any(path.glob("*.safetensors")) or any(path.glob("*.bin"))):
            return "no *.safetensors / *.bin weights"
        found = json.loads(config.read_text()).get("model_type", "")
        return None if found.startswith(model_type) else f"model_type is {found!r}, expected {model_type}*"
    return check


def _need_face_encoder(path: Path) -> str | None:
    problems = [_need_model_folder(kind)(path) for kind in ("clip", "blip")]
    return None if None in problems else problems[0]


def _need_vq_snapshot(path: Path) -> str | None:
    config = next((c for c in (path / "vqvae" / "config.json", path / "config.json") if c.is_file()), None)
    if config is None:
        return "no vqvae/config.json"
    found = json.loads(config.read_text()).get("_class_name")
    return None if found == "VQModel" else f"{config} describes {found!r}, not a VQModel"


def _need_sd_snapshot(path: Path) -> str | None:
    parts = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer")
    missing = [p for p in parts if not (path / p).exists()]
    return f"missing {', '.join(missing)}" if missing else None


_HF = "huggingface-cli download {repo} --local-dir <folder>"
USE_CASE_ASSETS: dict[str, tuple[AssetSpec, ...]] = {
    "cifar20": (
        AssetSpec("cifar100", "CIFAR-100 (python version)", "cifar-100-python.tar.gz, or its extracted folder "
                  "cifar-100-python/ with train, test, meta", "https://www.cs.toronto.edu/~kriz/cifar.html",
                  _need_cifar),
        AssetSpec("fid_inception", "FID InceptionV3 weights", "pt_inception-2015-12-05-6726825d.pth (a state dict)",
                  "github.com/mseitzer/pytorch-fid/releases/tag/fid_weights", _need_fid_weights),
    ),
    "celebahq": (
        AssetSpec("celebahq_images", "CelebA-HQ images", "a folder of the 30,000 CelebA-HQ images (e.g. 0.jpg)",
                  "CelebAMask-HQ (github.com/switchablenorms/CelebAMask-HQ): CelebA-HQ-img/", _need_image_folder),
        AssetSpec("celebahq_labels", "CelebA-HQ identity labels", "CSV with columns image,identity",
                  "join CelebAMask-HQ's CelebA-HQ-to-CelebA-mapping.txt with CelebA's identity_CelebA.txt",
                  _need_csv("image", "identity")),
        AssetSpec("ldm_celebahq", "LDM CelebA-HQ 256 snapshot (VQ-VAE)", "a folder with vqvae/config.json and weights",
                  _HF.format(repo="CompVis/ldm-celebahq-256"), _need_vq_snapshot),
        AssetSpec("face_encoder", "image encoder of the diversity property", "a CLIP or BLIP vision model folder "
                  "(config.json + *.safetensors)", _HF.format(repo="openai/clip-vit-large-patch14") +
                  " (or a BLIP model)", _need_face_encoder),
    ),
    "artworks": (
        AssetSpec("artbench_images", "ArtBench-10 images (256x256 ImageFolder release)",
                  "artbench-10-imagefolder-split/<split>/<style>/<name>", "github.com/liaopeiyuan/artbench",
                  _need_image_folder),
        AssetSpec("artbench_metadata", "ArtBench-10 metadata", "ArtBench-10.csv with columns name,artist,style,split",
                  "github.com/liaopeiyuan/artbench (Metadata)", _need_csv("name", "artist", "style", "split")),
        AssetSpec("stable_diffusion", "Stable Diffusion 1.x pipeline", "a diffusers snapshot (model_index.json, "
                  "unet/, vae/, text_encoder/, tokenizer/) or a hub id", _HF.format(repo="lambdalabs/miniSD-diffusers"),
                  _need_sd_snapshot, hub_ok=True),
        AssetSpec("clip_vit_l14", "CLIP ViT-L/14 (vision tower with projection)", "a transformers CLIP folder "
                  "(config.json + *.safetensors)", _HF.format(repo="openai/clip-vit-large-patch14"),
                  _need_model_folder("clip")),
        AssetSpec("laion_aesthetic_head", "LAION aesthetic predictor head", "sa_0_4_vit_l_14_linear.pth "
                  "(state dict: weight (1, 768), bias (1,))", "github.com/LAION-AI/aesthetic-predictor", _need_file),
    ),
}


def _is_hub_id(value: str) -> bool:
    return value.count("/") == 1 and not value.startswith((".", "/", "~")) and not Path(value).exists()


def _check_hub(repo: str, allow_download: bool) -> tuple[bool, str]:
    if allow_download:
        return True, "hub id: downloaded on first use (downloads allowed)"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "model_index.json")
    if isinstance(cached, str):
        return True, "hub id found in the local Hugging Face cache"
    return False, "hub id not in the local Hugging Face cache and downloads are off"


def _status(spec: AssetSpec, value: str | None, allow_download: bool) -> AssetStatus:
    def status(found: bool, detail: str) -> AssetStatus:
        return AssetStatus(spec.key, value or "", found, detail, spec.layout, spec.obtain)

    if not value:
        return status(False, f"not set: give assets.{spec.key}")
    if spec.hub_ok and _is_hub_id(value):
        return status(*_check_hub(value, allow_download))
    path = Path(value).expanduser()
    if not path.exists():
        return status(False, "path does not exist")
    problem = spec.check(path)
    return status(problem is None, problem or "found")


def check_assets(use_case: str, asset_paths: Mapping[str, str | None], *, tiny: bool = False,
                 allow_download: bool = False) -> list[AssetStatus]:
    """One status per asset of ``use_case``; ``tiny`` marks them all as smoke stand-ins (found)."""
    if use_case not in USE_CASE_ASSETS:
        raise ValueError(f"use_case={use_case!r} has no asset list: use one of {', '.join(USE_CASE_ASSETS)}")
    specs = USE_CASE_ASSETS[use_case]
    unknown = sorted(set(asset_paths) - {s.key for s in specs})
    if unknown:
        raise ValueError(f"unknown asset key(s) {', '.join(unknown)} for {use_case}: "
                         f"valid keys are {', '.join(s.key for s in specs)}")
    if tiny:
        return [AssetStatus(s.key, "(smoke stand-in)", True, "tiny random stand-in: plumbing only", s.layout, s.obtain)
                for s in specs]
    return [_status(s, asset_paths.get(s.key), allow_download) for s in specs]


def format_table(statuses: list[AssetStatus]) -> str:
    """A plain-text table: key | status | path | detail, then the expected layout and source of each missing one."""
    rows = [("asset", "status", "path", "detail")]
    rows += [(s.key, "found" if s.found else "MISSING", s.path or "-", s.detail) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    for s in statuses:
        if not s.found:
            lines += [f"- {s.key}: expected {s.layout}", f"  obtain: {s.obtain}"]
    return "\n".join(lines)


def require_assets(use_case: str, asset_paths: Mapping[str, str | None], *, tiny: bool = False,
                   allow_download: bool = False) -> list[AssetStatus]:
    """``check_assets``, raising ``MissingAssetsError`` (message: the table) when any asset is missing."""
    statuses = check_assets(use_case, asset_paths, tiny=tiny, allow_download=allow_download)
    if not all(s.found for s in statuses):
        missing = sum(not s.found for s in statuses)
        raise MissingAssetsError(f"{use_case}: {missing} asset(s) missing; nothing was started.\n"
                                 f"{format_table(statuses)}")
    return statuses


# Which asset list a ``data.source`` needs (sources not listed need no external asset).
SOURCE_ASSETS = {"cifar20": "cifar20", "celebahq": "celebahq", "artbench": "artworks"}


def asset_list(cfg: UseCaseConfig) -> tuple[str | None, dict[str, str | None]]:
    """(asset list name, {asset key: configured path or hub id}) of a use case; (None, {}) if it needs none."""
    kind = SOURCE_ASSETS.get(cfg.data.source)
    if kind is None:
        return None, {}
    return kind, {spec.key: getattr(cfg.assets, spec.key) for spec in USE_CASE_ASSETS[kind]}


def check_use_case(cfg: UseCaseConfig, *, stand_ins: bool = False) -> list[AssetStatus]:
    """``check_assets`` on the assets of ``cfg`` (``stand_ins``: list them as smoke stand-ins); [] if none."""
    kind, paths = asset_list(cfg)
    if kind is None:
        return []
    return check_assets(kind, paths, tiny=stand_ins, allow_download=cfg.assets.allow_download)


def require_use_case(cfg: UseCaseConfig) -> list[AssetStatus]:
    """``require_assets`` on the assets of ``cfg``: raises ``MissingAssetsError`` (the table) if any is missing."""
    kind, paths = asset_list(cfg)
    if kind is None:
        return []
    return require_assets(kind, paths, allow_download=cfg.assets.allow_download)
