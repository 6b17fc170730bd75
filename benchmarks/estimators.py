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

--properties: the property-shaped games of shapley/property_games.py (diversity, quality, fid, coverage), budgets
2n/3n/5n/10n, noise 0.1 and 0.25 (std relative to the RMS of the values), leverage vs the default without and with
a correlated proxy game (the same property on perturbed per-contributor quantities), and shapiq 1.8's rows from a
separate Python 3.12 interpreter (--shapiq-python; games exported to .npz, run by benchmarks/shapiq_rows.py).
Reference values: enumeration at n = 16, permutations around a fitted surrogate above (cached in --cache).

    python benchmarks/estimators.py --properties --shapiq-python /tmp/cv/shapiq-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shapflow.shapley import DEFAULT_METHOD, approximate, make_game
from shapflow.shapley.games import MARKET_GAMES
from shapflow.shapley.property_games import PROPERTY_GAMES, PropertyGame, make_property_game, reference_values
from shapflow.shapley.samplers import sample_leverage

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


PROPERTY_LABELS = ("leverage", "surrogate-shapley", "surrogate-shapley+proxy")
PROXY_SCALE = 1.0  # perturbation of the proxy's per-contributor quantities: Pearson ~0.8-0.95 with v (printed)
REFERENCE_BUDGET = {48: 4_000_000, 258: 8_000_000}  # Shapley-only evaluations per reference above n = 16


def property_truth(shape: str, n: int, cache: Path) -> tuple[np.ndarray, float]:
    """Reference Shapley values (n,) of the noise-free property game and their relative Monte Carlo error, cached."""
    path = cache / f"{shape}-n{n}.npz"
    if not path.exists():
        game = make_property_game(shape, n, seed=0)
        values, std = reference_values(game.value, n, REFERENCE_BUDGET.get(n, 0), indices=("shapley",))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, truth=values["shapley"], std=std["shapley"])
    data = np.load(path)
    return data["truth"], float(np.linalg.norm(data["std"]) / np.linalg.norm(data["truth"]))


def _noisy(shape: str, n: int, noise: float, truth: np.ndarray, seed: int) -> PropertyGame:
    """The property game with per-evaluation noise `noise` x the RMS of its values, from a per-repeat stream."""
    game = make_property_game(shape, n, seed=0)
    return PropertyGame(shape, game.params, noise * float(np.sqrt(np.mean(truth**2))), seed=1000 + seed)


