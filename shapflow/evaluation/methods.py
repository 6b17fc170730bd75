"""Every attribution method an evaluation compares, as contributor values (higher = more valuable).

- Coalition studies (tracked attribute runs, reused when a FINISHED one with the same design exists):
  sFT-Shapley (the default, surrogate-assisted; its Banzhaf value and Leverage SHAP come from the same
  coalitions at no extra cost), sFT leave-one-out, sFT Banzhaf by MSR on its own uniform design, sFT
  datamodels, FT-Shapley at the compute of the sFT-Shapley study.
- Retraining-based (ground-truth-style runs): leave-one-out by retraining (n + 1 retrainings with the
  first training seed, as leave-one-out is usually run: its seed noise is part of what it is) and
  Shapley by retraining at the fewest coalitions its estimator accepts (equal compute would allow fewer;
  the ``compute`` column says how much more it used).
- Baselines: pixel / feature similarity (mean, max), the contributors' own property and classifier
  confidence, the documented degradation level, TRAK and D-TRAK of the full model.
Non-study methods are logged as ``method`` runs (values as metrics), get-or-run by their identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shapflow.attribution import Request, estimate_from_table, parse_request, plan, run_attribute
from shapflow.config import identity, stage_key
from shapflow.evaluation.groundtruth import RetrainJob
from shapflow.evaluation.plans import coalition_cost, equal_compute_budget, loo_jobs, retrain_shapley_jobs
from shapflow.evaluation.runs import Retrained
from shapflow.shapley import DEFAULT_METHOD, estimate, min_budget
from shapflow.shapley.masks import bits
from shapflow.tracking import (
    DESIGN_TAG,
    STAGE_TAG,
    STUDY_TAG,
    USE_CASE_TAG,
    Tracker,
    contributor_params,
    logged_values,
    quoted,
    utilities_table,
    value_metrics,
)
from shapflow.utility import Study

__all__ = ["RETRAIN_METHODS", "STUDY_METHODS", "TRAK_METHODS", "MethodValues", "all_method_names", "baseline_methods",
           "retrain_jobs", "retrain_methods", "study_methods"]

# name -> (estimator, utility method); budgets: 10 n for sFT designs, equal compute for FT
STUDY_METHODS: dict[str, tuple[str, str]] = {
    "sft-shapley": (DEFAULT_METHOD, "sft"),
    "sft-banzhaf": ("surrogate-banzhaf", "sft"),  # the same coalitions as sft-shapley
    "sft-leverage": ("leverage", "sft"),  # the same coalitions: the previous default
    "sft-loo": ("loo", "sft"),
    "sft-banzhaf-msr": ("banzhaf-msr", "sft"),
    "sft-datamodels": ("datamodels", "sft"),
    "ft-shapley": (DEFAULT_METHOD, "ft"),
}
RETRAIN_METHODS = ("retrain-loo", "retrain-shapley")
TRAK_METHODS = ("trak-mean", "dtrak-mean")
METHOD_STAGE = "method"


@dataclass(frozen=True)
class MethodValues:
    """One method's values (n,), its family (shapley | baseline | reference), its compute relative to the
    sFT-Shapley study (NaN for methods with no coalition evaluations), where the values come from, and,
    for coalition studies, the values its estimator gives from the first b coalitions of its plan."""

    name: str
    values: np.ndarray
    family: str
    compute: float
    source: str
    prefixes: dict[int, np.ndarray] = field(default_factory=dict)  # coalitions used -> values (studies)
    study_id: str = ""  # studies: the study whose logged utilities the values come from
    pooled: np.ndarray | None = None  # studies: the estimator on EVERY coalition the study logged (all designs)


def _finished_study(tracker: Tracker, request: Request) -> str | None:
    """The study id of the newest FINISHED attribute run of the same design (config, estimator, budget, seed),
    found by its design tag."""
    query = (f"tags.`{STAGE_TAG}` = 'attribute' AND attributes.status = 'FINISHED' "
             f"AND tags.`{DESIGN_TAG}` = {quoted(request.design_key)}")
    runs = tracker.search(query, max_results=1)
    return runs[0].data.tags[STUDY_TAG] if runs else None


def _design_values(table: pd.DataFrame, request: Request) -> dict[int, np.ndarray]:
    """{coalitions used: values} from the study's logged utilities, reading only its own design's coalitions:
    the whole budget and prefixes of 2n, 4n, ... of the plan (how precision grows with compute), with the
    request's data proxy as the control variate where it has one."""
    planned = plan(request).masks
    n, first = request.n_contributors, min_budget(request.method, request.n_contributors) - 2
    sizes = sorted({b for b in range(2 * n, len(planned), 2 * n) if b >= first} | {len(planned)})
    return {b: np.asarray(estimate_from_table(table, request.method, planned[:b], request.proxy).values, dtype=float)
            for b in sizes}


