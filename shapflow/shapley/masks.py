"""Coalition masks as the store and job files write them, and the held-out designs: the words every layer above
uses for a coalition (``samplers.mask_key`` is the hashable key of one)."""

from __future__ import annotations

import numpy as np

from .samplers import SAMPLERS

__all__ = ["HELDOUT_SEED", "bits", "heldout_masks", "mask_of"]

HELDOUT_SEED = 20_250_124  # held-out coalitions never coincide with a sampler's default stream (seed 0)


def heldout_masks(n: int, alpha: float, count: int, seed: int = HELDOUT_SEED) -> np.ndarray:
    """``count`` distinct coalitions of round(alpha n) contributors, (count, n) bool, prefix-stable in count: the
    evaluation's held-out ground truth, and (its first few, by sFT) an attribute run's self-check."""
    return SAMPLERS["alpha"](n, count, seed, alpha=alpha).masks


def bits(mask: np.ndarray) -> str:
    """A bool mask as "0101..." (the form coalition and retraining runs log, and job files carry)."""
    return "".join("1" if m else "0" for m in np.asarray(mask, dtype=bool))


def mask_of(text: str) -> np.ndarray:
    """The bool mask of a "0101..." string."""
    if not text or set(text) - {"0", "1"}:
        raise ValueError(f"mask {text!r} is invalid: write one 0/1 per contributor")
    return np.array([c == "1" for c in text], dtype=bool)
