"""Test-wide setup. TRITON_INTERPRET must be set before triton is first imported.

The README's test command is the one CI runs; CI (``.ci/run``) first installs Debian's chromium and
postgresql. Without them the browser and PostgreSQL tests skip, and the session's summary ends by naming
them and the one command that enables them (``pytest_terminal_summary``), so a fresh machine sees what it
did not run.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)

# What .ci/run installs before the tests, and the command that does it here.
CI_PACKAGES = ("chromium", "postgresql")
ENABLE_COMMAND = f"sudo apt-get install -y {' '.join(CI_PACKAGES)}"


def needs_ci_package(reason: str) -> bool:
    """Whether a skip reason names a package .ci/run installs (the test runs in CI, not here)."""
    return any(package in reason.lower() for package in CI_PACKAGES)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """End with the tests skipped for want of what .ci/run installs, and the one command that enables them."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if needs_ci_package(str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""))]
    if not skipped:
        return
    terminalreporter.section("tests CI runs that were skipped here")
    for report in skipped:
        terminalreporter.write_line(f"{report.nodeid}: {report.longrepr[-1]}")
    terminalreporter.write_line(f"{len(skipped)} skipped: they need Debian's {' and '.join(CI_PACKAGES)}; "
                                f"enable them with: {ENABLE_COMMAND}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep cached artefacts (e.g. the digits classifier) in one session-wide temp folder."""
    cache = tmp_path_factory.getbasetemp() / "shapflow-cache"
    monkeypatch.setenv("SHAPFLOW_CACHE_DIR", str(cache))


@pytest.fixture
def child_env(tmp_path_factory):
    """Environment of a child process running this checkout's ``shapflow`` (never another install), with the
    session's cache and no ``mlflow run`` run to adopt."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "SHAPFLOW_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "shapflow-cache")}
    env.pop("MLFLOW_RUN_ID", None)
    return env


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A store holding one tiny attribute run (digits-classes, 10 coalitions), shared by the tracking,
    CLI and browser tests: (tracking uri, AttributeResult, Request)."""
    from shapflow.attribution import parse_request, run_attribute
    from shapflow.testing.fast import FAST_SETTINGS

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlruns.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHAPFLOW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "shapflow-cache"))
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        request = parse_request("digits-classes", overrides=FAST_SETTINGS, budget=10, workers=1,
                                alias="candidate")
        result = run_attribute(request, uri=uri, progress=False)
    return uri, result, request
