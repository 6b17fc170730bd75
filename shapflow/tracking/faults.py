"""Faults of the tracking store that the user fixes, not the code: a damaged store file and a full disk.

``Tracker.call`` and ``client_for`` turn them into ``StoreFault`` (an ``InputError``: one line, exit 2 at every
entry point) instead of SQLAlchemy's traceback of a hundred lines.
"""

from __future__ import annotations

import errno

from shapflow.config import InputError

__all__ = ["StoreFault", "store_fault"]

_DAMAGED = ("file is not a database", "database disk image is malformed", "file is encrypted or is not a database")
_FULL = ("database or disk is full", "No space left on device")


class StoreFault(InputError):
    """The tracking store cannot be used as it is (a damaged file, a full disk); the message says what to do."""


def store_fault(uri: str, err: BaseException) -> StoreFault | None:
    """The ``StoreFault`` that ``err``, raised by a call on the store at ``uri``, is; None for any other error."""
    text = str(err)
    if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or any(s in text for s in _FULL):
        where = getattr(err, "filename", None) or uri
        return StoreFault(f"no space left on the device of {where}: free some (or point MLFLOW_TRACKING_URI and "
                          "TMPDIR at a bigger disk) and run the same command again: finished runs are reused")
    if any(s in text for s in _DAMAGED):
        reason = next(s for s in _DAMAGED if s in text)
        return StoreFault(f"the tracking store {uri} is damaged ({reason}): restore it from a backup, or set "
                          "MLFLOW_TRACKING_URI to another store (a new SQLite file is created on first use)")
    return None
