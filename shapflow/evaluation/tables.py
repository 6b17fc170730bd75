"""Reporting of an LDS evaluation: the results table (CSV + markdown), LDS scatter plots, and the JSON summary.

Every table carries the two references a method must beat to mean anything: the `random` row (noise floor:
mean LDS of random attributions, `ci` = half-width of their 95% band) and the `size-only` row (coalition
size as the prediction; NaN when the held-out coalitions all have one size). Plots are drawn on
matplotlib `Figure` objects with the Agg canvas, never through pyplot's global state. No torch, no mlflow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shapflow.shapley.lds import LDSResult, NoiseFloor, lds_of_predictions

__all__ = ["RANDOM", "SIZE_ONLY", "results_frame", "scatter_plots", "to_markdown", "write_json", "write_tables"]

RANDOM = "random"
SIZE_ONLY = "size-only"
_BASE_COLUMNS = ["method", "lds", "ci", "boot_low", "boot_high", "n_coalitions", "n_seeds", "beats_floor"]


def _row(result: LDSResult) -> dict[str, object]:
    return {
        "method": result.method,
        "lds": result.mean,
        "ci": result.ci,
        "boot_low": result.boot_low,
        "boot_high": result.boot_high,
        "n_coalitions": result.n_coalitions,
        "n_seeds": result.n_seeds,
        "note": result.note,
    }


def _beats_floor(result: LDSResult, floor: NoiseFloor, size_result: LDSResult | None) -> bool:
    """True when the method's bootstrap interval lies wholly above the random band and above the size-only
    predictor's bootstrap interval (where that one is defined): the method is distinguishable from both."""
    bar = floor.high
    if size_result is not None and np.isfinite(size_result.boot_high):
        bar = max(bar, size_result.boot_high)
    return bool(np.isfinite(result.boot_low) and np.isfinite(bar) and result.boot_low > bar)


def _add_columns(rows: dict[str, dict[str, object]], columns: Mapping[str, Mapping[str, object]], what: str) -> None:
    unknown = sorted(set(columns) - set(rows))
    if unknown:
        raise ValueError(f"{what} names methods {unknown} that have no LDS result; known: {sorted(rows)}")
    for method, entries in columns.items():
        rows[method].update(entries)


