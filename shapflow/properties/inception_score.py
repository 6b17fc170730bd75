"""Inception Score and FID of generated images, with our FID InceptionV3 (``shapflow.models.inception``).

- ``inception_score``: exp(E_x KL(p(y|x) || p(y))) over the 1008 classes, p(y|x) = softmax of the
  pool3 features times the classifier weights without bias (as the original IS code), averaged
  over ``splits`` equal parts of the image set (1 = the whole set: one global property).
- ``fid``: Frechet distance between Gaussians fitted to pool3 features of the generated and the
  reference images (lower = better); ``neg_log_fid`` = -log(fid) (higher = better).
FID needs reference images (e.g. the training images); without them only the IS is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from shapflow.models.inception import FIDInceptionV3, load_fid_inception
from shapflow.properties.proxy import FrechetProxy, InceptionScoreProxy

__all__ = ["INCEPTION_PROPERTIES", "InceptionProperty", "frechet_distance_eigh", "frechet_distance_features",
           "inception_score", "load_inception_property"]

INCEPTION_PROPERTIES = {"inception_score": True, "fid": False, "neg_log_fid": True}  # name -> higher is better


def frechet_distance_eigh(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)) for means (d,) and covariances (d, d).

    Tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)) (a symmetric PSD matrix), so two
    symmetric eigendecompositions replace ``scipy.linalg.sqrtm``, which takes about a minute at d = 2048.
    """
    eigvals, eigvecs = np.linalg.eigh(sigma1)
    root1 = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_covmean = np.sqrt(np.clip(inner, 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


def frechet_distance_features(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to features x (n1, d) and y (n2, d), exact for any n1, n2.

    With centred X, Y: S1 = X'X / (n1-1), S2 = Y'Y / (n2-1), and the nonzero eigenvalues of S1 S2 are the
    squared singular values of X Y' / sqrt((n1-1)(n2-1)), so Tr((S1 S2)^(1/2)) is that matrix's nuclear
    norm: an (n1, n2) SVD instead of (d, d) eigendecompositions when there are fewer images than features.
    """
    if min(len(x), len(y)) >= x.shape[1]:
        return frechet_distance_eigh(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    xc, yc = x - x.mean(0), y - y.mean(0)
    scale = (len(x) - 1) * (len(y) - 1)
    trace_covmean = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt(scale)
    traces = (xc**2).sum() / (len(x) - 1) + (yc**2).sum() / (len(y) - 1)
    return float(np.sum((x.mean(0) - y.mean(0)) ** 2) + traces - 2.0 * trace_covmean)


def inception_score(probs: np.ndarray, splits: int = 1) -> float:
    """IS of class probabilities (N, K): mean over ``splits`` parts of exp(mean_x KL(p(y|x) || p(y)))."""
    if splits < 1 or splits > len(probs):
        raise ValueError(f"splits={splits} is invalid for {len(probs)} images: use 1..{len(probs)}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(0, keepdims=True)
        kl = np.sum(part * (np.log(part + 1e-12) - np.log(marginal + 1e-12)), axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores))


class InceptionProperty:
    """Scores (N, 3, H, W) image sets in [-1, 1]; ``score`` returns the property named ``name``."""

    def __init__(self, network: FIDInceptionV3, *, name: str = "inception_score",
                 reference_images: torch.Tensor | None = None, splits: int = 1, batch_size: int = 50) -> None:
        if name not in INCEPTION_PROPERTIES:
            raise ValueError(f"name={name!r} is invalid: use one of {', '.join(INCEPTION_PROPERTIES)}")
        if name != "inception_score" and reference_images is None:
            raise ValueError(f"{name} needs reference images (the real images the generated ones are compared to)")
        self.name, self.higher_is_better = name, INCEPTION_PROPERTIES[name]
        self.network, self.splits, self.batch_size = network, splits, batch_size
        self._reference = None if reference_images is None else self._features(reference_images).numpy()

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> torch.Tensor:
        """pool3 features (N, 2048), computed on the network's device in batches."""
        device = next(self.network.parameters()).device
        return torch.cat([self.network.features(b.to(device).float()).cpu()
                          for b in images.split(self.batch_size)]).double()

    def score_all(self, images: torch.Tensor) -> dict[str, float]:
        """IS (and FID, -log FID with reference images) from one pass of the network."""
        features = self._features(images)
        with torch.no_grad():
            probs = torch.softmax(self.network.logits(features.to(self.network.fc.weight)), dim=1)
        out = {"inception_score": inception_score(probs.double().cpu().numpy(), self.splits)}
        if self._reference is not None:
            fid = frechet_distance_features(features.numpy(), self._reference)
            out |= {"fid": fid, "neg_log_fid": float(-np.log(max(fid, 1e-12)))}
        return out

    def score(self, images: torch.Tensor) -> float:
        return self.score_all(images)[self.name]

    def image_quantities(self, images: torch.Tensor) -> np.ndarray:
        """The data proxy's per-image quantities: class probabilities (N, 1008) for the IS, else pool3 features
        (N, 2048)."""
        features = self._features(images)
        if self.name != "inception_score":
            return features.numpy()
        with torch.no_grad():
            return torch.softmax(self.network.logits(features.to(self.network.fc.weight)), 1).double().cpu().numpy()

    def proxy_game(self, quantities: np.ndarray, owner: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
        """q(masks (m, n)) -> (m,): this property of each coalition's own images (FID with diagonal covariances)."""
        if self.name == "inception_score":
            return InceptionScoreProxy.of(quantities, owner, n)
        return FrechetProxy.of(quantities, owner, n, self._reference.mean(0), np.var(self._reference, 0, ddof=1),
                               neg_log=self.name == "neg_log_fid")

    def utility(self, value: float) -> float:
        """The property as a utility (higher = better)."""
        return value if self.higher_is_better else -value


def load_inception_property(weights: str | Path, *, name: str = "inception_score",
                            reference_images: torch.Tensor | None = None, splits: int = 1,
                            resize_to: int = 299, device: str = "cpu") -> InceptionProperty:
    """The IS/FID property with the FID Inception weights file at ``weights``."""
    network = load_fid_inception(weights, resize_to=resize_to).to(device)
    return InceptionProperty(network, name=name, reference_images=reference_images, splits=splits)
