"""A damaged store file and a full disk are answered with one line (exit 2) at the boundary, not with
SQLAlchemy's hundred-line traceback."""

import errno
import os
import sqlite3
import subprocess

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from shapflow.cli.main import main
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import open_tracker
from shapflow.tracking.faults import StoreFault, store_fault


def _store_with_runs(path):
    tracker = open_tracker("faults", f"sqlite:///{path}")
    for index in range(30):
        run_id = tracker.start(f"run {index}", {"shapflow.stage": "coalition"})
        tracker.log(run_id, params={f"p{k}": "x" * 200 for k in range(20)}, metrics={"utility": float(index)})
        tracker.end(run_id)
    return path


def _garble_pages(path, keep: int = 2):
    """Overwrite every database page after the first ``keep`` with junk (the header stays valid)."""
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    for offset in range(keep * page, len(data), page):
        data[offset:offset + page] = bytes((offset + i) % 251 for i in range(page))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not a database", "garbled pages"])
def test_a_damaged_store_is_one_line_exit_2(tmp_path, monkeypatch, damage):
    path = tmp_path / "mlruns.db"
    if damage == "not a database":
        path.write_bytes(bytes(range(256)) * 64)
    else:
        _garble_pages(_store_with_runs(path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    out = CliRunner().invoke(main, ["utilities", "--experiment", "faults"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert f"the tracking store sqlite:///{path} is damaged" in out.output and "restore it" in out.output
    assert len(out.output.strip().splitlines()) == 1, out.output


def test_a_full_disk_is_named_with_what_to_do():
    full = store_fault("sqlite:////x.db", OSError(errno.ENOSPC, "No space left on device", "/data/artifacts/a.bin"))
    assert isinstance(full, StoreFault) and "no space left on the device of /data/artifacts/a.bin" in str(full)
    assert "no space left" in str(store_fault("sqlite:////x.db", sqlite3.OperationalError("database or disk is full")))
    assert store_fault("sqlite:////x.db", ValueError("something else")) is None


def _run_digits(uri: str, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return CliRunner().invoke(main, ["run", "--use-case", "digits-classes", "--overrides", " ".join(FAST_SETTINGS),
                                     "--budget", "10", "--workers", "1", "--check", "0"])


def _assert_nothing_left_open(uri: str) -> None:
    """Every run ended (the attribute run FAILED) and no LoggedModel PENDING."""
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("digits-classes").experiment_id
    runs = client.search_runs([experiment])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    attribute = [r for r in runs if r.data.tags.get("shapflow.stage") == "attribute"]
    assert [r.info.status for r in attribute] == ["FAILED"]
    models = client.search_logged_models([experiment])
    assert not [m.name for m in models if "PENDING" in str(m.status)]


def test_a_full_disk_while_logging_a_model_fails_the_runs_and_leaves_no_pending_model(tmp_path, monkeypatch):
    """ENOSPC injected where MLflow writes the registered model's files: one line, exit 2, the attribute run
    FAILED, the LoggedModel FAILED (not PENDING, which every later reader would trip over)."""
    import mlflow.pyfunc

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "mlartifacts" / "model.safetensors"))

    monkeypatch.setattr(mlflow.pyfunc, "log_model", full)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    out = _run_digits(uri, monkeypatch)
    assert out.exit_code == 2, (out.output, out.exception)
    assert "Error: no space left on the device of" in out.output and "Traceback" not in out.output
    _assert_nothing_left_open(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits-classes").experiment_id
    assert {str(m.status) for m in client.search_logged_models([experiment])} <= {"FAILED", "LoggedModelStatus.FAILED"}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB tmpfs, or a skip saying why (mounting needs root and CAP_SYS_ADMIN)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (the injected-ENOSPC test covers the same path)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the injected-ENOSPC test covers it")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_really_full_disk_for_artifacts_fails_the_runs_with_one_line(tmp_path, monkeypatch, tiny_disk):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    MlflowClient(uri).create_experiment("digits-classes", artifact_location=tiny_disk.as_uri())
    (tiny_disk / "ballast").write_bytes(b"\0" * (3 * 2**20 - 64 * 2**10))  # leave 64 kB
    out = _run_digits(uri, monkeypatch)
    assert out.exit_code == 2, (out.output, out.exception)
    assert "no space left on the device" in out.output and "Traceback" not in out.output
    _assert_nothing_left_open(uri)
