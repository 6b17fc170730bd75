"""Benchmark: what limits the values of a small-budget run with the data proxy (issue 27, item 3), on a logged study.

Reads the study's utilities and its data proxy (the q beside v in a run's proxy.csv), takes the first m planned
coalitions (the prefix a `--budget` run uses), re-estimates them with the default and with one knob changed at a
time (no proxy, no safeguard, b not shrunk, 10 folds, the trees surrogate, the safeguard's margin at 0), and prints
per variant: mean std, pairs with disjoint 95% intervals, and against the values of larger runs the mean |difference|
and the share of 95% intervals that contain them. The held-out self-check coalitions are not read: no knob is
judged on them.

    MLFLOW_TRACKING_URI=sqlite:////tmp/cvi/mlruns.db python -P benchmarks/proxy_variants.py \\
        --proxy-run RUN48 --reference RUN160P RUN160 --prefixes 48,64,96
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from shapflow.data import load_data
from shapflow.shapley import adjusted, control
from shapflow.shapley.adjusted import estimate_indices
from shapflow.tracking import open_tracker, studies, study_config, utilities_table
from shapflow.utility import load_proxy

VARIANTS = {  # label -> (estimator options, module constants set for it)
    "default": ({}, {}),
    "no proxy": ({"proxy": None}, {}),
    "no safeguard": ({"safeguard": False}, {}),
    "b not shrunk": ({}, {(control, "SHRINK_T"): 0.0}),
    "10 folds": ({"folds": 10}, {}),
    "trees surrogate": ({"surrogate": "trees"}, {}),
    "safeguard margin 0": ({}, {(adjusted, "SAFEGUARD_Z"): 0.0}),
}


def separated(values: np.ndarray, std: np.ndarray) -> float:
    """Share of contributor pairs whose 95% intervals are disjoint."""
    low, high = values - 1.96 * std, values + 1.96 * std
    pairs = list(combinations(range(len(values)), 2))
    return float(np.mean([low[i] > high[j] or low[j] > high[i] for i, j in pairs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--proxy-run", required=True, help="a run id whose artifacts hold proxy.csv (q beside v)")
    parser.add_argument("--reference", nargs="+", required=True, help="run ids of larger runs (their values.csv)")
    parser.add_argument("--prefixes", default="48,64,96")
    args = parser.parse_args()
    tracker = open_tracker(args.experiment, create=False)
    study = next(sid for sid, _ in studies(tracker))
    cfg = study_config(tracker, study)
    pixels = load_data(cfg.data, cfg.assets)
    proxy, names = load_proxy(cfg, pixels=pixels), list(pixels.names)
    table = utilities_table(tracker, study)
    v0, v1 = table[table["stage"] == "endpoint"]["utility"].to_numpy(float)
    into = Path(tempfile.mkdtemp(prefix="proxy-variants-"))
    rows = pd.read_csv(tracker.download(args.proxy_run, "proxy.csv", into / "q"), dtype={"mask": str})
    plan = rows[(rows["role"] == "plan") & rows["mask"].str.contains("0") & rows["mask"].str.contains("1")]
    plan = plan.sort_values("coalition_id")
    masks, v = np.array([[c == "1" for c in m] for m in plan["mask"]]), plan["utility"].to_numpy(float)
    references = {run[:8]: pd.read_csv(tracker.download(run, "values.csv", into / run)).set_index("contributor")
                  .loc[names, "value"].to_numpy() for run in args.reference}
    print("| m | variant | method | mean std | pairs separated | " +
          " | ".join(f"vs {r}: mean abs diff, coverage" for r in references) + " |")
    print("|---|---|---|---|---|" + "---|" * len(references))
    for m in (int(x) for x in args.prefixes.split(",")):
        for label, (options, constants) in VARIANTS.items():
            saved = {key: getattr(*key) for key in constants}
            for (module, name), value in constants.items():
                setattr(module, name, value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = estimate_indices(masks[:m], v[:m], v0=v0, v1=v1, **{"proxy": proxy, **options})["shapley"]
            for (module, name), value in saved.items():
                setattr(module, name, value)
            against = [f"{np.mean(np.abs(r.values - t)):.3f}, {np.mean(np.abs(r.values - t) <= 1.96 * r.std):.2f}"
                       for t in references.values()]
            print(f"| {m} | {label} | {r.method} | {r.std.mean():.4f} | {separated(r.values, r.std):.2f} | "
                  + " | ".join(against) + " |", flush=True)


if __name__ == "__main__":
    main()
