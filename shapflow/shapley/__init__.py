"""Shapley values of data contributors from coalition utilities: samplers, estimators, test games (pure numpy)."""

from .adjusted import estimate_indices
from .api import DEFAULT_METHOD, METHODS, approximate, default_sampler, design_bias, estimate, min_budget
from .control import proxy_report
from .games import GAMES, make_game
from .results import DEFAULT_THRESHOLD, ShapleyResult, convergence
from .samplers import SAMPLERS, Coalitions, mask_key

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "GAMES",
    "METHODS",
    "SAMPLERS",
    "Coalitions",
    "ShapleyResult",
    "approximate",
    "convergence",
    "default_sampler",
    "design_bias",
    "estimate",
    "estimate_indices",
    "make_game",
    "mask_key",
    "min_budget",
    "proxy_report",
]
