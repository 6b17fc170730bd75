"""Shared readers of image folders and tables (manifests, CelebA-HQ labels, ArtBench metadata): checked, with
clear errors, and tolerant of tables as real users export them.

``read_csv`` reads what spreadsheets save as "CSV": UTF-8 with or without a byte-order mark, UTF-16 (Excel's
"Unicode text"), Windows-1252 / Latin-1, comma, semicolon (European locales) or tab separated, Windows line
endings, stray spaces around headers and cells, header names in any case, and blank rows.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shapflow.data.base import DataError

__all__ = ["open_image", "read_csv", "read_rgb", "read_table"]

DELIMITERS = (",", ";", "\t")


def _decode(raw: bytes) -> str:
    """Text of a table file: UTF-16 by its byte-order mark, else UTF-8 (BOM dropped), else Windows-1252, else
    Latin-1 (which decodes any byte)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def read_csv(path: str | Path, columns: tuple[str, ...], what: str,
             exact: tuple[str, ...] = ()) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every non-blank row of a table that must have ``columns`` (any case); each row maps
    every header name (stripped; the required ones spelled as in ``columns``) to its stripped cell, or to the
    cell exactly as written for the columns in ``exact`` (names: data, never cleaned up)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist: give a CSV file with columns {','.join(columns)}")
    try:
        text = _decode(path.read_bytes())
    except (OSError, UnicodeError) as err:
        raise DataError(f"{what} {path} cannot be read ({err}): save it as a CSV file (UTF-8)") from None
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=max(DELIMITERS, key=first.count))
    header = [cell.strip() for cell in next(reader, [])]
    spelled = {name.lower(): name for name in columns}
    header = [spelled.get(cell.lower(), cell) for cell in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{what} {path} lacks column(s) {', '.join(missing)}: its first line is {first.strip()!r}; "
                        f"start the file with the header line {','.join(columns)}")
    rows = []
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((reader.line_num, {name: cell if name in exact else cell.strip()
                                           for name, cell in zip(header, cells, strict=False)}))
    return rows


def read_table(path: str | Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """Rows of a CSV that must have (at least) ``columns``; every listed cell must be non-empty."""
    numbered = read_csv(path, columns, what)
    for number, row in numbered:
        empty = [c for c in columns if not row.get(c)]
        if empty:
            raise DataError(f"{what} {path} row {number}: empty {', '.join(empty)}: fill it in or delete the row")
    if not numbered:
        raise DataError(f"{what} {path} has a header but no rows")
    return [row for _, row in numbered]


@contextmanager
def open_image(path: Path, where: str) -> Iterator[Image.Image]:
    """``Image.open(path)``, refusing a decompression bomb from its header, before a pixel is decoded: more pixels
    than Pillow's ``Image.MAX_IMAGE_PIXELS`` is a ``DataError`` (Pillow itself only warns up to twice that, and
    decodes, e.g. 800 MB for a 10,000 x 10,000 PNG of a few kB)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(f"{where}: image {path} is too large to decode safely ({err}): give it at most "
                            f"{Image.MAX_IMAGE_PIXELS:,} pixels (or delete the row)") from None
    with image:
        yield image


def read_rgb(path: Path, image_size: int, where: str) -> np.ndarray:
    """One image as float32 (3, image_size, image_size) in [-1, 1] (bicubic resize); errors name ``where``."""
    try:
        with open_image(path, where) as im:
            im = im.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{where}: cannot read image {path}: {err}") from None
    return array.transpose(2, 0, 1)
