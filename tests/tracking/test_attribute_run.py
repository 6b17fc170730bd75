"""The tiny attribute run: stage reuse, one FINISHED run per coalition, registry round trip, outputs."""

import numpy as np

from shapflow.attribution import plan, run_attribute
from shapflow.tracking import KEY_TAG, STAGE_TAG, STUDY_TAG, open_tracker, utilities_table


def test_every_planned_coalition_has_exactly_one_finished_run(tiny_store):
    uri, result, request = tiny_store
    tracker = open_tracker(request.experiment, uri=uri)
    runs = tracker.search(f"tags.`{STUDY_TAG}` = '{result.study_id}' AND tags.`{STAGE_TAG}` = 'coalition'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ids = sorted(r.data.params["coalition_id"] for r in finished)
    assert request.check == 2  # --check auto on a budget of 10: the run also evaluates 2 held-out coalitions
    assert ids == sorted([*plan(request).ids, "check-000000", "check-000001"])
    sample = next(r for r in finished if r.data.params["coalition_id"] in plan(request).ids)
    assert sample.info.run_name.startswith("coalition ") and " · " in sample.info.run_name
    assert {"utility", "neg_log_fd", "sft_seconds", "sampling_seconds", "scoring_seconds"} <= set(sample.data.metrics)
    assert {"coalition_id", "size", "mask", "sampler", "seed", "upstream_run",
            "upstream_model_version", "config_hash"} <= set(sample.data.params)
    assert sample.data.tags["mlflow.parentRunId"] == result.run_id
    artifacts = {a.path for a in tracker.client.list_artifacts(result.run_id)}
    assert {"values.csv", "values.md", "values.png", "convergence.png", "samples_full.png"} <= artifacts
    assert list(result.values.columns[:3]) == ["contributor", "value", "std"]


def test_rerun_reuses_stages_and_coalitions(tiny_store):
    uri, result, request = tiny_store
    again = run_attribute(request, uri=uri, progress=False)
    assert again.evaluated_now == 0 and again.study_id == result.study_id
    tracker = open_tracker(request.experiment, uri=uri)
    stage_runs = tracker.search(f"tags.`{STAGE_TAG}` = 'finetune'")
    assert len(stage_runs) == 1  # computed once, found by its key the second time
    assert KEY_TAG in stage_runs[0].data.tags
    np.testing.assert_allclose(again.values["value"], result.values["value"])


def test_registered_pruned_model_reproduces_logged_property(tiny_store):
    from shapflow.tracking.registry import load_registered
    from shapflow.utility import load_scorer, stage_properties

    uri, _, request = tiny_store
    loaded = load_registered("digits-classes-pruned@candidate", uri=uri)
    latest = load_registered("digits-classes-pruned@latest", uri=uri)
    assert latest.version == loaded.version and loaded.cfg == request.cfg
    logged = open_tracker(request.experiment, uri=uri).call("get_run", loaded.run_id).data.metrics
    scored = stage_properties(load_scorer(loaded.cfg), loaded.family, loaded.ctx, loaded.models)
    assert np.isclose(scored["neg_log_fd"], logged["neg_log_fd"], rtol=1e-4, atol=1e-5)


def test_utilities_table_has_masks_and_endpoints(tiny_store):
    uri, result, request = tiny_store
    table = utilities_table(open_tracker(request.experiment, uri=uri), result.study_id)
    assert set(table["stage"]) == {"coalition", "endpoint"}
    assert len(table) == request.budget + 2 + request.check  # planned, endpoints, self-check
    assert (table["role"] == "check").sum() == request.check
    assert all(len(m) == request.n_contributors for m in table["mask"])
