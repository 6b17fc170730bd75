"""Rows of an earlier commit's default estimator on the property-shaped games of benchmarks/estimators.py.

The issue's bar compares today's default with the old one (no proxy) at equal or larger budgets. The old code is
extracted as a package of its own, so both run side by side on the same games, designs, seeds and noise:

    mkdir -p /tmp/old && git archive c8c7038 shapflow/shapley | tar -x -C /tmp/old
    mv /tmp/old/shapflow/shapley /tmp/old/oldshapley
    python -P benchmarks/baseline_rows.py --package /tmp/old --ns 16,48 --cache /tmp/shapflow-bench --json old.json

(--cache: the reference values benchmarks/estimators.py --properties wrote.) The rows are labelled "old-default"
and join estimators.py's tables: `estimators.py --tables-only rows.json --join-rows old.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from shapflow.shapley.property_games import PROPERTY_GAMES
from shapflow.shapley.samplers import sample_leverage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from estimators import _coverage, _noisy, _rel_error, property_truth  # the sibling benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="folder holding the old shapley package as oldshapley/")
    parser.add_argument("--ns", default="16,48")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", default="/tmp/shapflow-bench")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.package)
    old = importlib.import_module("oldshapley.adjusted").estimate_surrogate_shapley
    rows = []
    for n in (int(x) for x in args.ns.split(",")):
        for shape in PROPERTY_GAMES:
            truth = property_truth(shape, n, Path(args.cache))[0]
            for noise in (0.1, 0.25):
                for budget in (k * n for k in (2, 3, 5, 10)):
                    errors, coverage = [], []
                    for seed in range(args.seeds):  # as estimators.run_property_cell: same design, noise stream
                        game = _noisy(shape, n, noise, truth, seed)
                        masks = sample_leverage(n, budget - 2, seed).masks
                        v0, v1 = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            result = old(masks, game(masks), v0=float(v0), v1=float(v1), seed=seed)
                        errors.append(_rel_error(result.values, truth))
                        coverage.append(_coverage(result.values, result.std, truth))
                    rows.append({"method": "old-default", "n": n, "budget": budget, "game": shape, "noise": noise,
                                 "target": "shapley", "rel_error": float(np.mean(errors)),
                                 "coverage": float(np.mean(coverage))})
            print(f"# {shape} n={n} done", flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
