"""Claims: how concurrent drivers share one store without computing anything twice.

A RUNNING run with a key (``shapflow.key``) and a live owner (``owner``) holds that key; ``get_or_run`` waits
for the holder to finish and reuses its run instead of computing the same thing twice, and takes over when the
holder's owner is gone. Runs whose owner is gone are retired (KILLED) by the next entry point that starts
(``retire_leftovers``); a live run is never marked KILLED. ``Finisher`` ends runs off the driver's critical path.

``Claims`` is the half of ``store.Tracker`` that does this; it uses the Tracker's own calls (``call``,
``search``, ``finished``, ``start``, ``end``, ``finish``, ``_beats``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mlflow.entities import Run

from shapflow.tracking.owner import OWNER_TAG, owner_alive, owner_id, owner_tags
from shapflow.tracking.tags import KEY_TAG, RETIRED_TAG, STAGE_TAG, quoted

__all__ = ["CLAIM_ATTEMPTS", "Claims", "Finisher"]

CLAIM_ATTEMPTS = 5  # holders that fail (or die) before this process computes the key itself
CLAIM_WAIT = 24 * 3600.0  # seconds to wait for one live holder before giving up with a message
CLAIM_SETTLE = 0.5  # seconds between taking a claim and confirming it (a rival's create may commit late)
POLL_MAX = 10.0


class Claims:
    """Get-or-run under claims, waiting for live holders and retiring dead ones (module docstring); a mixin of
    ``store.Tracker``."""

    def get_or_run(self, name: str, stage: str, key: str, work: Callable[[str], Path | None], *,
                   parent: str | None = None, tags: dict[str, str] | None = None,
                   finisher: Finisher | None = None, claim: bool = True) -> tuple[str, bool]:
        """The FINISHED run with ``key``, or a new run in which ``work(run_id)`` logs; returns (run id, reused).

        With ``claim`` a run of another live process that holds ``key`` (RUNNING) is waited for and reused
        (taken over if it fails or its owner dies); without, a key is looked up once and computed if not
        FINISHED (``work`` already ran elsewhere, e.g. a Ray task: a duplicate is harmless).
        ``work`` may return a file to log as an artifact before the run ends; with a ``finisher`` the upload
        and the end happen on its background thread (the caller goes on; the run turns FINISHED only once
        its artifact is there). A failure (or Ctrl-C) inside ``work`` ends the new run FAILED (KILLED) and
        re-raises, so it is redone. Nothing is read back that the caller does not need (store calls are a
        coalition's tracking overhead).
        """
        if not claim:
            found = self.finished(key)
            if found is not None:
                return found.info.run_id, True
            return self.run_claimed(self.start(name, {STAGE_TAG: stage, KEY_TAG: key, **(tags or {})}, parent),
                                    work, finisher), False
        for _ in range(CLAIM_ATTEMPTS):
            run_id, mine = self.claim(name, stage, key, parent=parent, tags=tags, settle=CLAIM_SETTLE)
            if mine:
                return self.run_claimed(run_id, work, finisher), False
            if self.wait_for(run_id, f"{name} (key {key[:12]})") == "FINISHED":
                return run_id, True
        raise RuntimeError(f"{name}: {CLAIM_ATTEMPTS} runs holding key {key[:12]} failed or were abandoned; "
                           "look at the FAILED runs of that key in the MLflow UI, fix the cause, and rerun")

    def run_claimed(self, run_id: str, work: Callable[[str], Path | None], finisher: Finisher | None = None) -> str:
        """``work(run_id)`` in a run this process holds, then finish it (FAILED/KILLED and re-raised on error)."""
        try:
            artifact = work(run_id)
        except BaseException as err:
            self.end(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        if finisher is None:
            self.finish(run_id, artifact)
        else:
            finisher.submit(run_id, artifact)
        return run_id

    def holder(self, key: str, mine: str | None = None) -> Run | None:
        """The run holding ``key``: the newest FINISHED one, else the first-started RUNNING one whose owner lives
        (``mine`` counts as live); RUNNING runs of dead owners met on the way are retired."""
        runs = self.search(f"tags.`{KEY_TAG}` = {quoted(key)}")
        finished = [run for run in runs if run.info.status == "FINISHED"]
        if finished:
            return finished[0]
        live = []
        for run in runs:
            if run.info.status != "RUNNING":
                continue
            if run.info.run_id == mine or owner_alive(run.data.tags):
                live.append(run)
            else:
                self.retire(run)
        return min(live, key=lambda run: (run.info.start_time, run.info.run_id)) if live else None

    def claim(self, name: str, stage: str, key: str, *, parent: str | None = None,
              tags: dict[str, str] | None = None, settle: float = 0.0) -> tuple[str, bool]:
        """Hold ``key``: (new RUNNING run of ours, True), or (the run that holds it, False: FINISHED, or RUNNING
        under a live owner and started first; our own claim is then withdrawn, i.e. deleted).

        A claim is taken, then confirmed after ``settle`` seconds (a rival's run may commit a little after its
        start time); two processes that see each other agree on the first-started claim.
        """
        held = self.holder(key)
        if held is not None:
            return held.info.run_id, False
        mine = self.start(name, {STAGE_TAG: stage, KEY_TAG: key, **(tags or {})}, parent)
        for pause in ((0.0, settle) if settle else (0.0,)):
            time.sleep(pause)
            held = self.holder(key, mine)
            if held is not None and held.info.run_id != mine:
                self.withdraw(mine)
                return held.info.run_id, False
        return mine, True

    def withdraw(self, run_id: str) -> None:
        """Delete a claim of ours that did no work (another run holds its key)."""
        self._beats().remove(run_id)
        self.call("delete_run", run_id)

    def wait_for(self, run_id: str, what: str, timeout: float = CLAIM_WAIT) -> str:
        """Wait for another process's run to end; its final status, or "KILLED" once its owner is gone (the run
        is retired then). Polls with a growing pause (at most ``POLL_MAX`` s); gives up after ``timeout``."""
        deadline, pause, said = time.monotonic() + timeout, 0.5, False
        while True:
            run = self.call("get_run", run_id)
            if run.info.status != "RUNNING" or run.info.lifecycle_stage == "deleted":
                return run.info.status if run.info.lifecycle_stage != "deleted" else "KILLED"
            if not owner_alive(run.data.tags):
                self.retire(run)
                return "KILLED"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} is still being computed by run {run_id} (owner "
                                   f"{run.data.tags.get(OWNER_TAG, '?')}) after {timeout:.0f} s; wait for it, or "
                                   "stop that process, then rerun")
            if not said:
                print(f"shapflow: {what} is being computed by run {run_id} (owner "
                      f"{run.data.tags.get(OWNER_TAG, '?')}): waiting for it to reuse it", file=sys.stderr)
                said = True
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    def retire(self, run: Run) -> None:
        """Mark a RUNNING run whose owner is gone KILLED (it never counts; its key is computed again)."""
        self.call("set_tag", run.info.run_id, RETIRED_TAG,
                  f"owner {run.data.tags.get(OWNER_TAG, '?')} gone; retired by {owner_tags()[OWNER_TAG]}")
        self.end(run.info.run_id, "KILLED")

    def retire_own(self, reason: str) -> int:
        """End this process's RUNNING runs of the experiment KILLED, ``reason`` in their retired tag (an entry point
        stopped by a signal or its parent's death: a coalition in flight is not left RUNNING). Returns how many."""
        mine = self.search(f"attributes.status = 'RUNNING' AND tags.`{OWNER_TAG}` = '{owner_id()}'")
        for run in mine:
            self.call("set_tag", run.info.run_id, RETIRED_TAG, reason)
            self.end(run.info.run_id, "KILLED")
        return len(mine)

    def retire_leftovers(self) -> int:
        """Retire the experiment's RUNNING runs whose owner process is gone (a killed job's attribute, stage and
        coalition runs); runs of live owners, this process's included, are left alone. Returns how many."""
        stale = [run for run in self.search("attributes.status = 'RUNNING'") if not owner_alive(run.data.tags)]
        for run in stale:
            self.retire(run)
        return len(stale)


class Finisher:
    """Ends runs off the driver's critical path: one background thread uploads each run's artifact and then
    marks it FINISHED, in submission order, while the driver evaluates the next coalition. A run whose finish
    never happened (a killed driver) stays RUNNING, never counts, and is redone. ``drain`` waits for every
    submitted finish and re-raises the first failure; use it before reading FINISHED runs back."""

    def __init__(self, tracker: Claims) -> None:
        self.tracker = tracker
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shapflow-finish")
        self._pending: list[Future[None]] = []

    def submit(self, run_id: str, artifact: Path | None) -> None:
        self._pending.append(self._pool.submit(self.tracker.finish, run_id, artifact))

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> Finisher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)
