"""The data proxy of a study: q(S) = its property applied to coalition S's own real images.

The property's per-image quantities of the contributors' real images (``Property.image_quantities``) are
computed once per study, here, with no training and no sampling; the game (``Property.proxy_game``) then
scores any batch of masks in a few matrix products, so the estimator can use it as a control variate beside
the utilities v(S) that each cost a training run. ``check_proxy`` is the boundary: a proxy that does not give
one finite value per coalition is an input error; a constant one is useless, so it warns and is dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shapflow.config import InputError, UseCaseConfig
from shapflow.data import ContributorDataset, load_data
from shapflow.properties import Property
from shapflow.shapley.control import evaluate_proxy
from shapflow.utility.study import load_scorer

__all__ = ["DataProxy", "ProxyError", "check_proxy", "load_proxy"]

CONSTANT_RTOL = 1e-9  # a proxy whose spread is below this fraction of its scale carries no information


class ProxyError(InputError):
    """A proxy game that cannot be used (wrong length, NaN or inf): the message names the problem and the fix."""


@dataclass(frozen=True, eq=False)
class DataProxy:
    """q of a study: ``property`` (its name), the per-image ``quantities`` (N, k) and their ``owner`` (N,) from
    which ``game`` scores masks; calling the proxy calls the game: q(masks bool (m, n)) -> (m,) float.

    No per-mask cache: the estimator computes phi(q) once per proxy object (control.shared_proxy_values), and a
    batch of masks costs the game a few matrix products, less than hashing its rows (benchmarks/proxy_cost.py).
    Compared by identity, so the estimator can remember phi(q) per proxy object.
    """

    property: str
    quantities: np.ndarray = field(repr=False)
    owner: np.ndarray = field(repr=False)
    game: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return np.asarray(self.game(np.asarray(masks, dtype=bool)), dtype=float)


def load_proxy(cfg: UseCaseConfig, scorer: Property | None = None,
               pixels: ContributorDataset | None = None) -> DataProxy:
    """The data proxy of a use case: its property (``scorer``, loaded if None) on the contributors' real images
    (``pixels``, loaded if None), per image once."""
    pixels = pixels or load_data(cfg.data, cfg.assets)
    scorer = scorer or load_scorer(cfg, pixels)
    quantities = np.asarray(scorer.image_quantities(pixels.images), dtype=float)
    owner = pixels.contributor.numpy()
    if quantities.shape[0] != len(owner):
        raise ProxyError(f"property {scorer.name} gave {quantities.shape[0]} per-image quantities for {len(owner)} "
                         "images: its image_quantities must return one row per image")
    game = scorer.proxy_game(quantities, owner, pixels.n_contributors)
    return DataProxy(scorer.name, quantities, owner, game)


def check_proxy(proxy: Callable[[np.ndarray], np.ndarray], masks: np.ndarray,
                name: str = "the proxy") -> Callable[[np.ndarray], np.ndarray] | None:
    """``proxy`` when it gives one finite, non-constant value per coalition of ``masks`` (m, n) (the empty and full
    coalitions are added); ProxyError for a wrong length or NaN/inf; a constant proxy warns and gives None (the
    plain estimate)."""
    n = np.asarray(masks).shape[1]
    probe = np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), np.asarray(masks, dtype=bool)])
    try:  # the estimator's own check of a proxy's answers (one length, finite), as a user error here
        q = evaluate_proxy(proxy, probe)
    except ValueError as err:
        raise ProxyError(f"{name}: {err} (rows 0 and 1 are the empty and full coalitions); fix the property's "
                         "per-image quantities, or run without the proxy (--proxy false)") from None
    if np.ptp(q) <= CONSTANT_RTOL * max(1.0, float(np.max(np.abs(q)))):
        warnings.warn(f"{name} is constant ({q[0]:.6g}) on every coalition: it carries no information, so the "
                      "values are estimated without it", UserWarning, stacklevel=2)
        return None
    return proxy
