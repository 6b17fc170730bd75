"""An attribute run: validate a request, get-or-run the stages, run the coalition loop (``attribution.driver``),
report.

One attribute run (parent) holds: the stage runs it had to compute, the endpoint runs v0/v1, one run per
coalition, and the outputs (values table, bar chart, convergence plot, samples of the full model). A
coalition's identity is identity(coalition stage key, pruned-model run id, mask key, sFT seed): before
evaluating, the driver looks for a FINISHED run with it; so a killed job, rerun, evaluates exactly the
coalitions that have no FINISHED run yet, and each coalition id ends with exactly one.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from shapflow.attribution.driver import Driver, design_rows, estimate_from_table, masks_of, plan
from shapflow.attribution.report import convergence_curve, image_grid, write_report
from shapflow.cache import cache_dir
from shapflow.config import ConfigError, UseCaseConfig, load_use_case, stage_key
from shapflow.data import load_data
from shapflow.data.assets import require_use_case
from shapflow.shapley import (
    DEFAULT_METHOD,
    DEFAULT_THRESHOLD,
    METHODS,
    ShapleyResult,
    convergence,
    min_budget,
)
from shapflow.testing.smoke import SMOKE_LABEL, smoke_config
from shapflow.tracking import (
    STAGE_TAG,
    STUDY_TAG,
    USE_CASE_TAG,
    TrackedStore,
    Tracker,
    identity,
    open_tracker,
    register_stage,
    utilities_table,
)
from shapflow.utility.study import Models, load_scorer, load_study, train_stages

__all__ = ["SMOKE_TAG", "TINY_OVERRIDES", "AttributeResult", "Driver", "Request", "design_rows", "estimate_from_table",
           "load_config", "masks_of", "parse_request", "plan", "reestimate", "report_from_table", "run_attribute",
           "run_stages", "score_models", "split_overrides"]

# A seconds-long smoke configuration of the digits use cases (tests, demos): tiny trainings and samples.
TINY_OVERRIDES = ("train.steps=30", "train.warmup_steps=2", "train.batch_size=32", "finetune.steps=5",
                  "finetune.warmup_steps=0", "finetune.batch_size=32", "sft.steps=3", "sft.batch_size=16",
                  "sampling.num_images=32", "sampling.num_inference_steps=3", "sampling.batch_size=32",
                  "property.classifier_steps=100")

SMOKE_TAG = "shapflow.smoke"  # "true" on the runs of a SMOKE configuration (tiny random stand-ins)


@dataclass(frozen=True)
class Request:
    """A validated attribution request: config, coalition budget, estimator, sampler seed, workers, alias."""

    cfg: UseCaseConfig
    budget: int
    method: str
    seed: int
    workers: int
    alias: str | None
    experiment: str
    n_contributors: int
    until_converged: bool = False
    threshold: float = DEFAULT_THRESHOLD


def split_overrides(text: str | tuple[str, ...] | list[str]) -> list[str]:
    """``"sft.steps=50 sampling.num_images=128"`` (spaces or commas between items) -> a list of overrides.

    A comma inside a value (``model.block_out_channels=[8,16]``) stays: items split only before ``key=``.
    """
    if not isinstance(text, str):
        return [item for part in text for item in split_overrides(part)]
    return [item for item in re.split(r"[\s,]+(?=[A-Za-z_][\w.]*=)", text.strip()) if item.strip(" ,")]


def parse_request(use_case: str = "digits", config: str | None = None, overrides: str | tuple[str, ...] = "",
                  budget: int | None = None, method: str = DEFAULT_METHOD, seed: int = 0, workers: int | None = None,
                  alias: str | None = None, experiment: str | None = None, tiny: bool = False,
                  until_converged: bool = False, threshold: float = DEFAULT_THRESHOLD) -> Request:
    """Validate every parameter and check every external asset BEFORE any run exists.

    ``until_converged``: stop before ``budget`` once the values converge (``threshold`` x their range).

    Raises ConfigError naming the bad parameter and the fix, or ``assets.MissingAssetsError`` whose message
    is the asset table. ``tiny`` (or ``tiny=true`` in the config) selects the SMOKE configuration.
    """
    cfg = load_config(config or use_case, overrides, tiny)
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is invalid: use one of {', '.join(sorted(METHODS))}")
    require_use_case(cfg)
    n = load_data(cfg.data, cfg.assets).check_market().n_contributors
    budget = budget or 10 * n  # None or 0 (the MLproject default) -> 10 n
    needed = min_budget(method, n) - 2
    if budget < needed:
        raise ConfigError(f"budget={budget} is invalid: {method} needs at least {needed} coalitions for n={n}")
    if cfg.model.family == "sd_lora" and workers is not None and workers > 1:
        raise ConfigError(f"workers={workers} is invalid for model.family=sd_lora: its LoRA stages live in the "
                          "driver's process; use workers=1 (or 0)")
    one_per_core = 1 if cfg.model.family == "sd_lora" else (os.cpu_count() or 1)
    workers = one_per_core if workers is None or workers <= 0 else workers  # 0: one per core
    alias = alias or None  # "" (the MLproject default) -> no alias
    if alias is not None and (alias.lower() == "latest" or not re.fullmatch(r"[\w-]+", alias)):
        raise ConfigError(f"alias={alias!r} is invalid: use letters, digits, - or _ ('latest' is reserved)")
    if not threshold > 0:
        raise ConfigError(f"threshold={threshold} is invalid: use a positive fraction of the value range, e.g. 0.05")
    return Request(cfg, budget, method, seed, workers, alias, experiment or cfg.name, n, until_converged, threshold)


def load_config(name_or_path: str, overrides: str | tuple[str, ...] = "", tiny: bool = False) -> UseCaseConfig:
    """A use case with its overrides; with ``tiny`` (or ``tiny=true`` in it), its SMOKE configuration."""
    cfg = load_use_case(name_or_path, split_overrides(overrides))
    if not (tiny or cfg.tiny):
        return cfg
    return smoke_config(replace(cfg, tiny=True), cache_dir("tiny-assets", cfg.data.source))


def score_models(cfg: UseCaseConfig, models: Models) -> dict[str, float]:
    """Every property (and the utility) of a stage's model, sampled with the use case's fixed seed."""
    from shapflow.utility.families import stage_images

    scorer = load_scorer(cfg)
    properties = scorer.score_all(stage_images(cfg, models.for_sampling()))
    return {**properties, "utility": scorer.utility(properties[scorer.name])}


@dataclass(frozen=True)
class AttributeResult:
    """What an attribute run produced: its run id, the values table, and where its artifacts are."""

    run_id: str
    experiment_id: str
    study_id: str
    values: pd.DataFrame
    artifact_uri: str
    evaluated_now: int


def _open_parent(tracker: Tracker, request: Request, stage: str = "attribute") -> tuple[str, bool]:
    """The entry point's run: the one ``mlflow run`` started (``MLFLOW_RUN_ID``), or a new one; (run id, owned)."""
    adopted = os.environ.get("MLFLOW_RUN_ID")
    tags = {STAGE_TAG: stage, USE_CASE_TAG: request.cfg.name, SMOKE_TAG: str(request.cfg.tiny).lower()}
    if adopted:
        tracker.log(adopted, tags=tags)
        return adopted, False
    return tracker.start(f"{stage} · {request.cfg.name} · {request.method}", tags), True


