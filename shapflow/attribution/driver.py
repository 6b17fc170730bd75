"""The coalition loop of an attribute run: evaluate the planned coalitions with no FINISHED run through the
request's executor, log each as its own run, and forecast convergence from the utilities logged so far. With a
precision target the coalitions come in batches (``attribution.design``) until the values meet it or the cap.

A coalition's identity is identity(study id, mask key, sFT seed): before evaluating, the driver looks for
a FINISHED run with it, so a killed job, rerun, evaluates exactly the coalitions that have no FINISHED run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from shapflow.attribution.attribute_request import Request
from shapflow.attribution.design import TargetDesign, TargetStatus
from shapflow.attribution.plan import CHECK_ROLE, estimate_from_table, plan
from shapflow.attribution.planner import coalition_seconds
from shapflow.config import identity, stage_key
from shapflow.execution import Outcome, evaluate_many
from shapflow.generation.grids import image_grid
from shapflow.shapley import DEFAULT_THRESHOLD, Coalitions, ShapleyResult, convergence, default_sampler, mask_key
from shapflow.shapley.masks import bits, heldout_masks
from shapflow.tracking import (
    CLAIM_ATTEMPTS,
    STUDY_TAG,
    USE_CASE_TAG,
    Contributors,
    FinishedLookup,
    Finisher,
    TrackedStore,
    Tracker,
    log_training_input,
    utilities_table,
)
from shapflow.utility import CoalitionResult, Study

__all__ = ["Driver"]


@dataclass
class Driver:
    """One attribute run in progress: where it logs, the study it evaluates, and its identity strings."""

    tracker: Tracker
    request: Request
    study: Study
    store: TrackedStore
    parent: str
    study_id: str
    model_version: str
    workdir: Path
    contributors: Contributors = field(init=False)
    design: np.ndarray | None = field(init=False, default=None)  # the coalitions the values use (after coalitions())
    reached: TargetStatus | None = field(init=False, default=None)  # a targeted run's last status

    def __post_init__(self) -> None:
        self.contributors = Contributors.of(self.request.cfg, self.study.data)

    def tags(self, cid: str) -> dict[str, str]:
        return {STUDY_TAG: self.study_id, "shapflow.coalition_id": cid, USE_CASE_TAG: self.request.cfg.name}

    def params(self, cid: str, mask: np.ndarray) -> dict[str, object]:
        """The params of a coalition run: who is in it (``mask`` over the attribute run's name map), how it was
        drawn, what it was trained from."""
        return {"coalition_id": cid, "size": int(mask.sum()), "mask": bits(mask),
                "sampler": default_sampler(self.request.method), "seed": self.request.seed,
                "sft_seed": self.request.cfg.sft.seed, "upstream_run": self.store.runs.get("finetune", "-"),
                "upstream_model_version": f"{self.request.cfg.name}-pruned/{self.model_version}",
                "config_hash": stage_key(self.request.cfg, "coalition"),
                "role": CHECK_ROLE if cid.startswith(f"{CHECK_ROLE}-") else "plan"}

    def name(self, cid: str, mask: np.ndarray) -> str:
        """E.g. ``coalition 0042 · 5/16 · clean-xl,twin-a,...`` (``check 0003 · ...`` for a self-check coalition):
        readable in the MLflow UI's run list."""
        members = ",".join(self.study.data.names[i] for i in np.flatnonzero(mask))
        smoke = "SMOKE " if self.request.cfg.tiny else ""
        kind = CHECK_ROLE if cid.startswith(f"{CHECK_ROLE}-") else "coalition"
        return f"{smoke}{kind} {cid.rsplit('-', 1)[-1][-4:]} · {int(mask.sum())}/{mask.size} · {members[:60]}"

    def key(self, mask: np.ndarray) -> str:
        """A coalition's identity: (coalition stage key via the study id, upstream run, mask, sFT seed)."""
        return identity("coalition", self.study_id, mask_key(mask), self.request.cfg.sft.seed)

    def log_outcome(self, run_id: str, cid: str, mask: np.ndarray, outcome: CoalitionResult | Outcome) -> Path:
        """Log params and metrics (utility, the data proxy q(S), properties, sFT/sampling/scoring seconds) of one
        run, and the data it trained on as its input (the coalition's part; v(all): the market; v(empty): none);
        returns its sample grid, the artifact ``get_or_run`` uploads before the run ends."""
        timings = {"sft_seconds": outcome.timings.get("train_seconds", 0.0),
                   "sampling_seconds": outcome.timings.get("sample_seconds", 0.0),
                   "scoring_seconds": outcome.timings.get("score_seconds", 0.0)}
        proxy = {} if self.request.proxy is None else {"proxy": float(self.request.proxy(mask[None])[0])}
        self.tracker.log(run_id, params=self.params(cid, mask),
                         metrics={"utility": outcome.utility, **proxy, **outcome.properties, **timings})
        if mask.any():
            part = self.contributors.dataset() if mask.all() else self.contributors.coalition(mask, cid)
            log_training_input(self.tracker, run_id, part)
        return image_grid(outcome.images, self.workdir / f"{run_id}" / "samples.png")

    def endpoints(self) -> None:
        """Get-or-run v0 (empty coalition: untrained model) and v1 (grand coalition) as endpoint runs."""
        n = self.request.n_contributors
        for cid, mask, evaluate in (("v0", np.zeros(n, bool), self.study.v0), ("v1", np.ones(n, bool), self.study.v1)):
            def work(run_id: str, cid: str = cid, mask: np.ndarray = mask, evaluate=evaluate) -> Path:
                return self.log_outcome(run_id, cid, mask, evaluate())

            self.tracker.get_or_run(f"{cid} · {self.request.cfg.name}", "endpoint", self.key(mask), work,
                                    parent=self.parent, tags=self.tags(cid))

    def check_coalitions(self) -> Coalitions:
        """The run's self-check: the first ``request.check`` held-out coalitions of half the contributors (the
        evaluation's held-out set), ids ``check-000000``..., never seen by an estimate."""
        masks = heldout_masks(self.request.n_contributors, 0.5, self.request.check)
        ids = [f"{CHECK_ROLE}-{r:06d}" for r in range(len(masks))]
        return Coalitions(masks, np.zeros(len(masks)), ids, CHECK_ROLE)

    def check(self, progress: bool) -> int:
        """Evaluate and log the self-check coalitions with no FINISHED run yet; returns how many ran."""
        checks = self.check_coalitions()
        done = set(utilities_table(self.tracker, self.study_id).get("mask", pd.Series(dtype=str)))
        pending = {r: mask for r, mask in enumerate(checks.masks) if bits(mask) not in done}
        if not pending:
            return 0
        bar = tqdm(total=len(checks), initial=len(checks) - len(pending), desc="self-check", unit="S",
                   disable=not progress, file=sys.stderr)
        held: dict[int, str] = {}
        with Finisher(self.tracker) as finisher:
            ran = self._evaluate(checks, pending, bar, finisher, held)
            finisher.drain()
            ran += self._await_held(checks, held, bar, finisher)
        bar.close()
        return ran

    def coalitions(self, progress: bool, batch: slice | None = None) -> int:
        """Evaluate and log the planned coalitions (of ``batch``) with no FINISHED run yet; returns how many ran.

        With a target (and no ``batch``) the design is chosen batch by batch instead (``targeted``).
        """
        if self.request.target is not None and batch is None:
            return self.targeted(progress)
        planned = plan(self.request)
        self.design = planned.masks
        done = set(utilities_table(self.tracker, self.study_id).get("mask", pd.Series(dtype=str)))
        pending: dict[int, np.ndarray] = {}
        for r in range(len(planned))[batch or slice(None)]:
            mask = planned.masks[r]
            if bits(mask) not in done:
                done.add(bits(mask))  # a mask drawn twice is evaluated once
                pending[r] = mask
        bar = tqdm(total=len(planned), initial=len(planned) - len(pending), desc="coalitions", unit="S",
                   disable=not progress, file=sys.stderr)
        held: dict[int, str] = {}
        with Finisher(self.tracker) as finisher:  # uploads + ends runs while the next coalition evaluates
            ran = self._evaluate(planned, pending, bar, finisher, held)
            finisher.drain()
            ran += self._await_held(planned, held, bar, finisher)
        bar.close()
        return ran

    def targeted(self, progress: bool) -> int:
        """Evaluate the targeted design batch by batch: each batch's coalitions with no FINISHED run (claimed, so
        drivers sharing the store split them), then the values of the design so far; stop once they meet the
        target or at the cap. The bar shows the measure against the target and the forecast."""
        request, target = self.request, self.request.target
        design = TargetDesign(request.n_contributors, request.budget, request.seed, request.method, target,
                              request.workers, request.stack, request.proxy)
        bar = tqdm(total=request.budget, desc=f"coalitions -> {target}", unit="S", disable=not progress,
                   file=sys.stderr)
        ran, start = 0, 0
        with Finisher(self.tracker) as finisher:
            while True:
                done = set(utilities_table(self.tracker, self.study_id).get("mask", pd.Series(dtype=str)))
                pending = {r: design.pool.masks[r] for r in design.chosen[start:]
                           if bits(design.pool.masks[r]) not in done}
                bar.update(len(design.chosen) - start - len(pending))
                held: dict[int, str] = {}
                ran += self._evaluate(design.pool, pending, bar, finisher, held)
                finisher.drain()  # the batch's runs are FINISHED before its values are read
                ran += self._await_held(design.pool, held, bar, finisher)
                table = utilities_table(self.tracker, self.study_id)
                self.reached = design.status(table)
                bar.set_postfix_str(self.target_line(self.reached, table), refresh=True)
                start = len(design.chosen)
                if self.reached.met or not design.extend(table):
                    break
        bar.close()
        self.design = design.masks()
        print(f"shapflow: {self.target_summary(self.reached)}", file=sys.stderr)
        return ran

    def target_line(self, status: TargetStatus, table: pd.DataFrame) -> str:
        """E.g. ``pairs-separated 0.31 / 0.44 · ~24 more coalitions, ~0.1 h at 9.1 s each on 2 workers``."""
        target = self.request.target
        line = f"{target.measure} {status.value:.3g} / {target.goal:g}"
        if status.met:
            return f"{line} · met"
        if status.needed is None:
            return f"{line} · forecast: unknown (beyond 100x the coalitions)"
        more = max(status.needed - status.coalitions, 0)
        seconds = coalition_seconds(table)
        hours = more * seconds / max(self.request.workers, 1) / 3600.0
        workers = f"{self.request.workers} worker" + ("" if self.request.workers == 1 else "s")
        cost = "" if np.isnan(seconds) else f", ~{hours:.2g} h at {seconds:.1f} s each on {workers}"
        return f"{line} · ~{more} more coalitions{cost}"

    def target_summary(self, status: TargetStatus) -> str:
        """One line: target met at m coalitions, or where the cap left it and what the forecast says."""
        target = self.request.target
        if status.met:
            return f"target {target} met with {status.coalitions} coalitions ({target.measure} {status.value:.3g})"
        more = "unknown" if status.needed is None else f"~{max(status.needed - status.coalitions, 0)} more coalitions"
        return (f"target {target} NOT met: stopped at the cap, {status.coalitions} coalitions (--budget "
                f"{self.request.budget}); {target.measure} reached {status.value:.3g}, forecast: {more}")

    def _await_held(self, planned: Coalitions, held: dict[int, str], bar: tqdm, finisher: Finisher) -> int:
        """Wait for the coalitions another live driver held (RUNNING) when this one reached them; evaluate here
        those that it did not finish (it failed or died). Returns how many were evaluated here."""
        ran = 0
        for _ in range(CLAIM_ATTEMPTS):
            if not held:
                break
            lost = {r: planned.masks[r] for r, run_id in held.items()
                    if self.tracker.wait_for(run_id, f"coalition {planned.ids[r]}") != "FINISHED"}
            held.clear()
            if lost:
                bar.update(-len(lost))
                ran += self._evaluate(planned, lost, bar, finisher, held)
                finisher.drain()
        return ran

    def _evaluate(self, planned: Coalitions, pending: dict[int, np.ndarray], bar: tqdm, finisher: Finisher,
                  held: dict[int, str]) -> int:
        """Evaluate one round of coalitions through the executor and log each as it completes; returns how many
        were evaluated here. Locally each coalition is claimed (a RUNNING run of ours) just before it is
        evaluated or submitted, so drivers sharing a store split the work; ``held`` collects the coalitions
        another live driver was evaluating ({index: its run}). A Ray task skips coalitions found FINISHED."""
        folders = {stage: str(path) for stage, path in self.store.folders.items()}
        keys = {r: self.key(m) for r, m in pending.items()}
        claims: dict[int, str] = {}
        if self.request.executor.kind == "ray":
            lookup = FinishedLookup(self.tracker.uri, self.tracker.experiment_id)
        else:
            index_of = {key: r for r, key in keys.items()}

            def lookup(key: str) -> bool:  # True: skip (another run holds the coalition)
                r = index_of[key]
                cid = planned.ids[r]
                run_id, mine = self.tracker.claim(self.name(cid, pending[r]), "coalition", key, parent=self.parent,
                                                  tags=self.tags(cid))
                (claims if mine else held)[r] = run_id
                return not mine
        ran = 0
        try:
            for outcome in evaluate_many(self.study, pending, workers=self.request.workers, folders=folders,
                                         spec=self.request.executor, lookup=lookup, keys=keys,
                                         stack=self.request.stack):
                cid, mask = planned.ids[outcome.index], planned.masks[outcome.index]
                bar.update(1)
                if outcome.skipped:  # FINISHED (or held) by another driver before it was evaluated: nothing to log
                    continue

                def work(run_id: str, cid: str = cid, mask: np.ndarray = mask, outcome: Outcome = outcome) -> Path:
                    return self.log_outcome(run_id, cid, mask, outcome)

                if outcome.index in claims:
                    self.tracker.run_claimed(claims.pop(outcome.index), work, finisher)
                else:
                    self.tracker.get_or_run(self.name(cid, mask), "coalition", self.key(mask), work,
                                            parent=self.parent, tags=self.tags(cid), finisher=finisher, claim=False)
                ran += 1
                if not bar.disable and self.request.target is None and (
                        bar.n % self.request.n_contributors == 0 or bar.n >= bar.total):
                    bar.set_postfix_str(self.forecast(bar.total - bar.n), refresh=True)  # a store query: every n
        finally:
            for run_id in claims.values():  # claimed, never evaluated (an error or Ctrl-C): redone next time
                self.tracker.end(run_id, "KILLED")
        return ran

    def _estimate(self) -> ShapleyResult | None:
        """Values from the design's coalitions logged so far (None while too few to estimate)."""
        try:
            return estimate_from_table(utilities_table(self.tracker, self.study_id), self.request.method,
                                       plan(self.request).masks, self.request.proxy)
        except (ValueError, KeyError, np.linalg.LinAlgError):
            return None

    def forecast(self, remaining: int) -> str:
        """The estimator's convergence forecast on the utilities logged so far (shown next to the ETA);
        ``remaining``: planned coalitions not evaluated yet (none left: no "more coalitions" to promise)."""
        result = self._estimate()
        if result is None:
            return "forecast: too few coalitions yet"
        ok, more = convergence(result, DEFAULT_THRESHOLD)
        if ok:
            return "converged"
        if remaining <= 0:
            return "all planned coalitions evaluated (not converged)"
        return "forecast: unknown" if more < 0 else f"~{more} more coalitions to converge"
