"""CelebA-HQ identities as contributors: a folder of face images + a labels CSV ``image,identity``.

The CSV maps each CelebA-HQ file name (relative to the image folder) to a celebrity identity
(build it from CelebA's ``identity_CelebA.txt`` and the CelebA-HQ-to-CelebA mapping of
CelebAMask-HQ). The paper keeps 50 identities (895 images); we keep the ``num_identities``
identities with the most images, ties broken by identity name, so the choice is deterministic
and favours contributors with enough images to matter. Every selected file is checked before
any is decoded, so a bad folder fails in seconds.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from shapflow.data.base import ContributorDataset
from shapflow.data.files import read_rgb, read_table

__all__ = ["load_celebahq", "select_identities"]


def select_identities(identities: list[str], num_identities: int) -> tuple[str, ...]:
    """The ``num_identities`` most frequent identities (ties: by name), in that order."""
    counts = Counter(identities)
    if num_identities < 2:
        raise ValueError(f"num_identities={num_identities} is invalid: need at least 2 contributors")
    if len(counts) < num_identities:
        raise ValueError(f"the labels list {len(counts)} identities but num_identities={num_identities} "
                         "were requested: lower num_identities or supply more labels")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(name for name, _ in ranked[:num_identities])


def load_celebahq(images_dir: str | Path, labels_csv: str | Path, *, num_identities: int = 50,
                  image_size: int = 256) -> ContributorDataset:
    """Images (N, 3, image_size, image_size) in [-1, 1] of the selected identities, one contributor each."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"CelebA-HQ image folder {images_dir} does not exist")
    rows = read_table(labels_csv, ("image", "identity"), "CelebA-HQ labels")
    names = select_identities([r["identity"].strip() for r in rows], num_identities)
    index = {name: i for i, name in enumerate(names)}
    chosen = [(images_dir / r["image"].strip(), index[r["identity"].strip()]) for r in rows
              if r["identity"].strip() in index]
    absent = [str(p) for p, _ in chosen if not p.is_file()]
    if absent:
        raise ValueError(f"{len(absent)} image(s) listed in {labels_csv} are missing from {images_dir}, "
                         f"e.g. {', '.join(absent[:3])}")
    images = np.stack([read_rgb(p, image_size, f"labels {labels_csv}") for p, _ in chosen])
    owners = torch.tensor([owner for _, owner in chosen], dtype=torch.int64)
    info = tuple({"source": "celeba-hq", "identity": name} for name in names)
    return ContributorDataset(torch.from_numpy(images), owners, names, info).check_market()
