"""The data proxy at the boundary and in the logs: q beside v, values.md says how it tracked v, a bad one stops the
request before any run, and `reestimate` computes it from a study's data."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import shapflow.attribution.attribute_request as request_module
from shapflow.attribution import parse_request
from shapflow.cli.main import main
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import open_tracker
from shapflow.utility import DataProxy


def test_q_is_logged_beside_v_and_reported(cli):
    runner, result, request = cli
    assert request.proxy is not None  # on by default
    rows = json.loads(runner.invoke(main, ["utilities", "--format", "json"]).stdout)
    q = np.array([row["proxy"] for row in rows])
    assert np.isfinite(q).all() and np.ptp(q) > 0
    header = runner.invoke(main, ["utilities", "--format", "csv"]).output.splitlines()[0].split(",")
    assert header[header.index("utility") + 1] == "proxy"
    masks = np.array([[c == "1" for c in row["mask"]] for row in rows])
    np.testing.assert_allclose(q, request.proxy(masks), rtol=1e-6)  # q of each run is the proxy of its mask
    tracker = open_tracker(request.experiment)
    artifacts = {a.path for a in tracker.call("list_artifacts", result.run_id)}
    assert "proxy.csv" in artifacts
    assert "Data proxy q(S)" in tracker.download(result.run_id, "values.md", _tmp()).read_text()


def _tmp() -> Path:
    return Path(tempfile.mkdtemp())


def test_reestimate_computes_the_proxy_from_the_study_data(cli):
    runner, _, request = cli
    tracker = open_tracker(request.experiment)
    for flag, expected in ((["--proxy", "false"], "false"), ([], "true")):
        out = runner.invoke(main, ["reestimate", "--experiment", request.experiment, *flag])
        assert out.exit_code == 0, out.output
        run = tracker.call("get_run", out.output.split("logged as run ")[1].split()[0])
        assert run.data.params["proxy"] == expected
        folder = tracker.download(run.info.run_id, "values.md", _tmp())
        text = folder.read_text()
        assert ("Pearson" in text) == (expected == "true") and "Data proxy" in text


def _fake(game):
    return lambda cfg, pixels=None: DataProxy("fake", np.zeros((1, 1)), np.zeros(1, int), game)


def test_a_bad_proxy_stops_the_request_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    for game, words in ((lambda m: np.full(len(m), np.nan), "NaN/inf"),
                        (lambda m: np.zeros(len(m) + 2), "one float per mask row")):
        monkeypatch.setattr(request_module, "load_proxy", _fake(game))
        out = CliRunner().invoke(main, ["run", "--use-case", "digits-classes", "--budget", "10"])
        assert out.exit_code == 2 and words in out.output, out.output
        assert not (tmp_path / "mlruns.db").exists()
    monkeypatch.setattr(request_module, "load_proxy", _fake(lambda m: np.ones(len(m))))
    with pytest.warns(UserWarning, match="constant"):
        assert parse_request("digits-classes", overrides=FAST_SETTINGS, budget=10).proxy is None
    assert parse_request("digits-classes", overrides=FAST_SETTINGS, budget=10, proxy=False).proxy is None
