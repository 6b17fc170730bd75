"""Who owns a RUNNING run, whether that owner still lives, and the heartbeat that says so across hosts.

Every run shapflow creates (or adopts from ``mlflow run``) carries ``shapflow.owner`` = ``host:pid:start``, the
process that will end it (``start``: the process's start time in clock ticks since boot, so a recycled PID is
not mistaken for the owner), and ``shapflow.heartbeat`` (unix seconds), refreshed every ``HEARTBEAT_SECONDS``
by a daemon thread of the owner while the run is open. A RUNNING run is a leftover only when its owner is gone:
on this host, no process with that PID and start time; on another host, a heartbeat older than
``STALE_SECONDS``. A run without an owner tag (not created by shapflow) is never judged dead.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["HEARTBEAT_SECONDS", "HEARTBEAT_TAG", "OWNER_TAG", "STALE_SECONDS", "Heartbeat", "owner_alive",
           "owner_id", "owner_tags"]

OWNER_TAG = "shapflow.owner"
HEARTBEAT_TAG = "shapflow.heartbeat"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # 10 missed heartbeats: the owner on another host is gone


def _start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc); "?" without /proc (the PID alone
    then); None when no such process lives (a zombie included)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        if os.path.isdir("/proc/self"):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # exists, owned by another user
            return "?"
        return "?"
    fields = stat.rpartition(")")[2].split()  # from field 3 on; the command name in (...) may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead, only not reaped yet


def owner_id() -> str:
    """``host:pid:start`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def owner_tags() -> dict[str, str]:
    """The tags that make this process the owner of a run it starts, with a fresh heartbeat."""
    return {OWNER_TAG: owner_id(), HEARTBEAT_TAG: str(int(time.time()))}


def owner_alive(tags: dict[str, str], now: float | None = None) -> bool:
    """Whether the owner named in a run's ``tags`` may still end it (True when the run names no owner)."""
    owner = tags.get(OWNER_TAG)
    if not owner or owner.count(":") < 2:
        return True
    host, pid, start = owner.rsplit(":", 2)
    if host == socket.gethostname():
        found = _start_ticks(int(pid)) if pid.isdigit() else None
        return found is not None and (found == start or "?" in (found, start))
    try:
        beat = float(tags.get(HEARTBEAT_TAG, "0"))
    except ValueError:
        beat = 0.0
    return (now or time.time()) - beat < STALE_SECONDS


class Heartbeat:
    """Refreshes ``shapflow.heartbeat`` on the open runs of this process, one write per run every
    ``HEARTBEAT_SECONDS``, from one daemon thread that ends when no run is open."""

    def __init__(self, write: Callable[[str, str], None]) -> None:
        self._write = write  # write(run_id, unix seconds)
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        with self._lock:
            self._runs.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="shapflow-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.discard(run_id)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                runs = sorted(self._runs)
                if not runs:
                    self._thread = None
                    return
            for run_id in runs:
                if run_id not in self._runs:  # ended meanwhile
                    continue
                try:
                    self._write(run_id, str(int(time.time())))
                except Exception as err:  # a run deleted meanwhile, a store gone: the next beat retries
                    print(f"shapflow: heartbeat of run {run_id} not written: {err}", file=sys.stderr)
