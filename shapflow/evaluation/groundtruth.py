"""Ground truth: coalitions RETRAINED from scratch with the full-training recipe, and what they score.

A retraining is a ``RetrainJob``: a coalition mask, a training seed, and why it is needed (``purpose``:
held-out coalitions for LDS, counterfactual removals, leave-one-out, ...). Its identity ``key`` covers
what defines its output (the full-training stage key, sampling, property, mask, seed, code version), so
every method evaluated on a use case reuses the same runs. ``run_jobs`` trains jobs in stacks of
architecture-equal models (``train_many``: one vmapped loop, which is what makes hundreds of small
retrainings cheap on a GPU), samples each with the use case's fixed seeds and scores it. Nothing here
talks to MLflow: ``shapflow.evaluation.runs`` logs outcomes, ``shapflow.evaluation.worker`` runs a job
file where no tracking server is reachable.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from shapflow.config import UseCaseConfig, from_dict, identity, stage_key, to_dict
from shapflow.data import ContributorDataset
from shapflow.execution import spawn_pool
from shapflow.generation.ddim import sample
from shapflow.models import build_unet
from shapflow.properties import Property
from shapflow.shapley.masks import mask_of
from shapflow.training import Member, sampling_state, train_many
from shapflow.utility import family_of, load_scorer

__all__ = ["GPU_STACK", "RetrainJob", "RetrainOutcome", "auto_stack", "job_key", "run_jobs", "time_one"]

GPU_STACK = 64  # models per vmapped stack on a GPU: small models stop being launch-bound long before this


@dataclass(frozen=True)
class RetrainJob:
    """One retraining from scratch: coalition ``mask`` ("0110..."), training ``seed``, ``purpose``, identity."""

    key: str
    mask: str
    seed: int
    purpose: str


@dataclass
class RetrainOutcome:
    """What a retrained coalition scores: utility, every property, timings (s) and its first images."""

    job: RetrainJob
    utility: float
    properties: dict[str, float]
    timings: dict[str, float]
    device: str
    images: torch.Tensor | None = field(default=None, repr=False)

    def as_record(self) -> dict:
        """A JSON-able line for a results file (images dropped)."""
        return {"job": asdict(self.job), "utility": self.utility, "properties": self.properties,
                "timings": self.timings, "device": self.device}


def job_key(cfg: UseCaseConfig, mask: str, seed: int, version: str) -> str:
    """The identity of a retraining: what trains it (data, model, recipe), samples and scores it, mask, seed."""
    return identity("retrain", stage_key(cfg, "full"), stage_key(cfg, "sampling"), stage_key(cfg, "property"),
                    mask, int(seed), version)


def _retrain_stack(cfg: UseCaseConfig, data: ContributorDataset, jobs: list[RetrainJob], device: torch.device,
                   progress: bool) -> list:
    """Train the models of ``jobs`` from scratch, stacked in one loop; their sampling weights, in job order."""
    members = [Member(build_unet(cfg.model, seed=job.seed).to(device), data.subset(mask_of(job.mask)), job.seed)
               for job in jobs]
    results = train_many(members, cfg.train, cfg.diffusion, progress=progress, desc=f"retrain x{len(jobs)}",
                         precision=cfg.precision)
    models = []
    for result in results:
        model = copy.deepcopy(result.model)
        model.load_state_dict(sampling_state(result, cfg.train))
        models.append(model.eval())
    return models


def auto_stack(cfg: UseCaseConfig, device: str, jobs: int) -> int:
    """How many retrainings to train together when not told (``stack=0``): a vmapped stack of up to
    ``GPU_STACK`` on a GPU where the family can stack and kernels are eager; one at a time elsewhere. On a
    CPU the digits recipe is compute-bound, so a stack trains no faster (``benchmarks/retrain_stack.py``: 1.0x,
    docs/results/2026-12-08-fixture.md) and a killed stack loses every member's work, not one."""
    if not family_of(cfg).stackable or cfg.kernels != "eager" or torch.device(device).type == "cpu":
        return 1
    return max(1, min(GPU_STACK, jobs))


