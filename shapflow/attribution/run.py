"""An attribute run: get-or-run the stages, the endpoints and the planned coalitions, then the values report.

One attribute run (parent) holds: the stage runs it had to compute, the endpoint runs v0/v1, one run per
coalition, and the outputs (values table, bar chart, convergence plot, samples of the full model). A
coalition's identity is identity(coalition stage key, pruned-model run id, mask key, sFT seed): before
evaluating, the driver looks for a FINISHED run with it; so a killed job, rerun, evaluates exactly the
coalitions that have no FINISHED run yet, and each coalition id ends with exactly one.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shapflow.attribution.attribute_request import Request
from shapflow.attribution.driver import Driver
from shapflow.attribution.plan import Proxy
from shapflow.attribution.report import precision, report_from_table, self_check, write_check
from shapflow.config import ConfigError, identity, stage_key
from shapflow.generation.grids import image_grid
from shapflow.shapley import DEFAULT_THRESHOLD, convergence, default_sampler, design_bias
from shapflow.standins.tiny import TINY_LABEL
from shapflow.tracking import (
    DESIGN_TAG,
    SMOKE_TAG,
    STAGE_TAG,
    STUDY_TAG,
    USE_CASE_TAG,
    Contributors,
    TrackedStore,
    Tracker,
    contributor_params,
    log_training_input,
    logged_names,
    open_tracker,
    parent_run,
    register_stage,
    utilities_table,
    value_metrics,
)
from shapflow.utility import Study, load_study

__all__ = ["AttributeResult", "reestimate", "run_attribute", "run_stages"]


@dataclass(frozen=True)
class AttributeResult:
    """What an attribute run produced: its run id, the values table, and where its artifacts are."""

    run_id: str
    experiment_id: str
    study_id: str
    values: pd.DataFrame
    artifact_uri: str
    evaluated_now: int


def _tags(request: Request, stage: str) -> dict[str, str]:
    return {STAGE_TAG: stage, USE_CASE_TAG: request.cfg.name, SMOKE_TAG: str(request.cfg.tiny).lower()}


def _register(tracker: Tracker, request: Request, store: TrackedStore) -> str:
    """Register the full and (once trained) the pruned fine-tuned model; the pruned version, or "-"."""
    register_stage(tracker, f"{request.cfg.name}-full", store.runs["full"], request.alias)
    if "finetune" not in store.runs:
        return "-"
    return register_stage(tracker, f"{request.cfg.name}-pruned", store.runs["finetune"], request.alias)


def _log_market(tracker: Tracker, parent: str, store: TrackedStore, study: Study) -> None:
    """The contributors as the training input of the parent run and of the stage runs computed in it (a reused
    stage run got it when it ran)."""
    market = Contributors.of(study.cfg, study.data).dataset()
    for run_id in [parent, *(run for stage, run in store.runs.items() if not store.reused[stage])]:
        log_training_input(tracker, run_id, market)


def run_stages(request: Request, until: str, *, uri: str | None = None, progress: bool = True) -> dict[str, str]:
    """Get-or-run the stages up to ``until`` (full, prune, finetune) under a ``pipeline`` run; {stage: run id}.

    The full and (after finetune) the pruned model are registered, with ``request.alias`` when given.
    """
    tracker = open_tracker(request.experiment, uri)
    with parent_run(tracker, f"pipeline · {request.cfg.name} · until {until}", _tags(request, "pipeline")) as parent, \
            tempfile.TemporaryDirectory(prefix="shapflow-stages-") as workdir:
        store = TrackedStore(tracker, Path(workdir), parent=parent)
        study = load_study(request.cfg, store=store, progress=progress, until=until)
        _log_market(tracker, parent, store, study)
        _register(tracker, request, store)
        tracker.log(parent, tags={f"shapflow.run.{stage}": run_id for stage, run_id in store.runs.items()})
    return store.runs


def run_attribute(request: Request, *, uri: str | None = None, progress: bool = True,
                  batch: slice | None = None) -> AttributeResult:
    """The whole chain for a validated request: stages, registry, endpoints, coalitions, values, plots.

    ``batch`` (the ``coalitions`` entry point) evaluates only those planned coalitions and skips the report.
    """
    if batch is not None and request.target is not None:
        raise ConfigError(f"target={request.target} chooses each batch of coalitions from the values logged so far, "
                          "so it has no fixed plan to slice into jobs: run it with `shapflow run` (Ray and workers "
                          "scale it out), or drop --target for batch jobs")
    if request.cfg.tiny:
        print(f"shapflow: {request.cfg.name}: {TINY_LABEL}", file=sys.stderr)
    tracker = open_tracker(request.experiment, uri)
    size = f"{request.budget} coalitions" if request.target is None else f"{request.target}, cap {request.budget}"
    name = f"attribute · {request.cfg.name} · {request.method} · {size}"
    with parent_run(tracker, name, _tags(request, "attribute")) as parent, \
            tempfile.TemporaryDirectory(prefix="shapflow-attribute-") as workdir:
        return _attribute(tracker, request, parent, Path(workdir), progress, batch)


def _attribute(tracker: Tracker, request: Request, parent: str, workdir: Path, progress: bool,
               batch: slice | None) -> AttributeResult:
    """The chain inside the attribute run ``parent``; ``workdir`` holds downloaded models and report files."""
    cfg = request.cfg
    store = TrackedStore(tracker, workdir, parent=parent)
    study = load_study(cfg, store=store, progress=progress)
    _log_market(tracker, parent, store, study)
    version = _register(tracker, request, store)
    study_id = identity("study", stage_key(cfg, "coalition"), store.runs["finetune"])
    resolved = {"use_case": cfg.name, "budget": request.budget, "target": str(request.target or "-"),
                "method": request.method, "seed": request.seed,
                "workers": request.workers, "stack": request.stack, "executor": request.executor.kind,
                "config_hash": stage_key(cfg, "coalition"), "pruned_model_version": version}
    # "study." keys: `mlflow run` already logged the raw -P values (budget=0 = default) under the plain names
    params = {**{f"study.{k}": v for k, v in resolved.items()}, **contributor_params(study.data.names)}
    tracker.log(parent, params=params, tags={STUDY_TAG: study_id, DESIGN_TAG: request.design_key})
    driver = Driver(tracker, request, study, store, parent, study_id, version, workdir)
    driver.endpoints()
    evaluated = driver.coalitions(progress, batch)
    if batch is not None:
        return AttributeResult(parent, tracker.experiment_id, study_id, pd.DataFrame(), "", evaluated)
    driver.check(progress)
    return _report(tracker, request, study, parent, study_id, workdir / "report", evaluated, driver)


def _report(tracker: Tracker, request: Request, study: Study, parent: str, study_id: str, folder: Path,
            evaluated: int, driver: Driver) -> AttributeResult:
    """The values table and plots of the design's logged utilities, logged as the attribute run's outputs, with
    their precision, the self-check and (with a target) where the target stands as metrics."""
    table = utilities_table(tracker, study_id)
    values, banzhaf, frame = report_from_table(table, study.data.names, request.cfg.name, request.method, folder,
                                               driver.design, proxy=request.proxy)
    checked = self_check(table, {"shapley": values, "banzhaf": banzhaf})
    if checked:
        write_check(folder, checked)
    image_grid(study.images(num_images=64), folder / "samples_full.png")
    tracker.log_artifacts(parent, folder)
    ok, more = convergence(values, DEFAULT_THRESHOLD)
    quality = {f"precision.{k}": v for k, v in precision(values).items()}
    if banzhaf is not None:
        quality |= {f"precision.banzhaf_{k}": v for k, v in precision(banzhaf).items()}
    if driver.reached is not None:
        quality |= {"target.met": float(driver.reached.met), "target.value": driver.reached.value,
                    "target.forecast_coalitions": float(driver.reached.needed or -1)}
    tracker.log(parent, metrics={"coalitions": int(values.n_evaluations), "converged": float(ok),
                                 "forecast_additional": float(more), **quality, **checked,
                                 **value_metrics(values.values)})
    run = tracker.get_run(parent)
    return AttributeResult(parent, tracker.experiment_id, study_id, frame, run.info.artifact_uri, evaluated)


def reestimate(tracker: Tracker, study_id: str, parent: str, use_case: str, method: str,
               planned_by: str | None = None, proxy: Proxy | None = None) -> tuple[str, pd.DataFrame]:
    """Estimate values from a study's LOGGED utilities with ``method`` (and the data ``proxy``, computed from the
    data, so a study logged before proxies existed can use one); log them (by contributor index, with the name
    map) as a new ``estimate`` run nested under the attribute run ``parent``: a logged run is never overwritten.
    ``planned_by``: the method whose sampler drew the study's coalitions; where ``method`` is biased on that
    design the run says so in its ``shapflow.design_bias`` tag (``shapley.design_bias``)."""
    table = utilities_table(tracker, study_id)
    names = logged_names(tracker, tracker.get_run(parent), table)
    bias = design_bias(method, default_sampler(planned_by)) if planned_by else None
    with tempfile.TemporaryDirectory(prefix="shapflow-estimate-") as tmp:
        values, _, frame = report_from_table(table, names, use_case, method, Path(tmp), proxy=proxy)
        tags = {STAGE_TAG: "estimate", USE_CASE_TAG: use_case, "shapflow.of_study": study_id,
                **({"shapflow.design_bias": bias} if bias else {})}
        run_id = tracker.start(f"estimate · {use_case} · {method}", tags, parent=parent)
        tracker.log(run_id, params={"method": method, "coalitions": int((table["stage"] == "coalition").sum()),
                                    "study": study_id, "proxy": str(proxy is not None).lower(),
                                    **contributor_params(names)},
                    metrics=value_metrics(values.values))
        tracker.log_artifacts(run_id, Path(tmp))
        tracker.end(run_id)
    return run_id, frame
