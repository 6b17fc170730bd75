"""Optional extras (``setup.py``'s ``extras_require``): which module each feature needs and the one command that
installs it, checked before the feature starts anything, so a missing extra is one line (exit 2) naming that
command rather than an ``ImportError`` or "mlflow server exited with 1" minutes later."""

from __future__ import annotations

from importlib.util import find_spec

from shapflow.config.sections import InputError

__all__ = ["EXTRAS", "MissingExtra", "require_extra"]

EXTRAS = {"ray": "scaleout", "psycopg2": "scaleout", "playwright": "test", "shapiq": "bench"}


class MissingExtra(InputError):
    """A feature's optional dependency is not installed; the message holds the command that installs it."""


def require_extra(module: str, feature: str) -> None:
    """Raise ``MissingExtra`` unless ``module`` (a key of ``EXTRAS``) can be imported; ``feature`` is what needs
    it, as the user asked for it (e.g. "--executor ray")."""
    if find_spec(module) is None:
        raise MissingExtra(f"{feature} needs {module}, which is not installed here: "
                           f"pip install -e \".[{EXTRAS[module]}]\" (in the shapflow checkout)")
