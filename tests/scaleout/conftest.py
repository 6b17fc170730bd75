"""Services for the scale-out tests: a PostgreSQL-backed MLflow server and a 2-CPU local Ray cluster.

CI (``.ci/run``) starts PostgreSQL and the server and exports ``SHAPFLOW_TEST_MLFLOW_URI``; locally the
session fixture starts them itself when Debian's PostgreSQL binaries exist, and skips (saying why) when not.
"""

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The tracking URI of an MLflow server on a PostgreSQL backend (CI's, or one started here)."""
    if os.environ.get("SHAPFLOW_TEST_MLFLOW_URI"):
        yield os.environ["SHAPFLOW_TEST_MLFLOW_URI"]
        return
    from shapflow.services.server import postgres_bin, start_mlflow_server, start_postgres

    if postgres_bin() is None:
        pytest.skip("no PostgreSQL binaries (apt-get install postgresql) and SHAPFLOW_TEST_MLFLOW_URI unset")
    root = tmp_path_factory.mktemp("services")
    cluster = tempfile.mkdtemp(prefix="shapflow-pg-")  # not under pytest's 0700 base temp: postgres must reach it
    postgres = start_postgres(cluster)
    try:
        server = start_mlflow_server(postgres.uri, root / "artifacts", log=root / "mlflow.log")
    except BaseException:
        postgres.stop()
        shutil.rmtree(cluster, ignore_errors=True)
        raise
    yield server.uri
    server.stop()
    postgres.stop()
    shutil.rmtree(cluster, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs (2 one-thread workers) in this process, shut down at the end."""
    ray = pytest.importorskip("ray", reason="Ray not installed: pip install -e '.[scaleout]'")
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def scaleout_env(tmp_path_factory, monkeypatch, mlflow_server):
    """Environment of a driver on the server: the session's cache, a pinned code version, no adopted run."""
    monkeypatch.setenv("SHAPFLOW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "shapflow-cache"))
    monkeypatch.setenv("SHAPFLOW_CODE_VERSION", "scaleout-test")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return mlflow_server
