"""What users look at: the values table (CSV + markdown, std and 95% CI), bar chart, convergence plot, image grids.

The table carries two indices estimated from the same coalitions: the Shapley value (``value``: it splits
exactly v(all) - v(empty), what a payout needs) and the Banzhaf value (``banzhaf``: the best additive predictor
of what happens to coalitions of about half the contributors), each with its std and 95% interval, and says how
precise they are (``precision``: the mean std and the share of contributor pairs whose intervals are disjoint).
Plots use matplotlib's Agg backend (no display needed). ``values_frame`` is the single place the table's
columns are defined (CI = value +- 1.96 std).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from shapflow.attribution.plan import CHECK_ROLE, Proxy, design_rows, indices_from_table, masks_of, proxy_options
from shapflow.shapley import ShapleyResult, estimate, proxy_report
from shapflow.shapley.lds import MIN_COALITIONS, lds, random_floor

__all__ = ["INDEX_QUESTIONS", "convergence_curve", "label_of", "markdown_table", "plot_convergence",
           "plot_values", "precision", "proxy_summary", "report_from_table", "self_check", "values_frame",
           "write_check", "write_report"]

Z95 = 1.96
INDEX_QUESTIONS = {
    "value": "Shapley value: splits v(all) - v(empty) exactly among the contributors, averaging each one's "
             "marginal contribution over every order of arrival (what a payout needs).",
    "banzhaf": "Banzhaf value, same coalitions: the best additive predictor of the property of coalitions of about "
               "half the contributors (what an LDS at alpha = 0.5 tests).",
}


def precision(result: ShapleyResult) -> dict[str, float]:
    """How precise values are: mean std, and the share of the n (n - 1) / 2 contributor pairs whose 95% intervals
    are disjoint (a pair with an unknown std is not separated)."""
    low, high = result.values - Z95 * result.std, result.values + Z95 * result.std
    i, j = np.triu_indices(len(result.values), k=1)
    separated = (high[i] < low[j]) | (high[j] < low[i])
    return {"mean_std": float(np.mean(result.std)), "pairs_separated": float(np.mean(separated)) if i.size else 0.0,
            "pairs": int(i.size)}


def values_frame(names: tuple[str, ...] | list[str], result: ShapleyResult,
                 banzhaf: ShapleyResult | None = None) -> pd.DataFrame:
    """One row per contributor, sorted by value (highest first): contributor, value, std, ci95_low, ci95_high,
    and (given the Banzhaf result of the same coalitions) banzhaf, banzhaf_std, banzhaf_ci95_low/high."""
    columns = {"contributor": list(names), "value": result.values, "std": result.std}
    if banzhaf is not None:
        columns |= {"banzhaf": banzhaf.values, "banzhaf_std": banzhaf.std}
    frame = pd.DataFrame(columns)
    for prefix in ("", "banzhaf_") if banzhaf is not None else ("",):
        centre = frame["banzhaf" if prefix else "value"]
        frame[f"{prefix}ci95_low"] = centre - Z95 * frame[f"{prefix}std"]
        frame[f"{prefix}ci95_high"] = centre + Z95 * frame[f"{prefix}std"]
    order = ["contributor", "value", "std", "ci95_low", "ci95_high"]
    if banzhaf is not None:
        order += ["banzhaf", "banzhaf_std", "banzhaf_ci95_low", "banzhaf_ci95_high"]
    return frame[order].sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-markdown table of ``frame`` (numbers rounded), without needing ``tabulate``; a ``|`` or a line break
    inside a cell (a contributor name may hold any) is escaped so the row stays one row."""
    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def label_of(name: str, width: int = 40) -> str:
    """A contributor name as a plot label: one line, at most ``width`` characters (the table has it whole)."""
    line = " ".join(name.split())
    return line if len(line) <= width else line[:width - 1] + "\u2026"


