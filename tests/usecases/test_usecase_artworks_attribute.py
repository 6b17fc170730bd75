"""A tiny artworks attribute run (SMOKE: Stable Diffusion + LoRA stand-ins): its LoRA stages are stage runs
holding PEFT adapter folders, a rerun adds no stage run and no coalition run, and ``SMOKE-artworks-pruned`` is
registered as an MLflow model that ``mlflow.pyfunc.load_model`` samples one image per seed with."""

import json

import mlflow
import pandas as pd
import pytest
import torch

from shapflow.attribution import parse_request, run_attribute
from shapflow.tracking import STAGE_TAG, STUDY_TAG, load_registered, open_tracker
from shapflow.tracking.store import global_tracking_uri
from shapflow.utility.deploy import seed_image

BUDGET = 4


@pytest.fixture(scope="module")
def artworks_store(tmp_path_factory):
    """(uri, first result, second result, request) of a tiny artworks attribute run done twice."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('artworks')}/mlruns.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHAPFLOW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "shapflow-cache"))
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        request = parse_request("artworks", tiny=True, budget=BUDGET, workers=1)
        first = run_attribute(request, uri=uri, progress=False)
        tracker = open_tracker(request.experiment, uri=uri)
        counts = {stage: len(tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'"))
                  for stage in ("full", "prune", "finetune", "coalition", "endpoint")}
        second = run_attribute(request, uri=uri, progress=False)
    return uri, first, second, request, counts


def test_lora_stages_are_stage_runs_with_peft_adapter_folders(artworks_store, tmp_path):
    uri, first, _, request, counts = artworks_store
    assert request.cfg.name == "SMOKE-artworks" and request.cfg.model.family == "sd_lora"
    tracker = open_tracker(request.experiment, uri=uri)
    assert counts == {"full": 1, "prune": 1, "finetune": 1, "coalition": BUDGET, "endpoint": 2}
    for stage in ("full", "prune", "finetune"):
        (run,) = tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == first.run_id
        files = {a.path.rsplit("/", 1)[-1] for a in tracker.client.list_artifacts(run.info.run_id, "model")}
        assert {"adapter_config.json", "adapter_model.safetensors", "stage.json"} <= files
        assert run.data.params["family"] == "sd_lora"
    ranks = {}
    for stage in ("full", "finetune"):
        (run,) = tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")
        folder = tracker.download(run.info.run_id, "model", tmp_path / stage)
        ranks[stage] = json.loads((folder / "adapter_config.json").read_text())["r"]
        meta = json.loads((folder / "stage.json").read_text())
        assert meta["use_case"]["assets"]["stable_diffusion"] == request.cfg.assets.stable_diffusion
    assert ranks["finetune"] < ranks["full"] == request.cfg.lora.rank  # the rank-pruned adapter


def test_rerun_adds_no_stage_run_and_no_coalition_run(artworks_store):
    uri, first, second, request, counts = artworks_store
    assert second.evaluated_now == 0 and second.study_id == first.study_id
    tracker = open_tracker(request.experiment, uri=uri)
    for stage, count in counts.items():
        assert len(tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")) == count, stage
    finished = tracker.search(f"tags.`{STUDY_TAG}` = '{first.study_id}' AND attributes.status = 'FINISHED'")
    assert len([r for r in finished if r.data.tags[STAGE_TAG] in ("coalition", "endpoint")]) == BUDGET + 2
    pd.testing.assert_frame_equal(second.values, first.values)


def test_pruned_adapter_is_registered_and_mlflow_samples_one_image_per_seed(artworks_store):
    uri, _, _, request, _ = artworks_store
    tracker = open_tracker(request.experiment, uri=uri)
    versions = tracker.call("search_model_versions", "name = 'SMOKE-artworks-pruned'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].source.startswith("models:/m-")
    with global_tracking_uri(uri):
        model = mlflow.pyfunc.load_model("models:/SMOKE-artworks-pruned@latest")
    out = model.predict(pd.DataFrame({"seed": [0, 1]}))
    images = [torch.tensor(image, dtype=torch.float32) for image in out["image"]]
    assert len(images) == 2 and images[0].shape == (3, 16, 16) and not torch.equal(*images)
    loaded = load_registered("SMOKE-artworks-pruned@latest", uri=uri)
    assert loaded.stage == "finetune" and torch.equal(seed_image(loaded, 1), images[1])
