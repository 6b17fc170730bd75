"""At equal compute, which mix of sFT steps and coalitions gives the most precise values?

For each number of sFT steps s (default 25, 50, 100, 200) the script evaluates the default design's coalitions of
one study per s (the stages are shared: only the sFT recipe differs), as many as the compute of
``--reference-budget`` coalitions at ``--reference-steps`` buys at the cost per coalition measured at s (a pilot of
the first ``--pilot`` coalitions of each plan first: the plans are prefix-stable, so the pilot is reused). For each
s and each prefix of its plan (every ``--every`` coalitions) it records the default estimator's precision (pairs
of contributors separated by their 95% intervals, mean std relative to the values' range) and its LDS against
the use case's packaged retraining fixture (held-out half-size coalitions no estimate used). The result is the
versioned trade-off file the planner reads (``shapflow plan``)::

    OMP_NUM_THREADS=1 MLFLOW_TRACKING_URI=sqlite:////tmp/market/mlruns.db python benchmarks/sft_tradeoff.py \
        --use-case digits --out shapflow/attribution/tradeoff/digits.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/kernels.py would shadow the `kernels` package transformers probes for (peft imports it): keep this
# folder off sys.path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402

import numpy as np  # noqa: E402

from shapflow.attribution import parse_request, run_attribute  # noqa: E402
from shapflow.attribution.plan import estimate_from_table, plan  # noqa: E402
from shapflow.attribution.planner import TRADEOFF_FORMAT, coalition_seconds  # noqa: E402
from shapflow.attribution.report import precision  # noqa: E402
from shapflow.config import ConfigError  # noqa: E402
from shapflow.evaluation.fixture import load_fixture  # noqa: E402
from shapflow.shapley import DEFAULT_METHOD  # noqa: E402
from shapflow.shapley.lds import lds  # noqa: E402
from shapflow.shapley.masks import heldout_masks  # noqa: E402
from shapflow.tracking import open_tracker, utilities_table  # noqa: E402


def study_of(request, uri: str | None, coalitions: int) -> tuple[str, object]:
    """Evaluate the first ``coalitions`` planned coalitions of ``request`` (get-or-run); (study id, tracker)."""
    result = run_attribute(request, uri=uri, progress=False, batch=slice(0, coalitions))
    return result.study_id, open_tracker(request.experiment, uri)


def measure(request, uri: str | None, coalitions: int, every: int, fixture) -> dict:
    """Precision and LDS of the default estimator on each prefix of the study's first ``coalitions``."""
    study_id, tracker = study_of(request, uri, coalitions)
    table = utilities_table(tracker, study_id)
    masks = plan(request).masks
    n = request.n_contributors
    held = heldout_masks(n, 0.5, len(fixture.rows)) if fixture else None
    truth = fixture.truth(held, (0,)) if fixture else None
    curve = []
    for m in sorted({*range(max(every, n + n % 2), coalitions + 1, every), coalitions}):
        result = estimate_from_table(table, DEFAULT_METHOD, masks[:m])
        quality = precision(result)
        spread = float(np.ptp(result.values)) or 1.0
        score = lds(result.values, held, truth, n_boot=0).mean if fixture else float("nan")
        curve.append({"coalitions": m, "pairs_separated": quality["pairs_separated"],
                      "mean_std_rel": quality["mean_std"] / spread, "lds": score})
    return {"sft_steps": request.cfg.sft.steps, "seconds_per_coalition": coalition_seconds(table),
            "coalitions": coalitions, **{k: v for k, v in curve[-1].items() if k != "coalitions"}, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--use-case", default="digits")
    parser.add_argument("--overrides", default="", help="extra overrides for every study (e.g. the fast settings)")
    parser.add_argument("--steps", default="25,50,100,200")
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--reference-budget", type=int, default=48)
    parser.add_argument("--pilot", type=int, default=4)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--uri", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    def request(s: int, budget: int | None = None):
        return parse_request(args.use_case, overrides=f"{args.overrides} sft.steps={s}", budget=budget,
                             workers=args.workers, check=0, experiment=f"{args.use_case}-tradeoff")

    started = time.time()
    cost = {}
    for s in sorted({*steps, args.reference_steps}):
        study_id, tracker = study_of(request(s), args.uri, args.pilot)
        cost[s] = coalition_seconds(utilities_table(tracker, study_id))
        print(f"pilot: {s} sFT steps, {cost[s]:.2f} s per coalition", file=sys.stderr)
    b, a = np.polyfit(list(cost), list(cost.values()), 1)  # c(s) = a + b s: smooths the loaded machine's noise
    fitted = {s: max(a + b * s, 1e-3) for s in cost}
    compute = args.reference_budget * fitted[args.reference_steps]
    try:
        fixture = load_fixture(request(args.reference_steps).cfg, 0.5)
    except ConfigError as err:
        print(f"no LDS: {err}", file=sys.stderr)
        fixture = None
    rows = []
    for s in steps:
        n = request(s).n_contributors
        m = max(n + n % 2, round(compute / fitted[s] / 2) * 2)
        rows.append(measure(request(s, budget=m), args.uri, m, args.every, fixture))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}), file=sys.stderr)
    payload = {"format": TRADEOFF_FORMAT, "use_case": args.use_case, "n": request(steps[0]).n_contributors,
               "created": date.today().isoformat(), "overrides": args.overrides,
               "command": "python benchmarks/sft_tradeoff.py " + " ".join(sys.argv[1:]),
               "reference": {"sft_steps": args.reference_steps, "coalitions": args.reference_budget,
                             "compute_seconds": compute},
               "cost_model": {"seconds_fixed": a, "seconds_per_step": b},
               "heldout": {"fixture": str(fixture.path.name) if fixture else None,
                           "coalitions": len(fixture.rows) if fixture else 0},
               "wall_seconds": time.time() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
