"""The evaluation driver: every method's values, the retrained ground truth, LDS and counterfactual tables.

One ``evaluate`` run (parent) holds the stage runs it had to compute, the ``method`` runs, and the
retraining runs it had to compute (each reused by every later evaluation of the use case). Outputs:
``evaluation.csv``/``.md`` (every method: LDS with its CIs, counterfactual changes, agreement with the
documented degradation levels, compute, LDS of the estimator on all the study's coalitions), LDS scatter
plots, LDS vs coalitions, the game's profile by coalition size, and the ``--json`` summary.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shapflow.attribution import load_config
from shapflow.config import ConfigError, UseCaseConfig
from shapflow.evaluation.baselines import ranked_degradation
from shapflow.evaluation.fixture import GroundTruth, load_fixture
from shapflow.evaluation.game import first_contributor_share, plot_profile, size_profile
from shapflow.evaluation.methods import (
    RETRAIN_METHODS,
    STUDY_METHODS,
    MethodValues,
    all_method_names,
    baseline_methods,
    retrain_jobs,
    retrain_methods,
    study_methods,
)
from shapflow.evaluation.plans import COUNTERFACTUALS, counterfactual_jobs, counterfactual_masks, heldout_jobs
from shapflow.evaluation.reliability import coverage, covered, seed_to_seed
from shapflow.evaluation.runs import Retrained, RetrainingNotAsked, ensure_retrained
from shapflow.evaluation.tables import results_frame, scatter_plots, write_json, write_tables
from shapflow.shapley import lds as L
from shapflow.shapley.masks import bits
from shapflow.tracking import STAGE_TAG, USE_CASE_TAG, TrackedStore, Tracker, open_tracker, parent_run, utilities_table
from shapflow.utility import Study, family_of, load_study

__all__ = ["EvalRequest", "Evaluation", "evaluate", "parse_eval_request"]


@dataclass(frozen=True)
class EvalRequest:
    """A validated evaluation: config, held-out design (alpha, count, seeds), counterfactual fraction, where
    retrainings run (device, stack) or travel (export / ingest files), worker processes for the sFT studies
    and the CPU retrainings."""

    cfg: UseCaseConfig
    use_case: str
    overrides: str
    alpha: float
    count: int
    seeds: tuple[int, ...]
    fraction: float
    kinds: tuple[str, ...]
    workers: int
    budget: int | None
    device: str
    stack: int
    methods: tuple[str, ...] = ()
    ingest: tuple[Path, ...] = ()
    export: Path | None = None
    experiment: str = ""
    fixture: GroundTruth | None = None
    retrain: bool = False  # retrain what the store, fixture and ingested results lack (else say what and stop)


def parse_eval_request(use_case: str = "digits", overrides: str = "", *, alpha: float = 0.5, count: int = 48,
                       seeds: int = 3, fraction: float = 0.4, kinds: str = "remove,keep", workers: int = 0,
                       budget: int | None = None,
                       device: str = "cpu", stack: int = 0, methods: str = "",
                       ingest: tuple[str, ...] = (), export: str = "",
                       experiment: str | None = None, fixture: str = "auto", retrain: bool = False) -> EvalRequest:
    """Check every parameter before anything runs; ConfigError names the bad one and the fix.

    ``fixture``: the held-out ground truth to read instead of retraining: ``auto`` (the packaged fixture of the
    use case and alpha, if there is one), ``none``, or a path. A fixture of another recipe is refused here.
    ``retrain``: retrain from scratch what the store, the fixture and ``ingest`` lack; without it the evaluation
    says what that would be and how long it would take here, and stops (``RetrainingNotAsked``).
    """
    cfg = load_config(use_case, overrides)
    if not family_of(cfg).stackable:
        raise ConfigError(f"use_case={use_case}: evaluation retrains pixel use cases only (model.family="
                          f"{cfg.model.family}); its retrainings would cost {cfg.name}'s full training each")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha={alpha} is invalid: use a fraction of contributors in (0, 1), e.g. 0.5")
    if count < 3:
        raise ConfigError(f"count={count} is invalid: LDS needs at least 3 held-out coalitions (48 recommended)")
    if seeds < 1:
        raise ConfigError(f"seeds={seeds} is invalid: retrain each held-out coalition with at least 1 seed")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction={fraction} is invalid: remove a fraction in (0, 1) of contributors, e.g. 0.4")
    chosen_kinds = tuple(k for k in COUNTERFACTUALS if k in kinds.replace(",", " ").split())
    if not chosen_kinds or set(kinds.replace(",", " ").split()) - set(COUNTERFACTUALS):
        raise ConfigError(f"kinds={kinds!r} is invalid: use remove, keep or remove,keep")
    if stack < 0:
        raise ConfigError(f"stack={stack} is invalid: train at least one model at a time (0: a stack of up to 64 "
                          "on a GPU, 1 on a CPU)")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={device} is invalid here: torch sees no CUDA device; use cpu, or "
                              "--export-jobs and run the job file on a GPU machine")
    elif device != "cpu":
        raise ConfigError(f"device={device!r} is invalid: use cpu or cuda[:N]")
    ingest = tuple(p for p in ingest if p)
    for path in ingest:
        if not Path(path).is_file():
            raise ConfigError(f"ingest={path} is invalid: no such results file")
    known = all_method_names()
    chosen = tuple(m for m in (part.strip() for part in methods.replace(",", " ").split()) if m)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ConfigError(f"methods={','.join(unknown)} is invalid: choose from {', '.join(known)}")
    train_seeds = tuple(cfg.train.seed + s for s in range(seeds))
    if budget is not None and budget <= 0:
        budget = None  # the MLproject default: 10 n
    if fixture not in ("auto", "none", "") and not Path(fixture).is_file():
        raise ConfigError(f"fixture={fixture} is invalid: no such file (use auto, none or a fixture's path)")
    truth = None if fixture in ("none", "") else load_fixture(cfg, alpha, None if fixture == "auto" else Path(fixture))
    return EvalRequest(cfg, use_case, overrides, alpha, count, train_seeds, fraction, chosen_kinds, workers, budget,
                       device, stack,
                       chosen or known, tuple(Path(p) for p in ingest), Path(export) if export else None,
                       experiment or cfg.name, truth, bool(retrain))


@dataclass
class Evaluation:
    """What an evaluate run produced: its run id, the results table, and its output folder (local copy)."""

    run_id: str
    frame: pd.DataFrame
    folder: Path
    methods: list[MethodValues] = field(repr=False, default_factory=list)


def _ensure(tracker: Tracker, req: EvalRequest, study: Study, jobs, parent: str, progress: bool,
            optional: frozenset[str] = frozenset()):
    return ensure_retrained(tracker, req.cfg, study.data, study.scorer, jobs, parent=parent, device=req.device,
                            stack=req.stack, workers=req.workers, results=req.ingest, export=req.export,
                            fixture=req.fixture, progress=progress, retrain=req.retrain, optional=optional)


def _truth(outcomes: dict[str, Retrained], jobs, masks: np.ndarray, seeds: tuple[int, ...]) -> np.ndarray:
    """(n_seeds, m) retrained utilities of the held-out coalitions (NaN where a run is missing)."""
    by = {(job.mask, job.seed): outcomes[job.key].utility for job in jobs if job.key in outcomes}
    return np.array([[by.get((bits(m), s), np.nan) for m in masks] for s in seeds])


def _counterfactual(outcomes: dict[str, Retrained], req: EvalRequest, methods: list[MethodValues],
                    version: str) -> dict[str, dict[str, tuple[float, float]]]:
    """{method: {"remove_top40": (mean %, ci), "keep_top40": ...}}: relative change vs the full retraining."""
    cfg, fraction, seeds = req.cfg, req.fraction, req.seeds
    jobs = counterfactual_jobs(cfg, {m.name: m.values for m in methods}, fraction, seeds, version, req.kinds)
    by = {(job.mask, job.seed): outcomes[job.key].utility for job in jobs}
    n = len(methods[0].values)
    before = np.array([by[(bits(np.ones(n, bool)), s)] for s in seeds])
    share = round(100 * fraction)
    out = {}
    for method in methods:
        masks = counterfactual_masks(method.values, fraction, req.kinds)
        out[method.name] = {f"{kind}_top{share}": L.relative_change(before, np.array([by[(bits(mask), s)]
                                                                                        for s in seeds]))
                            for kind, mask in masks.items()}
    return out


def evaluate(req: EvalRequest, *, counterfactual: bool = False, uri: str | None = None, out: Path | None = None,
             json_path: Path | None = None, progress: bool = True) -> Evaluation:
    """Run (or resume) an evaluation; ``counterfactual`` adds the removal retrainings and their columns."""
    tracker = open_tracker(req.experiment, uri)
    kind = "counterfactual" if counterfactual else "lds"
    tags = {STAGE_TAG: "evaluate", USE_CASE_TAG: req.cfg.name}
    with parent_run(tracker, f"evaluate · {req.cfg.name} · {kind}", tags) as parent, \
            tempfile.TemporaryDirectory(prefix="shapflow-evaluate-") as workdir:
        return _evaluate(tracker, req, parent, Path(workdir), counterfactual, out, json_path, progress)


def _evaluate(tracker: Tracker, req: EvalRequest, parent: str, workdir: Path, counterfactual: bool,
              out: Path | None, json_path: Path | None, progress: bool) -> Evaluation:
    cfg = req.cfg
    store = TrackedStore(tracker, workdir, parent=parent)
    study = load_study(cfg, store=store, progress=progress)
    version, n = store.version, study.data.n_contributors
    tracker.log(parent, params={"use_case": cfg.name, "alpha": req.alpha, "count": req.count,
                                "seeds": ",".join(map(str, req.seeds)), "fraction": req.fraction,
                                "device": req.device, "code_version": version,
                                "fixture": str(req.fixture.path) if req.fixture else "none"})
    masks, heldout = heldout_jobs(cfg, n, req.alpha, req.count, req.seeds, version)
    with_retrain = bool(set(RETRAIN_METHODS) & set(req.methods))
    early = heldout + (retrain_jobs(study, req.seeds, version) if with_retrain else [])
    if req.fixture is not None:
        print(f"shapflow: {req.fixture.coverage(heldout)}", file=sys.stderr)
    partial = frozenset(job.key for job in heldout)  # without --retrain, the LDS stands on the held-out that exist
    outcomes = None
    if req.export is None:  # the retrainings known now are checked (or made) before the sFT studies run
        outcomes = _ensure(tracker, req, study, early, parent, progress, partial)
        _check_covered(outcomes, heldout, masks, req)
    methods = study_methods(tracker, study, use_case=req.use_case, overrides=req.overrides, workers=req.workers,
                            sft_budget=req.budget, names=tuple(m for m in STUDY_METHODS if m in req.methods),
                            progress=progress)
    methods += baseline_methods(tracker, study, store.runs["full"], version, parent, wanted=req.methods)
    if counterfactual:  # plan what is known now, so one exported job file holds as much as possible
        early += counterfactual_jobs(cfg, {m.name: m.values for m in methods}, req.fraction, req.seeds, version,
                                     req.kinds)
    if outcomes is None or counterfactual:
        outcomes = _ensure(tracker, req, study, early, parent, progress, partial)
    if with_retrain:
        methods += [m for m in retrain_methods(study, outcomes, req.seeds, version, req.budget)
                    if m.name in req.methods]
    changes = None
    if counterfactual:
        late = counterfactual_jobs(cfg, {m.name: m.values for m in methods}, req.fraction, req.seeds, version,
                                   req.kinds)
        outcomes = _ensure(tracker, req, study, late, parent, progress)
        changes = _counterfactual(outcomes, req, methods, version)
    truth = _truth(outcomes, heldout, masks, req.seeds)
    print(f"shapflow: {coverage(truth, req.seeds, (req.count, len(req.seeds)))}", file=sys.stderr)
    masks, truth, _ = covered(masks, truth, req.seeds)
    return _report(tracker, parent, study, methods, masks, truth, changes, out or workdir / "evaluation",
                   json_path)


def _check_covered(outcomes: dict[str, Retrained], heldout, masks: np.ndarray, req: EvalRequest) -> None:
    """Refuse (before the sFT studies run) an LDS on fewer held-out coalitions than a Spearman needs."""
    held = int(np.isfinite(_truth(outcomes, heldout, masks, req.seeds)).any(axis=0).sum())
    if held < L.MIN_COALITIONS:
        raise RetrainingNotAsked(f"only {held} of the {req.count} held-out coalitions are retrained (the store, "
                                 f"fixture and --ingest hold no more); an LDS needs {L.MIN_COALITIONS}: run with "
                                 "--retrain true, or fill the fixture (`shapflow evaluate fixture --jobs jobs.json`)")


def _report(tracker: Tracker, parent: str, study: Study, methods: list[MethodValues], masks: np.ndarray,
            truth: np.ndarray, changes: dict | None, folder: Path, json_path: Path | None) -> Evaluation:
    """LDS of every method, the noise floor, the size-only predictor, the seed-to-seed ceiling (two or more
    seeds); tables, plots, JSON; logged."""
    folder.mkdir(parents=True, exist_ok=True)
    results = [L.lds(m.values, masks, truth, method=m.name) for m in methods]
    floor = L.random_floor(masks, truth)
    size = L.size_only(masks, truth)
    ceiling = seed_to_seed(truth)
    reference = ranked_degradation(study.data)
    extra = {m.name: {"compute": m.compute, **_quality_columns(m.values, reference)} for m in methods}
    for m in methods:  # the same estimator on every coalition its study logged: would more coalitions help?
        if m.pooled is not None:
            extra[m.name]["lds_all_coalitions"] = L.lds(m.pooled, masks, truth, n_boot=0).mean
    frame = results_frame(results, floor, size, changes, extra, ceiling)
    csv_path, md_path = write_tables(frame, folder, stem="evaluation")
    _budget_curves(methods, masks, truth, folder)
    game = _game_profile(tracker, methods, masks, truth, folder)
    scatter_plots({m.name: masks.astype(float) @ m.values for m in methods}, truth, folder / "scatter")
    if json_path is not None:
        write_json(json_path, results, floor, size)
        tracker.log_artifact(parent, json_path)
    tracker.log_artifacts(parent, folder)
    metrics = {f"lds.{r.method}": r.mean for r in [*results, *([ceiling] if ceiling else [])] if np.isfinite(r.mean)}
    tracker.log(parent, metrics={**metrics, **game, "lds.random_mean": floor.mean,
                                 "lds.random_half_width": floor.half_width})
    print(f"shapflow: evaluation tables {csv_path}, {md_path}", file=sys.stderr)
    return Evaluation(parent, frame, folder, methods)


def _budget_curves(methods: list[MethodValues], masks: np.ndarray, truth: np.ndarray, folder: Path) -> None:
    """LDS of each coalition study's values from the first b coalitions of its plan: lds_vs_budget.csv/.png."""
    rows = [{"method": m.name, "coalitions": b, "lds": L.lds(v, masks, truth, n_boot=0).mean}
            for m in methods for b, v in sorted(m.prefixes.items())]
    if not rows:
        return
    curves = pd.DataFrame(rows)
    curves.to_csv(folder / "lds_vs_budget.csv", index=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for name, group in curves.groupby("method", sort=False):
        ax.plot(group["coalitions"], group["lds"], marker="o", label=name)
    ax.set(xlabel="coalitions evaluated", ylabel="LDS", title="LDS vs coalitions (prefixes of each plan)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "lds_vs_budget.png", dpi=120)


def _game_profile(tracker: Tracker, methods: list[MethodValues], masks: np.ndarray, truth: np.ndarray,
                  folder: Path) -> dict[str, float]:
    """game_profile.csv/.png of the sFT study (utilities by coalition size, the held-out retrainings beside
    them); returns the ``game.first_contributor_share`` metric ({} without an sFT study)."""
    study_id = next((m.study_id for m in methods if m.name.startswith("sft-") and m.study_id), "")
    table = utilities_table(tracker, study_id) if study_id else pd.DataFrame()
    if table.empty:
        return {}
    profile = size_profile(table)
    profile.to_csv(folder / "game_profile.csv", index=False)
    sizes = masks.sum(axis=1)
    retrained = (int(sizes[0]), truth) if np.all(sizes == sizes[0]) else None
    plot_profile(profile, folder / "game_profile.png", retrained)
    share = first_contributor_share(profile)
    print(f"shapflow: one contributor alone earns {share:.0%} of v1 - v0 in the sFT game "
          f"(game_profile.png; Shapley weighs that first step as much as the middle sizes the LDS tests)",
          file=sys.stderr)
    return {"game.first_contributor_share": share} if np.isfinite(share) else {}


def _quality_columns(values: np.ndarray, reference: np.ndarray | None, k: int = 3) -> dict[str, float]:
    """Spearman with minus the degradation levels, and the ranks (1 = best) a method gives the k most degraded."""
    if reference is None:
        return {}
    ranks = L.worst_ranks(values, reference, k)
    return {"degradation_spearman": L.rank_agreement(values, reference),
            **{f"worst{i + 1}_rank": float(r) for i, r in enumerate(ranks)}}