def _save(fig: plt.Figure, path: Path) -> None:
    """Lay out and save a figure; a glyph the font lacks (an emoji in a name) is drawn as a box, not warned about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(path, dpi=120)


def plot_values(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Horizontal bars of each index with 95% CI error bars, contributors sorted by Shapley value; one panel
    per index (Shapley, and Banzhaf where the table has it)."""
    ordered = frame.sort_values("value", kind="stable")
    panels = [("value", "std", "Shapley value")] + ([("banzhaf", "banzhaf_std", "Banzhaf value")]
                                                    if "banzhaf" in frame else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.35 * len(ordered) + 1.5), sharey=True,
                             squeeze=False)
    for ax, (column, std, label) in zip(axes[0], panels, strict=True):
        rows = np.arange(len(ordered))  # positions, not names: labels may be shortened and must never merge
        ax.barh(rows, ordered[column], xerr=Z95 * ordered[std].fillna(0.0), capsize=3,
                color=np.where(ordered[column] >= 0, "tab:blue", "tab:red"))
        ax.set_yticks(rows, [label_of(name) for name in ordered["contributor"]])
        ax.axvline(0.0, color="black", linewidth=0.8)
        unknown = bool(ordered[std].isna().any())
        ax.set_xlabel(f"{label} (error bars: 95% CI" + ("; n/a: too few coalitions to estimate)" if unknown else ")"))
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
    return path


def convergence_curve(masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, method: str,
                      points: int = 8, proxy: Proxy | None = None) -> tuple[list[int], np.ndarray]:
    """Values estimated on growing prefixes (sampler order) of the coalitions: (sizes, values (len(sizes), n)).

    Prefixes the estimator rejects (too few coalitions, an unpaired tail) are skipped. ``proxy``: the data proxy.
    """
    sizes, values = [], []
    for m in sorted({int(s) for s in np.linspace(len(masks) / points, len(masks), points)}):
        try:
            result = estimate(masks[:m], utilities[:m], method, v0=v0, v1=v1, **proxy_options(method, proxy))
        except (ValueError, np.linalg.LinAlgError):
            continue
        sizes.append(m)
        values.append(result.values)
    return sizes, np.array(values).reshape(len(sizes), masks.shape[1])