def run_jobs(cfg: UseCaseConfig, data: ContributorDataset, scorer: Property, jobs: list[RetrainJob], *,
             device: str = "cpu", stack: int = 0, workers: int = 1, progress: bool = False,
             keep_images: int = 64) -> Iterator[RetrainOutcome]:
    """Retrain, sample and score ``jobs``, ``stack`` at a time; yields each outcome as its stack finishes.

    ``stack`` > 1 trains that many models together (vmapped): on a GPU this turns hundreds of small,
    launch-bound trainings into a few large ones; on a CPU one at a time is about as fast. ``stack=0``
    (the default): ``auto_stack``.
    ``workers`` > 1 (CPU only; 0: one per core on a CPU, one elsewhere) spreads the stacks over that many
    spawned one-thread processes, yielding in the order they finish: small models gain little from intra-op
    threads (the digits full training runs 12.3-14.4 steps/s on two threads in one process, 2 x 10.3-10.6
    in two one-thread processes).
    """
    if not family_of(cfg).stackable:
        raise ValueError(f"ground-truth retraining supports model.family=pixel, not {cfg.model.family!r}: "
                         "retrain latent/LoRA coalitions with Study.evaluate(mask, method='retrain')")
    if cfg.kernels != "eager" and stack > 1:
        raise ValueError("stacked retraining runs eager PyTorch: set kernels=eager or stack=1")
    if stack < 0:
        raise ValueError(f"stack={stack} is invalid: train at least one model at a time (0: auto_stack)")
    stack = stack or auto_stack(cfg, device, len(jobs))
    on_cpu = torch.device(device).type == "cpu"
    if workers <= 0:
        workers = (os.cpu_count() or 1) if on_cpu else 1
    if workers > 1 and not on_cpu:
        raise ValueError(f"workers={workers} runs retrainings in CPU processes: on {device} use one worker "
                         "and --stack")
    chunks = [jobs[start:start + stack] for start in range(0, len(jobs), stack)]
    bar = tqdm(total=len(jobs), desc="retrainings", unit="run", disable=not progress)
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            for outcome in _run_chunk(cfg, data, scorer, chunk, torch.device(device), progress, keep_images):
                yield outcome
                bar.update(1)
    else:
        for outcomes in spawn_pool(_run_chunk_in_worker, [(chunk, keep_images) for chunk in chunks],
                                   workers=workers, initializer=_init_worker, initargs=(to_dict(cfg), data)):
            for outcome in outcomes:
                yield outcome
                bar.update(1)
    bar.close()


def _run_chunk(cfg: UseCaseConfig, data: ContributorDataset, scorer: Property, chunk: list[RetrainJob],
               device: torch.device, progress: bool, keep_images: int) -> list[RetrainOutcome]:
    """Retrain one stack of jobs together, then sample and score each model."""
    began = time.perf_counter()
    models = _retrain_stack(cfg, data, chunk, device, progress)
    train_seconds = (time.perf_counter() - began) / len(chunk)
    outcomes = []
    for job, model in zip(chunk, models, strict=True):
        began = time.perf_counter()
        images = sample(model, cfg.sampling, cfg.diffusion, precision=cfg.precision)
        sampled = time.perf_counter()
        properties = scorer.score_all(images)
        timings = {"train_seconds": train_seconds, "sample_seconds": sampled - began,
                   "score_seconds": time.perf_counter() - sampled}
        outcomes.append(RetrainOutcome(job, scorer.utility(properties[scorer.name]), properties, timings,
                                       _device_name(device), images[:keep_images]))
    return outcomes


def time_one(cfg: UseCaseConfig, data: ContributorDataset, scorer: Property, job: RetrainJob, device: str = "cpu",
             steps: int = 10) -> float:
    """Seconds one retraining of ``job`` takes here: ``steps`` training steps timed and scaled to
    ``cfg.train.steps``, plus one sampling and scoring (what ``evaluate`` says before it asks to retrain)."""
    steps = min(steps, cfg.train.steps)
    short = replace(cfg, train=replace(cfg.train, steps=steps, warmup_steps=min(steps, cfg.train.warmup_steps)))
    (outcome,) = _run_chunk(short, data, scorer, [job], torch.device(device), False, 0)
    timings = outcome.timings
    per_step = timings["train_seconds"] / short.train.steps
    return per_step * cfg.train.steps + timings["sample_seconds"] + timings["score_seconds"]


_WORKER: dict = {}


def _init_worker(cfg_data: dict, data: ContributorDataset) -> None:
    """Worker start-up: one torch thread; the config, the data and the scorer, loaded once."""
    torch.set_num_threads(1)
    cfg = from_dict(UseCaseConfig, cfg_data)
    _WORKER.update(cfg=cfg, data=data, scorer=load_scorer(cfg, data))


def _run_chunk_in_worker(chunk: list[RetrainJob], keep_images: int) -> list[RetrainOutcome]:
    return _run_chunk(_WORKER["cfg"], _WORKER["data"], _WORKER["scorer"], chunk, torch.device("cpu"), False,
                      keep_images)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
