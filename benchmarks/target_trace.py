"""Trace a precision-targeted run from its logged utilities: batch by batch, the design's coalitions, the
target's measure, the mean std relative to the values' range and the LDS against the use case's retraining
fixture (held-out half-size coalitions no estimate used). Replays the design exactly as the driver chose it, so
it also shows where a run still in progress stands. Trains nothing::

    MLFLOW_TRACKING_URI=sqlite:////tmp/market/mlruns.db python benchmarks/target_trace.py \
        --use-case digits --experiment digits-tradeoff --target pairs-separated=0.44 --workers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/kernels.py would shadow the `kernels` package transformers probes for: keep this folder off sys.path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from shapflow.attribution import parse_request  # noqa: E402
from shapflow.attribution.design import TargetDesign  # noqa: E402
from shapflow.config import stage_key  # noqa: E402
from shapflow.evaluation.fixture import load_fixture  # noqa: E402
from shapflow.shapley.lds import lds  # noqa: E402
from shapflow.shapley.masks import bits, heldout_masks  # noqa: E402
from shapflow.tracking import open_tracker, studies, utilities_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--use-case", default="digits")
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--target", required=True)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    request = parse_request(args.use_case, budget=args.budget, workers=args.workers, target=args.target,
                            experiment=args.experiment)
    tracker = open_tracker(request.experiment, create=False)
    key = stage_key(request.cfg, "coalition")
    study = next(sid for sid, run in studies(tracker) if run.data.params.get("study.config_hash") == key)
    table = utilities_table(tracker, study)
    logged = set(table["mask"])
    fixture = load_fixture(request.cfg, 0.5)
    held = heldout_masks(request.n_contributors, 0.5, len(fixture.rows)) if fixture else None
    design = TargetDesign(request.n_contributors, request.budget, request.seed, request.method, request.target,
                          request.workers, request.stack)
    print("| coalitions | logged | " + f"{request.target.measure} | mean std / range | LDS vs retraining |")
    print("|---|---|---|---|---|")
    while True:
        done = sum(bits(m) in logged for m in design.masks())
        result = design.estimate(table)
        if result is None or done < len(design.chosen):
            print(f"| {len(design.chosen)} | {done} | (batch not finished) | | |")
            break
        status = design.status(table)
        spread = float(np.ptp(result.values)) or 1.0
        score = lds(result.values, held, fixture.truth(held, (0,)), n_boot=0).mean if fixture else float("nan")
        print(f"| {status.coalitions} | {done} | {status.value:.3f} | {np.mean(result.std) / spread:.3f} "
              f"| {score:.1f} |")
        if status.met or not design.extend(table):
            break
    print(f"study {study[:12]} of experiment {request.experiment}", file=sys.stderr)


if __name__ == "__main__":
    main()
