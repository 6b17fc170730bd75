"""The error boundary: every user error exits 2 with one message naming the thing and the fix, never a traceback,
under ``shapflow`` (Click's runner) and under ``mlflow run`` (the MLproject scripts, whose rejected request leaves
no run behind)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from shapflow.cli.main import main
from shapflow.config import load_use_case, to_dict
from shapflow.tracking import open_tracker, register_stage

REPO = Path(__file__).resolve().parents[2]


def _stage_folder(folder: Path, stage_json: str, model_json: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text(stage_json)
    if model_json is not None:
        (folder / "model.json").write_text(model_json)
    return folder


def _register_folder(tracker, name: str, folder: Path) -> None:
    run_id = tracker.start(name, {})
    tracker.call("log_artifacts", run_id, str(folder), "model")
    tracker.end(run_id)
    register_stage(tracker, name, run_id)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A store with a registered model of a damaged stage.json, one of a tampered model.json, and the files the
    probes point at: a YAML with a syntax error and manifests with a missing image or header."""
    tmp_path = tmp_path_factory.mktemp("errors")
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = open_tracker("models", uri)
    _register_folder(tracker, "damaged", _stage_folder(tmp_path / "damaged", "{not json"))
    meta = {"format": "shapflow-stage/1", "family": "pixel", "stage": "full", "extra": {},
            "use_case": to_dict(load_use_case("digits-classes"))}
    _register_folder(tracker, "tampered", _stage_folder(tmp_path / "tampered", json.dumps(meta),
                                                        '{"format": "shapflow-unet/1", "config": {}, "widths": 7}'))
    (tmp_path / "bad.yaml").write_text("name: x\ndata:\n  source: digits-classes\n model: [1, 2\n")
    (tmp_path / "missing-image.csv").write_text("path,contributor\nnope.png,alice\n")
    (tmp_path / "no-header.csv").write_text("nope.png,alice\n")
    return tmp_path, uri


