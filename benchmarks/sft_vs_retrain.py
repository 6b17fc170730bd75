"""How well does sparsified fine-tuning (sFT) stand in for retraining, and how much cheaper is it?

For a fixed, seeded set of coalitions of a use case, computes each property under retraining from
scratch (the ground truth), sFT of the pruned fine-tuned model, and plain FT of the full model,
then prints Pearson/Spearman correlations of sFT and FT with retraining, WITHIN coalitions of one
size (half the contributors, as in LDS test sets: size alone explains most variance across
sizes) and over mixed sizes, and the per-coalition time of each method, all from one run.

    python benchmarks/sft_vs_retrain.py --use-case digits --json sft_vs_retrain.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

# diffusers probes for a top-level package named "kernels": keep this folder (which holds
# benchmarks/kernels.py) off sys.path so that the probe does not import that script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

METHODS = ("retrain", "sft", "ft")
_STUDY = None


def _coalitions(n: int, per_size: int, mixed: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks (m, n), is_half (m,)): ``per_size`` coalitions of size n/2 and ``mixed`` of other sizes."""
    rng = np.random.default_rng(seed)
    masks, half = [], []
    for index in range(per_size + mixed):
        size = n // 2 if index < per_size else int(rng.integers(1, n))
        mask = np.zeros(n, bool)
        mask[rng.choice(n, size, replace=False)] = True
        masks.append(mask)
        half.append(index < per_size)
    return np.array(masks), np.array(half)


def _init(use_case: str, overrides: list[str]) -> None:
    global _STUDY
    import torch

    from shapflow.config import load_use_case
    from shapflow.utility.study import load_study

    torch.set_num_threads(1)
    _STUDY = load_study(load_use_case(use_case, overrides))


def _evaluate(job: tuple[int, str, np.ndarray]) -> tuple[int, str, dict[str, float], float]:
    index, method, mask = job
    start = time.perf_counter()
    result = _STUDY.evaluate(mask, method=method)
    return index, method, result.properties, time.perf_counter() - start


def _correlations(truth: np.ndarray, approx: np.ndarray) -> tuple[float, float]:
    return float(stats.pearsonr(truth, approx)[0]), float(stats.spearmanr(truth, approx)[0])


def _report(properties: dict, seconds: dict, half: np.ndarray, default: str) -> dict[str, float]:
    """Print the tables and return the JSON summary for the default property."""
    names = sorted(properties["retrain"][0])
    print(f"\n{'property':<18}{'method':<8}{'pearson(size n/2)':>19}{'spearman(size n/2)':>20}{'pearson(mixed)':>16}")
    summary: dict[str, float] = {}
    for name in names:
        truth = np.array([p[name] for p in properties["retrain"]])
        for method in ("sft", "ft"):
            approx = np.array([p[name] for p in properties[method]])
            pearson, spearman = _correlations(truth[half], approx[half])
            mixed, _ = _correlations(truth, approx)
            print(f"{name:<18}{method:<8}{pearson:>19.3f}{spearman:>20.3f}{mixed:>16.3f}")
            if name == default:
                summary.update({f"pearson_{method}": pearson, f"spearman_{method}": spearman,
                                f"pearson_{method}_mixed": mixed})
    mean = {m: float(np.mean(seconds[m])) for m in METHODS}
    print(f"\nseconds per coalition: retrain {mean['retrain']:.1f}, sFT {mean['sft']:.1f}, FT {mean['ft']:.1f}; "
          f"sFT is {mean['retrain'] / mean['sft']:.1f}x cheaper than retraining, "
          f"FT {mean['retrain'] / mean['ft']:.1f}x")
    summary.update({"speedup_sft": mean["retrain"] / mean["sft"], "speedup_ft": mean["retrain"] / mean["ft"],
                    **{f"seconds_{m}": mean[m] for m in METHODS}})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-case", default="digits")
    parser.add_argument("--per-size", type=int, default=12, help="coalitions of half the contributors")
    parser.add_argument("--mixed", type=int, default=6, help="extra coalitions of random sizes")
    parser.add_argument("--workers", type=int, default=2, help="one-thread worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", action="append", default=[], help="section.field=value")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()

    _init(args.use_case, args.override)  # trains/caches the full and pruned models once, up front
    n, default = _STUDY.data.n_contributors, _STUDY.cfg.property.name
    masks, half = _coalitions(n, args.per_size, args.mixed, args.seed)
    jobs = [(i, method, mask) for method in METHODS for i, mask in enumerate(masks)]
    properties = {m: [None] * len(masks) for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    with mp.get_context("spawn").Pool(args.workers, _init, (args.use_case, args.override)) as pool:
        for index, method, props, took in tqdm(pool.imap_unordered(_evaluate, jobs), total=len(jobs)):
            properties[method][index] = props
            seconds[method].append(took)
    print(f"use case {args.use_case}: {len(masks)} coalitions ({args.per_size} of size {n // 2}, "
          f"{args.mixed} mixed), {args.workers} one-thread workers; default property {default}")
    summary = {"use_case": args.use_case, "property": default, "n_coalitions": len(masks),
               **_report(properties, seconds, half, default)}
    if args.json:
        rows = [{"mask": m.astype(int).tolist(), **{k: properties[k][i] for k in METHODS}}
                for i, m in enumerate(masks)]
        with open(args.json, "w") as handle:
            json.dump({**summary, "coalitions": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
