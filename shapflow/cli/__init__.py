"""The ``shapflow`` command line (Click commands only)."""

from shapflow.cli.main import main

__all__ = ["main"]