def run_stages(request: Request, until: str, *, uri: str | None = None, progress: bool = True) -> dict[str, str]:
    """Get-or-run the stages up to ``until`` (full, prune, finetune) under a ``pipeline`` run; {stage: run id}.

    The full and (after finetune) the pruned model are registered, with ``request.alias`` when given.
    """
    if request.cfg.model.family != "pixel":
        raise ConfigError(f"model.family={request.cfg.model.family}: the train/prune/finetune entry points run "
                          "pixel use cases; run the attribute entry point (it trains the stages it needs)")
    tracker = open_tracker(request.experiment, uri)
    parent, owned = _open_parent(tracker, request, stage="pipeline")
    try:
        with tempfile.TemporaryDirectory(prefix="shapflow-stages-") as workdir:
            store = TrackedStore(tracker, Path(workdir), parent=parent, score=score_models)
            train_stages(request.cfg, load_data(request.cfg.data), store=store, progress=progress, until=until)
    except BaseException:
        if owned:
            tracker.end(parent, "FAILED")
        raise
    register_stage(tracker, f"{request.cfg.name}-full", store.runs["full"], request.alias)
    if "finetune" in store.runs:
        register_stage(tracker, f"{request.cfg.name}-pruned", store.runs["finetune"], request.alias)
    tracker.log(parent, tags={f"shapflow.run.{stage}": run_id for stage, run_id in store.runs.items()})
    if owned:
        tracker.end(parent)
    return store.runs


