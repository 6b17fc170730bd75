"""Benchmark: how well the Frechet data proxies track a logged study's utilities, and what they cost.

The data proxy q(S) is the property of coalition S's own real images (shapflow.utility.data_proxy). For a Frechet
property it can use the full feature covariances or their diagonal only; this reads a logged study (the newest
attribute run of the store at MLFLOW_TRACKING_URI, or --experiment/--study), rebuilds its data proxy from its
config, and prints for both: Pearson and Spearman correlation with v(S) over the planned and the held-out
self-check coalitions, and microseconds per coalition on a batch of random masks (with the ratio).

    MLFLOW_TRACKING_URI=sqlite:///mlruns.db python -P benchmarks/proxy.py --experiment digits

(-P: benchmarks/kernels.py must not shadow the ``kernels`` package transformers imports.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from shapflow.attribution import masks_of
from shapflow.properties.proxy import FrechetProxy
from shapflow.tracking import open_tracker, studies, study_config, utilities_table
from shapflow.utility import load_proxy, load_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--study", default=None, help="study id prefix [default: the newest attribute run's]")
    parser.add_argument("--probe", type=int, default=4096, help="random masks timed per proxy")
    args = parser.parse_args()
    tracker = open_tracker(args.experiment, create=False)
    study = next(sid for sid, _ in studies(tracker) if args.study is None or sid.startswith(args.study))
    table = utilities_table(tracker, study)
    rows = table[table["stage"] == "coalition"]
    masks, v = masks_of(rows), rows["utility"].to_numpy(float)
    cfg = study_config(tracker, study)
    began = time.perf_counter()
    scorer = load_scorer(cfg)
    proxy = load_proxy(cfg, scorer)
    print(f"study {study[:12]} ({cfg.name}, {cfg.property.name}): {len(rows)} coalitions; per-image quantities "
          f"{proxy.quantities.shape} in {time.perf_counter() - began:.1f} s (scorer included)")
    mu, sigma = scorer._reference  # the digits scorer's reference Gaussian (classifier features of clean digits)
    probe = np.random.default_rng(0).random((args.probe, masks.shape[1])) < 0.5
    costs = {}
    for label, reference in (("full", sigma), ("diagonal", np.diag(sigma))):
        game = FrechetProxy.of(proxy.quantities, proxy.owner, masks.shape[1], mu, reference,
                               neg_log=cfg.property.name == "neg_log_fd")
        q = game(masks)
        began = time.perf_counter()
        game(probe)
        costs[label] = (time.perf_counter() - began) / len(probe) * 1e6
        for role in ("plan", "check"):
            keep = (rows["role"] == role).to_numpy()
            if keep.sum() > 2:
                print(f"{label:9s} {role:5s} m={keep.sum():3d}  pearson {np.corrcoef(q[keep], v[keep])[0, 1]:.3f}  "
                      f"spearman {spearmanr(q[keep], v[keep]).statistic:.3f}")
        print(f"{label:9s} cost {costs[label]:.1f} us per coalition")
    print(f"full / diagonal cost: {costs['full'] / costs['diagonal']:.0f}x")


if __name__ == "__main__":
    main()
