"""Benchmark: relative L2 error of every Shapley estimator against exact values, at equal budgets.

For each n, test game (with and without utility noise), budget (multiples of n coalitions, v0 and v1 included)
and seed, every shapflow method and every shapiq approximator (if shapiq is installed) spends the same budget
on the same game; the error is |phi_hat - phi| / |phi| against the closed-form values (Banzhaf values for
banzhaf-msr; leave-one-out and datamodels are measured against Shapley values, as the baselines they are).

    python benchmarks/estimators.py            # full grid, ~10 min on 2 cores
    python benchmarks/estimators.py --quick    # n in {10, 50}, fewer budgets and seeds
    python benchmarks/estimators.py --json rows.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from shapflow.shapley import DEFAULT_METHOD, approximate, make_game

__all__ = ["main", "run_grid"]

SHAPFLOW_METHODS = [
    "leverage",
    "kernelshap-paired",
    "kernelshap-paper",
    "permutation",
    "banzhaf-msr",
    "loo",
    "datamodels",
]
GAMES = ["pairwise", "airport", "voting", "glove"]
SVARM_MAX_N = 50  # shapiq's SVARM takes minutes per run at n = 258


def shapiq_approximators(n: int) -> dict[str, Callable[[int], object]]:
    """name -> factory(seed) of shapiq's Shapley approximators; empty when shapiq is not installed."""
    try:
        from shapiq.approximator import (
            SVARM,
            KernelSHAP,
            OwenSamplingSV,
            PermutationSamplingSV,
            StratifiedSamplingSV,
            UnbiasedKernelSHAP,
            kADDSHAP,
        )
    except ImportError:
        return {}
    found = {
        "shapiq:KernelSHAP": lambda s: KernelSHAP(n, random_state=s),
        "shapiq:KernelSHAP-paired": lambda s: KernelSHAP(n, pairing_trick=True, random_state=s),
        "shapiq:UnbiasedKernelSHAP": lambda s: UnbiasedKernelSHAP(n, random_state=s),
        "shapiq:PermutationSamplingSV": lambda s: PermutationSamplingSV(n, random_state=s),
        "shapiq:StratifiedSamplingSV": lambda s: StratifiedSamplingSV(n, random_state=s),
        "shapiq:OwenSamplingSV": lambda s: OwenSamplingSV(n, random_state=s),
    }
    if n <= SVARM_MAX_N:
        found["shapiq:SVARM"] = lambda s: SVARM(n, random_state=s)
        found["shapiq:kADDSHAP"] = lambda s: kADDSHAP(n, max_order=2, random_state=s)
    return found


def _rel_error(values: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(values - truth) / np.linalg.norm(truth))


def _shapiq_values(factory: Callable[[int], object], game: Callable, n: int, budget: int, seed: int) -> np.ndarray:
    """Run one shapiq approximator on the game with the given budget; its values as (n,)."""
    approximator = factory(seed)
    result = approximator.approximate(budget, lambda masks: game(np.atleast_2d(np.asarray(masks, dtype=bool))))
    return np.array([result[(i,)] for i in range(n)])


def run_cell(n: int, game_name: str, noise: float, budget: int, seeds: int) -> list[dict]:
    """All methods on one (n, game, noise, budget): one row per method with the error averaged over seeds."""
    reference = make_game(game_name, n, seed=0)
    shapley = reference.shapley_values()
    try:
        banzhaf = reference.banzhaf_values()
    except NotImplementedError:
        banzhaf = None
    errors: dict[str, list[float]] = defaultdict(list)
    for seed in range(seeds):
        for method in SHAPFLOW_METHODS:
            truth = banzhaf if method == "banzhaf-msr" else shapley
            if truth is None:
                continue
            game = make_game(game_name, n, seed=0, noise=noise)
            result = approximate(game, n, budget, method, seed=seed)
            assert game.n_evaluations <= budget
            errors[method].append(_rel_error(result.values, truth))
        for name, factory in shapiq_approximators(n).items():
            game = make_game(game_name, n, seed=0, noise=noise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                errors[name].append(_rel_error(_shapiq_values(factory, game, n, budget, seed), shapley))
    return [
        {
            "method": m,
            "n": n,
            "budget": budget,
            "game": game_name,
            "noise": noise,
            "rel_error": float(np.mean(e)),
            "target": "banzhaf" if m == "banzhaf-msr" else "shapley",
        }
        for m, e in errors.items()
    ]


def run_grid(ns: list[int], multipliers: list[int], noises: list[float], seeds: int) -> list[dict]:
    rows = []
    for n in ns:
        for game_name in GAMES:
            for noise in noises:
                for k in multipliers:
                    rows += run_cell(n, game_name, noise, k * n, seeds)
        print(f"# n={n} done at {time.strftime('%X')}", flush=True)
    return rows


def print_tables(rows: list[dict]) -> None:
    """Markdown: mean relative error over games and noise levels, one row per (n, budget), one column per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        cells[(r["n"], r["budget"], r["method"])].append(r["rel_error"])
    keys = sorted({(r["n"], r["budget"]) for r in rows})
    print("| n | budget | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for n, budget in keys:
        means = {m: np.mean(cells[(n, budget, m)]) if cells[(n, budget, m)] else np.nan for m in methods}
        best = min((v for m, v in means.items() if m not in ("banzhaf-msr",)), default=np.nan)
        shown = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in means.values()]
        print(f"| {n} | {budget} ({budget // n}n) | " + " | ".join(shown) + " |")
    _print_wins(rows)


def _print_wins(rows: list[dict]) -> None:
    """How often the default method is the most accurate Shapley estimator (within 1%), per budget multiple."""
    by_cell: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["target"] == "shapley":
            by_cell[(r["n"], r["game"], r["noise"], r["budget"])][r["method"]] = r["rel_error"]
    wins: dict[int, list[bool]] = defaultdict(list)
    for (n, *_, budget), errs in by_cell.items():
        wins[budget // n].append(errs[DEFAULT_METHOD] <= min(errs.values()) * 1.01 + 1e-9)  # ties count as wins
    print("\n" + ", ".join(f"{k}n: default best in {sum(v)}/{len(v)} cells" for k, v in sorted(wins.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid: n in {10, 50}, budgets 2n, 5n, 10n")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions per cell (default 3, quick 2)")
    parser.add_argument("--json", type=str, default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    if not shapiq_approximators(10):
        print("# shapiq is not installed: its rows are skipped (pip install shapiq)")
    ns, multipliers = ([10, 50], [2, 5, 10]) if args.quick else ([10, 20, 50, 258], [2, 5, 10, 20])
    seeds = args.seeds or (2 if args.quick else 3)
    start = time.time()
    rows = run_grid(ns, multipliers, [0.0, 0.5], seeds)
    print_tables(rows)
    print(f"\n# {len(rows)} rows, {seeds} seeds per cell, {time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
