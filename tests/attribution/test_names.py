"""Every name a spreadsheet cell can hold survives the whole chain: a manifest -> an attribute run (name map as
params, values by index) -> values.csv -> ``shapflow utilities`` (a CSV whose member lists split back) ->
``shapflow report`` and ``shapflow reestimate``. On the joined-string design this run finished every coalition and
then failed at the very end."""

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from shapflow.attribution import parse_request, run_attribute
from shapflow.cli.main import main
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import open_tracker

NAMES = ['comma, and "quotes"', "two\nlines, emoji \U0001f3a8\u2728", "x" * 300]


def _manifest(folder) -> str:
    """A manifest (written by Python's csv module, as a spreadsheet exports) of NAMES, 24 digits each."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    for k, name in enumerate(NAMES):
        for j in range(24):
            path = folder / f"{k}-{j}.png"
            Image.fromarray((digits.images[k * 100 + j] * 255 / 16).astype(np.uint8)).save(path)
            rows.append((path.name, name))
    with open(folder / "m.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "contributor"), *rows])
    return str(folder / "m.csv")


@pytest.fixture(scope="module")
def named_store(tmp_path_factory):
    """A store with one fast attribute run over NAMES: (uri, AttributeResult, Request)."""
    root = tmp_path_factory.mktemp("names")
    uri = f"sqlite:///{root}/mlruns.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHAPFLOW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "shapflow-cache"))
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        overrides = (*FAST_SETTINGS, "data.source=manifest", f"data.path={_manifest(root)}")
        request = parse_request("digits-classes", overrides=overrides, budget=6, workers=1, experiment="names")
        result = run_attribute(request, uri=uri, progress=False)
    return uri, result, request


def test_the_attribute_run_logs_names_as_a_map_and_values_by_index(named_store, tmp_path):
    uri, result, request = named_store
    assert sorted(result.values["contributor"]) == sorted(NAMES)
    run = open_tracker(request.experiment, uri=uri).call("get_run", result.run_id)
    assert [run.data.params[f"contributor.{i}"] for i in range(len(NAMES))] == NAMES
    by_index = [run.data.metrics[f"value.{i}"] for i in range(len(NAMES))]
    assert by_index == pytest.approx(result.values.set_index("contributor").loc[NAMES, "value"].tolist())
    assert not [key for key in run.data.metrics if key.startswith("value.") and not key[6:].isdigit()]
    path = open_tracker(request.experiment, uri=uri).download(result.run_id, "values.csv", tmp_path)
    assert sorted(pd.read_csv(path)["contributor"]) == sorted(NAMES)


def test_utilities_csv_splits_back_into_the_exact_names_and_report_and_reestimate_read_them(named_store, tmp_path,
                                                                                            monkeypatch):
    uri, _, request = named_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    runner = CliRunner()
    out = runner.invoke(main, ["utilities", "--experiment", request.experiment, "--format", "csv"])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(io.StringIO(out.stdout), dtype={"mask": str})
    for mask, members in zip(table["mask"], table["contributors"], strict=True):
        assert json.loads(members) == [name for name, bit in zip(NAMES, mask, strict=True) if bit == "1"]
    assert json.loads(table.set_index("coalition_id").loc["v1", "contributors"]) == NAMES
    report = runner.invoke(main, ["report", "--experiment", request.experiment, "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    assert sorted(pd.read_csv(tmp_path / "r" / "values.csv")["contributor"]) == sorted(NAMES)
    rows = [line for line in (tmp_path / "r" / "values.md").read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(NAMES)  # header, rule, one row per contributor: a line break stays in its row
    again = runner.invoke(main, ["reestimate", "--experiment", request.experiment, "--method", "kernelshap-paired"])
    assert again.exit_code == 0, again.output
    run_id = again.output.split("logged as run ")[1].split()[0]
    estimate = open_tracker(request.experiment, uri=uri).call("get_run", run_id)
    assert [estimate.data.params[f"contributor.{i}"] for i in range(len(NAMES))] == NAMES
    assert {f"value.{i}" for i in range(len(NAMES))} <= set(estimate.data.metrics)
