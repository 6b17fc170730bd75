"""Run states tell the truth: owners, leftovers, claims, the store lock and the adopted ``mlflow run`` run
(MLflow only, no training: seconds)."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from shapflow.tracking import KEY_TAG, LINK_TAG, OWNER_TAG, open_tracker, owner_alive, parent_run
from shapflow.tracking.owner import HEARTBEAT_TAG, _start_ticks, owner_id


@pytest.fixture
def tracker(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return open_tracker("states", uri=f"sqlite:///{tmp_path}/mlruns.db")


@pytest.fixture
def other_process():
    """A live process of this host (a sleeping child) and its owner string; killed and reaped at the end."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    deadline = time.monotonic() + 10
    while _start_ticks(child.pid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield child, f"{socket.gethostname()}:{child.pid}:{_start_ticks(child.pid)}"
    child.kill()
    child.wait(timeout=30)


def _foreign_run(tracker, name, tags):
    """A RUNNING run as another process would have created it (tags given as is, no heartbeat of ours)."""
    return tracker.call("create_run", tracker.experiment_id, run_name=name, tags=tags).info.run_id


def _status(tracker, run_id):
    return tracker.call("get_run", run_id).info.status


def test_owner_liveness(other_process):
    child, owner = other_process
    assert owner_alive({OWNER_TAG: owner_id()}) and owner_alive({OWNER_TAG: owner})
    assert owner_alive({})  # a run shapflow did not create is never judged dead
    host, pid, start = owner.rsplit(":", 2)
    assert not owner_alive({OWNER_TAG: f"{host}:{pid}:{int(start) + 1}"})  # the PID, recycled by another process
    now = time.time()
    assert owner_alive({OWNER_TAG: "elsewhere:1:1", HEARTBEAT_TAG: str(int(now - 60))}, now)
    assert not owner_alive({OWNER_TAG: "elsewhere:1:1", HEARTBEAT_TAG: str(int(now - 3600))}, now)
    child.kill()
    child.wait(timeout=30)
    assert not owner_alive({OWNER_TAG: owner})


def test_only_runs_whose_owner_is_gone_are_retired(tracker, other_process):
    child, owner = other_process
    mine = tracker.start("mine", {})
    live = _foreign_run(tracker, "live", {OWNER_TAG: owner})
    remote = _foreign_run(tracker, "remote", {OWNER_TAG: "elsewhere:7:7", HEARTBEAT_TAG: str(int(time.time()))})
    stale = _foreign_run(tracker, "stale", {OWNER_TAG: "elsewhere:7:7", HEARTBEAT_TAG: "0"})
    unowned = _foreign_run(tracker, "unowned", {})
    assert tracker.retire_leftovers() == 1
    statuses = [_status(tracker, r) for r in (mine, live, remote, stale, unowned)]
    assert statuses == ["RUNNING", "RUNNING", "RUNNING", "KILLED", "RUNNING"]
    child.kill()
    child.wait(timeout=30)
    with parent_run(tracker, "next entry point", {}) as parent:  # every entry point retires on start
        assert _status(tracker, live) == "KILLED" and _status(tracker, parent) == "RUNNING"
        assert "gone" in tracker.call("get_run", live).data.tags["shapflow.retired"]
    assert _status(tracker, mine) == "RUNNING" and _status(tracker, parent) == "FINISHED"


def test_a_held_key_is_waited_for_and_reused(tracker, other_process):
    _, owner = other_process
    holder = _foreign_run(tracker, "full (other driver)", {OWNER_TAG: owner, KEY_TAG: "k"})
    done = threading.Timer(1.5, lambda: tracker.call("set_terminated", holder, "FINISHED"))
    done.start()
    calls = []
    run_id, reused = tracker.get_or_run("full", "full", "k", calls.append)
    done.join()
    assert (run_id, reused, calls) == (holder, True, [])
    assert [r.info.run_id for r in tracker.search(f"tags.`{KEY_TAG}` = 'k'")] == [holder]  # no claim left behind


def test_a_key_whose_holder_dies_is_taken_over(tracker, other_process):
    child, owner = other_process
    holder = _foreign_run(tracker, "full (dying driver)", {OWNER_TAG: owner, KEY_TAG: "k"})
    threading.Timer(1.5, child.kill).start()
    calls = []
    run_id, reused = tracker.get_or_run("full", "full", "k", calls.append)
    assert not reused and calls == [run_id] and run_id != holder
    assert _status(tracker, holder) == "KILLED" and _status(tracker, run_id) == "FINISHED"


def test_two_claims_agree_on_one_holder(tracker):
    first, first_mine = tracker.claim("c", "coalition", "k2")
    second, second_mine = tracker.claim("c", "coalition", "k2")  # sees the first (live: this process) and yields
    assert (first_mine, second, second_mine) == (True, first, False)
    late = tracker.start("c", {KEY_TAG: "k2"})  # a rival that committed after the first claim was taken
    assert tracker.holder("k2", late).info.run_id == first  # the first-started claim wins for everyone


def test_two_processes_create_a_new_store_together(tmp_path, child_env):
    uri = f"sqlite:///{tmp_path}/fresh.db"
    code = ("import sys; from shapflow.tracking import open_tracker; "
            "t = open_tracker('race', sys.argv[1]); t.end(t.start('r', {}))")
    jobs = [subprocess.Popen([sys.executable, "-c", code, uri], env=child_env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    errors = [job.communicate(timeout=300)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [e[-2000:] for e in errors]
    assert len(open_tracker("race", uri).search("attributes.status = 'FINISHED'")) == 2


def test_an_mlflow_run_run_is_adopted_in_the_use_case_experiment_and_linked_from_elsewhere(tracker, monkeypatch):
    made_by_mlflow_run = tracker.call("create_run", tracker.experiment_id,
                                      tags={"mlflow.source.type": "PROJECT"}).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", made_by_mlflow_run)
    with parent_run(tracker, "attribute · x", {"shapflow.stage": "attribute"}) as parent:
        assert parent == made_by_mlflow_run
        assert tracker.call("get_run", parent).data.tags[OWNER_TAG] == owner_id()
    assert _status(tracker, parent) == "RUNNING"  # `mlflow run` ends its own run
    default = open_tracker("Default", tracker.uri)
    elsewhere = default.call("create_run", default.experiment_id).info.run_id  # mlflow run without --experiment-name
    monkeypatch.setenv("MLFLOW_RUN_ID", elsewhere)
    with parent_run(tracker, "attribute · x", {"shapflow.stage": "attribute"}) as parent:
        assert tracker.call("get_run", parent).info.experiment_id == tracker.experiment_id
    assert tracker.call("get_run", parent).data.tags[LINK_TAG] == elsewhere
    assert tracker.call("get_run", elsewhere).data.tags[LINK_TAG] == parent
    assert _status(tracker, parent) == "FINISHED"
    assert os.environ["MLFLOW_RUN_ID"] == elsewhere


def test_a_stopped_entry_point_ends_its_runs_in_flight_with_the_reason(tracker):
    """Ctrl-C, SIGTERM or its parent's death: the coalition in flight ends KILLED with why, not RUNNING until a
    later entry point retires it."""
    with pytest.raises(KeyboardInterrupt), parent_run(tracker, "stopped entry point", {}) as parent:
        in_flight = tracker.start("coalition in flight", {}, parent)
        raise KeyboardInterrupt("parent process 1 died")
    assert _status(tracker, in_flight) == "KILLED" and _status(tracker, parent) == "KILLED"
    assert tracker.call("get_run", in_flight).data.tags["shapflow.retired"] == \
        "stopped: KeyboardInterrupt parent process 1 died"
