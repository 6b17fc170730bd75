"""A small CNN digit classifier: the feature model of the embedded use cases' properties.

Trained deterministically on 80% of scikit-learn's digits on first use (a few seconds on CPU) and
cached as safetensors + JSON under the user cache folder; its held-out accuracy on the other 20%
is stored beside it and reported.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shapflow.cache import cache_dir
from shapflow.data import digits_reference_images

__all__ = ["DigitsClassifier", "load_digits_classifier"]

VERSION = 2  # 2: trained on one thread, so every process (driver, local or Ray worker) gets the same weights


class DigitsClassifier(nn.Module):
    """(B, 1, 8, 8) images in [-1, 1] -> 10 logits; ``features`` are the 64-d penultimate activations."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def _split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    images = digits_reference_images()
    labels = torch.from_numpy(load_digits().target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    cut = int(0.8 * len(labels))
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def _train(steps: int, seed: int) -> tuple[DigitsClassifier, float]:
    """Train with Adam and light noise augmentation (generated digits are noisy); return (model, accuracy).

    On one torch thread whatever the caller's setting: a float sum split over another number of threads rounds
    differently, and a worker that trains its own copy (a Ray worker with an empty cache) would score coalitions
    with slightly different features than the driver (4e-5 relative on the utilities, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_one_thread(steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_one_thread(steps: int, seed: int) -> tuple[DigitsClassifier, float]:
    x_train, y_train, x_test, y_test = _split(seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        index = torch.randint(0, len(y_train), (128,), generator=generator)
        x = x_train[index] + 0.1 * torch.randn(x_train[index].shape, generator=generator)
        loss = nn.functional.cross_entropy(model(x.clamp(-1, 1)), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return model, accuracy


def load_digits_classifier(steps: int = 600, seed: int = 0) -> tuple[DigitsClassifier, float]:
    """The cached classifier for (steps, seed), training it on first use; returns (model, held-out accuracy)."""
    folder = cache_dir("digits-classifier", f"v{VERSION}-steps{steps}-seed{seed}")
    weights, meta = folder / "model.safetensors", folder / "model.json"
    if weights.is_file() and meta.is_file():
        model = DigitsClassifier()
        model.load_state_dict(load_file(weights))
        return model.eval(), json.loads(meta.read_text())["heldout_accuracy"]
    model, accuracy = _train(steps, seed)
    save_file(model.state_dict(), weights)
    meta.write_text(json.dumps({"heldout_accuracy": accuracy, "steps": steps, "seed": seed}))
    return model, accuracy
