"""A run with a precision target: batches chosen from what is logged, stopping at the target (saying so) or at
the cap (saying how far it got); bad targets exit 2 before any run; a killed run, rerun, evaluates no coalition
twice and replays the same design; two drivers with one target split the work."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from shapflow.attribution import parse_request, run_attribute
from shapflow.attribution.design import TargetDesign
from shapflow.cli.main import main
from shapflow.config import ConfigError
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import STAGE_TAG, open_tracker, utilities_table

USE_CASE, N = "digits-classes", 10  # first batch 10 coalitions, then 6 (n / 2 = 5, rounded to whole pairs)
STRICT = "pairs-separated=1.0"  # never met on fast settings: the run goes to its cap


def _request(target: str, budget: int, name: str, workers: int = 1, stack: int = 1):
    return parse_request(USE_CASE, overrides=FAST_SETTINGS, budget=budget, workers=workers, target=target,
                         experiment=name, check=0, stack=stack)


def _metrics(uri: str, name: str, run_id: str) -> dict:
    return open_tracker(name, uri).call("get_run", run_id).data.metrics


def _plan_masks(uri: str, name: str) -> set[str]:
    tracker = open_tracker(name, uri)
    study = tracker.search(f"tags.`{STAGE_TAG}` = 'attribute'")[0].data.tags["shapflow.study"]
    table = utilities_table(tracker, study)
    return set(table[table["stage"] == "coalition"]["mask"])


def test_stops_at_the_target_or_at_the_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    loose = run_attribute(_request("mean-std=0.999", 30, "loose"), uri=uri, progress=False)
    assert loose.evaluated_now == N  # the first batch meets it: no second batch
    assert _metrics(uri, "loose", loose.run_id)["target.met"] == 1.0
    assert "target mean-std=0.999 met with 10 coalitions" in capsys.readouterr().err
    # stacked (two coalitions per vmapped loop): batches of 6 split into stacks, the same design and cap
    strict = run_attribute(_request(STRICT, 30, "strict", stack=2), uri=uri, progress=False)
    assert strict.evaluated_now == 30  # 10 + 6 + 6 + 6 + 2: the cap, never more
    metrics = _metrics(uri, "strict", strict.run_id)
    assert metrics["target.met"] == 0.0 and metrics["coalitions"] == 30
    assert "target pairs-separated=1.0 NOT met: stopped at the cap, 30 coalitions" in capsys.readouterr().err
    assert len(_plan_masks(uri, "strict")) == 30


@pytest.mark.parametrize(("target", "budget", "says"), [
    ("pairs-separated=abc", 30, "share of contributor pairs"), ("speed=2", 30, "measure of"),
    ("top-k-stable=10", 30, "n = 10"), (STRICT, 15, "budget=15 is below what target")])
def test_bad_targets_exit_2_before_any_run(tmp_path, monkeypatch, target, budget, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    result = CliRunner().invoke(main, ["run", "--use-case", USE_CASE, "--target", target, "--budget", str(budget),
                                       "--workers", "1", "--overrides", " ".join(FAST_SETTINGS)])
    assert result.exit_code == 2 and says in result.output
    assert not (tmp_path / "mlruns.db").exists()  # nothing ran, nothing was created
    with pytest.raises(ConfigError, match="leverage design"):
        parse_request(USE_CASE, overrides=FAST_SETTINGS, budget=30, method="kernelshap-paired", target=STRICT)


def _command(budget: int, *extra: str) -> list[str]:
    overrides = " ".join([*FAST_SETTINGS, "sft.steps=25"])  # slower coalitions: a kill lands mid-batch
    return [sys.executable, "-m", "shapflow.cli", "run", "--use-case", USE_CASE, "--budget", str(budget),
            "--target", STRICT, "--check", "0", "--overrides", overrides, *extra]


def _replayed(uri: str, budget: int, workers: int) -> set[str]:
    """The design a driver chooses from what the store holds: batch by batch, as an uninterrupted run would."""
    tracker = open_tracker(USE_CASE, uri)
    study = tracker.search(f"tags.`{STAGE_TAG}` = 'attribute'")[0].data.tags["shapflow.study"]
    table = utilities_table(tracker, study)
    request = _request(STRICT, budget, USE_CASE, workers)
    design = TargetDesign(N, budget, 0, request.method, request.target, workers, 1)
    while not design.status(table).met and design.extend(table):
        pass
    return {"".join("1" if b else "0" for b in mask) for mask in design.masks()}


def test_killed_mid_batch_and_rerun_evaluates_no_coalition_twice(tmp_path, child_env):
    uri, budget = f"sqlite:///{tmp_path}/mlruns.db", 22  # batches 10, 6, 6
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "SHAPFLOW_CODE_VERSION": "target-resume-test"}
    job = subprocess.Popen(_command(budget, "--workers", "2"), env=env, cwd=tmp_path, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = lambda: open_tracker(USE_CASE, uri).search(f"tags.`{STAGE_TAG}` = 'coalition'")  # noqa: E731
    deadline, before = time.monotonic() + 600, []
    while time.monotonic() < deadline and job.poll() is None:
        before = [r for r in runs() if r.info.status == "FINISHED"] if (tmp_path / "mlruns.db").exists() else []
        if len(before) >= N + 2:  # inside the second batch
            break
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    rerun = subprocess.run(_command(budget, "--workers", "2"), env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    finished = [r for r in runs() if r.info.status == "FINISHED"]
    masks = [r.data.params["mask"] for r in finished]
    assert len(masks) == len(set(masks)) == budget  # each coalition FINISHED once
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in finished}  # none redone
    assert set(masks) == _replayed(uri, budget, workers=2)  # the design an uninterrupted run chooses
    assert f"{budget - len(before)} coalitions evaluated now" in rerun.stdout


def test_two_drivers_with_one_target_share_the_work(tmp_path, child_env):
    uri, budget = f"sqlite:///{tmp_path}/mlruns.db", 22
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "SHAPFLOW_CODE_VERSION": "target-shared-test"}
    jobs = [subprocess.Popen(_command(budget, "--workers", "1"), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [job.communicate(timeout=900) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-3000:] for _, err in outputs]
    coalitions = open_tracker(USE_CASE, uri).search(f"tags.`{STAGE_TAG}` = 'coalition'")
    masks = [run.data.params["mask"] for run in coalitions if run.info.status == "FINISHED"]
    assert len(masks) == len(set(masks)) == budget
    evaluated = [int(out.split(" coalitions evaluated now")[0].rsplit(None, 1)[-1]) for out, _ in outputs]
    assert sum(evaluated) == budget, evaluated  # split between them, never both evaluating a coalition
    assert set(masks) == _replayed(uri, budget, workers=1)
    assert all("NOT met: stopped at the cap, 22 coalitions" in err for _, err in outputs)
