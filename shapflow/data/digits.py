"""Embedded, offline data: scikit-learn's 1,797 8x8 digits dealt to contributors.

``load_digits_market`` builds a 16-contributor market whose contributors differ the way real ones
do (sizes, redundancy, complementarity, class skew, graded noise, blur, near-duplicates,
near-blank images). Each recipe is seeded, documented in ``MARKET`` and carries the degradation
level we expect it to have (0 = clean, 1 = useless), used by baselines and reports.
``scaled_market(blocks)`` deals the same 16 kinds to 16 x ``blocks`` contributors (48, 128: the markets that measure
cost and precision against n on a real game). ``load_digits_classes`` makes the 10 digit classes the contributors
(the paper's CIFAR-20 mirror).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

from shapflow.data.base import ContributorDataset

__all__ = ["MARKET", "MARKETS", "Recipe", "digits_reference_images", "load_digits_classes", "load_digits_market",
           "scaled_market"]


@dataclass(frozen=True)
class Recipe:
    """How one contributor's images are drawn and degraded, and what we expect of it."""

    name: str
    size: int
    kind: str  # clean | copy | class | skew | noise | blur | dupes | blank
    param: float = 0.0  # noise sigma (in [-1, 1] units), blur sigma, blank contrast, ...
    classes: tuple[int, ...] = ()
    degradation: float = 0.0
    expect: str = ""


SCARCE_CLASS = 8  # most of the 8s go to one contributor: complementarity

MARKET: tuple[Recipe, ...] = (
    Recipe("clean-xl", 220, "clean", expect="large clean shard: high value"),
    Recipe("clean-l", 140, "clean", expect="clean, smaller: value grows with size, saturating"),
    Recipe("clean-m", 80, "clean", expect="clean, medium"),
    Recipe("clean-s", 40, "clean", expect="small clean shard: modest value"),
    Recipe("twin-a", 100, "clean", expect="redundant with twin-b: together worth little more than one"),
    Recipe("twin-b", 100, "copy", param=0.03, expect="near-copies of twin-a's images (tiny jitter)"),
    Recipe("eights", 150, "class", classes=(SCARCE_CLASS,),
           expect="holds most of the 8s nobody else has: worth more than its size suggests"),
    Recipe("skew-low", 100, "skew", classes=(0, 1, 2, 3, 4), expect="only digits 0-4: partial coverage"),
    Recipe("skew-high", 100, "skew", classes=(5, 6, 7, 9), expect="only digits 5-7 and 9: partial coverage"),
    Recipe("noise-light", 100, "noise", param=0.15, degradation=0.2, expect="light Gaussian noise: mild harm"),
    Recipe("noise-medium", 100, "noise", param=0.35, degradation=0.45, expect="medium noise: harmful"),
    Recipe("noise-heavy", 100, "noise", param=0.6, degradation=0.75, expect="heavy noise: clearly harmful"),
    Recipe("blur", 100, "blur", param=0.7, degradation=0.35, expect="mild blur: smooths strokes"),
    Recipe("dupes", 96, "dupes", param=8, degradation=0.3, expect="8 images repeated 12x: little new information"),
    Recipe("near-blank", 80, "blank", param=0.12, degradation=0.8, expect="faint, near-empty images: harmful"),
    Recipe("clean-extra", 120, "clean", expect="clean shard: solid value"),
)


def scaled_market(blocks: int) -> tuple[Recipe, ...]:
    """``MARKET`` dealt ``blocks`` times over: 16 x ``blocks`` contributors, every kind ``blocks`` times.

    Block b's shards are ``MARKET``'s sizes / ``blocks`` (at least 4 images; the pool of 1,797 digits then lasts:
    each block draws ~1,538 / ``blocks``), so the market's images are the 16-market's, spread thinner. Twins copy
    the twin of their own block (copies cost the pool nothing); the scarce 8s are split among the ``blocks``
    holders, who are redundant with each other and complementary to everyone else; the noise, blur and blank
    levels are graded across blocks (x0.7 .. x1.3 of the 16-market's, degradation alike, at most 0.95).
    Names are ``<kind name>-<block>``, e.g. ``noise-heavy-3``.
    """
    if blocks < 1:
        raise ValueError(f"blocks={blocks} is invalid: use 1 (the 16-market) or more")
    if blocks == 1:
        return MARKET
    recipes = []
    for b in range(blocks):
        grade = 0.7 + 0.6 * b / (blocks - 1)
        for r in MARKET:
            size = max(4, round(r.size / blocks))
            graded = r.kind in ("noise", "blur", "blank")
            param, expect = (r.param * grade if graded else r.param), r.expect
            if r.kind == "dupes":  # a few originals, each repeated about as often as in the 16-market
                param = float(max(2, round(size / 12)))
                expect = f"{int(param)} images repeated to {size}: little new information"
            elif r.kind == "class":
                expect = f"1/{blocks} of the 8s, which only the {blocks} eights-* hold: redundant among them"
            recipes.append(Recipe(f"{r.name}-{b + 1}", size, r.kind, param, r.classes,
                                  min(0.95, r.degradation * grade) if graded else r.degradation, expect))
    return tuple(recipes)


