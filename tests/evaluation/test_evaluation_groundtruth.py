"""Ground-truth retraining: stacked training equals lone training, worker processes equal one process, plans,
job keys, the offline worker."""

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from shapflow.attribution import load_config
from shapflow.data import load_data
from shapflow.evaluation.groundtruth import GPU_STACK, RetrainJob, auto_stack, job_key, run_jobs
from shapflow.evaluation.plans import counterfactual_jobs, counterfactual_masks, equal_compute_budget, top_k
from shapflow.evaluation.worker import main as worker_main
from shapflow.evaluation.worker import read_jobs, read_results, write_jobs
from shapflow.models import build_unet
from shapflow.shapley.masks import bits, heldout_masks, mask_of
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.training.loop import Member, train, train_many
from shapflow.utility.study import load_scorer


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("digits", FAST_SETTINGS)
    return cfg, load_data(cfg.data, cfg.assets)


def test_stacked_training_matches_lone_runs(tiny):
    cfg, data = tiny
    recipe = replace(cfg.train, steps=12)
    first, second = np.zeros(16, bool), np.ones(16, bool)
    first[:5] = True
    second[3] = False
    starts = [build_unet(cfg.model, seed=s) for s in (1, 2)]
    lone = [train(copy.deepcopy(m), data.subset(mask), replace(recipe, seed=s), cfg.diffusion)
            for m, mask, s in zip(starts, (first, second), (1, 2), strict=True)]
    stacked = train_many([Member(copy.deepcopy(m), data.subset(mask), s)
                          for m, mask, s in zip(starts, (first, second), (1, 2), strict=True)], recipe, cfg.diffusion)
    for a, b in zip(lone, stacked, strict=True):
        assert np.allclose(a.losses, b.losses, atol=1e-5)
        for name, value in a.model.state_dict().items():
            assert np.allclose(value.numpy(), b.model.state_dict()[name].numpy(), atol=1e-3), name
        for name, value in a.ema.items():
            assert np.allclose(value.numpy(), b.ema[name].numpy(), atol=1e-4), name
    # the two members really differ (different data and seeds), so equality above is not vacuous
    assert not np.allclose(stacked[0].losses, stacked[1].losses)


