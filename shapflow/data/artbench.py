"""ArtBench-10 artists as contributors: an image folder + the ``ArtBench-10.csv`` metadata.

The metadata has one row per image with (at least) ``name`` (file name), ``artist``, ``style`` and
``split``. We keep the rows of one style and split (the paper: ``post_impressionism``, ``train``:
5,000 images by 258 artists) and make each artist a contributor (sorted by name). Images are found
in the layout of the 256x256 "ImageFolder" release, ``<root>/<split>/<style>/<name>``, or flattened
as ``<root>/<style>/<name>`` or ``<root>/<name>``; the layout is decided once, on the first row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shapflow.data.base import ContributorDataset
from shapflow.data.files import read_rgb, read_table

__all__ = ["ARTBENCH_STYLES", "load_artbench"]

ARTBENCH_STYLES = ("art_nouveau", "baroque", "expressionism", "impressionism", "post_impressionism", "realism",
                   "renaissance", "romanticism", "surrealism", "ukiyo_e")


def _layout(root: Path, row: dict[str, str]) -> str:
    """Which of the supported layouts holds the first row's image: a format string of (split, style, name)."""
    layouts = ("{split}/{style}/{name}", "{style}/{name}", "{name}")
    for layout in layouts:
        if (root / layout.format(**row)).is_file():
            return layout
    tried = ", ".join(str(root / layout.format(**row)) for layout in layouts)
    raise ValueError(f"ArtBench image {row['name']!r} not found; tried {tried}: point the image folder at the "
                     "extracted artbench-10-imagefolder-split folder")


def load_artbench(images_dir: str | Path, metadata_csv: str | Path, *, style: str = "post_impressionism",
                  split: str = "train", image_size: int = 256) -> ContributorDataset:
    """Images (N, 3, image_size, image_size) in [-1, 1] of one style and split; contributors = artists."""
    if style not in ARTBENCH_STYLES:
        raise ValueError(f"style={style!r} is invalid: use one of {', '.join(ARTBENCH_STYLES)}")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"ArtBench image folder {images_dir} does not exist")
    rows = read_table(metadata_csv, ("name", "artist", "style", "split"), "ArtBench metadata")
    columns = ("name", "artist", "style", "split")
    rows = [{k: r[k].strip() for k in columns} for r in rows
            if r["style"].strip() == style and r["split"].strip() == split]
    if not rows:
        raise ValueError(f"ArtBench metadata {metadata_csv} has no rows with style={style} and split={split}")
    layout = _layout(images_dir, rows[0])
    paths = [images_dir / layout.format(**r) for r in rows]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ValueError(f"{len(absent)} image(s) listed in {metadata_csv} are missing, e.g. {', '.join(absent[:3])}")
    names = tuple(sorted({r["artist"] for r in rows}))
    index = {name: i for i, name in enumerate(names)}
    images = np.stack([read_rgb(p, image_size, f"metadata {metadata_csv}") for p in paths])
    owners = torch.tensor([index[r["artist"]] for r in rows], dtype=torch.int64)
    info = tuple({"source": "artbench-10", "artist": name, "style": style} for name in names)
    return ContributorDataset(torch.from_numpy(images), owners, names, info).check_market()
