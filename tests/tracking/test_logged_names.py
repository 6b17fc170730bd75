"""Studies logged before names were stored one by one still read: the v1 run's comma-joined ``contributors`` param
and metrics ``value.<name>``, used only where they are exact; otherwise one clear message (exit 2)."""

import json

import pytest
from click.testing import CliRunner

from shapflow.cli.main import main
from shapflow.config import InputError
from shapflow.tracking import STAGE_TAG, STUDY_TAG, logged_names, logged_values, open_tracker, utilities_table


def _old_study(tmp_path, joined: str) -> tuple:
    """A store holding an attribute run as logged before name maps: no contributor.<i> params, value.<name>."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = open_tracker("old", uri=uri)
    attribute = tracker.start("attribute", {STAGE_TAG: "attribute", STUDY_TAG: "s1"})
    tracker.log(attribute, params={"study.use_case": "old"}, metrics={"value.alice": 0.25, "value.bob": 0.75})
    for cid, mask, utility in (("v0", "00", 0.0), ("v1", "11", 1.0), ("c1", "10", 0.4), ("c2", "01", 0.7)):
        run = tracker.start(cid, {STAGE_TAG: "endpoint" if cid.startswith("v") else "coalition", STUDY_TAG: "s1"},
                            parent=attribute)
        members = ",".join(name for name, bit in zip(joined.split(","), mask, strict=False) if bit == "1")
        tracker.log(run, params={"coalition_id": cid, "mask": mask, "size": mask.count("1"),
                                 "contributors": joined if cid == "v1" else members}, metrics={"utility": utility})
        tracker.end(run)
    tracker.end(attribute)
    return uri, tracker, tracker.call("get_run", attribute)


def test_a_study_logged_before_name_maps_still_reads(tmp_path, monkeypatch):
    uri, tracker, attribute = _old_study(tmp_path, "alice,bob")
    names = logged_names(tracker, attribute, utilities_table(tracker, "s1"))
    assert names == ("alice", "bob")
    assert logged_values(attribute, names).tolist() == [0.25, 0.75]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = CliRunner().invoke(main, ["utilities", "--experiment", "old", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = {row["coalition_id"]: row for row in json.loads(out.stdout)}
    assert json.loads(rows["v1"]["contributors"]) == ["alice", "bob"]
    assert json.loads(rows["c1"]["contributors"]) == ["alice"]


def test_an_old_study_whose_names_held_a_comma_gets_one_message_and_exit_2(tmp_path, monkeypatch):
    uri, tracker, attribute = _old_study(tmp_path, "smith, j.,bob")  # two names joined into three parts
    with pytest.raises(InputError, match="run the same `shapflow run` again"):
        logged_names(tracker, attribute, utilities_table(tracker, "s1"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = CliRunner().invoke(main, ["report", "--experiment", "old", "--out", str(tmp_path / "r")])
    assert out.exit_code == 2 and "Traceback" not in out.output and "logged before names" in out.output
