"""The coalition loop of an attribute run: evaluate the planned coalitions with no FINISHED run through the
request's executor, log each as its own run, and forecast convergence from the utilities logged so far.

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

from shapflow.attribution.plan import bits, estimate_from_table, plan
from shapflow.attribution.report import image_grid
from shapflow.attribution.request import Request
from shapflow.config import identity, stage_key
from shapflow.execution import Outcome, evaluate_many
from shapflow.shapley import Coalitions, ShapleyResult, convergence, default_sampler, mask_key
from shapflow.tracking import (
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

    def __post_init__(self) -> None:
        self.contributors = Contributors.of(self.request.cfg, self.study.data)

    def tags(self, cid: str) -> dict[str, str]:
        return {STUDY_TAG: self.study_id, "shapflow.coalition_id": cid, USE_CASE_TAG: self.request.cfg.name}

    def params(self, cid: str, mask: np.ndarray) -> dict[str, object]:
        """The params of a coalition run: who is in it, how it was drawn, what it was trained from."""
        members = [self.study.data.names[i] for i in np.flatnonzero(mask)]
        return {"coalition_id": cid, "contributors": ",".join(members), "size": len(members), "mask": bits(mask),
                "sampler": default_sampler(self.request.method), "seed": self.request.seed,
                "sft_seed": self.request.cfg.sft.seed, "upstream_run": self.store.runs.get("finetune", "-"),
                "upstream_model_version": f"{self.request.cfg.name}-pruned/{self.model_version}",
                "config_hash": stage_key(self.request.cfg, "coalition")}

    def name(self, cid: str, mask: np.ndarray) -> str:
        """E.g. ``coalition 0042 · 5/16 · clean-xl,twin-a,...``: readable in the MLflow UI's run list."""
        members = ",".join(self.study.data.names[i] for i in np.flatnonzero(mask))
        smoke = "SMOKE " if self.request.cfg.tiny else ""
        return f"{smoke}coalition {cid.rsplit('-', 1)[-1][-4:]} · {int(mask.sum())}/{mask.size} · {members[:60]}"

    def key(self, mask: np.ndarray) -> str:
        """A coalition's identity: (coalition stage key via the study id, upstream run, mask, sFT seed)."""
        return identity("coalition", self.study_id, mask_key(mask), self.request.cfg.sft.seed)

    def log_outcome(self, run_id: str, cid: str, mask: np.ndarray, outcome: CoalitionResult | Outcome) -> Path:
        """Log params and metrics (utility, properties, sFT/sampling/scoring seconds) of one run, and the data it
        trained on as its input (the coalition's part; v(all): the market; v(empty): none); returns its
        sample grid, the artifact ``get_or_run`` uploads before the run ends."""
        timings = {"sft_seconds": outcome.timings.get("train_seconds", 0.0),
                   "sampling_seconds": outcome.timings.get("sample_seconds", 0.0),
                   "scoring_seconds": outcome.timings.get("score_seconds", 0.0)}
        self.tracker.log(run_id, params=self.params(cid, mask),
                         metrics={"utility": outcome.utility, **outcome.properties, **timings})
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

    def coalitions(self, progress: bool, batch: slice | None = None) -> int:
        """Evaluate and log the planned coalitions (of ``batch``) with no FINISHED run yet; returns how many ran.

        With ``until_converged`` the plan is submitted in rounds (at least n and 2 per worker) and the
        driver stops after the first round whose values meet the convergence rule; the bar shows the ETA
        to the budget and the estimator's forecast of how many more coalitions convergence needs.
        """
        planned = plan(self.request)
        done = set(utilities_table(self.tracker, self.study_id).get("mask", pd.Series(dtype=str)))
        pending: dict[int, np.ndarray] = {}
        for r in range(len(planned))[batch or slice(None)]:
            mask = planned.masks[r]
            if bits(mask) not in done:
                done.add(bits(mask))  # a mask drawn twice is evaluated once
                pending[r] = mask
        bar = tqdm(total=len(planned), initial=len(planned) - len(pending), desc="coalitions", unit="S",
                   disable=not progress, file=sys.stderr)
        ran = 0
        with Finisher(self.tracker) as finisher:  # uploads + ends runs while the next coalition evaluates
            for chunk in self._rounds(pending):
                if self.request.until_converged and self.converged():
                    break
                ran += self._evaluate(planned, chunk, bar, finisher)
                finisher.drain()  # the round's runs are FINISHED before the convergence rule reads them
        bar.close()
        return ran

    def _rounds(self, pending: dict[int, np.ndarray]) -> list[dict[int, np.ndarray]]:
        """The pending coalitions in plan order: one round, or rounds of max(n, 2 x workers) when adaptive."""
        if not self.request.until_converged:
            return [pending]
        size = max(self.request.n_contributors, 2 * self.request.workers)
        items = list(pending.items())
        return [dict(items[i:i + size]) for i in range(0, len(items), size)]

    def _evaluate(self, planned: Coalitions, pending: dict[int, np.ndarray], bar: tqdm, finisher: Finisher) -> int:
        """Evaluate one round of coalitions through the executor and log each as it completes."""
        folders = {stage: str(path) for stage, path in self.store.folders.items()}
        lookup = FinishedLookup(self.tracker.uri, self.tracker.experiment_id)
        keys = {r: self.key(m) for r, m in pending.items()}
        for outcome in evaluate_many(self.study, pending, workers=self.request.workers, folders=folders,
                                     spec=self.request.executor, lookup=lookup, keys=keys):
            cid, mask = planned.ids[outcome.index], planned.masks[outcome.index]
            if outcome.skipped:  # found FINISHED (by another driver) before it was evaluated: nothing to log
                bar.update(1)
                continue

            def work(run_id: str, cid: str = cid, mask: np.ndarray = mask, outcome: Outcome = outcome) -> Path:
                return self.log_outcome(run_id, cid, mask, outcome)

            self.tracker.get_or_run(self.name(cid, mask), "coalition", self.key(mask), work, parent=self.parent,
                                    tags=self.tags(cid), finisher=finisher)
            bar.update(1)
            if not bar.disable and bar.n % self.request.n_contributors == 0:  # a store query: every n coalitions
                bar.set_postfix_str(self.forecast(), refresh=True)
        return len(pending)

    def _estimate(self) -> ShapleyResult | None:
        """Values from the design's coalitions logged so far (None while too few to estimate)."""
        try:
            return estimate_from_table(utilities_table(self.tracker, self.study_id), self.request.method,
                                       plan(self.request).masks)
        except (ValueError, KeyError, np.linalg.LinAlgError):
            return None

    def converged(self) -> bool:
        """Whether the values logged so far meet the convergence rule at the request's threshold."""
        result = self._estimate()
        return result is not None and convergence(result, self.request.threshold)[0]

    def forecast(self) -> str:
        """The estimator's convergence forecast on the utilities logged so far (shown next to the ETA)."""
        result = self._estimate()
        if result is None:
            return "forecast: too few coalitions yet"
        ok, more = convergence(result, self.request.threshold)
        return "converged" if ok else ("forecast: unknown" if more < 0 else f"~{more} more coalitions to converge")
