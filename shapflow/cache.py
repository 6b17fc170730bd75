"""The user cache folder (``SHAPFLOW_CACHE_DIR`` or ``~/.cache/shapflow``) for derived artefacts."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created on demand."""
    root = Path(os.environ.get("SHAPFLOW_CACHE_DIR") or Path.home() / ".cache" / "shapflow")
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
