"""get-or-run: a FINISHED run with the key is reused, a FAILED one is redone (and never counted)."""

import pytest

from shapflow.tracking import KEY_TAG, Finisher, open_tracker


@pytest.fixture
def tracker(tmp_path):
    return open_tracker("unit", uri=f"sqlite:///{tmp_path}/mlruns.db")


def _finished(tracker, key):
    return tracker.search(f"tags.`{KEY_TAG}` = '{key}' AND attributes.status = 'FINISHED'")


def test_finished_run_is_reused(tracker):
    calls = []

    def work(run_id):
        calls.append(run_id)
        tracker.log(run_id, metrics={"utility": 1.5})

    first, reused_first = tracker.get_or_run("stage a", "train", "k1", work)
    second, reused_second = tracker.get_or_run("stage a", "train", "k1", work)
    assert (reused_first, reused_second) == (False, True)
    assert second == first and len(calls) == 1
    assert tracker.call("get_run", second).data.metrics["utility"] == 1.5
    assert tracker.get_or_run("stage a", "train", "k2", work)[1] is False  # another key: computed


def test_failed_run_is_redone(tracker):
    def broken(run_id):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        tracker.get_or_run("stage b", "train", "k", broken)
    assert tracker.finished("k") is None
    run_id, reused = tracker.get_or_run("stage b", "train", "k", lambda run_id: None)
    assert not reused and tracker.call("get_run", run_id).info.status == "FINISHED"
    statuses = sorted(r.info.status for r in tracker.search(f"tags.`{KEY_TAG}` = 'k'"))
    assert statuses == ["FAILED", "FINISHED"]
    assert len(_finished(tracker, "k")) == 1


def test_finisher_ends_a_run_only_after_its_artifact_is_logged(tracker, tmp_path):
    grid = tmp_path / "samples.png"
    grid.write_bytes(b"png")
    with Finisher(tracker) as finisher:
        run_id, reused = tracker.get_or_run("coalition 1", "coalition", "c1", lambda run_id: grid, finisher=finisher)
        finisher.drain()
        run = tracker.call("get_run", run_id)
        assert not reused and run.info.status == "FINISHED"
        assert [a.path for a in tracker.call("list_artifacts", run_id)] == ["samples.png"]
        missing = tmp_path / "never-written.png"
        failed, _ = tracker.get_or_run("coalition 2", "coalition", "c2", lambda run_id: missing, finisher=finisher)
        with pytest.raises(Exception, match="never-written"):
            finisher.drain()  # the upload failed: the run is FAILED (redone next time), the error surfaces
    assert tracker.call("get_run", failed).info.status == "FAILED"
    assert tracker.finished("c2") is None
