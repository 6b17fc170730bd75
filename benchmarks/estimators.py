"""Benchmark: relative L2 error and 95% coverage of every Shapley estimator against exact values, at equal budgets.

For each n, game (with and without utility noise), budget (multiples of n evaluations, v0 and v1 included) and
seed, every shapflow method (and variant) and every shapiq approximator (if shapiq is installed) spends the same
budget on the same game. Error: |phi_hat - phi| / |phi| against the exact values (Banzhaf values for the Banzhaf
methods; leave-one-out and datamodels are measured against Shapley values, as the baselines they are). Coverage:
the share of contributors whose exact value lies in value +- 1.96 std (nominal 95%; methods without std: blank).

Games: the market-shaped games of shapley/games.py (MARKET_GAMES: value saturating in the amount of useful data,
harmful contributors, redundant copies, two saturation speeds; exact values by 1-D Gauss-Legendre quadrature,
exact for these polynomials at any n) and the classic games (pairwise, airport, voting, glove; closed forms).

    python benchmarks/estimators.py            # n in {16, 48, 258}, budgets 2n, 5n, 10n, 3 seeds
    python benchmarks/estimators.py --quick    # n in {16, 48}, 2 seeds
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
from shapflow.shapley.games import MARKET_GAMES

__all__ = ["main", "run_grid"]

# label -> (method, estimator options, sampler options): the registered methods and the variants worth measuring
VARIANTS: dict[str, tuple[str, dict, dict]] = {
    "leverage": ("leverage", {}, {}),
    "surrogate-shapley": ("surrogate-shapley", {}, {}),
    "surrogate-shapley+ends": ("surrogate-shapley", {}, {"ends_first": True}),
    "surrogate-shapley[trees]": ("surrogate-shapley", {"surrogate": "trees"}, {}),
    "kernelshap-paired": ("kernelshap-paired", {}, {}),
    "kernelshap-paper": ("kernelshap-paper", {}, {}),
    "permutation": ("permutation", {}, {}),
    "surrogate-banzhaf": ("surrogate-banzhaf", {}, {}),
    "banzhaf-msr": ("banzhaf-msr", {}, {}),
    "loo": ("loo", {}, {}),
    "datamodels": ("datamodels", {}, {}),
}
BANZHAF = ("surrogate-banzhaf", "banzhaf-msr")
CLASSIC_GAMES = ("pairwise", "airport", "voting", "glove")
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


def _coverage(values: np.ndarray, std: np.ndarray, truth: np.ndarray) -> float:
    """Share of contributors with |value - truth| <= 1.96 std; NaN when the method gives no finite std."""
    if not np.isfinite(std).all():
        return float("nan")
    return float(np.mean(np.abs(values - truth) <= 1.96 * std + 1e-12))


def _shapiq_values(factory: Callable[[int], object], game: Callable, n: int, budget: int, seed: int) -> np.ndarray:
    """Run one shapiq approximator on the game with the given budget; its values as (n,)."""
    approximator = factory(seed)
    result = approximator.approximate(budget, lambda masks: game(np.atleast_2d(np.asarray(masks, dtype=bool))))
    return np.array([result[(i,)] for i in range(n)])


def run_cell(n: int, game_name: str, noise: float, budget: int, seeds: int, labels: list[str]) -> list[dict]:
    """All methods on one (n, game, noise, budget): one row per method with error and coverage averaged over seeds."""
    reference = make_game(game_name, n, seed=0)
    truths = {"shapley": reference.shapley_values(), "banzhaf": reference.banzhaf_values()}
    errors: dict[str, list[float]] = defaultdict(list)
    coverage: dict[str, list[float]] = defaultdict(list)
    for seed in range(seeds):
        for label in labels:
            method, options, sampler_options = VARIANTS[label]
            truth = truths["banzhaf" if label in BANZHAF else "shapley"]
            game = make_game(game_name, n, seed=0, noise=noise)
            result = approximate(game, n, budget, method, seed=seed, sampler_options=sampler_options, **options)
            assert game.n_evaluations <= budget
            errors[label].append(_rel_error(result.values, truth))
            coverage[label].append(_coverage(result.values, result.std, truth))
        for name, factory in shapiq_approximators(n).items():
            game = make_game(game_name, n, seed=0, noise=noise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                errors[name].append(_rel_error(_shapiq_values(factory, game, n, budget, seed), truths["shapley"]))
            coverage[name].append(float("nan"))
    return [
        {
            "method": m,
            "n": n,
            "budget": budget,
            "game": game_name,
            "noise": noise,
            "rel_error": float(np.mean(e)),
            "coverage": float(np.mean(coverage[m])),
            "target": "banzhaf" if m in BANZHAF else "shapley",
        }
        for m, e in errors.items()
    ]


def run_grid(
    ns: list[int], multipliers: list[int], noises: list[float], seeds: int, games: list[str], labels: list[str]
) -> list[dict]:
    rows = []
    for n in ns:
        for game_name in games:
            for noise in noises:
                for k in multipliers:
                    rows += run_cell(n, game_name, noise, k * n, seeds, labels)
        print(f"# n={n} done at {time.strftime('%X')}", flush=True)
    return rows


def print_table(rows: list[dict], key: str, title: str) -> None:
    """Markdown: `key` averaged over games and noise levels, one row per (n, budget), one column per method."""
    if not rows:
        return
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        cells[(r["n"], r["budget"], r["method"])].append(r[key])
    print(f"\n{title}\n\n| n | budget | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for n, budget in sorted({(r["n"], r["budget"]) for r in rows}):
        means = {m: np.mean(cells[(n, budget, m)]) if cells[(n, budget, m)] else np.nan for m in methods}
        best = min((v for m, v in means.items() if m not in BANZHAF and np.isfinite(v)), default=np.nan)
        bold = key == "rel_error"
        shown = [
            "" if not np.isfinite(v) else f"**{v:.3f}**" if bold and v == best else f"{v:.3f}" for v in means.values()
        ]
        print(f"| {n} | {budget} ({budget // n}n) | " + " | ".join(shown) + " |")


def print_wins(rows: list[dict]) -> None:
    """How often the default method is the most accurate Shapley estimator (within 1%), per budget multiple."""
    by_cell: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["target"] == "shapley":
            by_cell[(r["n"], r["game"], r["noise"], r["budget"])][r["method"]] = r["rel_error"]
    wins: dict[int, list[bool]] = defaultdict(list)
    for (n, *_, budget), errs in by_cell.items():
        if DEFAULT_METHOD in errs:
            wins[budget // n].append(errs[DEFAULT_METHOD] <= min(errs.values()) * 1.01 + 1e-9)  # ties count as wins
    print("\n" + ", ".join(f"{k}n: default best in {sum(v)}/{len(v)} cells" for k, v in sorted(wins.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid: n in {16, 48}, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions per cell (default 3, quick 2)")
    parser.add_argument("--games", type=str, default=None, help="comma-separated game names (default: all)")
    parser.add_argument("--methods", type=str, default=None, help=f"comma-separated labels of {list(VARIANTS)}")
    parser.add_argument("--ns", type=str, default=None, help="comma-separated n (default 16,48,258; quick 16,48)")
    parser.add_argument("--json", type=str, default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    if not shapiq_approximators(10):
        print("# shapiq is not installed: its rows are skipped (pip install -e \".[bench]\")")
    ns = [int(n) for n in args.ns.split(",")] if args.ns else [16, 48] if args.quick else [16, 48, 258]
    games = args.games.split(",") if args.games else [*MARKET_GAMES, *CLASSIC_GAMES]
    labels = args.methods.split(",") if args.methods else list(VARIANTS)
    unknown = sorted(set(labels) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown method label(s) {unknown}; choose from {list(VARIANTS)}")
    seeds = args.seeds or (2 if args.quick else 3)
    start = time.time()
    rows = run_grid(ns, [2, 5, 10], [0.0, 0.5], seeds, games, labels)
    for group, names in (("market-shaped games", MARKET_GAMES), ("classic games", CLASSIC_GAMES)):
        chosen = [r for r in rows if r["game"] in names]
        print_table(chosen, "rel_error", f"### Mean relative error, {group}")
        print_table(chosen, "coverage", f"### 95% coverage, {group}")
    print_wins(rows)
    print(f"\n# {len(rows)} rows, {seeds} seeds per cell, {time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
