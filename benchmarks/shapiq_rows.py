"""shapiq 1.8 rows for benchmarks/estimators.py --properties: run by a separate Python >= 3.12 interpreter.

shapiq >= 1.5 needs Python >= 3.12 and shapflow stays on 3.11, so estimators.py exports each property game to an
.npz (shape, per-contributor quantities, noise std, reference values, budgets, seeds) and runs this script with the
3.12 interpreter of a venv holding shapiq (and xgboost, its default proxy model); the game is rebuilt from
shapflow/shapley/property_games.py (pure numpy) and every approximator spends the same budget on it, with the
same seeded noise as our rows. Rows (JSON) go to --out; estimators.py joins them into its tables.

    /tmp/cv/shapiq-venv/bin/python benchmarks/shapiq_rows.py --out rows.json game1.npz game2.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from shapiq import approximator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # shapflow.shapley is pure numpy/scipy/sklearn

from shapflow.shapley.property_games import SHAPES  # after the path above

APPROXIMATORS = ("RegressionMSR", "ProxySHAP", "OddSHAP", "LeverageSHAP", "KernelSHAP")


def _approximator(name: str, n: int, seed: int) -> object:
    """A shapiq 1.8 Shapley approximator with its defaults (paired sampling where it has the option)."""
    if name == "RegressionMSR":
        return approximator.RegressionMSR(n, index="SV", random_state=seed)
    if name == "ProxySHAP":
        return approximator.ProxySHAP(n, max_order=1, index="SV", random_state=seed)
    return getattr(approximator, name)(n, random_state=seed)


def _game(data: np.lib.npyio.NpzFile, seed: int):
    """The exported property game as a shapiq-style callable (coalitions (m, n) -> (m,)), with seeded noise."""
    params = {key[6:]: data[key] for key in data.files if key.startswith("param_")}
    shape, noise_std = str(data["shape"]), float(data["noise_std"])
    rng = np.random.default_rng(seed + 1)

    def game(coalitions: np.ndarray) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(coalitions, dtype=bool))
        return SHAPES[shape](masks.astype(float), params) + noise_std * rng.standard_normal(len(masks))

    return game


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("games", nargs="+", help=".npz files exported by estimators.py --properties")
    parser.add_argument("--out", required=True, help="JSON file for the rows")
    args = parser.parse_args()
    rows = []
    for path in args.games:
        data = np.load(path)
        n, truth = int(data["n"]), data["truth"]
        for budget in data["budgets"].tolist():
            for name in APPROXIMATORS:
                errors, start = [], time.time()
                for seed in range(int(data["seeds"])):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        result = _approximator(name, n, seed).approximate(budget, _game(data, seed))
                    values = np.array([result[(i,)] for i in range(n)])
                    errors.append(float(np.linalg.norm(values - truth) / np.linalg.norm(truth)))
                rows.append({"method": f"shapiq:{name}", "n": n, "budget": budget, "game": str(data["shape"]),
                             "noise": float(data["noise"]), "rel_error": float(np.mean(errors)),
                             "coverage": float("nan"), "seconds": (time.time() - start) / len(errors)})
                print(f"# {path} {name} {budget}: {rows[-1]['rel_error']:.3f}", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