def run_property_cell(shape: str, n: int, noise: float, budget: int, seeds: int, truth: np.ndarray) -> list[dict]:
    """Leverage, the default and the default with the proxy on one (shape, n, noise, budget), averaged over seeds."""
    errors: dict[str, list[float]] = defaultdict(list)
    coverage: dict[str, list[float]] = defaultdict(list)
    pearson = []
    for seed in range(seeds):
        proxy = make_property_game(shape, n, seed=0).proxy(PROXY_SCALE, seed=7)
        masks = sample_leverage(n, budget - 2, seed).masks
        pearson.append(float(np.corrcoef(make_property_game(shape, n, seed=0).value(masks), proxy(masks))[0, 1]))
        for label in PROPERTY_LABELS:
            method, options = (DEFAULT_METHOD, {"proxy": proxy}) if label.endswith("+proxy") else (label, {})
            game = _noisy(shape, n, noise, truth, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = approximate(game, n, budget, method, seed=seed, **options)
            errors[label].append(_rel_error(result.values, truth))
            coverage[label].append(_coverage(result.values, result.std, truth))
    return [
        {"method": label, "n": n, "budget": budget, "game": shape, "noise": noise, "target": "shapley",
         "rel_error": float(np.mean(e)), "coverage": float(np.mean(coverage[label])),
         "pearson": float(np.mean(pearson))}
        for label, e in errors.items()
    ]


def export_for_shapiq(folder: Path, shape: str, n: int, noise: float, truth: np.ndarray, budgets: list[int],
                      seeds: int) -> Path:
    """The game as an .npz that benchmarks/shapiq_rows.py rebuilds under Python 3.12."""
    game = _noisy(shape, n, noise, truth, 0)
    path = folder / f"{shape}-n{n}-noise{noise}.npz"
    params = {f"param_{key}": value for key, value in game.params.items()}
    np.savez(path, shape=shape, n=n, noise=noise, noise_std=game.noise_std, truth=truth, budgets=np.array(budgets),
             seeds=seeds, **params)
    return path


def shapiq_rows(python: str, games: list[Path], folder: Path) -> list[dict]:
    """Run shapiq_rows.py with the 3.12 interpreter on the exported games; its rows (none if it fails: said why)."""
    out = folder / "shapiq-rows.json"
    script = Path(__file__).with_name("shapiq_rows.py")
    done = subprocess.run([python, str(script), "--out", str(out), *map(str, games)], capture_output=True, text=True)
    if done.returncode:
        print(f"# shapiq rows failed ({python}): {done.stderr.strip().splitlines()[-1:]}")
        return []
    return json.loads(out.read_text())


def run_properties(ns: list[int], seeds_for: Callable[[int], int], cache: Path, python: str | None) -> list[dict]:
    """The property grid: every shape, n, noise (0.1, 0.25) and budget (2n, 3n, 5n, 10n); shapiq rows joined."""
    rows, exported = [], []
    for n in ns:
        budgets = [k * n for k in (2, 3, 5, 10)]
        for shape in PROPERTY_GAMES:
            truth, mc = property_truth(shape, n, cache)
            print(f"# {shape} n={n}: reference Monte Carlo error {mc:.3f} ({time.strftime('%X')})", flush=True)
            for noise in (0.1, 0.25):
                for budget in budgets:
                    rows += run_property_cell(shape, n, noise, budget, seeds_for(n), truth)
                exported.append(export_for_shapiq(cache, shape, n, noise, truth, budgets, seeds_for(n)))
    if python:
        rows += shapiq_rows(python, exported, cache)
    return rows


def print_property_tables(rows: list[dict]) -> None:
    """Per shape: error by (n, noise, budget) for every method; coverage; what the proxy removes; the checks."""
    for shape in PROPERTY_GAMES:
        chosen = [r for r in rows if r["game"] == shape]
        methods = list(dict.fromkeys(r["method"] for r in chosen))
        cell = {(r["n"], r["noise"], r["budget"], r["method"]): r for r in chosen}
        print(f"\n#### {shape}: mean relative error (coverage of the 95% intervals)\n")
        print("| n | noise | budget | pearson(q, v) | " + " | ".join(methods) + " |")
        print("|---|---|---|---|" + "---|" * len(methods))
        for n, noise, budget in sorted({(r["n"], r["noise"], r["budget"]) for r in chosen}):
            shown = []
            for m in methods:
                r = cell.get((n, noise, budget, m))
                cov = "" if r is None or not np.isfinite(r["coverage"]) else f" ({r['coverage']:.2f})"
                shown.append("" if r is None else f"{r['rel_error']:.3f}{cov}")
            pearson = cell.get((n, noise, budget, "surrogate-shapley+proxy"), {}).get("pearson", np.nan)
            print(f"| {n} | {noise} | {budget} ({budget // n}n) | {pearson:.2f} | " + " | ".join(shown) + " |")


def print_bars(rows: list[dict]) -> None:
    """Issue 27's bars per (shape, n, noise): the default (no proxy) at 5n vs the old default at 10n, 95% coverage
    at >= 3n (with and without proxy), the default at 2n vs Leverage SHAP, at >= 5n vs the best shapiq row, and the
    share of the error the proxy removes; each line ends in the bars it misses."""
    cell = {(r["game"], r["n"], r["noise"], r["budget"] // r["n"], r["method"]): r for r in rows}
    print("\n| shape | n | noise | 5n vs old 10n | min coverage >= 3n (plain / proxy) | 2n vs leverage | "
          ">= 5n vs best shapiq | proxy removes (5n / 10n) | missed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, n, noise in sorted({(r["game"], r["n"], r["noise"]) for r in rows}):
        def get(k: int, method: str, key: str = "rel_error", shape=shape, n=n, noise=noise) -> float:
            return cell.get((shape, n, noise, k, method), {}).get(key, np.nan)
        default, proxy = "surrogate-shapley", "surrogate-shapley+proxy"
        old = get(5, default) / get(10, "old-default")
        cover = [min(get(k, m, "coverage") for k in (3, 5, 10)) for m in (default, proxy)]
        lev = get(2, default) / get(2, "leverage")
        best = [min((r["rel_error"] for (g, nn, nz, kk, m), r in cell.items() if m.startswith("shapiq:")
                     and (g, nn, nz, kk) == (shape, n, noise, k)), default=np.nan) for k in (5, 10)]
        vs_shapiq = max(get(k, default) / b for k, b in zip((5, 10), best, strict=True))
        removed = [1 - get(k, proxy) / get(k, default) for k in (5, 10)]
        missed = [name for name, bad in (("old", old > 1), ("coverage", min(cover) < 0.85), ("2n", lev > 1.1),
                                         ("shapiq", vs_shapiq > 1)) if bad]
        print(f"| {shape} | {n} | {noise} | {old:.2f}x | {cover[0]:.2f} / {cover[1]:.2f} | {lev:.2f}x | "
              f"{vs_shapiq:.2f}x | {removed[0]:+.0%} / {removed[1]:+.0%} | {', '.join(missed)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid: n in {16, 48}, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="repetitions per cell (default 3, quick 2)")
    parser.add_argument("--games", type=str, default=None, help="comma-separated game names (default: all)")
    parser.add_argument("--methods", type=str, default=None, help=f"comma-separated labels of {list(VARIANTS)}")
    parser.add_argument("--ns", type=str, default=None, help="comma-separated n (default 16,48,258; quick 16,48)")
    parser.add_argument("--json", type=str, default=None, help="write the rows to this JSON file")
    parser.add_argument("--properties", action="store_true", help="the property-shaped games with proxies")
    parser.add_argument("--shapiq-python", type=str, default=None, help="Python >= 3.12 with shapiq 1.8 installed")
    parser.add_argument("--cache", type=str, default="/tmp/shapflow-bench", help="reference values, exported games")
    parser.add_argument("--seeds-258", type=int, default=1, help="repetitions per cell at n = 258 (--properties)")
    parser.add_argument("--join-rows", type=str, nargs="*", default=[],
                        help="JSON rows of other runs whose shapiq and old-default rows are joined (--properties; "
                             "they do not depend on today's estimator; old-default: benchmarks/baseline_rows.py)")
    parser.add_argument("--tables-only", type=str, default=None,
                        help="print the --properties tables of this JSON of rows (plus --join-rows); run nothing")
    args = parser.parse_args()
    joined = [r for path in args.join_rows for r in json.loads(Path(path).read_text())
              if r["method"].startswith("shapiq:") or r["method"] == "old-default"]
    if args.tables_only:
        rows = json.loads(Path(args.tables_only).read_text()) + joined
        print_property_tables(rows)
        print_bars(rows)
        return
    if args.properties:
        ns = [int(n) for n in args.ns.split(",")] if args.ns else [16, 48, 258]
        seeds = args.seeds or 3
        start = time.time()
        rows = run_properties(ns, lambda n: args.seeds_258 if n >= 258 else seeds, Path(args.cache),
                              args.shapiq_python)
        rows += joined
        print_property_tables(rows)
        print_bars(rows)
        print(f"\n# {len(rows)} rows, {seeds} seeds per cell ({args.seeds_258} at n = 258), "
              f"{time.time() - start:.0f} s; {sys.version.split()[0]}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
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
