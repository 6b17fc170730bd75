"""Shared readers of image folders and label tables (CelebA-HQ, ArtBench): checked, with clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_rgb", "read_table"]


def read_table(path: str | Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """Rows of a CSV that must have (at least) ``columns``; every listed cell must be non-empty."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist: expected a CSV with columns {','.join(columns)}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{what} {path} lacks column(s) {', '.join(missing)}: found {header}, "
                             f"expected {','.join(columns)}")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        empty = [c for c in columns if not (row.get(c) or "").strip()]
        if empty:
            raise ValueError(f"{what} {path} row {number}: empty {', '.join(empty)}")
    if not rows:
        raise ValueError(f"{what} {path} has a header but no rows")
    return rows


def read_rgb(path: Path, image_size: int, where: str) -> np.ndarray:
    """One image as float32 (3, image_size, image_size) in [-1, 1] (bicubic resize); errors name ``where``."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{where}: cannot read image {path}: {err}") from None
    return array.transpose(2, 0, 1)
