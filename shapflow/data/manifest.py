"""Bring your own data: a CSV manifest ``path,contributor`` of image files, read with Pillow."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from shapflow.data.base import ContributorDataset

__all__ = ["load_manifest"]


def _read_image(path: Path, channels: int, image_size: int, row: int) -> np.ndarray:
    """One image as float32 (C, H, W) in [-1, 1]; errors name the manifest row."""
    if not path.is_file():
        raise ValueError(f"manifest row {row}: image file {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"manifest row {row}: cannot read image {path}: {err}") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def load_manifest(csv_path: str | Path, *, channels: int = 1, image_size: int = 8,
                  contributors: list[str] | None = None) -> ContributorDataset:
    """Load a CSV with columns ``path,contributor`` (relative paths are relative to the CSV).

    ``contributors`` fixes the contributor order and set (each must have at least one image);
    by default they are the distinct names in order of first appearance. All rows are checked
    before any image is used, so bad input fails before training starts.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ValueError(f"manifest {csv_path} does not exist: give a CSV with columns path,contributor")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "contributor"} <= set(reader.fieldnames):
            raise ValueError(f"manifest {csv_path} must have a header with columns path,contributor; "
                             f"found {reader.fieldnames}")
        rows = list(reader)
    names = list(contributors) if contributors is not None else list(dict.fromkeys(r["contributor"] for r in rows))
    index = {name: i for i, name in enumerate(names)}
    images, owners = [], []
    for row_number, row in enumerate(rows, start=2):
        name = (row["contributor"] or "").strip()
        if not name:
            raise ValueError(f"manifest row {row_number}: empty contributor name")
        if name not in index:
            raise ValueError(f"manifest row {row_number}: contributor {name!r} is not in the given contributor list")
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        images.append(_read_image(path, channels, image_size, row_number))
        owners.append(index[name])
    if not images:
        raise ValueError(f"manifest {csv_path} lists no images")
    return ContributorDataset(torch.from_numpy(np.stack(images)), torch.tensor(owners, dtype=torch.int64),
                              tuple(names), tuple({"source": str(csv_path)} for _ in names)).check_market()
