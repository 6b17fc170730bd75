"""The held-out ground truth as a versioned fixture: written from a worker's results, read instead of
retraining, refused when the recipe that produced it is not the current one."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from shapflow.attribution import load_config
from shapflow.config import ConfigError, apply_overrides
from shapflow.data import load_data
from shapflow.evaluation.evaluate import parse_eval_request
from shapflow.evaluation.fixture import ledger_path, load_fixture, pending_jobs, recipe_hash, write_fixture
from shapflow.evaluation.groundtruth import RetrainJob, job_key
from shapflow.evaluation.runs import ensure_retrained, finished_retrains
from shapflow.evaluation.worker import config_stamp
from shapflow.shapley.masks import bits, heldout_masks
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import open_tracker

ALPHA, COUNT, SEEDS = 0.5, 4, (0, 1)


@pytest.fixture(scope="module")
def cfg():
    return load_config("digits-classes", FAST_SETTINGS)


def _results(cfg, path, stamp=None, drop=0):
    """A worker results file answering every held-out (coalition, seed), utility = seed + index / 10."""
    masks = heldout_masks(load_data(cfg.data).n_contributors, ALPHA, COUNT)
    lines = []
    for seed in SEEDS:
        for index, mask in enumerate(masks):
            job = RetrainJob(f"old-key-{seed}-{index}", bits(mask), seed, "heldout-0.50")
            lines.append({"job": asdict(job), "utility": seed + index / 10, "properties": {"fd": float(index)},
                          "timings": {}, "device": "cpu", "stamp": stamp or config_stamp(cfg)})
    path.write_text("\n".join(json.dumps(line) for line in lines[drop:]) + "\n")
    return masks


def test_written_fixture_reads_back_the_retrained_utilities(cfg, tmp_path):
    masks = _results(cfg, tmp_path / "results.jsonl")
    truth = write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json", command="x")
    assert truth.meta["recipe_hash"] == recipe_hash(cfg) and len(truth.rows) == COUNT * len(SEEDS)
    expected = np.array([[seed + index / 10 for index in range(COUNT)] for seed in SEEDS])
    assert np.array_equal(truth.truth(masks, SEEDS), expected)
    assert np.isnan(truth.truth(masks, (7,))).all()  # a seed the fixture does not hold


def test_a_fixture_of_another_recipe_is_refused_with_how_to_regenerate(cfg, tmp_path):
    _results(cfg, tmp_path / "results.jsonl")
    write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json")
    other = apply_overrides(cfg, ["train.steps=31"])
    with pytest.raises(ConfigError, match=r"stale.*regenerate.*evaluate fixture"):
        load_fixture(other, ALPHA, tmp_path / "fx.json")
    assert load_fixture(replace(cfg, description="notes"), ALPHA, tmp_path / "fx.json") is not None
    with pytest.raises(ConfigError, match="stale"):
        parse_eval_request("digits-classes", " ".join([*FAST_SETTINGS, "train.steps=31"]), count=COUNT,
                           fixture=str(tmp_path / "fx.json"))


def test_partial_results_make_a_partial_fixture_and_foreign_ones_none(cfg, tmp_path):
    """A ledger still being filled makes a fixture of what it holds (the design's count and seeds kept beside
    the rows); lines of another recipe are never taken, and a file with none of the current one makes none."""
    masks = _results(cfg, tmp_path / "results.jsonl", drop=COUNT + 1)  # seed 0 gone, one seed-1 row gone too
    truth = write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json")
    assert len(truth.rows) == COUNT - 1 and truth.meta["count"] == COUNT and truth.meta["seeds"] == list(SEEDS)
    held = truth.truth(masks, SEEDS)
    assert np.isnan(held[0]).all() and np.isnan(held[1, 0]) and np.isfinite(held[1, 1:]).all()
    _results(cfg, tmp_path / "results.jsonl", stamp="another:recipe:stamp")
    with pytest.raises(ConfigError, match="holds none of the 8"):
        write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json")
    (tmp_path / "junk.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a shapflow ground-truth file"):
        load_fixture(cfg, ALPHA, tmp_path / "junk.json")


def test_pending_jobs_are_what_the_ledger_lacks_seed_by_seed(cfg, tmp_path):
    """The job file of a partly filled ledger: every coalition of seed 0 before any of seed 1, and nothing the
    ledger holds under the current recipe, whatever the code version its keys were made with."""
    ledger = tmp_path / "ledger.jsonl"
    masks = _results(cfg, ledger, drop=2)  # seed 0's first two coalitions are missing
    pending = pending_jobs(cfg, ALPHA, COUNT, (0, 1, 2), ledger, "another-version")
    assert [(job.mask, job.seed) for job in pending] == [(bits(m), s) for s in (0, 2) for m in
                                                         (masks[:2] if s == 0 else masks)]
    assert len(pending_jobs(cfg, ALPHA, COUNT, SEEDS, tmp_path / "none.jsonl", "v")) == COUNT * len(SEEDS)
    assert ledger_path("digits", 0.5).name == "digits-heldout-0.50.jsonl"


def test_the_fixture_answers_heldout_jobs_without_retraining(cfg, tmp_path, monkeypatch):
    masks = _results(cfg, tmp_path / "results.jsonl")
    truth = write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json")
    data = load_data(cfg.data)
    jobs = [RetrainJob(job_key(cfg, bits(m), s, "now"), bits(m), s, "heldout-0.50") for m in masks for s in SEEDS]

    def no_retraining(*_args, **_kwargs):
        raise AssertionError("a job the fixture answers was retrained")

    monkeypatch.setattr("shapflow.evaluation.runs.run_jobs", no_retraining)
    tracker = open_tracker("fixture", f"sqlite:///{tmp_path}/mlruns.db")
    outcomes = ensure_retrained(tracker, cfg, data, None, jobs, fixture=truth)
    assert {job.key for job in jobs} <= set(outcomes) == set(finished_retrains(tracker, cfg))
    assert sorted(outcomes[job.key].utility for job in jobs) == sorted(np.ravel(truth.truth(masks, SEEDS)))


EDITS = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "short mask": (lambda text: text.replace('"mask": "', '"mask": "0', 1), "row 1 .*mask must be 10 characters"),
    "text utility": (lambda text: _edit_row(text, utility="abc"), "row 1 .*finite numbers"),
    "nan utility": (lambda text: _edit_row(text, utility=float("nan")), "row 1 .*finite numbers"),
    "text seed": (lambda text: _edit_row(text, seed="1"), "row 1 .*seed must be an integer"),
    "extra key": (lambda text: _edit_row(text, note="checked by hand"), "row 1 .*exactly the keys"),
    "no rows": (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "rows"}),
                "key\\(s\\) rows missing"),
    "a list": (lambda text: json.dumps([json.loads(text)]), "it is not a JSON object"),
}


def _edit_row(text: str, **fields) -> str:
    payload = json.loads(text)
    payload["rows"][0].update(fields)
    return json.dumps(payload)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edited_fixture_is_checked_against_the_schema(cfg, tmp_path, edit):
    """Every row is checked when the fixture is read: one ConfigError naming the file, the row and the rule (with
    how to regenerate), never a KeyError or ValueError from deep inside an evaluation."""
    _results(cfg, tmp_path / "results.jsonl")
    write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", tmp_path / "fx.json")
    change, message = EDITS[edit]
    (tmp_path / "fx.json").write_text(change((tmp_path / "fx.json").read_text()))
    with pytest.raises(ConfigError, match=f"fixture={tmp_path / 'fx.json'} is invalid: {message}.*regenerate"):
        load_fixture(cfg, ALPHA, tmp_path / "fx.json")


def test_a_partial_fixture_says_what_it_covers_and_reports_rows_it_cannot_use(cfg, tmp_path):
    """The shipped fixture holds fewer coalitions and seeds than the defaults ask for: it answers what it holds,
    and its rows that answer no held-out job (another count or seed, a hand-edited mask) are named, not dropped
    in silence."""
    _results(cfg, tmp_path / "results.jsonl")
    path = tmp_path / "fx.json"
    write_fixture(cfg, ALPHA, COUNT, SEEDS, tmp_path / "results.jsonl", path)
    n = load_data(cfg.data).n_contributors
    wider = [RetrainJob("k", bits(m), 0, "heldout-0.50") for m in heldout_masks(n, ALPHA, COUNT + 2)]
    line = load_fixture(cfg, ALPHA, path).coverage(wider)
    assert line.startswith(f"fixture {path} answers {COUNT} of the {COUNT + 2} held-out retrainings; "
                           f"{COUNT} of its {COUNT * len(SEEDS)} rows match none of them")  # the seed-1 rows
    payload = json.loads(path.read_text())
    payload["rows"][0]["mask"] = "1" * n  # a valid row, but of no held-out coalition
    path.write_text(json.dumps(payload))
    line = load_fixture(cfg, ALPHA, path).coverage(wider)
    assert f"answers {COUNT - 1} of the {COUNT + 2}" in line and f"; {COUNT + 1} of its" in line


def test_the_evaluation_request_retrains_only_when_asked():
    assert parse_eval_request("digits-classes", " ".join(FAST_SETTINGS), count=COUNT, fixture="none").retrain is False
    assert parse_eval_request("digits-classes", " ".join(FAST_SETTINGS), count=COUNT, fixture="none",
                              retrain=True).retrain is True