def study_methods(tracker: Tracker, study: Study, *, use_case: str, overrides: str, workers: int,
                  sft_budget: int | None = None, names: tuple[str, ...] = tuple(STUDY_METHODS),
                  progress: bool = False) -> list[MethodValues]:
    """Values of the coalition-study methods ``names``, running (or resuming) their attribute runs.

    sFT designs get ``sft_budget`` coalitions (default 10 n), FT the same compute (``coalition_cost``).
    """
    cfg, n = study.cfg, study.data.n_contributors
    macs_full, macs_pruned = study.prune_report["macs_before"], study.prune_report["macs_after"]
    sft_budget = sft_budget or 10 * n
    studies: list[tuple[str, Request, str, float, str]] = []
    for name in names:
        estimator, utility = STUDY_METHODS[name]
        budget = sft_budget if utility == "sft" else equal_compute_budget(cfg, utility, sft_budget, macs_full,
                                                                           macs_pruned)
        if estimator == "loo":
            budget = n + 2
        budget = max(budget, min_budget(estimator, n) - 2)  # below it nothing can be estimated: say so in compute
        extra = f" utility.method={utility}" if utility != "sft" else ""
        request = parse_request(use_case, overrides=f"{overrides}{extra}".strip(), budget=budget, method=estimator,
                                workers=workers, experiment=tracker.experiment_name,
                                check=0)  # retrained ground truth tests these values: no self-check to pay for
        study_id = _finished_study(tracker, request)
        if study_id is None:
            study_id = run_attribute(request, uri=tracker.uri, progress=progress).study_id
        compute = budget * coalition_cost(cfg, utility, macs_full, macs_pruned) / (
            sft_budget * coalition_cost(cfg, "sft", macs_full, macs_pruned))
        studies.append((name, request, study_id, compute, f"{estimator} on {budget} {utility} coalitions"))
    # read each study's utilities once, after every design has run (the sFT designs share one study)
    tables = {study_id: utilities_table(tracker, study_id) for study_id in {entry[2] for entry in studies}}
    out = []
    for name, request, study_id, compute, source in studies:
        prefixes = _design_values(tables[study_id], request)
        family = "shapley" if "shapley" in name or name == "sft-leverage" else "baseline"
        pooled = _pooled_values(tables[study_id], request)
        out.append(MethodValues(name, prefixes[max(prefixes)], family, compute, source, prefixes, study_id, pooled))
    return out


def _pooled_values(table: pd.DataFrame, request: Request) -> np.ndarray | None:
    """The estimator on every coalition the study logged (designs of one utility share a study): would more
    coalitions help it? None where the estimator cannot read other designs' rows (leave-one-out)."""
    try:
        return np.asarray(estimate_from_table(table, request.method, proxy=request.proxy).values, dtype=float)
    except ValueError:
        return None


def retrain_jobs(study: Study, seeds: tuple[int, ...], version: str) -> list[RetrainJob]:
    """The retrainings the retraining-based methods need (leave-one-out, first seed; Shapley coalitions)."""
    cfg, n = study.cfg, study.data.n_contributors
    return loo_jobs(cfg, n, seeds[:1], version) + retrain_shapley_jobs(cfg, n, 0, version)[1]


