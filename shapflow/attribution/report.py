"""What users look at: the values table (CSV + markdown, std and 95% CI), bar chart, convergence plot, image grids.

Plots use matplotlib's Agg backend (no display needed). ``values_frame`` is the single place the table's
columns are defined: contributor, value, std, ci95_low, ci95_high (CI = value +- 1.96 std).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from shapflow.attribution.plan import design_rows, estimate_from_table, masks_of
from shapflow.shapley import ShapleyResult, estimate

__all__ = ["convergence_curve", "image_grid", "markdown_table", "plot_convergence", "plot_values", "report_from_table",
           "values_frame", "write_report"]

Z95 = 1.96


def values_frame(names: tuple[str, ...] | list[str], result: ShapleyResult) -> pd.DataFrame:
    """One row per contributor, sorted by value (highest first): contributor, value, std, ci95_low, ci95_high."""
    frame = pd.DataFrame({"contributor": list(names), "value": result.values, "std": result.std})
    frame["ci95_low"] = frame["value"] - Z95 * frame["std"]
    frame["ci95_high"] = frame["value"] + Z95 * frame["std"]
    return frame.sort_values("value", ascending=False, kind="stable").reset_index(drop=True)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-markdown table of ``frame`` (numbers rounded), without needing ``tabulate``."""
    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot_values(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Horizontal bar chart of values with 95% CI error bars, sorted by value."""
    ordered = frame.sort_values("value", kind="stable")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ordered) + 1.5))
    ax.barh(ordered["contributor"], ordered["value"], xerr=Z95 * ordered["std"].fillna(0.0), capsize=3,
            color=np.where(ordered["value"] >= 0, "tab:blue", "tab:red"))
    ax.axvline(0.0, color="black", linewidth=0.8)
    unknown = bool(ordered["std"].isna().any())
    ax.set_xlabel("Shapley value (error bars: 95% CI" + ("; n/a: too few coalitions to estimate)" if unknown else ")"))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def convergence_curve(masks: np.ndarray, utilities: np.ndarray, v0: float, v1: float, method: str,
                      points: int = 8) -> tuple[list[int], np.ndarray]:
    """Values estimated on growing prefixes (sampler order) of the coalitions: (sizes, values (len(sizes), n)).

    Prefixes the estimator rejects (too few coalitions, an unpaired tail) are skipped.
    """
    sizes, values = [], []
    for m in sorted({int(s) for s in np.linspace(len(masks) / points, len(masks), points)}):
        try:
            result = estimate(masks[:m], utilities[:m], method, v0=v0, v1=v1)
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
        ax.plot(sizes, values[:, i], marker=".", label=name)
    ax.set_xlabel("coalitions evaluated")
    ax.set_ylabel("Shapley value")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def image_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 4) -> Path:
    """PNG grid of the first nrow*nrow images (N, C, H, W) in [-1, 1], upscaled ``scale`` times."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images = images[: nrow * nrow].detach().cpu().clamp(-1, 1)
    count, channels, height, width = images.shape
    rows = -(-count // nrow)
    canvas = torch.ones(channels, rows * (height + 1) + 1, nrow * (width + 1) + 1)
    for k in range(count):
        r, c = divmod(k, nrow)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        canvas[:, top:top + height, left:left + width] = (images[k] + 1) / 2
    pixels = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)
    return path


def write_report(folder: Path, names: tuple[str, ...] | list[str], result: ShapleyResult, title: str,
                 curve: tuple[list[int], np.ndarray] | None = None) -> pd.DataFrame:
    """Write values.csv, values.md, values.png (and convergence.png given a curve) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = values_frame(names, result)
    frame.to_csv(folder / "values.csv", index=False)
    (folder / "values.md").write_text(f"# {title}\n\n{markdown_table(frame)}")
    plot_values(frame, folder / "values.png", title)
    if curve is not None and curve[0]:
        plot_convergence(names, curve[0], curve[1], folder / "convergence.png", f"convergence · {title}")
    return frame


def report_from_table(table: pd.DataFrame, title: str, method: str, folder: Path,
                      planned: np.ndarray | None = None) -> tuple[ShapleyResult, pd.DataFrame]:
    """Values by ``method`` from a utilities table, written with their plots into ``folder``: (result, values table).

    ``planned``: the design's masks (see ``plan.design_rows``). Contributor names come from the v1 (grand
    coalition) row, which lists everyone in index order.
    """
    values = estimate_from_table(table, method, planned)
    rows = design_rows(table, planned)
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")
    curve = convergence_curve(masks_of(rows), rows["utility"].to_numpy(float), float(ends.loc["v0", "utility"]),
                              float(ends.loc["v1", "utility"]), method)
    names = ends.loc["v1", "contributors"].split(",")
    return values, write_report(folder, names, values, f"{title} · {method}", curve)
