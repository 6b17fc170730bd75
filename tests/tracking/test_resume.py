"""Kill the attribute command mid-loop (SIGKILL), rerun it: one FINISHED run per coalition, none redone."""

import os
import signal
import subprocess
import sys
import time

from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import STAGE_TAG, open_tracker

BUDGET = 10
CHECKS = ("check-000000", "check-000001")  # --check auto on 10 coalitions: evaluated after the plan


def _coalition_runs(uri):
    tracker = open_tracker("digits-classes", uri=uri)
    return tracker.search(f"tags.`{STAGE_TAG}` = 'coalition'")


def test_kill_and_rerun_yields_one_finished_run_per_coalition(tmp_path, child_env):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    env = {**child_env, "MLFLOW_TRACKING_URI": uri,
           "SHAPFLOW_CODE_VERSION": "resume-test"}  # a commit landing mid-test must not start a new study
    overrides = " ".join([*FAST_SETTINGS, "sft.steps=25"])  # slower coalitions: the kill lands mid-loop
    command = [sys.executable, "-m", "shapflow.cli", "run", "--use-case", "digits-classes", "--budget", str(BUDGET),
               "--workers", "2", "--overrides", overrides]
    job = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, before = time.monotonic() + 300, []
    while time.monotonic() < deadline and job.poll() is None:
        before = [r for r in _coalition_runs(uri) if r.info.status == "FINISHED"]
        if len(before) >= 2:
            break
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    assert 2 <= len(before) < BUDGET
    rerun = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    runs = _coalition_runs(uri)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ids = [r.data.params["coalition_id"] for r in finished]
    assert len(ids) == len(set(ids)) == BUDGET + len(CHECKS) and set(CHECKS) <= set(ids)
    kept = {r.info.run_id for r in finished}
    assert {r.info.run_id for r in before} <= kept  # finished before the kill: not recomputed
    assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)  # leftovers marked, never RUNNING
    assert all("gone" in r.data.tags["shapflow.retired"] for r in runs if r.info.status == "KILLED")
    assert f"{BUDGET - len(before)} coalitions evaluated now" in rerun.stdout
