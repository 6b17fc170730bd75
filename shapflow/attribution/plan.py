"""Which coalitions a study evaluates (the method's sampler, prefix-stable) and how its logged rows are read back
into an estimator: the design's own rows, in plan order, with the endpoints as v0 and v1."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pandas as pd

from shapflow.attribution.attribute_request import Request
from shapflow.config import ConfigError
from shapflow.shapley import METHODS, SAMPLERS, Coalitions, ShapleyResult, default_sampler, estimate, estimate_indices
from shapflow.shapley.masks import bits

__all__ = ["CHECK_ROLE", "Proxy", "batch_of", "design_rows", "estimate_from_table", "indices_from_table", "masks_of",
           "plan", "proxy_options"]

CHECK_ROLE = "check"  # the ``role`` param of a held-out coalition an attribute run evaluates to check itself
Proxy = Callable[[np.ndarray], np.ndarray]  # q(masks bool (m, n)) -> (m,): a cheap game beside the utilities


def plan(request: Request) -> Coalitions:
    """The coalitions to evaluate: the method's sampler, prefix-stable, so a rerun regenerates the same ids."""
    return SAMPLERS[default_sampler(request.method)](request.n_contributors, request.budget, request.seed)


def batch_of(request: Request, start: int, stop: int | None = None) -> slice:
    """Rows ``start``..``stop`` (default: to the end) of the request's plan, checked BEFORE any run is opened: an
    index outside the plan is a ``ConfigError`` (Python's negative indices and empty slices would open an attribute
    run that evaluates nothing)."""
    rows = len(plan(request))
    where = f"the plan of {request.method} with budget {request.budget} has rows 0..{rows - 1}"
    if not 0 <= start < rows:
        raise ConfigError(f"index={start} is invalid: {where}")
    if stop is not None and not start < stop <= rows:
        raise ConfigError(f"stop={stop} is invalid: give {start + 1}..{rows} ({where})")
    return slice(start, stop)


def masks_of(table: pd.DataFrame) -> np.ndarray:
    """The bool masks (m, n) of a utilities table's ``mask`` column of "0101..." strings."""
    return np.array([[c == "1" for c in text] for text in table["mask"]], dtype=bool)


def design_rows(table: pd.DataFrame, planned: np.ndarray | None) -> pd.DataFrame:
    """The coalition rows of ``planned`` masks (in plan order, repeats kept; not-yet-run masks left out).

    A study's table holds every coalition any design evaluated for it (runs are shared by mask), so an
    estimator must read only its own design's rows. ``planned=None``: every coalition row but the held-out
    self-check ones (they test the values, so no estimate may see them).
    """
    rows = table[table["stage"] == "coalition"]
    if planned is None:
        return rows[rows["role"] != CHECK_ROLE] if "role" in rows else rows
    by_mask = rows.drop_duplicates("mask").set_index("mask", drop=False)
    wanted = [bits(mask) for mask in planned]
    return by_mask.loc[[m for m in wanted if m in by_mask.index]].reset_index(drop=True)


def proxy_options(method: str, proxy: Proxy | None) -> dict[str, Proxy]:
    """``{"proxy": proxy}`` where ``method``'s estimator takes a control variate (the surrogate methods), else {}."""
    takes = "proxy" in inspect.signature(METHODS[method].estimator).parameters
    return {"proxy": proxy} if proxy is not None and takes else {}


def estimate_from_table(table: pd.DataFrame, method: str, planned: np.ndarray | None = None,
                        proxy: Proxy | None = None) -> ShapleyResult:
    """Values from a utilities table: endpoint rows give v0 and v1, the design's coalition rows the rest;
    ``proxy``: the data proxy, the control variate of the methods that take one."""
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")["utility"]
    rows = design_rows(table, planned)
    return estimate(masks_of(rows), rows["utility"].to_numpy(float), method, v0=float(ends["v0"]),
                    v1=float(ends["v1"]), **proxy_options(method, proxy))


def indices_from_table(table: pd.DataFrame, method: str, planned: np.ndarray | None = None,
                       proxy: Proxy | None = None) -> tuple[ShapleyResult, ShapleyResult | None]:
    """(values by ``method``, Banzhaf values of the same coalitions) from a utilities table; the default
    surrogate-assisted method gives both from one fit. The second is None where ``method`` is already a Banzhaf
    method or the rows are too few for the surrogate. ``proxy``: as ``estimate_from_table``."""
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")["utility"]
    rows = design_rows(table, planned)
    masks, utilities, v0, v1 = masks_of(rows), rows["utility"].to_numpy(float), float(ends["v0"]), float(ends["v1"])
    if method == "surrogate-shapley":
        both = estimate_indices(masks, utilities, v0=v0, v1=v1, **proxy_options(method, proxy))
        return both["shapley"], both["banzhaf"]
    main = estimate(masks, utilities, method, v0=v0, v1=v1, **proxy_options(method, proxy))
    if "banzhaf" in method:
        return main, None
    try:
        return main, estimate(masks, utilities, "surrogate-banzhaf", v0=v0, v1=v1,
                              **proxy_options("surrogate-banzhaf", proxy))
    except ValueError:
        return main, None
