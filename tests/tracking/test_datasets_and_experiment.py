"""The UI opens where the user looks: one experiment per use case, tagged as model training; the contributors
logged as MLflow datasets (the market on the attribute and stage runs, each coalition's part on its run)."""

import json
import shlex

import numpy as np

from shapflow.tracking import STAGE_TAG, STUDY_TAG, logged_names, open_tracker, utilities_table
from shapflow.tracking.datasets import DATASET_SOURCE
from shapflow.tracking.store import runs_page
from shapflow.tracking.tags import KIND_TAG, TRAINING_KIND

CONTEXT = "mlflow.data.context"


def test_experiments_are_tagged_as_model_training_unless_they_say_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = open_tracker("fresh", uri=uri)
    assert tracker.client.get_experiment(tracker.experiment_id).tags[KIND_TAG] == TRAINING_KIND
    old = tracker.client.create_experiment("made-elsewhere")
    other = tracker.client.create_experiment("genai", tags={KIND_TAG: "genai_development"})
    assert open_tracker("made-elsewhere", uri=uri).experiment_id == old
    assert tracker.client.get_experiment(old).tags[KIND_TAG] == TRAINING_KIND
    open_tracker("genai", uri=uri)
    assert tracker.client.get_experiment(other).tags[KIND_TAG] == "genai_development"


def _inputs(run) -> dict[str, tuple]:
    """{dataset name: (dataset, context)} of a run's inputs."""
    return {d.dataset.name: (d.dataset, {t.key: t.value for t in d.tags}.get(CONTEXT))
            for d in run.inputs.dataset_inputs}


def test_one_experiment_per_use_case_with_the_market_and_coalition_datasets(tiny_store):
    uri, result, request = tiny_store
    tracker = open_tracker(request.experiment, uri=uri)
    assert request.experiment == request.cfg.name
    assert tracker.client.get_experiment(result.experiment_id).name == request.cfg.name
    attribute = tracker.call("get_run", result.run_id)
    assert attribute.info.run_name == f"attribute · {request.cfg.name} · {request.method} · {request.budget} coalitions"
    market_name = f"{request.cfg.name}-contributors"
    market, context = _inputs(attribute)[market_name]
    assert context == "training" and market.source_type == DATASET_SOURCE
    profile = json.loads(market.profile)
    assert profile["num_contributors"] == request.n_contributors and profile["data.source"] == "digits-classes"
    assert sum(profile["images_per_contributor"].values()) == profile["num_images"] > 0
    assert json.loads(market.source)["use_case"] == request.cfg.name
    for stage in ("full", "prune", "finetune"):
        (run,) = tracker.search(f"tags.`{STAGE_TAG}` = '{stage}'")
        assert _inputs(run)[market_name][0].digest == market.digest
    names = logged_names(tracker, attribute, utilities_table(tracker, result.study_id))
    assert len(names) == request.n_contributors
    runs = [r for r in tracker.search(f"tags.`{STUDY_TAG}` = '{result.study_id}'")
            if r.data.tags[STAGE_TAG] in ("coalition", "endpoint")]
    digests = set()
    for run in runs:
        cid, mask = run.data.params["coalition_id"], run.data.params["mask"]
        members = [name for name, bit in zip(names, mask, strict=True) if bit == "1"]
        inputs = _inputs(run)
        if cid == "v0":
            assert inputs == {}  # the empty coalition trains on nothing
            continue
        ((name, (dataset, context)),) = inputs.items()
        part = json.loads(dataset.profile)
        assert context == "training" and set(part["images_per_contributor"]) == set(members)
        assert name == (market_name if cid == "v1" else f"{request.cfg.name}-coalition-{cid}")
        digests.add(dataset.digest)
    coalitions = {r.data.params["mask"] for r in runs if r.data.tags[STAGE_TAG] == "coalition"}
    assert len(digests) == len(coalitions) + 1 and market.digest in digests  # one per coalition, + v1's market
    assert np.all([len(d) == 16 for d in digests])


def test_the_runs_page_opens_the_model_training_view():
    assert runs_page("http://127.0.0.1:5000/", "7") == \
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    assert runs_page("sqlite:///m.db", "7").startswith("mlflow ui --backend-store-uri sqlite:///m.db, then http")


def test_the_printed_mlflow_ui_command_survives_a_path_with_spaces():
    """The hint is a shell command: a store under a folder with a space (or a quote) must come back whole."""
    uri = "sqlite:////tmp/my store/it's here/mlruns.db"
    command = runs_page(uri, "7").split(", then http")[0]
    assert shlex.split(command) == ["mlflow", "ui", "--backend-store-uri", uri]
