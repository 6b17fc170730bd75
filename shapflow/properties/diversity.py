"""Demographic diversity: entropy (bits) of generated images' distribution over reference clusters.

Reference images (e.g. the training faces) are embedded with an image encoder (CLIP or BLIP, see
``shapflow.models.vision``), L2-normalised, and grouped into ``n_clusters`` (paper: 20) by Ward
agglomerative clustering. A generated image belongs to the cluster with the nearest centroid;
the property is the entropy in bits of the cluster proportions: 0 when every image falls in one
cluster, log2(n_clusters) when they spread evenly (higher = more diverse).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering

from shapflow.models.vision import ImageEncoder, embed_images, load_image_encoder
from shapflow.properties.proxy import EntropyProxy

__all__ = ["ClusterEntropyProperty", "cluster_entropy_bits", "fit_ward_centroids", "load_diversity_property"]


def fit_ward_centroids(embeddings: np.ndarray, n_clusters: int = 20) -> np.ndarray:
    """Centroids (n_clusters, D) of Ward clusters of reference embeddings (M, D)."""
    if len(embeddings) < n_clusters:
        raise ValueError(f"{len(embeddings)} reference embeddings cannot form {n_clusters} clusters: "
                         "give at least as many reference images as clusters")
    labels = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(embeddings)
    return np.stack([embeddings[labels == k].mean(0) for k in range(n_clusters)])


def cluster_entropy_bits(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[float, np.ndarray]:
    """(entropy in bits, proportions (K,)) of embeddings (N, D) assigned to their nearest centroid (K, D)."""
    distances = ((embeddings[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    proportions = np.bincount(distances.argmin(1), minlength=len(centroids)) / len(embeddings)
    present = proportions[proportions > 0]
    return float(max(0.0, -np.sum(present * np.log2(present)))), proportions


class ClusterEntropyProperty:
    """``cluster_entropy`` of (N, 3, H, W) image sets in [-1, 1] against fixed reference clusters."""

    name = "cluster_entropy"
    higher_is_better = True

    def __init__(self, encoder: ImageEncoder, reference_images: torch.Tensor, *, n_clusters: int = 20) -> None:
        self.encoder = encoder
        self.centroids = fit_ward_centroids(embed_images(encoder, reference_images).double().numpy(), n_clusters)

    def score_all(self, images: torch.Tensor) -> dict[str, float]:
        """Entropy (bits) and the number of clusters the images occupy."""
        bits, proportions = cluster_entropy_bits(embed_images(self.encoder, images).double().numpy(), self.centroids)
        return {"cluster_entropy": bits, "clusters_occupied": float((proportions > 0).sum())}

    def score(self, images: torch.Tensor) -> float:
        return self.score_all(images)[self.name]

    def image_quantities(self, images: torch.Tensor) -> np.ndarray:
        """The data proxy's per-image quantities: the one-hot nearest reference cluster (N, n_clusters)."""
        embeddings = embed_images(self.encoder, images).double().numpy()
        nearest = ((embeddings[:, None, :] - self.centroids[None, :, :]) ** 2).sum(-1).argmin(1)
        return np.eye(len(self.centroids))[nearest]

    def proxy_game(self, quantities: np.ndarray, owner: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
        """q(masks (m, n)) -> (m,): the cluster entropy (bits) of each coalition's own images."""
        return EntropyProxy.of(quantities, owner, n)

    def utility(self, value: float) -> float:
        """Higher entropy is better: the utility is the value itself."""
        return value


def load_diversity_property(encoder_folder: str | Path, reference_images: torch.Tensor, *,
                            n_clusters: int = 20) -> ClusterEntropyProperty:
    """The diversity property with the CLIP/BLIP vision encoder saved in ``encoder_folder``."""
    return ClusterEntropyProperty(load_image_encoder(encoder_folder), reference_images, n_clusters=n_clusters)