def test_stacked_retrainings_score_what_one_at_a_time_scores(tiny):
    """The worker's retrainings stacked (one vmapped loop) give the utilities of one at a time, at the same seeds,
    within 1e-5 (float rounding only); the coalitions and seeds really differ, so the match is not vacuous."""
    cfg, data = tiny
    cfg = replace(cfg, sampling=replace(cfg.sampling, num_images=16))
    masks = heldout_masks(16, 0.5, 3)
    jobs = [RetrainJob(job_key(cfg, bits(m), s, "v"), bits(m), s, "heldout-0.50") for m, s in zip(masks, (0, 1, 2),
                                                                                                   strict=True)]
    scorer = load_scorer(cfg, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = {o.job.key: o.utility for o in run_jobs(cfg, data, scorer, jobs, stack=1)}
        stacked = {o.job.key: o.utility for o in run_jobs(cfg, data, scorer, jobs, stack=3)}
    finally:
        torch.set_num_threads(threads)
    assert one.keys() == stacked.keys() == {job.key for job in jobs}
    assert max(abs(one[key] - stacked[key]) for key in one) < 1e-5
    assert len({round(u, 3) for u in one.values()}) == len(jobs)


def test_the_default_stack_is_a_vmapped_stack_on_a_gpu_and_one_on_a_cpu(tiny):
    cfg, _ = tiny
    assert auto_stack(cfg, "cuda", 500) == GPU_STACK and auto_stack(cfg, "cuda:1", 5) == 5
    assert auto_stack(cfg, "cpu", 500) == 1
    assert auto_stack(replace(cfg, kernels="cpp"), "cuda", 500) == 1
    assert auto_stack(load_config("celebahq", tiny=True), "cuda", 500) == 1


def test_heldout_masks_are_distinct_fixed_size_and_prefix_stable():
    masks = heldout_masks(16, 0.5, 48)
    assert masks.shape == (48, 16) and (masks.sum(1) == 8).all()
    assert len({bits(m) for m in masks}) == 48
    assert (heldout_masks(16, 0.5, 10) == masks[:10]).all()
    assert (heldout_masks(16, 0.25, 5).sum(1) == 4).all()


def test_job_key_covers_what_defines_a_retraining_only(tiny):
    cfg, _ = tiny
    key = job_key(cfg, "01" * 8, 0, "v")
    assert key == job_key(cfg, "01" * 8, 0, "v")
    assert key != job_key(cfg, "01" * 8, 1, "v")
    assert key != job_key(cfg, "10" * 8, 0, "v")
    assert key != job_key(cfg, "01" * 8, 0, "w")
    assert key != job_key(replace(cfg, sampling=replace(cfg.sampling, seed=7)), "01" * 8, 0, "v")
    assert key != job_key(replace(cfg, train=replace(cfg.train, lr=1e-4)), "01" * 8, 0, "v")
    # the sFT recipe does not train the ground truth: every sFT variant reuses the same retrainings
    assert key == job_key(replace(cfg, sft=replace(cfg.sft, steps=7)), "01" * 8, 0, "v")


def test_masks_round_trip_and_reject_garbage():
    mask = np.array([True, False, True])
    assert (mask_of(bits(mask)) == mask).all()
    with pytest.raises(ValueError, match="0/1"):
        mask_of("01x")


def test_counterfactual_plans_remove_and_keep_the_top_fraction(tiny):
    cfg, _ = tiny
    values = np.arange(10.0)
    assert set(top_k(values, 0.4)) == {9, 8, 7, 6}
    masks = counterfactual_masks(values, 0.4)
    assert masks["keep"].sum() == 4 and not (masks["keep"] & masks["remove"]).any()
    jobs = counterfactual_jobs(cfg, {"a": values, "b": values.copy()}, 0.4, (0, 1), "v")
    assert len(jobs) == 2 * 3  # full + remove + keep, per seed; b duplicates a and adds nothing
    assert len({j.key for j in jobs}) == len(jobs)
    removals = counterfactual_jobs(cfg, {"a": values}, 0.4, (0, 1), "v", kinds=("remove",))
    assert len(removals) == 2 * 2 and {j.key for j in removals} < {j.key for j in jobs}


def test_equal_compute_gives_costlier_methods_fewer_coalitions(tiny):
    cfg, _ = tiny
    assert equal_compute_budget(cfg, "sft", 160, 4e6, 1e6) == 160
    assert equal_compute_budget(cfg, "ft", 160, 4e6, 1e6) < 160
    assert equal_compute_budget(cfg, "retrain", 160, 4e6, 1e6) < equal_compute_budget(cfg, "ft", 160, 4e6, 1e6)


def test_worker_runs_a_job_file_resumably_and_refuses_edited_files(tiny, tmp_path):
    cfg, _ = tiny
    cfg = replace(cfg, train=replace(cfg.train, steps=4), sampling=replace(cfg.sampling, num_images=8))
    masks = heldout_masks(16, 0.5, 2)
    jobs = [RetrainJob(job_key(cfg, bits(m), s, "v"), bits(m), s, "heldout-0.50") for m in masks for s in (0, 1)]
    path = write_jobs(cfg, jobs, tmp_path / "jobs.json")
    assert read_jobs(path) == (cfg, jobs)
    out = tmp_path / "results.jsonl"
    assert worker_main([str(path), "--out", str(out), "--stack", "2", "--limit", "3"]) == 0
    assert len(read_results(out)) == 3
    assert worker_main([str(path), "--out", str(out)]) == 0  # resumes: only the missing job runs
    records = read_results(out)
    assert sorted(r["job"]["key"] for r in records) == sorted(j.key for j in jobs)
    # exported again under another code version (new keys): the (stamp, mask, seed) lines still count as done
    again = [replace(job, key=job_key(cfg, job.mask, job.seed, "v2")) for job in jobs]
    assert worker_main([str(write_jobs(cfg, again, tmp_path / "again.json")), "--out", str(out)]) == 0
    assert len(read_results(out)) == len(jobs)
    assert all(np.isfinite(r["utility"]) and r["device"] == "cpu" for r in records)
    payload = json.loads(path.read_text())
    payload["use_case"]["train"]["steps"] = 5
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="stamp"):
        read_jobs(path)


def test_retrainings_in_worker_processes_match_in_process_ones(tiny):
    """workers=2 spreads the jobs over two spawned one-thread processes: same outcomes (any order) as one
    thread in this process; a GPU device refuses worker processes."""
    cfg, data = tiny
    cfg = replace(cfg, train=replace(cfg.train, steps=4), sampling=replace(cfg.sampling, num_images=8))
    jobs = [RetrainJob(job_key(cfg, bits(m), 0, "v"), bits(m), 0, "heldout-0.50") for m in heldout_masks(16, 0.5, 3)]
    scorer = load_scorer(cfg, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = {o.job.key: o for o in run_jobs(cfg, data, scorer, jobs)}
    finally:
        torch.set_num_threads(threads)
    pooled = {o.job.key: o for o in run_jobs(cfg, data, scorer, jobs, workers=2)}
    assert pooled.keys() == alone.keys() == {j.key for j in jobs}
    for key, outcome in pooled.items():
        assert np.isclose(outcome.utility, alone[key].utility, rtol=1e-6, atol=1e-7)
        assert torch.allclose(outcome.images, alone[key].images, atol=1e-6)
    assert len({round(o.utility, 6) for o in pooled.values()}) == len(jobs)  # the coalitions really differ
    with pytest.raises(ValueError, match="CPU processes"):
        next(run_jobs(cfg, data, scorer, jobs, device="cuda", workers=2))
