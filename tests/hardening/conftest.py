"""Fixtures of the hardening tests: this checkout's ``shapflow`` in child processes, bounded waits, cluster
folders that the ``postgres`` system user can reach (fresh ``mkdtemp`` in the system temp folder: pytest's own
base temp is 0700 and root-owned), and the PostgreSQL binaries or a skip that says why."""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

import shapflow
from shapflow.services.server import postgres_bin

REPO = Path(shapflow.__file__).resolve().parent.parent


@pytest.fixture
def child_env():
    """Environment for a child Python that imports this checkout's ``shapflow`` (not another install)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def python():
    return sys.executable


def _wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(step)
    return True


@pytest.fixture
def wait_until():
    return _wait_until


@pytest.fixture
def needs_postgres():
    if postgres_bin() is None:
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql, or set PG_BIN)")


@pytest.fixture
def cluster_root(needs_postgres):
    """A fresh folder for a cluster, removed afterwards (whatever started in it must be stopped by then)."""
    root = Path(tempfile.mkdtemp(prefix="shapflow-hardening-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