def _pair_columns(entries: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """{"remove_top40": (mean, ci)} -> {"remove_top40_change": mean, "remove_top40_ci": ci}."""
    columns = {}
    for name, pair in entries.items():
        if len(pair) != 2:
            raise ValueError(f"counterfactual entry {name!r} must be (mean, ci) as relative_change returns, got {pair}")
        columns[f"{name}_change"], columns[f"{name}_ci"] = float(pair[0]), float(pair[1])
    return columns


def results_frame(
    lds_results: Sequence[LDSResult],
    floor: NoiseFloor,
    size_result: LDSResult | None,
    counterfactual: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    extra: Mapping[str, Mapping[str, float]] | None = None,
    reliability: LDSResult | None = None,
) -> pd.DataFrame:
    """One row per method plus the `random` and `size-only` rows (and `reliability`'s, the seed-to-seed noise
    ceiling, when given), sorted by LDS (highest first, NaN last).

    Columns: method, lds (mean over seeds), ci (95% t half-width over seeds), boot_low / boot_high (bootstrap
    over coalitions; for `random` the 2.5 / 97.5 percentiles of the floor), n_coalitions, n_seeds,
    beats_floor (bootstrap interval above the random band and the size-only interval; empty for the two
    reference rows), then counterfactual[method][name] = (mean, ci) as `{name}_change`, `{name}_ci`
    (e.g. name "remove_top40" from `relative_change`), then extra[method][column] = float (e.g. the Spearman
    with the degradation levels), then note (why a number is NaN). Methods named in counterfactual or extra
    must have an LDS result.
    """
    names = [r.method for r in lds_results]
    if len(set(names)) != len(names) or {RANDOM, SIZE_ONLY} & set(names) or "" in names:
        raise ValueError(f"method names must be unique, non-empty, and not {RANDOM!r} / {SIZE_ONLY!r}: {names}")
    rows = {r.method: {**_row(r), "beats_floor": _beats_floor(r, floor, size_result)} for r in lds_results}
    if counterfactual:
        pairs = {method: _pair_columns(entries) for method, entries in counterfactual.items()}
        _add_columns(rows, pairs, "counterfactual")
    if extra:
        _add_columns(rows, {m: {c: float(v) for c, v in e.items()} for m, e in extra.items()}, "extra")
    rows[RANDOM] = {"method": RANDOM, "lds": floor.mean, "ci": floor.half_width, "boot_low": floor.low,
                    "boot_high": floor.high, "note": f"{floor.draws} random N(0,1) attributions"}
    if size_result is None:
        rows[SIZE_ONLY] = {"method": SIZE_ONLY, "note": "held-out coalitions all have one size"}
    else:
        rows[SIZE_ONLY] = {**_row(size_result), "method": SIZE_ONLY}
    if reliability is not None:
        rows[reliability.method] = _row(reliability)
    frame = pd.DataFrame(list(rows.values()))
    ordered = _BASE_COLUMNS + [c for c in frame.columns if c not in (*_BASE_COLUMNS, "note")] + ["note"]
    frame = frame.reindex(columns=ordered)
    frame["note"] = frame["note"].fillna("")
    frame["beats_floor"] = frame["beats_floor"].astype("boolean")
    for column in ("n_coalitions", "n_seeds"):
        frame[column] = frame[column].astype("Int64")
    return frame.sort_values("lds", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _cell(value: object, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub markdown table of the frame; floats with `digits` decimals, missing values as n/a."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_tables(
    frame: pd.DataFrame, folder: str | Path, *, stem: str = "lds_table", digits: int = 2
) -> tuple[Path, Path]:
    """Write the frame as `{stem}.csv` (full precision) and `{stem}.md` (rounded, for READMEs) in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    frame.to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(frame, digits), encoding="utf-8")
    return csv_path, md_path


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "method"


def _title(result: LDSResult) -> str:
    ci = "" if math.isnan(result.ci) else f" ± {result.ci:.1f}"
    lds_text = "n/a" if math.isnan(result.mean) else f"{result.mean:.1f}{ci}"
    return f"{result.method}: LDS {lds_text}"


def _draw(ax, x: np.ndarray, truth: np.ndarray, sizes: np.ndarray | None, title: str) -> None:
    """Predicted (x) vs retrained property: mean over seeds, error bars spanning the seeds' min to max."""
    keep = ~np.all(np.isnan(truth), axis=0)
    x, truth = x[keep], truth[:, keep]
    mean = np.nanmean(truth, axis=0)
    spread = np.stack([mean - np.nanmin(truth, axis=0), np.nanmax(truth, axis=0) - mean])
    ax.errorbar(x, mean, yerr=spread, fmt="none", ecolor="0.6", elinewidth=0.8, zorder=1)
    if sizes is None:
        ax.scatter(x, mean, s=18, zorder=2)
    else:
        points = ax.scatter(x, mean, c=sizes[keep], s=18, cmap="viridis", zorder=2)
        ax.figure.colorbar(points, ax=ax, label="coalition size")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("predicted (sum of values)", fontsize=8)
    ax.set_ylabel("retrained property", fontsize=8)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def scatter_plots(
    predictions: Mapping[str, np.ndarray],
    truth: np.ndarray,
    folder: str | Path,
    sizes: np.ndarray | None = None,
) -> list[Path]:
    """One PNG per method (`lds_scatter_{method}.png`) and an overview grid (`lds_scatter_all.png`).

    predictions[method]: (m,) predicted property per held-out coalition (masks @ values); truth: (n_seeds, m)
    retrained property (NaN where missing); sizes: optional (m,) coalition sizes, used as point colour.
    Each title carries the method's LDS with its t half-width over seeds. Returns the written paths.
    """
    if not predictions:
        raise ValueError("predictions is empty: nothing to plot")
    truth = np.asarray(truth, dtype=float)
    truth = truth[None, :] if truth.ndim == 1 else truth
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=float)
        if sizes.shape != (truth.shape[1],):
            raise ValueError(f"sizes must be ({truth.shape[1]},), got shape {sizes.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    titles = {m: _title(lds_of_predictions(p, truth, method=m, n_boot=0)) for m, p in predictions.items()}
    paths, used = [], set()
    for method, x in predictions.items():
        slug = _slug(method)
        while slug in used or slug == "all":
            slug += "_"
        used.add(slug)
        figure = Figure(figsize=(4.5, 3.8), layout="constrained")
        _draw(figure.add_subplot(), np.asarray(x, dtype=float), truth, sizes, titles[method])
        paths.append(_save(figure, folder / f"lds_scatter_{slug}.png"))
    cols = math.ceil(math.sqrt(len(predictions)))
    rows = math.ceil(len(predictions) / cols)
    figure = Figure(figsize=(3.6 * cols, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, (method, x) in zip(axes, predictions.items(), strict=False):
        _draw(ax, np.asarray(x, dtype=float), truth, None, titles[method])
    for ax in axes[len(predictions):]:
        ax.set_visible(False)
    paths.append(_save(figure, folder / "lds_scatter_all.png"))
    return paths


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def write_json(
    path: str | Path,
    lds_results: Sequence[LDSResult],
    floor: NoiseFloor,
    size_result: LDSResult | None = None,
) -> Path:
    """Write `{method: {"lds": float, "ci": float}}` with the methods' mean LDS and t half-width over seeds,
    a `random` row (floor mean, half-width of its 95% band) and a `size-only` row when size_result is given;
    NaN is written as null."""
    summary = {r.method: {"lds": _number(r.mean), "ci": _number(r.ci)} for r in lds_results}
    if len(summary) != len(lds_results) or {RANDOM, SIZE_ONLY} & set(summary):
        raise ValueError(f"method names must be unique and not {RANDOM!r} / {SIZE_ONLY!r}")
    summary[RANDOM] = {"lds": _number(floor.mean), "ci": _number(floor.half_width)}
    if size_result is not None:
        summary[SIZE_ONLY] = {"lds": _number(size_result.mean), "ci": _number(size_result.ci)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
