"""A damaged store file and a full disk are answered with one line (exit 2) at the boundary, not with
SQLAlchemy's hundred-line traceback."""

import errno
import sqlite3

import pytest
from click.testing import CliRunner

from shapflow.cli.main import main
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
