"""The ``cli`` fixture of the command-line tests: a CliRunner on the session's tiny store (tests/conftest.py)."""

import pytest
from click.testing import CliRunner


@pytest.fixture
def cli(tiny_store, monkeypatch):
    """(runner, the tiny store's attribute result, its request), with MLFLOW_TRACKING_URI pointing at the store."""
    uri, result, request = tiny_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return CliRunner(), result, request
