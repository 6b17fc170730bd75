"""SIGTERM to ``mlflow run -e attribute`` (the parent) takes its entry point (the child) down with it, and every
run ends: shapflow's own KILLED, and the run ``mlflow run`` made KILLED with the reason (it used to compute on to
the end under PID 1, with MLflow's run left RUNNING)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
from mlflow.tracking import MlflowClient

from shapflow.testing.fast import FAST_SETTINGS

from .conftest import REPO


def _entry_point(mlflow_run: psutil.Process) -> psutil.Process | None:
    for child in mlflow_run.children(recursive=True):
        try:
            if any("pipelines/attribute.py" in part for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _started_coalitions(uri: str) -> bool:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits-classes")
    return experiment is not None and bool(client.search_runs(
        [experiment.experiment_id], "tags.`shapflow.stage` = 'coalition'", max_results=1))


def test_sigterm_to_mlflow_run_stops_its_entry_point_and_ends_every_run(tmp_path, child_env, wait_until):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    MlflowClient(uri).search_experiments()  # the store migrated once here: mlflow run and its script would race
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1",
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), child_env.get("PATH", "")])}
    command = [mlflow, "run", str(REPO), "-e", "attribute", "--env-manager", "local", "--experiment-name",
               "digits-classes", "-P", "use_case=digits-classes", "-P", f"overrides={' '.join(FAST_SETTINGS)}",
               "-P", "budget=200", "-P", "workers=1", "-P", "check=0"]
    parent = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "err").open("wb"))
    child = None
    try:
        assert wait_until(lambda: _started_coalitions(uri) or parent.poll() is not None, 400), \
            (tmp_path / "err").read_text()[-3000:]
        assert parent.poll() is None, (tmp_path / "err").read_text()[-3000:]
        child = _entry_point(psutil.Process(parent.pid))
        assert child is not None
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        assert wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 120), \
            "the entry point outlived mlflow run"
    finally:
        for process in (child, psutil.Process(parent.pid) if parent.poll() is None else None):
            if process is not None and process.is_running():
                process.kill()
    time.sleep(1)
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [(r.info.run_name, r.data.tags.get("shapflow.stage")) for r in runs if r.info.status == "RUNNING"]
    made = [r for r in runs if r.data.tags.get("mlflow.source.type") == "PROJECT"]
    assert [r.info.status for r in made] == ["KILLED"]
    reason = made[0].data.tags.get("shapflow.retired", "")
    assert f"parent process {parent.pid} died" in reason or f"mlflow run (PID {parent.pid})" in reason, reason
