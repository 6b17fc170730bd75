"""The contributor dataset: images in [-1, 1], who contributed each, and the coalition subset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shapflow.config import InputError
from shapflow.data.names import NAME_RULE, name_problem, same_looking

__all__ = ["ContributorDataset", "DataError"]


class DataError(InputError):
    """The contributors' data cannot be used (a manifest, table, image or dataset file); the message names the
    file (and row) and the fix."""


@dataclass(frozen=True)
class ContributorDataset:
    """Images of ``n_contributors`` data owners.

    images: float32 (N, C, H, W) in [-1, 1]; contributor: int64 (N,) index into ``names``;
    info: one dict per contributor (recipe, documented degradation level, ...), for reports.
    """

    images: torch.Tensor
    contributor: torch.Tensor
    names: tuple[str, ...]
    info: tuple[dict[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.contributor.shape != (self.images.shape[0],):
            raise ValueError("contributor must hold one index per image")
        if self.info and len(self.info) != len(self.names):
            raise ValueError("info must hold one entry per contributor")

    def check_market(self) -> ContributorDataset:
        """Raise unless this is a valid market: >= 2 contributors with distinct names that follow ``NAME_RULE``,
        each with >= 1 image. Returns self."""
        for name in self.names:
            if problem := name_problem(name):
                raise DataError(f"contributor name {name!r} {problem}: {NAME_RULE}; fix the name")
        if twins := same_looking(self.names):
            raise DataError(f"contributor names {twins[0]!a} and {twins[1]!a} look the same (equal up to Unicode "
                            "normalization): give each contributor one distinct name")
        if len(self.names) < 2:
            raise DataError(f"need at least 2 contributors to share credit, got {len(self.names)}: list images of "
                            "two or more contributors")
        counts = np.bincount(self.contributor.numpy(), minlength=len(self.names))
        if len(counts) > len(self.names):
            raise ValueError("contributor indices exceed the number of names")
        empty = [self.names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(f"contributor(s) with zero images: {', '.join(empty)}; remove them or add images")
        return self

    @property
    def n_contributors(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def counts(self) -> np.ndarray:
        """Images per contributor, (n_contributors,)."""
        return np.bincount(self.contributor.numpy(), minlength=self.n_contributors)

    def subset(self, mask: np.ndarray | list[bool]) -> ContributorDataset:
        """The images of the contributors where ``mask`` (bool, (n_contributors,)) is true.

        Contributor indices and names stay global, so a coalition's data still says who owns what.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_contributors,):
            raise ValueError(f"mask must have {self.n_contributors} entries (one per contributor), "
                             f"got shape {mask.shape}")
        if not mask.any():
            raise ValueError("the empty coalition has no data: its utility is v0, not a training run")
        keep = torch.from_numpy(mask.copy())[self.contributor]
        return ContributorDataset(self.images[keep], self.contributor[keep], self.names, self.info)
