"""Cheap contributor-level attribution baselines the paper compares Shapley values against.

Every function returns one value per contributor, (n_contributors,), higher = more valuable:

- ``pixel-sim-{mean,max}`` / ``feature-sim-{mean,max}``: how much each contributor's images look
  like the full model's generated images (cosine similarity in pixels or in a feature embedding);
- ``own-property`` / ``own-confidence``: the property of the contributor's own images scored as
  if they were a generated set, and the classifier's mean confidence on them;
- ``degradation-level``: minus the documented degradation level of the market recipe.

None of them sees redundancy or complementarity between contributors: they are the floor a
Shapley method must clear. TRAK and D-TRAK live in ``shapflow.evaluation.trak``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shapflow.data import ContributorDataset
from shapflow.properties import Property

__all__ = [
    "BASELINE_NAMES",
    "REDUCES",
    "SIMILARITY_NAMES",
    "contributor_baselines",
    "degradation_values",
    "own_property_values",
    "per_contributor",
    "pixel_embedding",
    "scorer_embedding",
    "scorer_probabilities",
    "similarity_baselines",
    "similarity_values",
]

Embed = Callable[[torch.Tensor], np.ndarray]

REDUCES = ("mean", "max", "sum")
SIMILARITY_NAMES = ("pixel-sim-mean", "pixel-sim-max", "feature-sim-mean", "feature-sim-max")
BASELINE_NAMES = (*SIMILARITY_NAMES, "own-property", "own-confidence", "degradation-level")


def per_contributor(values: np.ndarray, data: ContributorDataset, reduce: str) -> np.ndarray:
    """Aggregate per-image ``values`` (N,) to (n_contributors,) by mean, max or sum over each one's images.

    A contributor without images gets NaN (mean, max) or 0 (sum).
    """
    if reduce not in REDUCES:
        raise ValueError(f"reduce={reduce!r} is invalid: use one of {', '.join(REDUCES)}")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(data),):
        raise ValueError(f"values must hold one entry per image ({len(data)}), got shape {values.shape}")
    owner = data.contributor.numpy()
    n = data.n_contributors
    sums = np.bincount(owner, weights=values, minlength=n)
    if reduce == "sum":
        return sums
    counts = np.bincount(owner, minlength=n)
    if reduce == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    out = np.full(n, -np.inf)
    np.maximum.at(out, owner, values)
    return np.where(counts > 0, out, np.nan)


def pixel_embedding(images: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) -> their flattened pixel values (N, C*H*W), float64."""
    return images.detach().reshape(images.shape[0], -1).double().numpy()


def scorer_embedding(scorer: Property) -> Embed:
    """The feature map of ``feature``-space similarity for a property's scorer.

    If the scorer has a ``classifier`` with ``features`` (as ``DigitsScorer`` does), images (N, C, H, W)
    map to its penultimate features (N, d): the space the property itself is computed in. Otherwise
    this FALLS BACK TO PIXELS (``pixel_embedding``), so feature similarity equals pixel similarity.
    """
    classifier = getattr(scorer, "classifier", None)
    if classifier is None or not hasattr(classifier, "features"):
        return pixel_embedding

    @torch.no_grad()
    def embed(images: torch.Tensor) -> np.ndarray:
        return classifier.features(images.float()).reshape(images.shape[0], -1).double().numpy()

    return embed


