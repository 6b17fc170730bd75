"""The driver stops submitting coalitions once the values converge, and only then."""

import pytest

from shapflow.attribution import parse_request, run_attribute
from shapflow.config import ConfigError
from shapflow.testing.fast import FAST_SETTINGS
from shapflow.tracking import open_tracker


def _run(tmp_path, threshold: float, name: str):
    request = parse_request("digits-classes", overrides=FAST_SETTINGS, budget=30, workers=1, until_converged=True,
                            threshold=threshold, experiment=name)
    return run_attribute(request, uri=f"sqlite:///{tmp_path}/mlruns.db", progress=False)


def test_adaptive_driver_stops_at_convergence_and_runs_the_budget_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    loose = _run(tmp_path, threshold=100.0, name="loose")
    assert loose.evaluated_now == 10  # one round (n = 10 coalitions), then the rule is met
    strict = _run(tmp_path, threshold=1e-9, name="strict")
    assert strict.evaluated_now == 30  # never converges: the whole budget
    tracker = open_tracker("loose", f"sqlite:///{tmp_path}/mlruns.db")
    run = tracker.call("get_run", loose.run_id)
    assert run.data.metrics["converged"] == 1.0
    assert open_tracker("strict", tracker.uri).call("get_run", strict.run_id).data.metrics["converged"] == 0.0


def test_threshold_must_be_positive():
    with pytest.raises(ConfigError, match="threshold"):
        parse_request("digits-classes", overrides=FAST_SETTINGS, budget=30, threshold=0.0)
