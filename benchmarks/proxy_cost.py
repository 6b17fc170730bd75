"""Benchmark: what phi(q) and the data proxy's per-mask cache cost, side by side (issue 27, item 2).

A data proxy (shapflow.utility.DataProxy) is a Frechet game of per-contributor feature sums; the estimator spends
about 2^20 proxy calls on phi(q) (control.PROXY_BUDGET) and a run estimates several times on the same proxy (the
values, the convergence curve, the forecasts, every batch of a target design). Printed, per n:

1. one batch of 2^15 random masks: the game alone vs behind a per-mask dict cache (the DataProxy of 2026-12-08,
   kept here as the baseline), cold and warm;
2. two estimates with the proxy on the same rows (3n rows; the values, then the convergence curve): phi(q)
   recomputed each time (a new proxy object per estimate), recomputed each time behind one dict cache (the
   behaviour of 2026-12-08: every proxy call after the first estimate a cache hit), and computed once per proxy
   object (control.shared_proxy_values, now).

    OMP_NUM_THREADS=1 python -P benchmarks/proxy_cost.py --ns 48,258   # -P: see benchmarks/proxy.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np

from shapflow.properties.proxy import FrechetProxy
from shapflow.shapley import estimate, make_game
from shapflow.shapley.samplers import sample_leverage
from shapflow.utility import DataProxy

IMAGES_PER_CONTRIBUTOR, FEATURES = 20, 64


class DictCached:
    """The baseline: values remembered per mask row (packed bits as a dict key)."""

    def __init__(self, game: Callable[[np.ndarray], np.ndarray]) -> None:
        self.game, self.seen = game, {}

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        keys = [row.tobytes() for row in np.packbits(masks, axis=1)]
        new = [r for r, key in enumerate(keys) if key not in self.seen]
        if new:
            self.seen.update(zip([keys[r] for r in new], self.game(masks[new]).tolist(), strict=True))
        return np.array([self.seen[key] for key in keys])


def data_proxy(n: int, seed: int = 0) -> DataProxy:
    """A diagonal Frechet data proxy of synthetic per-image features, as the digits and cifar20 studies build."""
    rng = np.random.default_rng(seed)
    owner = np.repeat(np.arange(n), IMAGES_PER_CONTRIBUTOR)
    features = rng.normal(rng.normal(0.0, 0.5, (n, FEATURES))[owner], 1.0)
    game = FrechetProxy.of(features, owner, n, np.zeros(FEATURES), np.ones(FEATURES))
    return DataProxy("frechet", features, owner, game)


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _twice(rows: np.ndarray, v: np.ndarray, ends: np.ndarray, proxy: DataProxy, game: Callable | None) -> float:
    """Seconds for two estimates; game None: the same proxy object (phi(q) once), else a new proxy object around
    `game` per estimate (phi(q) each time)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            q = proxy if game is None else DataProxy(proxy.property, proxy.quantities, proxy.owner, game)
            assert estimate(rows, v, v0=ends[0], v1=ends[1], proxy=q).method.endswith("+proxy")
    return time.perf_counter() - start


def measure(n: int) -> str:
    """One table row for n contributors."""
    proxy = data_proxy(n)
    masks = np.random.default_rng(1).random((2**15, n)) < 0.5
    cached = DictCached(proxy.game)
    game_s, cold_s, warm_s = (_seconds(lambda f=f: f(masks)) for f in (proxy, cached, cached))
    rows, corners = sample_leverage(n, 3 * n, 0).masks, np.array([np.zeros(n, bool), np.ones(n, bool)])
    market = make_game("market", n, seed=0)
    scale = np.std(proxy(rows)) / np.std(market(rows))  # v tracks q, so the estimator keeps the proxy
    v, ends = proxy(rows) + 0.5 * scale * market(rows), proxy(corners) + 0.5 * scale * market(corners)
    each, dict_s, once = (_twice(rows, v, ends, proxy, g) for g in (proxy.game, DictCached(proxy.game), None))
    return (f"| {n} | {game_s:.3f} s | {cold_s:.3f} s ({cold_s / game_s:.1f}x) | {warm_s:.3f} s "
            f"({warm_s / game_s:.1f}x) | {each:.1f} s | {dict_s:.1f} s | {once:.1f} s | {each / once:.1f}x "
            f"| {dict_s / once:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", default="48,258", help="comma-separated numbers of contributors")
    args = parser.parse_args()
    print("| n | batch of 2^15: game | dict cache, cold | warm | 2 estimates: phi(q) each time | each time, dict cache "
          "| once per proxy | each / once | dict / once |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.ns.split(",")):
        print(measure(n), flush=True)


if __name__ == "__main__":
    main()