@torch.no_grad()
def scorer_probabilities(scorer: Property, images: torch.Tensor) -> np.ndarray | None:
    """Class probabilities (N, n_classes) of the scorer's classifier, or None when the scorer has none."""
    classifier = getattr(scorer, "classifier", None)
    if classifier is None or not hasattr(classifier, "features") or not hasattr(classifier, "head"):
        return None
    logits = classifier.head(classifier.features(images.float()))
    return torch.softmax(logits, dim=1).double().numpy()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of x (N, d) scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def similarity_values(data: ContributorDataset, generated: torch.Tensor, *, space: str = "pixel",
                      reduce: str = "mean", embed: Embed | None = None) -> np.ndarray:
    """Per contributor, how similar its images are to the generated set, (n_contributors,).

    Each training image gets its MEAN cosine similarity to all generated images (N_gen, C, H, W): a
    global property concerns the whole generated set, not its nearest image. Contributors then get
    the mean or max over their images. ``space="pixel"`` compares raw pixel values (in [-1, 1]);
    ``space="feature"`` compares ``embed(images)`` (N, d), e.g. ``scorer_embedding(scorer)``.
    """
    if space not in ("pixel", "feature"):
        raise ValueError(f"space={space!r} is invalid: use pixel or feature")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce={reduce!r} is invalid: use mean or max")
    if space == "feature" and embed is None:
        raise ValueError("space='feature' needs embed (images -> (N, d) features), e.g. scorer_embedding(scorer)")
    if space == "pixel" and embed is not None:
        raise ValueError("space='pixel' compares raw pixels and takes no embed: use space='feature' with embed")
    if generated.ndim != 4 or generated.shape[1:] != data.images.shape[1:]:
        raise ValueError(f"generated must be (N, {', '.join(map(str, data.images.shape[1:]))}), "
                         f"got shape {tuple(generated.shape)}")
    embed = pixel_embedding if space == "pixel" else embed
    train = _unit_rows(np.asarray(embed(data.images), dtype=np.float64))
    mean_generated = _unit_rows(np.asarray(embed(generated), dtype=np.float64)).mean(0)
    # mean_j cos(a_i, b_j) = a_i^T mean_j b_j for unit rows: one matrix-vector product, not N x N_gen.
    return per_contributor(train @ mean_generated, data, reduce)


def similarity_baselines(data: ContributorDataset, generated: torch.Tensor, embed: Embed) -> dict[str, np.ndarray]:
    """The four similarity rows {pixel,feature}-sim-{mean,max}, each (n_contributors,)."""
    out = {}
    for space in ("pixel", "feature"):
        for reduce in ("mean", "max"):
            out[f"{space}-sim-{reduce}"] = similarity_values(
                data, generated, space=space, reduce=reduce, embed=embed if space == "feature" else None)
    return out


def own_property_values(data: ContributorDataset, scorer: Property) -> dict[str, np.ndarray]:
    """Each contributor's own images scored as if they were the generated set, (n_contributors,) per row.

    ``own-property``: ``scorer.utility(scorer.score(images))`` (utility, so higher = better);
    ``own-confidence`` (only when the scorer has a classifier, see ``scorer_probabilities``): the mean
    max-softmax probability over the contributor's images, a per-image quality proxy.
    """
    owner = data.contributor
    own_property = np.array([scorer.utility(scorer.score(data.images[owner == c]))
                             for c in range(data.n_contributors)], dtype=np.float64)
    out = {"own-property": own_property}
    probs = scorer_probabilities(scorer, data.images)
    if probs is not None:
        out["own-confidence"] = per_contributor(probs.max(1), data, "mean")
    return out


def degradation_values(data: ContributorDataset) -> np.ndarray:
    """Minus each contributor's documented degradation level (0 = clean .. 1 = useless), (n_contributors,)."""
    if not data.info:
        raise ValueError("data.info is empty: degradation-level needs one info dict per contributor with a "
                         "'degradation' entry (the market recipe's documented level)")
    missing = [name for name, info in zip(data.names, data.info, strict=True) if "degradation" not in info]
    if missing:
        raise ValueError(f"data.info lacks 'degradation' for contributor(s) {', '.join(missing)}: "
                         "document a degradation level (0 = clean .. 1 = useless) for every contributor")
    return -np.array([float(info["degradation"]) for info in data.info])


def ranked_degradation(data: ContributorDataset) -> np.ndarray | None:
    """``degradation_values`` when every contributor documents a level and the levels differ, else None
    (nothing to rank against: the baseline and the agreement columns are left out)."""
    try:
        levels = degradation_values(data)
    except ValueError:
        return None
    return levels if np.ptp(levels) > 0 else None


def contributor_baselines(data: ContributorDataset, generated: torch.Tensor, scorer: Property) -> dict[str, np.ndarray]:
    """Every baseline of this module, {name: (n_contributors,)}, in ``BASELINE_NAMES`` order.

    ``feature-sim-*`` uses ``scorer_embedding(scorer)`` (pixels when the scorer has no classifier);
    ``own-confidence`` appears only with a classifier, ``degradation-level`` only when every
    contributor's info documents a degradation level.
    """
    rows = {**similarity_baselines(data, generated, scorer_embedding(scorer)), **own_property_values(data, scorer)}
    if data.info and all("degradation" in info for info in data.info):
        rows["degradation-level"] = degradation_values(data)
    return {name: rows[name] for name in BASELINE_NAMES if name in rows}
