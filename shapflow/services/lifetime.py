"""Process lifetime: worker processes die with their parent; services stop on SIGTERM/SIGINT/SIGHUP.

A spawned pool worker blocks on a queue whose write end it holds itself, so it never sees its driver die:
after ``kill -9`` of the driver it idles forever (and keeps multiprocessing's resource tracker alive, whose
pipe it inherited). ``guard_initializer`` wraps a pool initializer so each worker exits within about a second
of its parent's death: Linux ``PR_SET_PDEATHSIG`` (a signal the moment the parent dies) where ``prctl``
exists, and a daemon thread polling ``os.getppid()`` everywhere. Once the workers are gone the tracker reads
EOF and exits by itself.

Lightweight on purpose (no torch): spawned workers import it before anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["Stopped", "die_with_parent", "group_alive", "guard_initializer", "reap_descendants_on_death",
           "stop_on_signals", "stop_with_parent", "wait_group_gone"]

_PR_SET_PDEATHSIG = 1
_PDEATH_SIGNAL = getattr(signal, "SIGUSR1", None)  # not SIGTERM/SIGKILL: the pool's terminate() uses SIGTERM
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
_GUARD: dict[str, int] = {}  # {"parent": the PID this worker must outlive no longer than ~1 s}


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os._exit(1)  # no cleanup: the parent that owned our work is gone


def _on_parent_death(_signum: int, _frame: object) -> None:
    """PDEATHSIG also fires when the parent's *thread* that spawned us exits: exit only if reparented."""
    _exit_if_orphaned(_GUARD["parent"])


def _pdeathsig(handler: Callable[[int, object], None] = _on_parent_death) -> bool:
    """Ask Linux to send ``_PDEATH_SIGNAL`` (handled by ``handler``) when our parent dies (main thread only);
    False where unavailable."""
    if _PDEATH_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        signal.signal(_PDEATH_SIGNAL, handler)
        return libc.prctl(_PR_SET_PDEATHSIG, int(_PDEATH_SIGNAL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux / no prctl: the polling thread alone
        return False


def _watch(parent_pid: int, poll: float) -> None:
    while True:
        _exit_if_orphaned(parent_pid)
        time.sleep(poll)


def die_with_parent(parent_pid: int, poll: float = 0.5) -> None:
    """Make this process exit (``os._exit(1)``) when ``parent_pid`` stops being its parent.

    ``parent_pid`` is the parent's PID as the parent saw it (passed in, not read here: the parent may already
    be dead when this runs, which the first check catches)."""
    _GUARD["parent"] = parent_pid
    _pdeathsig()
    _exit_if_orphaned(parent_pid)
    threading.Thread(target=_watch, args=(parent_pid, poll), name="shapflow-parent-watch", daemon=True).start()


def stop_with_parent(parent: int | None = None, poll: float = 0.5) -> int:
    """Raise ``Stopped`` in this process's main thread once its parent dies, so its ``finally`` blocks run (an
    entry point ends its runs KILLED) instead of computing on under PID 1: ``mlflow run`` killed by SIGTERM
    forwards nothing to its entry point. ``parent``: the parent's PID read at start (default: now), so a parent
    that died in between is caught at once. Call from the main thread; returns the parent's PID."""
    parent = parent or os.getppid()
    if _PDEATH_SIGNAL is None:  # no SIGUSR1 (Windows): nothing to deliver the stop with
        return parent

    def stop_if_orphaned(_signum: int, _frame: object) -> None:
        if os.getppid() != parent:
            signal.signal(_PDEATH_SIGNAL, signal.SIG_IGN)  # once: the cleanup must not be interrupted again
            raise Stopped(f"parent process {parent} died")

    def watch() -> None:  # where PDEATHSIG is missing, or fired before the handler was set
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), _PDEATH_SIGNAL)

    _pdeathsig(stop_if_orphaned)
    threading.Thread(target=watch, name="shapflow-parent-watch", daemon=True).start()
    return parent


# The reaper: a detached plain-Python process (no shapflow import: it must start in milliseconds) that keeps
# the list of a process's descendants, (pid, start time) from /proc, and SIGKILLs those still alive once that
# process is gone. Ray's local cluster outlives a SIGKILL-ed driver otherwise: its GCS and raylet share the
# driver's fate, but the raylet's agents (dashboard, runtime env) and idle workers are reparented and live on.
_REAPER = """
import os, signal, sys, time
watched, poll = int(sys.argv[1]), float(sys.argv[2])
def table():
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            found[int(entry)] = (int(fields[1]), fields[19])
    return found
known = {}
ready = False
while True:
    now = table()
    if watched not in now:
        break
    level = {watched}
    while level:
        level = {pid for pid, (ppid, _) in now.items() if ppid in level and pid != os.getpid()}
        known.update({pid: now[pid][1] for pid in level})
    if not ready:
        print("ready", flush=True)
        ready = True
    time.sleep(poll)
now = table()
for pid, started in known.items():
    if pid in now and now[pid][1] == started:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def reap_descendants_on_death(poll: float = 0.5) -> subprocess.Popen | None:
    """Start the reaper of this process's descendants (``_REAPER``): after this process dies, even by SIGKILL,
    every process it started (directly or not) that the reaper saw alive is killed; it scans every ``poll``
    seconds, so a process that lived less than that before this one died may be missed. Returns once the reaper
    has made its first scan (its interpreter starts in ~0.1-0.5 s; a process started before then would be missed).
    None where there is no /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    reaper = subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), str(poll)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True, text=True)
    reaper.stdout.readline()  # "ready" after its first scan ("" if it died: nothing to wait for)
    reaper.stdout.close()
    return reaper


def _guarded(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def guard_initializer(initializer: Callable | None, initargs: tuple = ()) -> tuple[Callable, tuple]:
    """(initializer, initargs) for a process pool whose workers die with this process, then run ``initializer``."""
    return _guarded, (os.getpid(), initializer, tuple(initargs))


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM/SIGHUP/SIGINT inside ``stop_on_signals`` (a KeyboardInterrupt, so
    code that already stops cleanly on Ctrl-C stops cleanly on these too)."""


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = _STOP_SIGNALS) -> Iterator[None]:
    """Turn ``signals`` into ``Stopped`` so ``finally`` blocks stop what was started; after the first one, the
    rest are ignored until the block ends, so a second signal cannot interrupt that cleanup."""
    def handler(signum: int, _frame: object) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in process group ``pgid`` (``/proc`` on Linux, else ``killpg(0)``)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except (OSError, IndexError):
            continue  # exited while we looked
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Poll (bounded) until process group ``pgid`` has no live process; True if it is gone."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