def plot_convergence(names: tuple[str, ...] | list[str], sizes: list[int], values: np.ndarray, path: Path,
                     title: str) -> Path:
    """Each contributor's value against the number of coalitions evaluated."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(names):
        ax.plot(sizes, values[:, i], marker=".", label=label_of(name))
    ax.set_xlabel("coalitions evaluated")
    ax.set_ylabel("Shapley value")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2, loc="best")
    _save(fig, path)
    plt.close(fig)
    return path


def write_report(folder: Path, names: tuple[str, ...] | list[str], result: ShapleyResult, title: str,
                 curve: tuple[list[int], np.ndarray] | None = None, banzhaf: ShapleyResult | None = None,
                 notes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Write values.csv, values.md (what each index answers, how precise it is, ``notes``), values.png (and
    convergence.png given a curve) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = values_frame(names, result, banzhaf)
    frame.to_csv(folder / "values.csv", index=False)
    lines = [f"# {title}", "", *(f"- {INDEX_QUESTIONS[c]}" for c in ("value", "banzhaf") if c in frame)]
    for label, index in (("Shapley", result), ("Banzhaf", banzhaf)):
        if index is not None:
            p = precision(index)
            lines.append(f"- {label} precision: mean std {p['mean_std']:.4f}; {p['pairs_separated']:.0%} of the "
                         f"{p['pairs']} contributor pairs have disjoint 95% intervals ({index.method}, "
                         f"{index.n_evaluations} coalitions).")
    lines += [f"- {note}" for note in notes]
    (folder / "values.md").write_text("\n".join(lines) + "\n\n" + markdown_table(frame))
    plot_values(frame, folder / "values.png", title)
    if curve is not None and curve[0]:
        plot_convergence(names, curve[0], curve[1], folder / "convergence.png", f"convergence · {title}")
    return frame


def report_from_table(table: pd.DataFrame, names: tuple[str, ...], title: str, method: str, folder: Path,
                      planned: np.ndarray | None = None, notes: tuple[str, ...] = (),
                      proxy: Proxy | None = None) -> tuple[ShapleyResult, ShapleyResult | None, pd.DataFrame]:
    """Values by ``method`` (and the Banzhaf values of the same coalitions) from a utilities table, written with
    their plots into ``folder``: (result, Banzhaf result or None, values table).

    ``names``: the contributors in index order (``tracking.logged_names``). ``planned``: the design's masks
    (see ``plan.design_rows``). ``proxy``: the data proxy, the control variate of the methods that take one;
    values.md says how well it tracks v, and ``proxy.csv`` holds q beside v per coalition.
    """
    values, banzhaf = indices_from_table(table, method, planned, proxy)
    rows = design_rows(table, planned)
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")
    v0, v1 = float(ends.loc["v0", "utility"]), float(ends.loc["v1", "utility"])
    curve = convergence_curve(masks_of(rows), rows["utility"].to_numpy(float), v0, v1, method, proxy=proxy)
    folder.mkdir(parents=True, exist_ok=True)
    summary = proxy_summary(table, rows, (v0, v1), proxy, folder / "proxy.csv")
    frame = write_report(folder, names, values, f"{title} · {method}", curve, banzhaf, (*notes, summary))
    return values, banzhaf, frame


def proxy_summary(table: pd.DataFrame, rows: pd.DataFrame, ends: tuple[float, float], proxy: Proxy | None,
                  path: Path) -> str:
    """The values.md line on the data proxy q: its correlation with v over the design's rows, its coefficient b
    and the share of the variance left by the surrogate that b q removes; and q beside v of every coalition
    logged (the self-check ones too) written to ``path`` (CSV). Says so where there is no proxy."""
    if proxy is None:
        return ("Data proxy: none (switched off, or constant on these coalitions): the values use the logged "
                "utilities alone.")
    logged = table[table["stage"].isin(["coalition", "endpoint"])]
    q_logged = proxy(masks_of(logged))
    logged[["coalition_id", "role", "mask", "utility"]].assign(proxy=q_logged).to_csv(path, index=False)
    masks, utilities = masks_of(rows), rows["utility"].to_numpy(float)
    if len(rows) < MIN_COALITIONS:
        return f"Data proxy: q beside v in proxy.csv; too few coalitions ({len(rows)}) to measure how it tracks v."
    q0, q1 = proxy(np.array([np.zeros(masks.shape[1], bool), np.ones(masks.shape[1], bool)]))
    try:
        report = proxy_report(masks, utilities, proxy(masks), v0=ends[0], v1=ends[1], q0=q0, q1=q1)
    except ValueError as err:
        return f"Data proxy: q beside v in proxy.csv; its fit to v could not be measured ({err})."
    return (f"Data proxy q(S) (the property of each coalition's own real images, no training): Pearson "
            f"{report['pearson']:.2f} (Spearman {report['spearman']:.2f}) with v over the {len(rows)} coalitions; "
            f"b = {report['b']:.3g}; b q removes {report['variance_removed']:.0%} of the variance the surrogate "
            "leaves (out of fold); q beside v in proxy.csv.")


def self_check(table: pd.DataFrame, results: dict[str, ShapleyResult | None]) -> dict[str, float]:
    """How well each index predicts the run's held-out self-check coalitions, evaluated by the same utility and
    seen by no estimate: ``check.lds_<index>`` = 100 x Spearman(sum of the values over S, v(S)), beside the noise
    floor (``check.random_high``: the 97.5th percentile of the LDS of random values). {} with fewer than 3."""
    rows = table[(table["stage"] == "coalition") & (table.get("role", "plan") == CHECK_ROLE)] if len(table) else table
    if len(rows) < MIN_COALITIONS:
        return {}
    masks, truth = masks_of(rows), rows["utility"].to_numpy(float)
    out = {"check.coalitions": float(len(rows)), "check.random_high": random_floor(masks, truth).high}
    for name, result in results.items():
        if result is not None:
            out[f"check.lds_{name}"] = lds(result.values, masks, truth, n_boot=0).mean
    return out


def write_check(folder: Path, checked: dict[str, float]) -> None:
    """Add the self-check to values.md: what it measured and against which floor."""
    scores = ", ".join(f"{name.removeprefix('check.lds_')} {value:.1f}" for name, value in checked.items()
                       if name.startswith("check.lds_"))
    line = (f"- Self-check: on {int(checked['check.coalitions'])} held-out coalitions of half the contributors, "
            f"evaluated by the same utility and used by no estimate, the values rank them at LDS {scores} "
            f"(random values reach {checked['check.random_high']:.1f} at the 97.5th percentile). This checks the "
            "estimate against the utility it was given; `shapflow evaluate lds` checks it against retraining.")
    text = (folder / "values.md").read_text()
    head, _, table = text.partition("\n\n| ")  # the notes, then the table
    (folder / "values.md").write_text(f"{head}\n{line}\n\n| {table}")
