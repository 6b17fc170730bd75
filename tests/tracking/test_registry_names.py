"""Registry names follow one rule and never steer a search: a reference that smuggles a filter clause is refused
(exit 2) before it reaches the store, a model another tool registered under a name with a quote lists fine, and
every value that enters a filter is quoted."""

import pytest
from click.testing import CliRunner

from shapflow.cli.main import main
from shapflow.config import ConfigError, InputError, UseCaseConfig
from shapflow.tracking import open_tracker, quoted
from shapflow.tracking.registry import parse_ref


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A store with ``digits-pruned`` (version 1) and ``q'x`` (version 1), as MLflow itself allows that name."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    tracker = open_tracker("registry", uri=uri)
    run_id = tracker.call("create_run", tracker.experiment_id).info.run_id
    for name in ("digits-pruned", "q'x"):
        tracker.call("create_registered_model", name)
        tracker.call("create_model_version", name, source=str(tmp_path / "nothing-here"), run_id=run_id)
    return tracker


def test_a_reference_that_smuggles_a_filter_clause_exits_2_and_loads_nothing(registry, tmp_path):
    out = CliRunner().invoke(main, ["models", "load", "digits-pruned' AND run_id != 'z@latest",
                                    "--out", str(tmp_path / "loaded")])
    assert out.exit_code == 2, out.output
    assert "the model name \"digits-pruned' AND run_id != 'z\" is invalid: use 1 to 128 letters" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "loaded").exists()


def test_a_model_named_with_a_quote_does_not_break_the_listing(registry):
    out = CliRunner().invoke(main, ["models", "list"])
    assert out.exit_code == 0, out.output
    assert "digits-pruned/1\t" in out.output and "q'x/1\t" in out.output


@pytest.mark.parametrize(("ref", "part"), [("a b@latest", "model name"), ("x@al'ias", "alias"),
                                           ("x/1 OR 1=1", "version"), ("x/0", "version"), ("x", "NAME@ALIAS"),
                                           ('x"@latest', "model name"), ("-x@latest", "model name")])
def test_references_are_checked_against_one_rule(ref, part):
    with pytest.raises(ConfigError, match=part):
        parse_ref(ref)


def test_good_references_parse():
    assert parse_ref("digits-pruned@latest") == ("digits-pruned", "@", "latest")
    assert parse_ref("SMOKE-digits.v2_full/12") == ("SMOKE-digits.v2_full", "/", "12")


def test_filter_values_are_quoted_so_they_cannot_end_the_literal():
    assert quoted("plain") == "'plain'"
    assert quoted("q'x") == '"q\'x"'
    assert quoted('d"q') == "'d\"q'"
    with pytest.raises(InputError, match="both quote kinds"):
        quoted("b'o\"th")


def test_a_use_case_name_must_make_valid_registry_names():
    with pytest.raises(ConfigError, match=r"name=\"q'x\" is invalid: it names the registered models"):
        UseCaseConfig(name="q'x")
    assert UseCaseConfig(name="SMOKE-digits-classes").name == "SMOKE-digits-classes"