@pytest.fixture
def store(files, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", files[1])
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return files


def _manifest(name: str) -> list[str]:
    return ["run", "--use-case", "digits-classes", "--overrides", f"data.source=manifest data.path={{tmp}}/{name}"]


PROBES = {
    "yaml syntax": (["run", "--config", "{tmp}/bad.yaml"], "bad.yaml is not valid YAML at line 4"),
    "override syntax": (["run", "--overrides", "sft.steps=[1,"], "is not valid YAML"),
    "manifest missing": (_manifest("none.csv"), "none.csv does not exist"),
    "manifest image": (_manifest("missing-image.csv"), "missing-image.csv row 2: image file"),
    "manifest header": (_manifest("no-header.csv"), "lacks column(s) path, contributor"),
    "negative seed": (["run", "--use-case", "digits-classes", "--seed", "-5"], "seed=-5 is invalid"),
    "negative workers": (["run", "--use-case", "digits-classes", "--workers", "-1"], "workers=-1 is invalid"),
    "fractional budget": (["run", "--budget", "20.5"], "'20.5' is not a whole number"),
    "fractional count": (["evaluate", "lds", "--count", "2.5"], "'2.5' is not a whole number"),
    "unknown experiment": (["utilities", "--experiment", "nope"], "experiment 'nope' does not exist"),
    "alias of a missing model": (["models", "alias", "nope", "prod", "--version", "1"], "nope not found"),
    "alias of a missing version": (["models", "alias", "damaged", "prod", "--version", "9"], "cannot point damaged"),
    "missing alias": (["models", "load", "damaged@nope"], "cannot load damaged@nope"),
    "damaged stage.json": (["models", "load", "damaged/1"], "stage.json is not valid JSON"),
    "tampered model.json": (["models", "check", "tampered/1"], "model.json: widths = 7"),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_user_errors_exit_2_with_a_message(store, probe):
    tmp, uri = store
    args, message = PROBES[probe]
    out = CliRunner().invoke(main, [arg.replace("{tmp}", str(tmp)) for arg in args])
    assert out.exit_code == 2, (out.output, out.exception)
    assert message in out.output and "Traceback" not in out.output, out.output
    assert "nope" not in {e.name for e in MlflowClient(uri).search_experiments()}  # looked up, never created


def test_mlproject_float_parameters_take_integral_values(store):
    out = CliRunner().invoke(main, ["coalitions", "emit", "--use-case", "digits-classes", "--budget", "20.0",
                                    "--seed", "3.0"])
    assert out.exit_code == 0, out.output
    assert "--budget=20 " in out.output and "--seed=3 " in out.output


@pytest.mark.parametrize("index", ["-1", "20", "99"])
def test_coalition_index_outside_the_plan_exits_2_and_leaves_no_run(tmp_path, monkeypatch, index):
    """``coalitions run --index`` takes a row of the plan (0..19 here): anything else is refused before a run is
    opened (Python's negative indices and empty slices once made an empty FINISHED attribute run)."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = CliRunner().invoke(main, ["coalitions", "run", "--index", index, "--use-case", "digits-classes",
                                    "--budget", "20"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert f"index={index} is invalid: the plan of surrogate-shapley with budget 20 has rows 0..19" in out.output
    assert not (tmp_path / "mlruns.db").exists()  # no store opened, so no run in it


def _mlflow_run_run(uri: str) -> str:
    """A run as ``mlflow run`` creates one before starting the entry point's script."""
    client = MlflowClient(uri)
    return client.create_run("0", tags={"mlflow.source.type": "PROJECT",
                                        "mlflow.project.entryPoint": "attribute"}).info.run_id


def _deleted_after_mlflow_run_ends_it(uri: str, run_id: str) -> bool:
    """What ``mlflow run`` does once the script failed (end the run FAILED: it must still be active), then
    whether the run is deleted within a minute."""
    client = MlflowClient(uri)
    client.set_terminated(run_id, "FAILED")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and client.get_run(run_id).info.lifecycle_stage != "deleted":
        time.sleep(0.2)
    return client.get_run(run_id).info.lifecycle_stage == "deleted"


SCRIPT_PROBES = {
    "parser": (["attribute.py", "--budget", "abc"], "'abc' is not a whole number"),
    "validation": (["attribute.py", "--use-case", "nope", "--budget", "20.0"], "unknown use case 'nope'"),
    "plan index": (["coalitions.py", "--use-case", "digits-classes", "--budget", "20.0", "--start", "20"],
                   "index=20 is invalid: the plan of"),
    "data": (["stage.py", "--stage", "train", "--overrides", "data.source=manifest data.path=/nonexistent/m.csv"],
             "m.csv does not exist"),
}


@pytest.mark.parametrize("probe", sorted(SCRIPT_PROBES))
def test_mlproject_scripts_reject_without_traceback_or_leftover_run(store, probe, child_env):
    _, uri = store
    args, message = SCRIPT_PROBES[probe]
    run_id = _mlflow_run_run(uri)
    env = {**child_env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": "0"}
    done = subprocess.run([sys.executable, f"pipelines/{args[0]}", *args[1:]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _deleted_after_mlflow_run_ends_it(uri, run_id)


def test_mlflow_run_of_a_rejected_parameter_prints_no_traceback(store, child_env):
    """The real thing once: ``mlflow run`` with a value the parser rejects."""
    tmp, uri = store
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    env = {**child_env, "MLFLOW_TRACKING_URI": uri,
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), child_env.get("PATH", "")])}
    done = subprocess.run([mlflow, "run", str(REPO), "-e", "attribute", "--env-manager", "local",
                           "--experiment-name", "digits-classes", "-P", "budget=abc"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert "'abc' is not a whole number" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits-classes").experiment_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and client.search_runs([experiment]):
        time.sleep(0.2)
    assert client.search_runs([experiment]) == []  # the run mlflow run made is gone, not FAILED