def retrain_methods(study: Study, outcomes: dict[str, Retrained], seeds: tuple[int, ...], version: str,
                    sft_budget: int | None = None) -> list[MethodValues]:
    """Leave-one-out and Leverage-SHAP values from retrained coalitions (``outcomes`` by job key)."""
    cfg, n = study.cfg, study.data.n_contributors
    macs_full, macs_pruned = study.prune_report["macs_before"], study.prune_report["macs_after"]
    retrain_cost = coalition_cost(cfg, "retrain", macs_full, macs_pruned) / (
        (sft_budget or 10 * n) * coalition_cost(cfg, "sft", macs_full, macs_pruned))
    utility = {job.mask: outcomes[job.key].utility for job in loo_jobs(cfg, n, seeds[:1], version)}
    full = bits(np.ones(n, bool))
    loo_values = np.array([utility[full] - utility[bits(~np.eye(n, dtype=bool)[i])] for i in range(n)])
    masks, jobs = retrain_shapley_jobs(cfg, n, 0, version)
    by_mask = {job.mask: outcomes[job.key].utility for job in jobs}
    shapley = estimate(masks, np.array([by_mask[bits(m)] for m in masks]), DEFAULT_METHOD, v0=study.v0().utility,
                       v1=by_mask[full])
    return [MethodValues("retrain-loo", loo_values, "baseline", (n + 1) * retrain_cost,
                         f"leave-one-out by retraining (seed {seeds[0]})"),
            MethodValues("retrain-shapley", np.asarray(shapley.values, float), "shapley",
                         (len(masks) + 1) * retrain_cost, f"{DEFAULT_METHOD} on {len(masks)} retrained coalitions")]


def _logged_method(tracker: Tracker, study: Study, name: str, key: str, parent: str | None, source: str,
                   compute_values: Callable[[], np.ndarray]) -> np.ndarray:
    """A non-study method's values: from its FINISHED ``method`` run with ``key``, or computed and logged."""
    names = study.data.names

    computed: list[np.ndarray] = []

    def work(run_id: str) -> None:
        values = np.asarray(compute_values(), dtype=float)
        tracker.log(run_id, params={"method": name, "source": source, **contributor_params(names)},
                    metrics=value_metrics(values))
        computed.append(values)

    run_id, reused = tracker.get_or_run(f"method · {name} · {study.cfg.name}", METHOD_STAGE, key, work,
                                        parent=parent, tags={USE_CASE_TAG: study.cfg.name, "shapflow.method": name})
    if not reused:
        return computed[0]
    return logged_values(tracker.get_run(run_id), names)


def all_method_names() -> tuple[str, ...]:
    """Every method an evaluation can compare, in table order of families."""
    from shapflow.evaluation.baselines import BASELINE_NAMES

    return (*STUDY_METHODS, *RETRAIN_METHODS, *TRAK_METHODS, *BASELINE_NAMES)


def baseline_methods(tracker: Tracker, study: Study, full_run: str, version: str, parent: str | None,
                     *, wanted: tuple[str, ...] | None = None) -> list[MethodValues]:
    """Similarity, own-property, degradation, TRAK and D-TRAK values (computed once per full model, logged)."""
    from shapflow.evaluation.baselines import contributor_baselines
    from shapflow.evaluation.trak import trak_baselines

    cache: dict[str, dict[str, np.ndarray]] = {}

    def rows(kind: str) -> dict[str, np.ndarray]:
        if kind not in cache:
            generated = study.images()
            if kind == "trak":
                cache[kind] = trak_baselines(study.full.for_sampling(), study.cfg.diffusion, study.data, generated)
            else:
                cache[kind] = contributor_baselines(study.data, generated, study.scorer)
        return cache[kind]

    from shapflow.evaluation.baselines import BASELINE_NAMES, ranked_degradation

    skip = set() if hasattr(study.scorer, "classifier") else {"own-confidence"}
    if ranked_degradation(study.data) is None:
        skip.add("degradation-level")
    names = {"trak": TRAK_METHODS, "similarity": BASELINE_NAMES}
    out = []
    for kind, method_names in names.items():
        for name in method_names:
            if name in skip or (wanted is not None and name not in wanted):
                continue
            key = identity("method", name, stage_key(study.cfg, "coalition"), full_run, version)
            values = _logged_method(tracker, study, name, key, parent, f"{kind} baselines of the full model",
                                    lambda kind=kind, name=name: rows(kind)[name])
            family = "reference" if name == "degradation-level" else "baseline"
            out.append(MethodValues(name, values, family, float("nan"), f"{kind} baselines of the full model"))
    return out

