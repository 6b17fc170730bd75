"""Registered versions are MLflow models (models-from-code, nothing pickled) that predict what shapflow's own loader
and ``shapflow models check`` give; registration is idempotent; versions registered before still load."""

import json
import os
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from safetensors.torch import load_file

from shapflow.cli.main import main
from shapflow.tracking import STAGE_TAG, load_registered, open_tracker, register_stage
from shapflow.tracking.pyfunc import CODE_FILE, STAGE_ARTIFACT
from shapflow.tracking.store import global_tracking_uri

PRUNED = "digits-classes-pruned"


@pytest.fixture
def store(tiny_store, monkeypatch):
    uri, _, request = tiny_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri, open_tracker(request.experiment, uri=uri), request


def test_a_version_is_an_mlflow_model_from_code_with_safetensors_and_no_pickle(store, tmp_path):
    uri, tracker, _ = store
    version = tracker.call("get_model_version_by_alias", PRUNED, "candidate")
    assert version.source.startswith("models:/m-")
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path),
                                                    tracking_uri=uri))
    pyfunc = Model.load(root).flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in pyfunc
    assert Path(pyfunc["model_code_path"]).name == CODE_FILE.name and (root / CODE_FILE.name).is_file()
    files = {p.name for p in root.rglob("*") if p.is_file()}
    assert not {f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".bin"))}, files
    stage = root / pyfunc["artifacts"][STAGE_ARTIFACT]["path"]
    assert {"stage.json", "model.json", "model.safetensors"} <= {p.name for p in stage.iterdir()}
    signature = Model.load(root).signature
    assert [c.name for c in signature.inputs.inputs] == ["seed", "num_inference_steps", "score"]
    assert [c.name for c in signature.outputs.inputs][:3] == ["seed", "num_inference_steps", "image"]
    run = tracker.call("get_run", version.run_id)  # linked as the stage run's output, the run left FINISHED
    assert run.info.status == "FINISHED" and run.data.tags[STAGE_TAG] == "finetune"
    assert [o.model_id for o in run.outputs.model_outputs] == [version.source.removeprefix("models:/")]


def test_pyfunc_predicts_the_images_of_models_check_and_the_logged_properties(store, tmp_path):
    uri, tracker, request = store
    with global_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"models:/{PRUNED}@candidate")
    out = model.predict(pd.DataFrame({"seed": [0, 1]}))
    assert list(out.columns) == ["seed", "num_inference_steps", "image", "settings"] and list(out["seed"]) == [0, 1]
    images = [torch.tensor(image, dtype=torch.float32) for image in out["image"]]
    assert images[0].shape == (1, 8, 8) and images[0].abs().max() <= 1.0 and not torch.equal(*images)
    check = CliRunner().invoke(main, ["models", "check", f"{PRUNED}@candidate", "--seed", "1",
                                      "--image", str(tmp_path / "seed1.safetensors")])
    assert check.exit_code == 0, check.output
    assert torch.equal(load_file(tmp_path / "seed1.safetensors")["image"], images[1])  # bit-identical on CPU
    assert (tmp_path / "seed1.png").is_file()
    loaded = load_registered(f"{PRUNED}@candidate", uri=uri)
    seed = request.cfg.sampling.seed
    scored = model.predict(pd.DataFrame({"seed": [seed, 3], "score": [True, False]}))
    logged = tracker.call("get_run", loaded.run_id).data.metrics  # the stage run scored the set of sampling.seed
    assert scored["utility"][0] == pytest.approx(logged["utility"], rel=1e-4, abs=1e-5)
    assert scored["properties"][0]["neg_log_fd"] == pytest.approx(logged["neg_log_fd"], rel=1e-4, abs=1e-5)
    assert scored["utility"][1] is None and scored["num_inference_steps"][0] == request.cfg.sampling.num_inference_steps
    fewer = model.predict(pd.DataFrame({"seed": [1], "num_inference_steps": [1]}))
    assert fewer["num_inference_steps"][0] == 1 and not np.array_equal(fewer["image"][0], out["image"][1])
    with pytest.raises(Exception, match="seed"):
        model.predict(pd.DataFrame({"steps": [3]}))


