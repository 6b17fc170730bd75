"""The asset use cases wired into the attribute chain: SMOKE runs logged to MLflow, and the asset check gate."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shapflow.attribution import parse_request, run_attribute
from shapflow.config import load_use_case, stage_key
from shapflow.tracking import SMOKE_TAG, open_tracker, utilities_table

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("use_case", ["cifar20", "celebahq", "artworks"])
def test_smoke_attribute_chain_logs_values(use_case, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    request = parse_request(use_case=use_case, tiny=True, budget=4, method="permutation", workers=1)
    assert request.cfg.name == f"SMOKE-{use_case}" and request.n_contributors == 3
    result = run_attribute(request, uri=uri, progress=False)
    assert len(result.values) == 3 and np.isfinite(result.values["value"]).all()
    tracker = open_tracker(request.experiment, uri)
    table = utilities_table(tracker, result.study_id)
    assert {"v0", "v1"} <= set(table["coalition_id"]) and (table["stage"] == "coalition").sum() >= 1
    parent = tracker.call("get_run", result.run_id)
    assert parent.data.tags[SMOKE_TAG] == "true" and "SMOKE" in parent.info.run_name


def test_a_smoke_run_never_shares_a_stage_key_with_a_real_one():
    real = load_use_case("celebahq")
    smoke = parse_request(use_case="celebahq", tiny=True, workers=1).cfg
    assert stage_key(real, "full") != stage_key(smoke, "full") and smoke.tiny


def test_missing_assets_stop_the_pipeline_before_any_run(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns.db", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "attribute.py"), "--use-case", "artworks"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "artbench_images" in done.stderr and "MISSING" in done.stderr and "obtain:" in done.stderr
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlartifacts").exists()