# The shipped markets by number of contributors (data.source digits-market, digits-market-48, digits-market-128).
MARKETS: dict[int, tuple[Recipe, ...]] = {16: MARKET, 48: scaled_market(3), 128: scaled_market(8)}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All digits as float32 (N, 1, 8, 8) in [-1, 1] and their labels (N,)."""
    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    return images, bunch.target.astype(np.int64)


def digits_reference_images() -> torch.Tensor:
    """Every clean digit, (1797, 1, 8, 8) in [-1, 1]: the reference set of image-quality properties."""
    return torch.from_numpy(_digits()[0])


class _Pool:
    """Undealt image indices per class; draws without replacement."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator) -> None:
        self.by_class = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(10)}
        self.rng = rng

    def draw(self, size: int, classes: tuple[int, ...] = (), exclude: tuple[int, ...] = ()) -> np.ndarray:
        allowed = [c for c in (classes or range(10)) if c not in exclude]
        picked: list[int] = []
        for _ in range(size):
            sizes = np.array([len(self.by_class[c]) for c in allowed], dtype=float)
            if sizes.sum() == 0:
                raise ValueError("the digits pool ran out of images: shrink the market recipes")
            cls = allowed[self.rng.choice(len(allowed), p=sizes / sizes.sum())]
            picked.append(self.by_class[cls].pop())
        return np.array(picked)


def _degrade(images: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Apply a recipe's degradation to (k, 1, 8, 8) images in [-1, 1]."""
    if recipe.kind in ("noise", "copy"):
        images = images + rng.normal(0.0, recipe.param, images.shape).astype(np.float32)
    elif recipe.kind == "blur":
        images = np.stack([gaussian_filter(im, sigma=(0, recipe.param, recipe.param)) for im in images])
    elif recipe.kind == "blank":
        images = -1.0 + recipe.param * (images + 1.0)
    return np.clip(images, -1.0, 1.0).astype(np.float32)


def load_digits_market(seed: int = 0, recipes: tuple[Recipe, ...] = MARKET) -> ContributorDataset:
    """Deal the digits to the contributors of ``recipes`` (seeded; the same seed gives the same market)."""
    images, labels = _digits()
    rng = np.random.default_rng(seed)
    pool = _Pool(labels, rng)
    chunks, owners, info = [], [], []
    dealt: dict[str, np.ndarray] = {}
    for index, recipe in enumerate(recipes):
        if recipe.kind == "copy":  # the recipe before it: its twin
            source = dealt[recipes[index - 1].name]
        elif recipe.kind == "dupes":
            originals = pool.draw(int(recipe.param), exclude=(SCARCE_CLASS,))
            source = np.resize(originals, recipe.size)
        elif recipe.kind == "class":
            source = pool.draw(recipe.size, classes=recipe.classes)
        else:
            source = pool.draw(recipe.size, classes=recipe.classes, exclude=(SCARCE_CLASS,))
        dealt[recipe.name] = source
        base = images[source]
        if recipe.kind == "dupes":
            base = base + rng.normal(0.0, 0.03, base.shape).astype(np.float32)
        chunks.append(_degrade(base, recipe, rng))
        owners.append(np.full(len(source), index))
        info.append({"recipe": recipe.kind, "param": recipe.param, "degradation": recipe.degradation,
                     "expect": recipe.expect, "classes": list(np.unique(labels[source]).tolist())})
    return ContributorDataset(
        torch.from_numpy(np.concatenate(chunks)), torch.from_numpy(np.concatenate(owners)),
        tuple(r.name for r in recipes), tuple(info)).check_market()


def load_digits_classes() -> ContributorDataset:
    """Contributors = the 10 digit classes, all images clean."""
    images, labels = _digits()
    info = tuple({"recipe": "class", "degradation": 0.0, "classes": [c]} for c in range(10))
    return ContributorDataset(torch.from_numpy(images), torch.from_numpy(labels),
                              tuple(f"digit-{c}" for c in range(10)), info).check_market()
