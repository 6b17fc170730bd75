"""The coalition loop of an attribute run: plan the coalitions, evaluate the ones with no FINISHED run
through the executor, log each as its own run, and estimate values from a study's logged utilities.

A coalition's identity is identity(study id, mask key, sFT seed): before evaluating, the driver looks for
a FINISHED run with it, so a killed job, rerun, evaluates exactly the coalitions that have no FINISHED run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from shapflow.attribution.report import image_grid
from shapflow.config import stage_key
from shapflow.execution.local import Outcome, evaluate_many
from shapflow.shapley import SAMPLERS, Coalitions, ShapleyResult, convergence, default_sampler, estimate, mask_key
from shapflow.tracking import STUDY_TAG, USE_CASE_TAG, Finisher, TrackedStore, Tracker, identity, utilities_table
from shapflow.utility.study import CoalitionResult, Study

if TYPE_CHECKING:
    from shapflow.attribution.run import Request

__all__ = ["Driver", "design_rows", "estimate_from_table", "masks_of", "plan"]


def plan(request: Request) -> Coalitions:
    """The coalitions to evaluate: the method's sampler, prefix-stable, so a rerun regenerates the same ids."""
    return SAMPLERS[default_sampler(request.method)](request.n_contributors, request.budget, request.seed)


def masks_of(table: pd.DataFrame) -> np.ndarray:
    """The bool masks (m, n) of a utilities table's ``mask`` column of "0101..." strings."""
    return np.array([[c == "1" for c in text] for text in table["mask"]], dtype=bool)


def _bits(mask: np.ndarray) -> str:
    return "".join("1" if m else "0" for m in mask)


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

    def tags(self, cid: str) -> dict[str, str]:
        return {STUDY_TAG: self.study_id, "shapflow.coalition_id": cid, USE_CASE_TAG: self.request.cfg.name}

    def params(self, cid: str, mask: np.ndarray) -> dict[str, object]:
        """The params of a coalition run: who is in it, how it was drawn, what it was trained from."""
        members = [self.study.data.names[i] for i in np.flatnonzero(mask)]
        return {"coalition_id": cid, "contributors": ",".join(members), "size": len(members), "mask": _bits(mask),
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
        """Log params and metrics (utility, properties, sFT/sampling/scoring seconds) of one run; returns its
        sample grid, the artifact ``get_or_run`` uploads before the run ends."""
        timings = {"sft_seconds": outcome.timings.get("train_seconds", 0.0),
                   "sampling_seconds": outcome.timings.get("sample_seconds", 0.0),
                   "scoring_seconds": outcome.timings.get("score_seconds", 0.0)}
        self.tracker.log(run_id, params=self.params(cid, mask),
                         metrics={"utility": outcome.utility, **outcome.properties, **timings})
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
            if _bits(mask) not in done:
                done.add(_bits(mask))  # a mask drawn twice is evaluated once
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
        lookup = (self.tracker.uri, self.tracker.experiment_id, {r: self.key(m) for r, m in pending.items()})
        for outcome in evaluate_many(self.study, pending, workers=self.request.workers, folders=folders,
                                     lookup=lookup):
            cid, mask = planned.ids[outcome.index], planned.masks[outcome.index]
            if outcome.skipped:  # a Ray task found it FINISHED (by another driver): nothing to log
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


def design_rows(table: pd.DataFrame, planned: np.ndarray | None) -> pd.DataFrame:
    """The coalition rows of ``planned`` masks (in plan order, repeats kept; not-yet-run masks left out).

    A study's table holds every coalition any design evaluated for it (runs are shared by mask), so an
    estimator must read only its own design's rows. ``planned=None``: every coalition row.
    """
    rows = table[table["stage"] == "coalition"]
    if planned is None:
        return rows
    by_mask = rows.drop_duplicates("mask").set_index("mask", drop=False)
    wanted = [_bits(mask) for mask in planned]
    return by_mask.loc[[m for m in wanted if m in by_mask.index]].reset_index(drop=True)


def estimate_from_table(table: pd.DataFrame, method: str, planned: np.ndarray | None = None) -> ShapleyResult:
    """Values from a utilities table: endpoint rows give v0 and v1, the design's coalition rows the rest."""
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")["utility"]
    rows = design_rows(table, planned)
    return estimate(masks_of(rows), rows["utility"].to_numpy(float), method, v0=float(ends["v0"]),
                    v1=float(ends["v1"]))
