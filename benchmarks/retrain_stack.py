"""Stacked (vmapped) ground-truth retraining against one at a time: speed ratio and utility difference.

Retrains the first ``--jobs`` held-out coalitions of a use case (seed 0, the fixture's design) twice in one
process on one device: one model at a time (``stack=1``), then all of them as one vmapped stack
(``stack=--jobs``), each repeated ``--repeats`` times in alternation (1, K, 1, K, ...) so that load from other
processes falls on both sides alike. Prints the seconds per retraining of each, their ratio, and the largest
difference of the retrained utilities at the same seeds (float rounding only: same data, same draws).

    OMP_NUM_THREADS=1 python benchmarks/retrain_stack.py --jobs 4 --steps 200            # CPU, one thread
    python benchmarks/retrain_stack.py --device cuda --jobs 64 --steps 2000              # a GPU box
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# diffusers probes for a top-level package named "kernels": keep this folder (which holds
# benchmarks/kernels.py) off sys.path so that the probe does not import that script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def measure(use_case: str, overrides: list[str], jobs: int, device: str, repeats: int) -> dict[str, float]:
    """{"one_s", "stacked_s": median seconds per retraining (train + sample + score), "ratio", "max_diff"}."""
    import torch

    from shapflow.config import load_use_case
    from shapflow.data import load_data
    from shapflow.evaluation.groundtruth import run_jobs
    from shapflow.evaluation.plans import heldout_jobs
    from shapflow.utility import load_scorer

    if device == "cpu":
        torch.set_num_threads(1)
    cfg = load_use_case(use_case, overrides)
    data = load_data(cfg.data, cfg.assets)
    scorer = load_scorer(cfg, data)
    _, planned = heldout_jobs(cfg, data.n_contributors, 0.5, jobs, (cfg.train.seed,), "benchmark")
    seconds: dict[int, list[float]] = {1: [], jobs: []}
    utilities: dict[int, dict[str, float]] = {}
    for _ in range(repeats):
        for stack in (1, jobs):
            began = time.perf_counter()
            outcomes = list(run_jobs(cfg, data, scorer, planned, device=device, stack=stack, keep_images=0))
            seconds[stack].append((time.perf_counter() - began) / jobs)
            utilities[stack] = {o.job.key: o.utility for o in outcomes}
            print(f"stack={stack}: {seconds[stack][-1]:.2f} s per retraining", file=sys.stderr, flush=True)
    one, stacked = (float(np.median(seconds[k])) for k in (1, jobs))
    diff = max(abs(utilities[1][key] - utilities[jobs][key]) for key in utilities[1])
    return {"one_s": one, "stacked_s": stacked, "ratio": one / stacked, "max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-case", default="digits")
    parser.add_argument("--jobs", type=int, default=4, help="retrainings, and the stack size [4]")
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the use case's) [0]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help='config overrides, e.g. "sampling.num_images=128"')
    args = parser.parse_args()
    overrides = list(args.overrides)
    if args.steps:
        overrides += [f"train.steps={args.steps}", f"train.warmup_steps={min(100, args.steps // 10)}"]
    row = measure(args.use_case, overrides, args.jobs, args.device, args.repeats)
    print(f"| use case | device | retrainings | one at a time (s each) | stacked x{args.jobs} (s each) | speed-up "
          "| max utility difference |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.use_case} {' '.join(overrides)} | {args.device} | {args.jobs} | {row['one_s']:.2f} | "
          f"{row['stacked_s']:.2f} | {row['ratio']:.2f}x | {row['max_diff']:.2e} |")


if __name__ == "__main__":
    main()
