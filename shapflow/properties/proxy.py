"""Data proxies: a property applied to a coalition's OWN real images, from per-image quantities computed once.

q(S) = the property of the real training images of coalition S (no training, no sampling), the cheap game the
estimator uses as a control variate beside the expensive v(S). Each property maps images to per-image
quantities (``image_quantities``: classifier or Inception features, class probabilities, cluster one-hots,
aesthetic scores) and builds its game from them (``proxy_game``); the games here only add up per-contributor
sufficient statistics, so a batch of masks (m, n) costs a few matrix products, whatever the number of images.

Every game is in the utility's orientation (higher = better, as ``Property.utility``) and defines q(empty), a
coalition with no images, as the property's no-information limit: a point mass at the zero feature (Frechet),
one class (Inception Score 1), zero entropy, the lowest score of all images (quantile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EntropyProxy", "FrechetProxy", "InceptionScoreProxy", "QuantileProxy", "owner_sums"]

_CHUNK = 2048  # masks per batch inside a game (bounds the (chunk, d, d) covariances)


def owner_sums(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per-contributor sums (n, *values.shape[1:]) of per-image ``values`` (N, ...); ``owner`` (N,) in 0..n-1."""
    values = np.asarray(values, dtype=float)
    out = np.zeros((n, *values.shape[1:]))
    np.add.at(out, np.asarray(owner), values)
    return out


def _chunks(masks: np.ndarray):
    masks = np.asarray(masks, dtype=bool)
    for start in range(0, len(masks), _CHUNK):
        yield masks[start:start + _CHUNK].astype(float)


@dataclass(frozen=True)
class FrechetProxy:
    """Frechet distance of S's image features to a reference Gaussian: ``neg_log`` gives -log FD, else -FD.

    Per contributor: image count, feature sum (d,) and sum of squares (d,) (``diagonal``, the default) or of outer
    products (d, d); S's Gaussian follows from their sums over S. Diagonal: FD = |mu - mu_r|^2 + sum (sd - sd_r)^2,
    no (d, d) work; on the digits market it tracked v(S) better than the full FD at 1/1000 of the cost
    (benchmarks/proxy.py).
    """

    counts: np.ndarray  # (n,)
    sums: np.ndarray  # (n, d)
    second: np.ndarray  # (n, d) sums of squares; (n, d, d) outer products when not diagonal
    mu_ref: np.ndarray  # (d,)
    sigma_ref: np.ndarray  # (d,) variances; (d, d) covariance when not diagonal
    neg_log: bool = True

    @classmethod
    def of(cls, features: np.ndarray, owner: np.ndarray, n: int, mu_ref: np.ndarray, sigma_ref: np.ndarray, *,
           neg_log: bool = True) -> FrechetProxy:
        """The game of per-image features (N, d) against the reference mean (d,) and variances (d,) (diagonal) or
        covariance (d, d) (full)."""
        features, sigma_ref = np.asarray(features, dtype=float), np.asarray(sigma_ref, dtype=float)
        second = features**2 if sigma_ref.ndim == 1 else features[:, :, None] * features[:, None, :]
        return cls(owner_sums(np.ones(len(features)), owner, n), owner_sums(features, owner, n),
                   owner_sums(second, owner, n), np.asarray(mu_ref, dtype=float), sigma_ref, neg_log)

    @property
    def diagonal(self) -> bool:
        return self.sigma_ref.ndim == 1

    def distances(self, masks: np.ndarray) -> np.ndarray:
        """FD of each coalition (m,); the empty coalition's Gaussian is a point mass at the zero feature."""
        out = []
        root = None if self.diagonal else _sqrt_psd(self.sigma_ref)
        for chunk in _chunks(masks):
            count = chunk @ self.counts
            mu = (chunk @ self.sums) / np.maximum(count, 1.0)[:, None]
            second = np.tensordot(chunk, self.second, axes=1)
            scale = np.maximum(count - 1.0, 1.0)
            if self.diagonal:
                var = np.clip((second - count[:, None] * mu**2) / scale[:, None], 0.0, None)
                spread = ((np.sqrt(var) - np.sqrt(np.clip(self.sigma_ref, 0.0, None))) ** 2).sum(1)
            else:
                sigma = (second - count[:, None, None] * mu[:, :, None] * mu[:, None, :]) / scale[:, None, None]
                inner = np.linalg.eigvalsh(root @ sigma @ root)
                spread = (np.trace(sigma, axis1=1, axis2=2) + np.trace(self.sigma_ref)
                          - 2.0 * np.sqrt(np.clip(inner, 0.0, None)).sum(1))
            out.append(((mu - self.mu_ref) ** 2).sum(1) + spread)
        return np.clip(np.concatenate(out), 1e-12, None) if out else np.zeros(0)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        distance = self.distances(masks)
        return -np.log(distance) if self.neg_log else -distance


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    eigvals, eigvecs = np.linalg.eigh(sigma)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


