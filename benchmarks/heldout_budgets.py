"""Held-out LDS and separation of a logged study's values on prefixes of its plan, with and without the data proxy.

Reads a finished attribute run's coalitions from a store (trains nothing), estimates the values on the first m
coalitions of the plan for each m, and scores them on the run's held-out half-size check coalitions (LDS: 100 x
Spearman of the summed values against v) and by the share of contributor pairs their 95% intervals separate.

    mkdir -p /tmp/old && git archive c8c7038 shapflow/shapley | tar -x -C /tmp/old   # an earlier default estimator
    mv /tmp/old/shapflow/shapley /tmp/old/oldshapley
    python -P benchmarks/heldout_budgets.py --store sqlite:////tmp/d48.db --experiment d48 --use-case digits-48 \
        --budget 480 --prefixes 144,240,480 --old-package /tmp/old
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

import numpy as np

from shapflow.attribution import design_rows, masks_of, parse_request, plan
from shapflow.shapley import estimate
from shapflow.shapley.lds import lds
from shapflow.shapley.masks import heldout_masks
from shapflow.shapley.targets import pairs_separated
from shapflow.tracking import STAGE_TAG, open_tracker, utilities_table


def export(store: str, experiment: str, use_case: str, budget: int, path: str) -> None:
    """The plan's rows (plan order), the check rows, the endpoints and the proxy's game of one finished run."""
    request = parse_request(use_case, budget=budget, workers=1, experiment=experiment, check=0)
    tracker = open_tracker(experiment, store)
    runs = [r for r in tracker.search(f"tags.`{STAGE_TAG}` = 'attribute'")
            if r.info.status == "FINISHED" and r.data.params.get("study.budget") == str(budget)]
    table = utilities_table(tracker, runs[0].data.tags["shapflow.study"])
    rows = design_rows(table, plan(request).masks)
    masks = masks_of(rows)
    check = design_rows(table, heldout_masks(masks.shape[1], 0.5, int(runs[0].data.metrics["check.coalitions"])))
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")["utility"]
    np.savez(path, masks=masks, v=rows["utility"].to_numpy(float), check_masks=masks_of(check),
             check_v=check["utility"].to_numpy(float), v0=float(ends["v0"]), v1=float(ends["v1"]))


def score(data: np.lib.npyio.NpzFile, prefixes: list[int], proxy: object | None, estimator: Callable = estimate,
          label: str = "") -> None:
    """One line per prefix: the estimator's name, held-out LDS, pairs separated, mean std / range."""
    for m in prefixes:
        result = estimator(data["masks"][:m], data["v"][:m], "surrogate-shapley", v0=float(data["v0"]),
                          v1=float(data["v1"]), **({"proxy": proxy} if proxy is not None else {}))
        held_out = lds(result.values, data["check_masks"], data["check_v"][None]).mean
        pairs = pairs_separated(result.values, result.std)
        spread = result.values.max() - result.values.min()
        print(f"m={m:5d} {label + result.method:45s} LDS {held_out:5.1f}  pairs {pairs:.3f}  mean std/range "
              f"{result.std.mean() / spread:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--use-case", required=True)
    parser.add_argument("--budget", type=int, required=True, help="the finished run's budget")
    parser.add_argument("--prefixes", required=True, help="comma-separated coalition counts")
    parser.add_argument("--export", default="heldout.npz", help="where the rows are written")
    parser.add_argument("--old-package", help="a folder holding an earlier shapflow.shapley as `oldshapley`")
    args = parser.parse_args()
    prefixes = [int(p) for p in args.prefixes.split(",")]
    export(args.store, args.experiment, args.use_case, args.budget, args.export)
    data = np.load(args.export)
    proxy = parse_request(args.use_case, budget=args.budget, workers=1, experiment=args.experiment, check=0).proxy
    score(data, prefixes, proxy)
    score(data, prefixes, None)
    if args.old_package:
        sys.path.insert(0, args.old_package)
        score(data, prefixes, None, importlib.import_module("oldshapley").estimate, "old ")


if __name__ == "__main__":
    main()