def test_registration_is_idempotent(store):
    _, tracker, _ = store
    version = tracker.call("get_model_version_by_alias", PRUNED, "candidate")
    models = tracker.call("search_logged_models", [tracker.experiment_id])
    versions = tracker.call("search_model_versions", f"name = '{PRUNED}'")
    assert register_stage(tracker, PRUNED, version.run_id, "candidate") == str(version.version)
    assert len(tracker.call("search_logged_models", [tracker.experiment_id])) == len(models) == 2  # full, pruned
    assert len(tracker.call("search_model_versions", f"name = '{PRUNED}'")) == len(versions) == 1


def test_a_version_of_a_run_folder_registered_before_still_loads(store):
    uri, tracker, _ = store
    run_id = tracker.call("get_model_version_by_alias", PRUNED, "candidate").run_id
    source = f"{tracker.call('get_run', run_id).info.artifact_uri}/model"  # how versions were registered before
    tracker.call("create_registered_model", "legacy-pruned")
    tracker.call("create_model_version", "legacy-pruned", source=source, run_id=run_id)
    old, new = load_registered("legacy-pruned/1", uri=uri), load_registered(f"{PRUNED}@candidate", uri=uri)
    assert old.run_id == new.run_id and old.cfg == new.cfg and old.stage == "finetune"
    assert torch.equal(old.family.images(old.ctx, old.models), new.family.images(new.ctx, new.models))


@pytest.mark.parametrize("variable", [None, "sqlite:///elsewhere.db"])
def test_setting_the_global_uri_for_mlflow_restores_it_and_its_variable(monkeypatch, variable):
    if variable is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", variable)
    with global_tracking_uri("sqlite:///inside.db"):
        assert mlflow.get_tracking_uri() == "sqlite:///inside.db"
    assert os.environ.get("MLFLOW_TRACKING_URI") == variable


def _refusal(model, frame: pd.DataFrame) -> MlflowException:
    with pytest.raises(MlflowException) as caught:
        model.predict(frame)
    return caught.value


@pytest.mark.parametrize(("frame", "message"), [
    ({"seed": [-1]}, r"seed=-1 is invalid: use an integer in \[0, 4294967295\]"),
    ({"seed": [2**32]}, r"seed=4294967296 is invalid"),
    ({"seed": [0], "num_inference_steps": [0]}, r"num_inference_steps=0 is invalid: use 1 to 1000 DDIM steps"),
    ({"seed": [0], "num_inference_steps": [10**6]}, r"num_inference_steps=1000000 is invalid"),
    ({"seed": [0, 1, 2]}, r"3 rows is over this server's cap of 2 rows per request \(SHAPFLOW_SERVE_MAX_ROWS\)"),
])
def test_a_bad_request_is_refused_with_one_line_before_anything_is_generated(store, monkeypatch, frame, message):
    uri, _, _ = store
    monkeypatch.setenv("SHAPFLOW_SERVE_MAX_ROWS", "2")
    with global_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"models:/{PRUNED}@candidate")
    refused = _refusal(model, pd.DataFrame(frame))
    assert refused.error_code == "INVALID_PARAMETER_VALUE" and re.search(message, refused.message)
    assert "\n" not in refused.message and "Traceback" not in refused.message and "/" not in refused.message


def test_generation_stops_at_the_time_limit_and_the_output_says_its_settings(store, monkeypatch):
    uri, _, request = store
    monkeypatch.setenv("SHAPFLOW_SERVE_TIME_LIMIT", "1e-9")  # past before the first row: nothing is generated
    with global_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"models:/{PRUNED}@candidate")
    stopped = _refusal(model, pd.DataFrame({"seed": [0, 1]}))
    assert stopped.error_code == "REQUEST_LIMIT_EXCEEDED" and stopped.get_http_status_code() == 429
    assert "time limit of 1e-09 s (SHAPFLOW_SERVE_TIME_LIMIT) reached after 0 of 2 rows" in stopped.message
    monkeypatch.setenv("SHAPFLOW_SERVE_TIME_LIMIT", "600")
    with global_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"models:/{PRUNED}@candidate")
    settings = json.loads(model.predict(pd.DataFrame({"seed": [5], "num_inference_steps": [2]}))["settings"][0])
    assert settings == {"use_case": request.cfg.name, "stage": "finetune", "num_inference_steps": 2,
                        "eta": request.cfg.sampling.eta, "precision": request.cfg.precision, "max_rows": 64,
                        "time_limit_s": 600.0}
