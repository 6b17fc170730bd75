"""Drivers sharing a SQLite store: two at once on a new store finish together (live runs stay RUNNING, each stage
trained once, each coalition FINISHED once); a driver killed during the stages leaves runs the next start retires.
``mlflow run`` and ``shapflow run`` of one job reuse each other's runs."""

import os
import signal
import subprocess
import sys
import time

from shapflow.attribution import parse_request, run_attribute, run_stages
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import STAGE_TAG, open_tracker

USE_CASE, BUDGET = "digits-classes", 10
STAGES = ("full", "prune", "finetune")
CHECKS = ("check-000000", "check-000001")  # --check auto on 10 coalitions: evaluated after the plan


def _command(*extra, overrides=FAST_SETTINGS):
    return [sys.executable, "-m", "shapflow.cli", "run", "--use-case", USE_CASE, "--budget", str(BUDGET),
            "--overrides", " ".join(overrides), *extra]


def _runs(uri, stage):
    return open_tracker(USE_CASE, uri).search(f"tags.`{STAGE_TAG}` = '{stage}'")


def test_two_drivers_on_a_new_store_share_stages_and_split_coalitions(tmp_path, child_env):
    uri = f"sqlite:///{tmp_path}/mlruns.db"  # new: both drivers create it
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "SHAPFLOW_CODE_VERSION": "shared-store-test"}
    jobs = [subprocess.Popen(_command("--workers", workers), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for workers in ("2", "1")]  # pool and in-process
    seen, deadline = set(), time.monotonic() + 900
    try:
        while any(job.poll() is None for job in jobs) and time.monotonic() < deadline:
            if os.path.exists(tmp_path / "mlruns.db"):
                seen |= {run.info.status for run in _runs(uri, "attribute")}
            time.sleep(1.0)
        outputs = [job.communicate(timeout=60) for job in jobs]
    finally:
        for job in jobs:
            job.kill()
    assert [job.returncode for job in jobs] == [0, 0], [err[-3000:] for _, err in outputs]
    assert "KILLED" not in seen  # neither driver retired the other's live attribute run
    assert sorted(run.info.status for run in _runs(uri, "attribute")) == ["FINISHED", "FINISHED"]
    for stage in STAGES:  # trained once between them; the waiting driver reused it
        assert [run.info.status for run in _runs(uri, stage)] == ["FINISHED"], stage
    coalitions = _runs(uri, "coalition")
    ids = [run.data.params["coalition_id"] for run in coalitions]
    assert all(run.info.status == "FINISHED" for run in coalitions)
    assert len(ids) == len(set(ids)) == BUDGET + len(CHECKS) and set(CHECKS) <= set(ids)
    evaluated = [int(out.split(" coalitions evaluated now")[0].rsplit(None, 1)[-1]) for out, _ in outputs]
    assert sum(evaluated) == BUDGET, evaluated  # split, never both evaluating everything


def test_runs_of_a_driver_killed_during_the_stages_are_retired_by_the_next_start(tmp_path, child_env, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    overrides = (*FAST_SETTINGS, "train.steps=400")  # the kill lands while the full model trains
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "SHAPFLOW_CODE_VERSION": "kill-stages-test"}
    job = subprocess.Popen(_command("--workers", "1", overrides=overrides), env=env, cwd=tmp_path,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, full = time.monotonic() + 300, []
    try:
        while time.monotonic() < deadline and job.poll() is None and not full:
            full = _runs(uri, "full") if os.path.exists(tmp_path / "mlruns.db") else []
            time.sleep(0.2)
        assert job.poll() is None, "the driver ended before it could be killed"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    tracker = open_tracker(USE_CASE, uri)
    dead = [tracker.call("get_run", run.info.run_id) for run in (*_runs(uri, "attribute"), *full)]
    assert [run.info.status for run in dead] == ["RUNNING", "RUNNING"]  # nobody is left to end them
    monkeypatch.setenv("SHAPFLOW_CODE_VERSION", "kill-stages-test")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    request = parse_request(USE_CASE, overrides=" ".join(FAST_SETTINGS), budget=BUDGET, workers=1)
    run_stages(request, "full", uri=uri, progress=False)  # the next start
    for run in dead:
        after = tracker.call("get_run", run.info.run_id)
        assert after.info.status == "KILLED" and "gone" in after.data.tags["shapflow.retired"]
    assert [run.info.status for run in _runs(uri, "full")] == ["FINISHED", "KILLED"]


def test_mlflow_run_reuses_what_shapflow_run_logged(tiny_store, monkeypatch):
    """A run created in the use case's experiment as ``mlflow run --experiment-name`` creates one: the attribute
    entry point adopts it and reuses every stage and coalition ``shapflow run`` logged (same experiment)."""
    uri, result, request = tiny_store
    tracker = open_tracker(request.experiment, uri=uri)
    stage_runs = {stage: [r.info.run_id for r in tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")]
                  for stage in STAGES}
    adopted = tracker.call("create_run", tracker.experiment_id, tags={"mlflow.source.type": "PROJECT"}).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", adopted)
    try:
        again = run_attribute(request, uri=uri, progress=False)
    finally:
        tracker.call("set_terminated", adopted, "FINISHED")  # as mlflow run does after the script
    assert (again.run_id, again.evaluated_now, again.study_id) == (adopted, 0, result.study_id)
    assert {stage: [r.info.run_id for r in tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")]
            for stage in STAGES} == stage_runs
