"""Honest outputs: an unknown std reads "n/a", and the forecast never promises coalitions beyond the plan."""

import numpy as np

from shapflow.attribution.driver import Driver
from shapflow.attribution.report import markdown_table, values_frame
from shapflow.shapley import ShapleyResult


def _result(std: float) -> ShapleyResult:
    return ShapleyResult(np.array([0.5, 0.1]), np.array([std, std]), np.array([3, 3]), 6, False, "kernelshap-paired")


def test_unknown_std_reads_n_a():
    table = markdown_table(values_frame(["alice", "bob"], _result(float("nan"))))
    assert "| alice | 0.5000 | n/a | n/a | n/a |" in table


def test_forecast_when_nothing_is_left_to_evaluate(monkeypatch):
    driver = object.__new__(Driver)  # no store, study or tracker: only the forecast is under test
    monkeypatch.setattr(driver, "_estimate", lambda: _result(0.2))  # far from converged: ~466-style forecast
    assert driver.forecast(remaining=5).startswith("~")
    assert driver.forecast(remaining=0) == "all planned coalitions evaluated (not converged)"
    monkeypatch.setattr(driver, "_estimate", lambda: _result(0.001))
    assert driver.forecast(remaining=0) == "converged"