def run_attribute(request: Request, *, uri: str | None = None, progress: bool = True,
                  batch: slice | None = None) -> AttributeResult:
    """The whole chain for a validated request: stages, registry, endpoints, coalitions, values, plots.

    ``batch`` (the ``coalitions`` entry point) evaluates only those planned coalitions and skips the report.
    """
    if request.cfg.tiny:
        print(f"shapflow: {request.cfg.name}: {SMOKE_LABEL}", file=sys.stderr)
    tracker = open_tracker(request.experiment, uri)
    parent, owned = _open_parent(tracker, request)
    try:
        with tempfile.TemporaryDirectory(prefix="shapflow-attribute-") as workdir:
            result = _attribute(tracker, request, parent, Path(workdir), progress, batch)
    except BaseException as err:
        if owned:
            tracker.end(parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    if owned:
        tracker.end(parent)
    return result


def _attribute(tracker: Tracker, request: Request, parent: str, workdir: Path, progress: bool,
               batch: slice | None) -> AttributeResult:
    """The chain inside the attribute run ``parent``; ``workdir`` holds downloaded models and report files."""
    cfg = request.cfg
    store = TrackedStore(tracker, workdir, parent=parent, score=score_models)
    study = load_study(cfg, store=store, progress=progress)
    version = "-"  # sd_lora: its LoRA stages are not stored as runs (nor registered) yet
    if store.runs:
        register_stage(tracker, f"{cfg.name}-full", store.runs["full"], request.alias)
        version = register_stage(tracker, f"{cfg.name}-pruned", store.runs["finetune"], request.alias)
    study_id = identity("study", stage_key(cfg, "coalition"), store.runs.get("finetune", "in-process"))
    resolved = {"use_case": cfg.name, "budget": request.budget, "method": request.method, "seed": request.seed,
                "workers": request.workers, "config_hash": stage_key(cfg, "coalition"), "pruned_model_version": version}
    # "study." keys: `mlflow run` already logged the raw -P values (budget=0 = default) under the plain names
    tracker.log(parent, params={f"study.{k}": v for k, v in resolved.items()}, tags={STUDY_TAG: study_id})
    tracker.retire_leftovers(study_id)
    driver = Driver(tracker, request, study, store, parent, study_id, version, workdir)
    driver.endpoints()
    evaluated = driver.coalitions(progress, batch)
    if batch is not None:
        return AttributeResult(parent, tracker.experiment_id, study_id, pd.DataFrame(), "", evaluated)
    folder = workdir / "report"
    values, frame = report_from_table(utilities_table(tracker, study_id), cfg.name, request.method, folder,
                                      plan(request).masks)
    full_images = study.sample_full(num_images=64)
    image_grid(full_images, folder / "samples_full.png")
    tracker.call("log_artifacts", parent, str(folder))
    ok, more = convergence(values, request.threshold)
    per_contributor = {f"value.{r.contributor}": r.value for r in frame.itertuples()}
    tracker.log(parent, metrics={"coalitions": int(values.n_evaluations), "converged": float(ok),
                                 "forecast_additional": float(more), **per_contributor})
    run = tracker.call("get_run", parent)
    return AttributeResult(parent, tracker.experiment_id, study_id, frame, run.info.artifact_uri, evaluated)


def report_from_table(table: pd.DataFrame, title: str, method: str, folder: Path,
                      planned: np.ndarray | None = None) -> tuple[ShapleyResult, pd.DataFrame]:
    """Values by ``method`` from a utilities table, written with their plots into ``folder``: (result, values table).

    ``planned``: the design's masks (see ``design_rows``). Contributor names come from the v1 (grand
    coalition) row, which lists everyone in index order.
    """
    values = estimate_from_table(table, method, planned)
    rows = design_rows(table, planned)
    ends = table[table["stage"] == "endpoint"].set_index("coalition_id")
    curve = convergence_curve(masks_of(rows), rows["utility"].to_numpy(float), float(ends.loc["v0", "utility"]),
                              float(ends.loc["v1", "utility"]), method)
    names = ends.loc["v1", "contributors"].split(",")
    return values, write_report(folder, names, values, f"{title} · {method}", curve)


def reestimate(tracker: Tracker, study_id: str, parent: str, use_case: str, method: str) -> tuple[str, pd.DataFrame]:
    """Estimate values from a study's LOGGED utilities with ``method``; log them as a new ``estimate`` run
    (nested under the attribute run ``parent``: a logged run is never overwritten)."""
    table = utilities_table(tracker, study_id)
    with tempfile.TemporaryDirectory(prefix="shapflow-estimate-") as tmp:
        _, frame = report_from_table(table, use_case, method, Path(tmp))
        tags = {STAGE_TAG: "estimate", USE_CASE_TAG: use_case, "shapflow.of_study": study_id}
        run_id = tracker.start(f"estimate · {use_case} · {method}", tags, parent=parent)
        tracker.log(run_id, params={"method": method, "coalitions": int((table["stage"] == "coalition").sum()),
                                    "study": study_id},
                    metrics={f"value.{r.contributor}": r.value for r in frame.itertuples()})
        tracker.call("log_artifacts", run_id, tmp)
        tracker.end(run_id)
    return run_id, frame
