"""The shape of a use case's coalition game: how the property grows with coalition size, and how noisy it is.

Why it belongs next to the LDS table: Shapley weights every coalition size equally (the marginal at size 0,
v({i}) - v0, counts as much as the one at size n/2), Banzhaf and datamodels weight the sizes near n/2, and the
LDS at alpha = 0.5 tests exactly those middle sizes. When the property saturates after a few contributors,
most of v1 - v0 is earned by the first contributor, the Shapley value is dominated by single-contributor
utilities (the noisiest ones), and it ranks contributors by a different question than the LDS asks. The
profile (mean, spread and count of the logged utilities per size) and ``first_contributor_share`` make that
visible on the user's own game, before anyone reads the LDS column as a verdict on the estimator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["first_contributor_share", "plot_profile", "size_profile"]


def size_profile(table: pd.DataFrame) -> pd.DataFrame:
    """Per coalition size: mean, std and count of the logged utilities (endpoint rows are sizes 0 and n).

    ``table`` is a study's utilities table (``tracking.utilities_table``); repeated masks count once.
    """
    if table.empty or not {"mask", "size", "utility"} <= set(table.columns):
        raise ValueError("the utilities table is empty or lacks mask/size/utility columns: run the study first")
    rows = table.drop_duplicates("mask")
    grouped = rows.groupby("size")["utility"]
    profile = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "count": grouped.size()})
    return profile.reset_index().sort_values("size").reset_index(drop=True)


def first_contributor_share(profile: pd.DataFrame) -> float:
    """(mean v(S) over |S| = 1  -  v0) / (v1 - v0): the share of the whole gain one contributor earns alone.

    Near 1/n for an additive game; near 1 for a game that saturates at once. NaN without size-1 coalitions
    or when v1 = v0.
    """
    by_size = profile.set_index("size")["mean"]
    n = int(profile["size"].max())
    if not {0, 1, n} <= set(by_size.index) or by_size[n] == by_size[0]:
        return float("nan")
    return float((by_size[1] - by_size[0]) / (by_size[n] - by_size[0]))


def plot_profile(profile: pd.DataFrame, path: Path, retrained: tuple[int, np.ndarray] | None = None,
                 label: str = "sFT utilities") -> Path:
    """Mean +- std of the utilities per size (point area ~ count); ``retrained`` = (size, (seeds, m) utilities)
    adds the held-out retrainings at their size (their mean +- std), for comparison of level and spread."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.add_subplot()
    ax.errorbar(profile["size"], profile["mean"], yerr=profile["std"].fillna(0.0), fmt="none", ecolor="0.6",
                capsize=2)
    ax.scatter(profile["size"], profile["mean"], s=8 + 4 * np.sqrt(profile["count"]), label=label, zorder=3)
    if retrained is not None:
        size, values = retrained
        values = np.asarray(values, dtype=float)
        ax.errorbar([size + 0.15], [np.nanmean(values)], yerr=[np.nanstd(values)], fmt="s", color="C3",
                    capsize=3, label=f"retrained held-out ({np.isfinite(values).sum()} runs)")
    share = first_contributor_share(profile)
    ax.set(xlabel="coalition size", ylabel="utility",
           title=f"the game by coalition size (one contributor alone earns {share:.0%} of v1 - v0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
