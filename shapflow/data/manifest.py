"""Bring your own data: a CSV manifest ``path,contributor`` of image files, read with Pillow.

Manifests come from spreadsheets: ``files.read_csv`` takes them as exported (BOM, UTF-16 or Latin-1, ``;`` or
tab separated, Windows line endings, spaces around paths, headers in any case, blank rows). Paths may be absolute
or relative to the manifest's folder, with ``/`` or Windows ``\\`` separators. A contributor cell is the name
exactly as written and must follow ``names.NAME_RULE`` (so ``trail`` and ``trail `` are never merged: the second
is refused). The same image file (by content) listed for two contributors is refused: whose is it?
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from shapflow.data.base import ContributorDataset, DataError
from shapflow.data.files import open_image, read_csv
from shapflow.data.names import NAME_RULE, name_problem, same_looking

__all__ = ["load_manifest"]

COLUMNS = ("path", "contributor")


def _image_path(cell: str, folder: Path) -> Path:
    """The file a manifest cell names: ``~`` expanded, relative to ``folder``; ``a\\b.png`` (a Windows export)
    read as ``a/b.png`` when the cell itself names no file."""
    path = Path(cell).expanduser()
    path = path if path.is_absolute() else folder / path
    if "\\" in cell and not path.exists():
        alternative = Path(cell.replace("\\", "/")).expanduser()
        alternative = alternative if alternative.is_absolute() else folder / alternative
        if alternative.exists():
            return alternative
    return path


def _read_image(path: Path, channels: int, image_size: int, where: str) -> np.ndarray:
    """One image as float32 (C, H, W) in [-1, 1]; errors name the manifest row."""
    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist: fix the path (relative paths are relative to "
                        "the manifest's folder) or delete the row")
    try:
        with open_image(path, where) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{where}: cannot read image {path}: {err}; replace it with a PNG or JPEG file or "
                        "delete the row") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _checked_names(rows: list[tuple[int, dict[str, str]]], csv_path: Path) -> None:
    """Refuse the first contributor cell that breaks ``NAME_RULE`` (naming its row) and two names that look the
    same; an empty cell is left to the row check, which names the image it lacks an owner for."""
    first_row: dict[str, int] = {}
    for row_number, row in rows:
        name = row.get("contributor", "")
        if name.strip() and (problem := name_problem(name)):
            raise DataError(f"manifest {csv_path} row {row_number}: contributor name {name!r} {problem}: "
                            f"{NAME_RULE}; fix the cell")
        first_row.setdefault(name, row_number)
    if twins := same_looking([name for name in first_row if name.strip()]):
        raise DataError(f"manifest {csv_path} rows {first_row[twins[0]]} and {first_row[twins[1]]}: contributor names "
                        f"{twins[0]!a} and {twins[1]!a} look the same (equal up to Unicode normalization): spell "
                        "one contributor's name one way, or give two contributors distinct names")


def _digest(path: Path) -> str:
    """sha256 of a file's bytes: the same image under two paths (or two contributors) is the same file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(csv_path: str | Path, *, channels: int = 1, image_size: int = 8,
                  contributors: list[str] | None = None) -> ContributorDataset:
    """Load a CSV with columns ``path,contributor`` (relative paths are relative to the CSV).

    ``contributors`` fixes the contributor order and set (each must have at least one image);
    by default they are the distinct names in order of first appearance. All rows are checked
    before any image is used, so bad input fails before training starts.
    """
    csv_path = Path(csv_path).expanduser()
    rows = read_csv(csv_path, COLUMNS, "manifest", exact=("contributor",))
    _checked_names(rows, csv_path)
    names = list(contributors) if contributors is not None else list(dict.fromkeys(r["contributor"] for _, r in rows
                                                                                    if r["contributor"].strip()))
    index = {name: i for i, name in enumerate(names)}
    images, owners, owner_of = [], [], {}
    for row_number, row in rows:
        where = f"manifest {csv_path} row {row_number}"
        name = row.get("contributor", "")
        if not name.strip():
            raise DataError(f"{where}: empty contributor name: fill in who contributed {row.get('path') or 'it'}")
        if name not in index:
            raise DataError(f"{where}: contributor {name!r} is not in the given contributor list "
                            f"({', '.join(map(repr, names))}): add it there or fix the name")
        if not row.get("path"):
            raise DataError(f"{where}: empty path: give the image file of {name} or delete the row")
        path = _image_path(row["path"], csv_path.parent)
        images.append(_read_image(path, channels, image_size, where))
        owners.append(index[name])
        first = owner_of.setdefault(_digest(path), (name, row_number))
        if first[0] != name:
            raise DataError(f"{where}: image {path} is the same file (same content) as row {first[1]}'s, listed for "
                            f"contributor {first[0]!r} there and {name!r} here: decide whose image it is and delete "
                            "the other row")
    if not images:
        raise DataError(f"manifest {csv_path} lists no images: add rows path,contributor below its header")
    return ContributorDataset(torch.from_numpy(np.stack(images)), torch.tensor(owners, dtype=torch.int64),
                              tuple(names), tuple({"source": str(csv_path)} for _ in names)).check_market()
