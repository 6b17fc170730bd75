"""Two drivers on one PostgreSQL store registering the same stage run at the same moment end with ONE version of
the registered model (they used to make ``digits-full`` versions 1 and 2 from one run), and both return it."""

import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from shapflow.services.server import start_postgres
from shapflow.tracking import open_tracker

DRIVER = """
import sys, time
from pathlib import Path
from shapflow.tracking import open_tracker, register_stage
uri, run_id, go = sys.argv[1:4]
tracker = open_tracker("race", uri)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.01)
print("version", register_stage(tracker, "digits-full", run_id), flush=True)
"""


def test_concurrent_drivers_register_a_run_once(cluster_root, tmp_path, child_env, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's default artifact root (./mlruns) for this process and the drivers
    pg = start_postgres(cluster_root)
    try:
        tracker = open_tracker("race", pg.uri)
        run_id = tracker.start("full", {"shapflow.stage": "full"})
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "stage.json").write_text("{}")
        tracker.call("log_artifacts", run_id, str(tmp_path / "model"), "model")
        tracker.end(run_id)
        go = tmp_path / "go"
        drivers = [subprocess.Popen([sys.executable, "-c", DRIVER, pg.uri, run_id, str(go)], cwd=tmp_path,
                                    env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        for driver in drivers:
            assert driver.stdout.readline().strip() == "ready", driver.stderr.read()[-3000:]
        time.sleep(0.5)
        go.touch()
        outputs = [driver.communicate(timeout=300) for driver in drivers]
        assert all(driver.returncode == 0 for driver in drivers), [err[-3000:] for _, err in outputs]
        versions = {out.strip().splitlines()[-1] for out, _ in outputs}
        client = MlflowClient(pg.uri, registry_uri=pg.uri)
        registered = client.search_model_versions("name = 'digits-full'")
        assert len(registered) == 1 and versions == {f"version {registered[0].version}"}, (versions, registered)
        models = client.search_logged_models([tracker.experiment_id])
        assert len([m for m in models if "READY" in str(m.status)]) == 1
    finally:
        pg.stop()
