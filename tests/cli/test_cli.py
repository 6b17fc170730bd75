"""The shapflow CLI: re-estimation from logged utilities, listings, validation before any run, defaults."""

import json

import pytest
import yaml
from click.testing import CliRunner

from shapflow.cli.main import main, run_command
from shapflow.tracking import open_tracker


def test_values_recomputed_from_logged_utilities_with_two_estimators(cli):
    runner, _, request = cli
    tracker = open_tracker(request.experiment)
    table = json.loads(runner.invoke(main, ["utilities", "--format", "json"]).stdout)
    ends = {row["coalition_id"]: row["utility"] for row in table if row["stage"] == "endpoint"}
    for method in ("leverage", "kernelshap-paired"):
        out = runner.invoke(main, ["reestimate", "--experiment", request.experiment, "--method", method])
        assert out.exit_code == 0, out.output
        assert "std" in out.output and "logged as run" in out.output
        run = tracker.call("get_run", out.output.split("logged as run ")[1].split()[0])
        assert run.data.params["method"] == method
        values = [v for k, v in run.data.metrics.items() if k.startswith("value.")]
        assert len(values) == request.n_contributors
        assert sum(values) == pytest.approx(ends["v1"] - ends["v0"], abs=1e-6)  # efficiency
        if method == "kernelshap-paired":  # 5 pairs of coalitions for 9 free values: the std is unknown, not 0
            assert "n/a" in out.output and " 0.0000 " not in out.output.split("logged as run")[0]
    assert runner.invoke(main, ["utilities", "--format", "csv"]).output.startswith("coalition_id,mask")


def test_reestimating_with_an_estimator_of_another_design_warns_that_it_is_biased(cli):
    """banzhaf-msr averages uniformly drawn coalitions; on the tiny study's leverage design its values are biased,
    so the command says so (and the estimate run keeps it in a tag); a surrogate method fits any design."""
    runner, _, request = cli
    assert request.method == "surrogate-shapley"  # the study's coalitions come from the leverage sampler
    out = runner.invoke(main, ["reestimate", "--experiment", request.experiment, "--method", "banzhaf-msr"])
    assert out.exit_code == 0, out.output
    assert "warning: banzhaf-msr assumes coalitions drawn by the uniform sampler but these were drawn by leverage" \
        in out.stderr
    run = open_tracker(request.experiment).call("get_run", out.stdout.split("logged as run ")[1].split()[0])
    assert "biased" in run.data.tags["shapflow.design_bias"]
    quiet = runner.invoke(main, ["reestimate", "--experiment", request.experiment, "--method", "surrogate-banzhaf"])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr, quiet.output


def test_report_writes_table_and_plots(cli, tmp_path):
    runner, _, _ = cli
    out = runner.invoke(main, ["report", "--method", "kernelshap-paired", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert {"values.csv", "values.md", "values.png", "convergence.png"} <= {p.name for p in (tmp_path / "r").iterdir()}
    assert (tmp_path / "r" / "values.csv").read_text().startswith("contributor,value,std")


def test_models_commands(cli):
    runner, _, _ = cli
    listing = runner.invoke(main, ["models", "list"])
    assert "digits-classes-pruned/1" in listing.output and "candidate" in listing.output
    check = runner.invoke(main, ["models", "check", "digits-classes-pruned@candidate"])
    assert check.exit_code == 0 and "neg_log_fd" in json.loads(check.stdout)  # warnings go to stderr
    assert runner.invoke(main, ["models", "load", "digits-classes-pruned@nope"]).exit_code == 2


@pytest.mark.parametrize("args", [["--use-case", "nope"], ["--use-case", "digits", "--overrides", "sft.nope=3"],
                                  ["--use-case", "digits", "--overrides", "sft.steps=-1"],
                                  ["--use-case", "digits", "--budget", "3"]])
def test_invalid_parameters_fail_before_any_run(tmp_path, monkeypatch, args):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = CliRunner().invoke(main, ["run", *args])
    assert out.exit_code == 2 and ("invalid" in out.output.lower() or "unknown" in out.output.lower())
    assert not (tmp_path / "mlruns.db").exists()  # nothing was even opened


def test_mlproject_defaults_match_cli():
    with open("MLproject") as handle:
        project = yaml.safe_load(handle)
    defaults = {p.name: p.default for p in run_command.params}
    for name, spec in project["entry_points"]["attribute"]["parameters"].items():
        cli_default = defaults[name]
        if cli_default is None:  # the MLproject spells "not given" as 0 (budget) or "" (paths, alias)
            cli_default = 0 if name == "budget" else ""
        assert str(spec["default"]) == str(cli_default), name


def test_mlproject_main_is_the_attribute_entry_point_written_once():
    """``main`` (what ``mlflow run .`` runs) is ``attribute`` by a YAML alias, as MLflow's own loader reads it."""
    from mlflow.projects._project_spec import load_project

    text = open("MLproject").read()
    assert "main: *attribute" in text and text.count("python pipelines/attribute.py") == 1
    project = load_project(".")
    main_entry, attribute = project.get_entry_point("main"), project.get_entry_point("attribute")
    assert main_entry.command == attribute.command
    assert {n: p.default for n, p in main_entry.parameters.items()} == {
        n: p.default for n, p in attribute.parameters.items()}


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    for args in (["run"], ["utilities"], ["reestimate"], ["report"], ["models", "load"], ["models", "check"], ["plan"]):
        out = runner.invoke(main, [*args, "--help"])
        assert out.exit_code == 0 and "Example" in out.output, args


def test_mlproject_evaluate_defaults_match_cli():
    from shapflow.cli.evaluate_commands import lds_command

    with open("MLproject") as handle:
        project = yaml.safe_load(handle)
    defaults = {p.name: p.default for p in lds_command.params}
    defaults["json"], defaults["export_jobs"] = defaults.pop("json_path"), defaults.pop("export")
    defaults["ingest"] = ""  # repeatable option; the MLproject passes one (possibly empty) path
    for name, spec in project["entry_points"]["evaluate"]["parameters"].items():
        if name == "kind":
            continue  # the entry point's own switch between `evaluate lds` and `evaluate counterfactual`
        assert str(spec["default"]) == str(defaults[name]), name


@pytest.mark.parametrize("args", [["--alpha", "1.5"], ["--count", "2"], ["--kinds", "drop"], ["--device", "tpu"],
                                  ["--methods", "magic"], ["--ingest", "missing.jsonl"]])
def test_invalid_evaluation_parameters_fail_before_any_run(tmp_path, monkeypatch, args):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    out = CliRunner().invoke(main, ["evaluate", "lds", *args])
    assert out.exit_code == 2 and "invalid" in out.output.lower(), out.output
    assert not (tmp_path / "mlruns.db").exists()
