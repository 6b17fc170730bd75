"""Ray executor against the PostgreSQL-backed MLflow server: same utilities as local; a killed worker."""

import threading
import time
import uuid

import numpy as np
import psutil
import pytest

from shapflow.attribution import parse_request, run_attribute
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import STAGE_TAG, open_tracker, utilities_table

USE_CASE, BUDGET = "digits-classes", 10
TASK_TITLE = "ray::_task"  # the process title of a Ray worker running shapflow.execution.ray._task
CHECKS = 2  # --check auto on 10 coalitions: held-out coalitions evaluated after the plan, by the same executor
RUN = uuid.uuid4().hex[:8]  # fresh experiments on a long-lived server
OVERRIDES = " ".join([*FAST_SETTINGS, "sft.steps=10"])  # ~1 s a coalition: a kill lands mid-sweep


def _sweep(uri, experiment, executor, workers, overrides=OVERRIDES):
    request = parse_request(USE_CASE, overrides=overrides, budget=BUDGET, workers=workers, experiment=experiment,
                            executor=executor)
    assert request.check == CHECKS
    result = run_attribute(request, uri=uri, progress=False)
    return result, utilities_table(open_tracker(experiment, uri), result.study_id)


def _finished_per_id(uri, experiment):
    runs = open_tracker(experiment, uri).search(f"tags.`{STAGE_TAG}` = 'coalition' AND attributes.status = 'FINISHED'")
    ids = [r.data.params["coalition_id"] for r in runs]
    return ids


def test_ray_two_workers_match_local_executor(scaleout_env, ray_cluster):
    """Same seeds, same utilities: 2 Ray workers vs 2 local one-thread processes, both on the server."""
    tiny = " ".join(FAST_SETTINGS)
    _, local = _sweep(scaleout_env, f"match-local-{RUN}", "local", 2, tiny)
    _, remote = _sweep(scaleout_env, f"match-ray-{RUN}", "ray", 2, tiny)
    assert len(local) == len(remote) == BUDGET + 2 + CHECKS
    assert list(local["coalition_id"]) == list(remote["coalition_id"])
    np.testing.assert_allclose(remote["utility"].to_numpy(), local["utility"].to_numpy(), rtol=1e-5, atol=1e-6)
    ids = _finished_per_id(scaleout_env, f"match-ray-{RUN}")
    assert len(ids) == len(set(ids)) == BUDGET + CHECKS


def _kill_one_worker_when(uri, experiment, killed, deadline):
    """Once a coalition run is FINISHED, SIGKILL one Ray worker busy with a coalition task."""
    while time.monotonic() < deadline and not killed:
        try:
            if _finished_per_id(uri, experiment):
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if " ".join(proc.info["cmdline"] or []).startswith(TASK_TITLE):
                        proc.kill()
                        killed.append(proc.info["pid"])
                        return
        except Exception:  # the experiment may not exist yet
            pass
        time.sleep(0.1)


def test_killing_a_ray_worker_still_completes_every_coalition_once(scaleout_env, ray_cluster):
    experiment, killed = f"kill-worker-{RUN}", []
    open_tracker(experiment, scaleout_env)  # created once before fanning out
    killer = threading.Thread(target=_kill_one_worker_when,
                              args=(scaleout_env, experiment, killed, time.monotonic() + 180), daemon=True)
    killer.start()
    result, table = _sweep(scaleout_env, experiment, "ray", 2)
    killer.join(timeout=5)
    if not killed:
        pytest.fail(f"no Ray worker ({TASK_TITLE}) was busy to kill: the sweep was too fast, or the task renamed")
    assert result.evaluated_now == BUDGET
    ids = _finished_per_id(scaleout_env, experiment)
    assert len(ids) == len(set(ids)) == BUDGET + CHECKS
    assert len(table) == BUDGET + 2 + CHECKS
