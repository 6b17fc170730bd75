"""Driver failures on the PostgreSQL-backed server: a killed Ray driver resumes; two drivers at once."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from shapflow.attribution import parse_request, run_stages
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import STAGE_TAG, open_tracker, utilities_table

USE_CASE, BUDGET = "digits-classes", 10
RUN = uuid.uuid4().hex[:8]  # fresh experiments on a long-lived server
OVERRIDES = " ".join([*FAST_SETTINGS, "sft.steps=10"])
CHECKS = 2  # --check auto on 10 coalitions: held-out coalitions evaluated after the plan


def _command(experiment, *extra, overrides=OVERRIDES):
    return [sys.executable, "-m", "shapflow.cli", "run", "--use-case", USE_CASE, "--budget", str(BUDGET),
            "--overrides", overrides, "--experiment", experiment, *extra]


def _env(uri):
    """This checkout's shapflow (not another install) on the server ``uri``."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    env.pop("MLFLOW_RUN_ID", None)
    return env


def _coalition_runs(uri, experiment, status=None):
    query = f"tags.`{STAGE_TAG}` = 'coalition'" + (f" AND attributes.status = '{status}'" if status else "")
    return open_tracker(experiment, uri).search(query)


def _kill_tree(job):
    """SIGKILL the driver and everything it started (its Ray cluster included), by PID."""
    family = [job.pid, *(child.pid for child in psutil.Process(job.pid).children(recursive=True))]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job.wait(timeout=30)


def test_killed_ray_driver_resumes_without_duplicates(scaleout_env, tmp_path):
    experiment = f"kill-driver-{RUN}"
    open_tracker(experiment, scaleout_env)  # created once before fanning out
    command = _command(experiment, "--executor", "ray", "--ray-address", "local")
    job = subprocess.Popen(command, env=_env(scaleout_env), cwd=tmp_path, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, before = time.monotonic() + 240, []
    try:
        while time.monotonic() < deadline and job.poll() is None and len(before) < 2:
            before = _coalition_runs(scaleout_env, experiment, "FINISHED")
            time.sleep(0.2)
        assert job.poll() is None, "the driver ended before it could be killed"
    finally:
        _kill_tree(job)
    assert 2 <= len(before) < BUDGET
    rerun = subprocess.run(command, env=_env(scaleout_env), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    finished = _coalition_runs(scaleout_env, experiment, "FINISHED")
    ids = [r.data.params["coalition_id"] for r in finished]
    assert len(ids) == len(set(ids)) == BUDGET + CHECKS
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in finished}


def test_two_drivers_at_once_duplicates_are_ignored(scaleout_env, tmp_path):
    """Two drivers split the coalitions (each claims one just before evaluating it, skipping those the other
    holds or finished); a duplicate can still slip through when both claim within a commit's delay of each
    other: it carries the same identity and the same utility (same seeds), and ``utilities_table`` keeps one
    row per coalition id, so every estimator ignores it. The test asserts exactly that."""
    experiment = f"two-drivers-{RUN}"
    overrides = " ".join(FAST_SETTINGS)
    request = parse_request(USE_CASE, overrides=overrides, budget=BUDGET, workers=1, experiment=experiment)
    run_stages(request, "finetune", uri=scaleout_env, progress=False)  # stages once, before fanning out
    command = _command(experiment, "--workers", "1", overrides=overrides)
    jobs = [subprocess.Popen(command, env=_env(scaleout_env), cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [job.communicate(timeout=300) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-2000:] for _, err in outputs]
    finished = _coalition_runs(scaleout_env, experiment, "FINISHED")
    by_id: dict[str, set[float]] = {}
    for run in finished:
        by_id.setdefault(run.data.params["coalition_id"], set()).add(run.data.metrics["utility"])
    assert len(by_id) == BUDGET + CHECKS
    assert all(len(utilities) == 1 for utilities in by_id.values())  # a duplicate has the same utility
    tracker = open_tracker(experiment, scaleout_env)
    study = {run.data.tags["shapflow.study"] for run in finished}
    assert len(study) == 1
    table = utilities_table(tracker, study.pop())
    assert sorted(table["coalition_id"]) == sorted({*by_id, "v0", "v1"})
    values = [[line for line in out.split("\nattribute run")[0].splitlines() if "http" not in line]
              for out, _ in outputs]
    assert values[0] == values[1]  # both drivers report the same values table
    print(f"duplicate coalition evaluations: {len(finished) - BUDGET - CHECKS}")


def _alive(processes: list[psutil.Process]) -> list[str]:
    found = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            continue
    return found


def test_kill_9_of_the_driver_alone_leaves_no_ray_process_and_the_rerun_repeats_nothing(scaleout_env, tmp_path):
    """SIGKILL to the driver only (not its tree): the local Ray cluster it started (GCS, raylet, workers) goes with
    it, and the rerun evaluates each coalition once."""
    experiment = f"kill9-driver-{RUN}"
    open_tracker(experiment, scaleout_env)
    command = _command(experiment, "--executor", "ray")  # a new local cluster, started by the driver
    job = subprocess.Popen(command, env=_env(scaleout_env), cwd=tmp_path, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, before, started = time.monotonic() + 240, [], []
    try:
        while time.monotonic() < deadline and job.poll() is None and len(before) < 2:
            before = _coalition_runs(scaleout_env, experiment, "FINISHED")
            time.sleep(0.2)
        assert job.poll() is None, "the driver ended before it could be killed"
        started = psutil.Process(job.pid).children(recursive=True)
        assert any("ray" in " ".join(p.cmdline()) for p in started), [p.name() for p in started]
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(started), f"alive after kill -9 of the driver: {_alive(started)}"
    finally:
        for process in started:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    rerun = subprocess.run(command, env=_env(scaleout_env), cwd=tmp_path, capture_output=True, text=True,
                           timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ids = [r.data.params["coalition_id"] for r in _coalition_runs(scaleout_env, experiment, "FINISHED")]
    assert len(ids) == len(set(ids)) == BUDGET + CHECKS
