"""The PostgreSQL cluster ``start_postgres`` runs: scram for role ``mlflow`` over TCP, a 0600 password file, no
superuser over TCP, no ``COPY ... TO PROGRAM`` for ``mlflow``, parent folders left as they were."""

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from shapflow.services.server import postgres_bin, start_postgres

psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(postgres_bin() is None,
                                reason="PostgreSQL binaries not found (apt-get install postgresql, or set PG_BIN)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runuser to other OS users)")


def _modes(path: Path) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in path.parents}


@pytest.fixture(scope="module")
def cluster():
    """(running cluster, modes of its folder's parents before it started); stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="shapflow-hardening-")) / "pg"  # mkdtemp is 0700: made reachable below
    os.chmod(root.parent, 0o711)
    before = _modes(root)
    pg = start_postgres(root)
    try:
        yield pg, before
    finally:
        pg.stop()
        shutil.rmtree(root.parent, ignore_errors=True)


def _connect(pg, **kwargs):
    return psycopg2.connect(host="127.0.0.1", port=pg.port, dbname="mlflow", connect_timeout=10, **kwargs)


def test_mlflow_without_the_password_is_refused(cluster, monkeypatch):
    pg, _ = cluster
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        _connect(pg, user="mlflow", passfile=os.devnull)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _connect(pg, user="mlflow", password="not-the-password")


def test_mlflow_with_the_password_file_connects_and_is_no_superuser(cluster):
    pg, _ = cluster
    assert "passfile=" in pg.uri and pg.password not in pg.uri
    with _connect(pg, user="mlflow", passfile=str(pg.passfile)) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user")
        assert cur.fetchone() == (False, False, False, False, False)
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'")
        assert cur.fetchone() == ("mlflow",)
    conn.close()


def test_mlflow_cannot_run_programs(cluster):
    pg, _ = cluster
    conn = _connect(pg, user="mlflow", passfile=str(pg.passfile))
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match=r"permission denied|must be superuser"), \
                conn.cursor() as cur:
            cur.execute("COPY (SELECT 1) TO PROGRAM 'true'")
    finally:
        conn.close()


def test_superuser_and_other_databases_are_unreachable_over_tcp(cluster):
    pg, _ = cluster
    for user, dbname in (("postgres", "postgres"), ("mlflow", "postgres"), (pg.root.owner(), "mlflow")):
        with pytest.raises(psycopg2.OperationalError, match=r"no pg_hba\.conf entry|password authentication"):
            psycopg2.connect(host="127.0.0.1", port=pg.port, user=user, dbname=dbname, passfile=str(pg.passfile),
                             connect_timeout=10)


@as_root
def test_nobody_gets_nowhere(cluster):
    pg, _ = cluster
    psql = str(pg.bin / "psql")
    attempts = [["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"],
                ["-h", "127.0.0.1", "-U", "mlflow", "-d", "mlflow"],
                ["-h", str(pg.root / "sock"), "-U", "postgres", "-d", "postgres"]]
    for args in attempts:
        done = subprocess.run(["runuser", "-u", "nobody", "--", psql, "-w", "-X", "-p", str(pg.port), *args,
                               "-c", "SELECT 1"], capture_output=True, text=True, timeout=30, cwd="/",
                              env={"PATH": os.environ["PATH"]}, check=False)
        assert done.returncode != 0, args
        assert any(s in done.stderr for s in ("no pg_hba.conf entry", "no password supplied", "Permission denied"))
    read = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(pg.passfile)], capture_output=True,
                          timeout=30, check=False)
    assert read.returncode != 0


def test_the_password_stays_in_its_0600_file(cluster):
    pg, _ = cluster
    info = pg.passfile.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    for process in psutil.process_iter(["cmdline"]):
        assert pg.password not in " ".join(process.info["cmdline"] or [])
    assert pg.password not in (pg.root / "log").read_text()


def test_parent_folders_keep_their_modes(cluster):
    pg, before = cluster
    assert _modes(pg.root) == before


@as_root
def test_an_unreachable_folder_is_refused_not_chmodded(needs_postgres):
    private = Path(tempfile.mkdtemp(prefix="shapflow-hardening-"))  # 0700, root's: postgres cannot traverse it
    try:
        with pytest.raises(PermissionError, match=f"cannot traverse {re.escape(str(private))} .*mktemp"):
            start_postgres(private / "pg")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert not (private / "pg" / "data" / "PG_VERSION").exists()
    finally:
        shutil.rmtree(private)


def test_a_restart_keeps_the_password(cluster_root):
    pg = start_postgres(cluster_root)
    try:
        password = pg.password
    finally:
        pg.stop()
    pg = start_postgres(cluster_root)
    try:
        assert pg.password == password
        _connect(pg, user="mlflow", passfile=str(pg.passfile)).close()
    finally:
        pg.stop()


def test_a_trust_cluster_of_an_older_shapflow_is_refused(cluster_root):
    (cluster_root / "data").mkdir()
    (cluster_root / "data" / "PG_VERSION").write_text("15\n")
    with pytest.raises(RuntimeError, match="older shapflow"):
        start_postgres(cluster_root)