@dataclass(frozen=True)
class InceptionScoreProxy:
    """Inception Score exp(mean_x KL(p(y|x) || p(y))) of S's images from per-image class probabilities (N, K):
    per contributor the count, the sum of p (K,) and the sum of sum_y p log p; the empty coalition scores 1."""

    counts: np.ndarray
    prob_sums: np.ndarray
    neg_entropy_sums: np.ndarray

    @classmethod
    def of(cls, probs: np.ndarray, owner: np.ndarray, n: int) -> InceptionScoreProxy:
        probs = np.asarray(probs, dtype=float)
        neg_entropy = np.sum(probs * np.log(probs + 1e-12), axis=1)
        return cls(owner_sums(np.ones(len(probs)), owner, n), owner_sums(probs, owner, n),
                   owner_sums(neg_entropy, owner, n))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        out = []
        for chunk in _chunks(masks):
            count = np.maximum(chunk @ self.counts, 1.0)
            marginal = (chunk @ self.prob_sums) / count[:, None]
            kl = (chunk @ self.neg_entropy_sums) / count - np.sum(marginal * np.log(marginal + 1e-12), axis=1)
            out.append(np.exp(np.clip(kl, 0.0, None)))
        return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class EntropyProxy:
    """Entropy (bits) of S's images over K groups (predicted classes, face clusters), from per-image one-hots
    (N, K): per contributor a histogram; the empty coalition has entropy 0."""

    histograms: np.ndarray  # (n, K)

    @classmethod
    def of(cls, onehots: np.ndarray, owner: np.ndarray, n: int) -> EntropyProxy:
        return cls(owner_sums(onehots, owner, n))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        out = []
        for chunk in _chunks(masks):
            counts = chunk @ self.histograms
            p = counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)
            out.append(np.clip(-np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1), 0.0, None))
        return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class QuantileProxy:
    """The ``quantile`` (numpy's linear rule) of S's per-image scores; the empty coalition gets the lowest score.

    Scores are sorted once; a coalition's k-th score is found by a running count of its members' images.
    """

    scores: np.ndarray  # (N,) ascending
    owner: np.ndarray  # (N,) owner of each sorted score
    quantile: float

    @classmethod
    def of(cls, scores: np.ndarray, owner: np.ndarray, quantile: float) -> QuantileProxy:
        order = np.argsort(np.asarray(scores, dtype=float), kind="stable")
        return cls(np.asarray(scores, dtype=float)[order], np.asarray(owner)[order], float(quantile))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        out = np.full(len(masks), self.scores[0] if len(self.scores) else 0.0)
        for start in range(0, len(masks), 256):
            member = masks[start:start + 256][:, self.owner]  # (chunk, N): is the k-th lowest score in S
            running = np.cumsum(member, axis=1)
            total = running[:, -1]
            position = (np.maximum(total, 1) - 1) * self.quantile
            low, frac = np.floor(position), position - np.floor(position)
            values = [self._kth(member, running, low + step) for step in (0, 1)]
            high = np.where(frac > 0, values[1], values[0])
            chosen = values[0] + frac * (high - values[0])
            out[start:start + len(member)] = np.where(total > 0, chosen, out[start:start + len(member)])
        return out

    def _kth(self, member: np.ndarray, running: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The (k+1)-th lowest member score of each row (k clipped to the row's members)."""
        k = np.minimum(k, np.maximum(running[:, -1] - 1, 0))
        index = np.argmax(member & (running > k[:, None]), axis=1)
        return self.scores[index]
