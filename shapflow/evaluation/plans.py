"""Which retrainings an evaluation needs: held-out coalitions, leave-one-out, retraining-based Shapley,
counterfactual removals. Plans are pure functions of the config, so every command agrees on the job keys."""

from __future__ import annotations

import numpy as np

from shapflow.config import UseCaseConfig
from shapflow.evaluation.groundtruth import RetrainJob, job_key
from shapflow.shapley import SAMPLERS, min_budget
from shapflow.shapley.masks import bits, heldout_masks

__all__ = ["COUNTERFACTUALS", "coalition_cost", "counterfactual_jobs", "counterfactual_masks", "equal_compute_budget",
           "heldout_jobs", "loo_jobs", "retrain_shapley_jobs", "top_k"]


def _jobs(cfg: UseCaseConfig, masks: np.ndarray, seeds: tuple[int, ...], purpose: str,
          version: str) -> list[RetrainJob]:
    return [RetrainJob(job_key(cfg, bits(mask), seed, version), bits(mask), int(seed), purpose)
            for mask in masks for seed in seeds]


def heldout_jobs(cfg: UseCaseConfig, n: int, alpha: float, count: int, seeds: tuple[int, ...],
                 version: str) -> tuple[np.ndarray, list[RetrainJob]]:
    """(masks (count, n), jobs): ``count`` held-out coalitions of round(alpha n) contributors, each per seed."""
    masks = heldout_masks(n, alpha, count)
    return masks, _jobs(cfg, masks, seeds, f"heldout-{alpha:.2f}", version)


def loo_jobs(cfg: UseCaseConfig, n: int, seeds: tuple[int, ...], version: str) -> list[RetrainJob]:
    """The grand coalition and every N minus {i}, per seed (retraining-based leave-one-out)."""
    masks = np.vstack([np.ones((1, n), bool), ~np.eye(n, dtype=bool)])
    return _jobs(cfg, masks, seeds, "loo", version)


def coalition_cost(cfg: UseCaseConfig, method: str, macs_full: float, macs_pruned: float) -> float:
    """Multiply-accumulates one coalition costs: training (3x forward per example) plus sampling.

    sft trains the pruned model with the ``sft`` recipe, ft the full model with it, retrain a fresh full
    model with the ``train`` recipe; every method samples the same images. A machine-independent measure
    of "equal compute" (wall-clock ratios are reported beside it).
    """
    recipe, macs = {"sft": (cfg.sft, macs_pruned), "ft": (cfg.sft, macs_full),
                    "retrain": (cfg.train, macs_full)}[method]
    sampling = cfg.sampling.num_images * cfg.sampling.num_inference_steps
    return float(macs) * (3.0 * recipe.steps * recipe.batch_size + sampling)


def equal_compute_budget(cfg: UseCaseConfig, method: str, sft_budget: int, macs_full: float,
                         macs_pruned: float) -> int:
    """Coalitions ``method`` can evaluate for the compute of ``sft_budget`` sFT coalitions (rounded down)."""
    ratio = coalition_cost(cfg, "sft", macs_full, macs_pruned) / coalition_cost(cfg, method, macs_full, macs_pruned)
    return int(np.floor(sft_budget * ratio))


def retrain_shapley_jobs(cfg: UseCaseConfig, n: int, budget: int, version: str) -> tuple[np.ndarray, list[RetrainJob]]:
    """(masks, jobs) of Leverage-SHAP coalitions (the sFT study's own stream, seed 0) retrained with the
    full recipe's seed, plus the grand coalition (v1); at least the estimator's minimum budget."""
    count = max(budget, min_budget("leverage", n)) - 2
    masks = SAMPLERS["leverage"](n, count, 0).masks
    return masks, _jobs(cfg, np.vstack([np.ones((1, n), bool), masks]), (cfg.train.seed,), "retrain-shapley",
                        version)


def top_k(values: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the round(fraction n) highest values (ties broken by index, so plans are stable)."""
    k = max(1, round(fraction * len(values)))
    return np.argsort(-np.asarray(values, dtype=float), kind="stable")[:k]


COUNTERFACTUALS = ("remove", "keep")


def counterfactual_masks(values: np.ndarray, fraction: float,
                         kinds: tuple[str, ...] = COUNTERFACTUALS) -> dict[str, np.ndarray]:
    """{"remove": everyone but the top fraction, "keep": only the top fraction} (those of ``kinds``)."""
    top = np.zeros(len(values), bool)
    top[top_k(values, fraction)] = True
    return {kind: mask for kind, mask in (("remove", ~top), ("keep", top)) if kind in kinds}


def counterfactual_jobs(cfg: UseCaseConfig, methods: dict[str, np.ndarray], fraction: float, seeds: tuple[int, ...],
                        version: str, kinds: tuple[str, ...] = COUNTERFACTUALS) -> list[RetrainJob]:
    """The grand coalition and, per method, its remove-top / keep-top coalitions, per seed (deduplicated)."""
    n = len(next(iter(methods.values())))
    jobs = _jobs(cfg, np.ones((1, n), bool), seeds, "counterfactual-full", version)
    for name, values in methods.items():
        for kind, mask in counterfactual_masks(values, fraction, kinds).items():
            jobs += _jobs(cfg, mask[None], seeds, f"counterfactual-{kind}-{name}", version)
    return list({job.key: job for job in jobs}.values())
