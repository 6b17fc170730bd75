"""Retraining runs in MLflow: one FINISHED run per job, resume after a kill, ingest, export; and the whole
``shapflow evaluate`` chain, whose retrainings every method reuses."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from shapflow.attribution import load_config
from shapflow.cli.main import main
from shapflow.data import load_data
from shapflow.evaluation import groundtruth
from shapflow.evaluation.groundtruth import RetrainJob, job_key
from shapflow.evaluation.runs import (
    RETRAIN_STAGE,
    JobsExported,
    RetrainingNotAsked,
    ensure_retrained,
    finished_retrains,
)
from shapflow.evaluation.worker import main as worker_main
from shapflow.evaluation.worker import write_jobs
from shapflow.shapley.masks import bits, heldout_masks
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import KEY_TAG, STAGE_TAG, open_tracker
from shapflow.utility.study import load_scorer


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("digits-classes", FAST_SETTINGS)
    cfg = replace(cfg, train=replace(cfg.train, steps=4), sampling=replace(cfg.sampling, num_images=8))
    data = load_data(cfg.data, cfg.assets)
    masks = heldout_masks(data.n_contributors, 0.5, 3)
    jobs = [RetrainJob(job_key(cfg, bits(m), 0, "v"), bits(m), 0, "heldout-0.50") for m in masks]
    return cfg, data, load_scorer(cfg, data), jobs


def _runs_per_key(tracker):
    runs = tracker.search(f"tags.`{STAGE_TAG}` = '{RETRAIN_STAGE}'")
    finished = [r.data.tags[KEY_TAG] for r in runs if r.info.status == "FINISHED"]
    return {key: finished.count(key) for key in finished}, runs


def test_retrainings_resume_after_a_kill_and_are_reused(setup, tmp_path, monkeypatch):
    cfg, data, scorer, jobs = setup
    tracker = open_tracker("gt", f"sqlite:///{tmp_path}/mlruns.db")
    real = groundtruth.run_jobs
    calls = []

    def killed_after_one(*args, **kwargs):
        for index, outcome in enumerate(real(*args, **kwargs)):
            if index == 1:
                raise KeyboardInterrupt  # the job dies while the second retraining is being logged
            calls.append(outcome.job.key)
            yield outcome

    monkeypatch.setattr("shapflow.evaluation.runs.run_jobs", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        ensure_retrained(tracker, cfg, data, scorer, jobs)
    assert len(finished_retrains(tracker, cfg)) == 1
    monkeypatch.setattr("shapflow.evaluation.runs.run_jobs", lambda *a, **k: (calls.append(o.job.key) or o
                                                                              for o in real(*a, **k)))
    outcomes = ensure_retrained(tracker, cfg, data, scorer, jobs)
    assert len(calls) == 3 and len(set(calls)) == 3  # the rerun trained only the two missing jobs
    assert set(outcomes) == {j.key for j in jobs}
    again = ensure_retrained(tracker, cfg, data, scorer, jobs)
    assert len(calls) == 3 and again == outcomes  # a second method asking for them trains nothing
    per_key, _ = _runs_per_key(tracker)
    assert per_key == {j.key: 1 for j in jobs}


def test_missing_retrainings_are_stated_with_their_cost_and_started_only_when_asked(setup, tmp_path, monkeypatch):
    """Without ``retrain`` nothing is retrained: the error says how many, for what and how long each takes here
    (timed on a few steps at first, then from the logged ones); with it, they run."""
    cfg, data, scorer, jobs = setup
    tracker = open_tracker("gt", f"sqlite:///{tmp_path}/mlruns.db")
    with pytest.raises(RetrainingNotAsked, match=r"^3 retraining\(s\) from scratch .*\(3 heldout-0.50\): ~\d+ s "
                                                 r"each on cpu here \(4 of its 4 training steps timed.*--retrain"):
        ensure_retrained(tracker, cfg, data, scorer, jobs, retrain=False)
    assert _runs_per_key(tracker)[1] == []  # nothing logged, nothing retrained
    ensure_retrained(tracker, cfg, data, scorer, jobs[:1])
    with pytest.raises(RetrainingNotAsked, match=r"^2 retraining.*the median of 1 logged retrainings"):
        ensure_retrained(tracker, cfg, data, scorer, jobs, retrain=False)
    assert ensure_retrained(tracker, cfg, data, scorer, jobs[:1], retrain=False).keys() >= {jobs[0].key}
    # held-out jobs a partial fixture lacks are optional: said on stderr, the existing ones returned
    found = ensure_retrained(tracker, cfg, data, scorer, jobs, retrain=False,
                             optional=frozenset(job.key for job in jobs[1:]))
    assert jobs[0].key in found and not {job.key for job in jobs[1:]} & set(found)
    with pytest.raises(RetrainingNotAsked):  # one missing job that is not optional still stops it
        ensure_retrained(tracker, cfg, data, scorer, jobs, retrain=False, optional=frozenset({jobs[1].key}))


def test_the_cost_of_a_retraining_is_timed_on_a_few_steps_even_inside_the_warm_up(setup):
    """The digits recipe warms up for 100 of its 2,000 steps: timing 10 of them must shorten the warm-up too."""
    cfg, data, scorer, jobs = setup
    long = replace(cfg, train=replace(cfg.train, steps=40, warmup_steps=30))
    assert groundtruth.time_one(long, data, scorer, jobs[0], steps=3) > 0


def test_export_then_ingest_logs_each_job_once_and_refuses_foreign_lines(setup, tmp_path):
    cfg, data, scorer, jobs = setup
    tracker = open_tracker("gt", f"sqlite:///{tmp_path}/mlruns.db")
    export = tmp_path / "jobs.json"
    with pytest.raises(JobsExported, match="3 retraining"):
        ensure_retrained(tracker, cfg, data, scorer, jobs, export=export)
    results = tmp_path / "results.jsonl"
    assert worker_main([str(export), "--out", str(results), "--stack", "3"]) == 0
    other = replace(cfg, sampling=replace(cfg.sampling, seed=99))
    write_jobs(other, jobs[:1], tmp_path / "other.json")
    worker_main([str(tmp_path / "other.json"), "--out", str(results)])  # a line stamped with another config
    outcomes = ensure_retrained(tracker, cfg, data, scorer, jobs, results=(results, results))
    per_key, runs = _runs_per_key(tracker)
    assert per_key == {j.key: 1 for j in jobs} and len(runs) == 3
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    first = next(line for line in lines if line["job"]["key"] == jobs[0].key)
    assert outcomes[jobs[0].key].utility == pytest.approx(first["utility"])


def test_evaluate_chain_reuses_ground_truth_across_methods(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    common = ["--use-case", "digits-classes", "--overrides", " ".join(FAST_SETTINGS), "--count", "4", "--seeds", "2",
              "--budget", "12", "--workers", "1", "--stack", "4"]
    first = CliRunner().invoke(main, ["evaluate", "lds", *common, "--retrain", "true",
                                      "--methods", "sft-shapley,pixel-sim-mean",
                                      "--out", str(tmp_path / "a"), "--json", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "a.json").read_text())
    assert set(summary) == {"sft-shapley", "pixel-sim-mean", "random"}
    assert summary["random"]["ci"] > 0
    tracker = open_tracker("digits-classes", uri)
    per_key, runs = _runs_per_key(tracker)
    assert len(per_key) == 8 and set(per_key.values()) == {1}
    second = CliRunner().invoke(main, ["evaluate", "lds", *common, "--methods", "own-property",
                                       "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert len(_runs_per_key(tracker)[1]) == len(runs)  # no new retraining: the held-out truth is shared
    table = (tmp_path / "b" / "evaluation.csv").read_text()
    assert "own-property" in table and "random" in table
    reference = pd.read_csv(tmp_path / "b" / "evaluation.csv").set_index("method").loc["seed-to-seed"]
    assert reference["n_seeds"] == 2 and reference["n_coalitions"] == 4 and np.isfinite(reference["lds"])
    # two more held-out coalitions asked, none retrained, no --retrain: the LDS stands on the 4 that exist, and says so
    wider = [*common[:common.index("--count")], "--count", "6", *common[common.index("--count") + 2:]]
    partial = CliRunner().invoke(main, ["evaluate", "lds", *wider, "--methods", "own-property",
                                        "--out", str(tmp_path / "c")])
    assert partial.exit_code == 0, partial.output
    assert "LDS on 4 held-out coalitions x 2 seed(s) (8 of the 12 retrainings of 6 x 2 asked" in partial.output
    assert "4 optional retraining(s) (4 heldout-0.50) are not in the store or the fixture" in partial.output
    assert pd.read_csv(tmp_path / "c" / "evaluation.csv").set_index("method").loc["own-property", "n_coalitions"] == 4
    assert len(_runs_per_key(tracker)[1]) == len(runs)
    assert (tmp_path / "a" / "scatter" / "lds_scatter_sft-shapley.png").stat().st_size > 0
    first_table = pd.read_csv(tmp_path / "a" / "evaluation.csv").set_index("method")
    assert np.isfinite(first_table.loc["sft-shapley", "lds_all_coalitions"])  # the study's 12 + 2 endpoint runs
    profile = pd.read_csv(tmp_path / "a" / "game_profile.csv")
    assert profile["count"].sum() == 14 and profile["size"].min() == 0
    assert (tmp_path / "a" / "game_profile.png").stat().st_size > 0
    bad = CliRunner().invoke(main, ["evaluate", "lds", "--methods", "magic"])
    assert bad.exit_code == 2 and "choose from" in bad.output
    assert np.isfinite(summary["sft-shapley"]["lds"])
