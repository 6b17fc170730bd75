"""Tracking services for a cluster: a private PostgreSQL cluster and an ``mlflow server`` on top of it.

Used by ``shapflow server start``, the scale-out tests and ``benchmarks/scaling.py``. Everything listens on
127.0.0.1 only (unless asked otherwise), every wait is bounded, and every process is stopped by its PID
(``pg_ctl stop`` for PostgreSQL). PostgreSQL refuses to run as root, so as root the cluster is initialised
and run as the ``postgres`` system user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shapflow.procs import wait_group_gone

__all__ = ["MlflowServer", "Postgres", "describe_exposure", "free_port", "postgres_bin", "start_mlflow_server",
           "start_postgres"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (``$PG_BIN``, else Debian's newest ``/usr/lib/postgresql/*/bin``)."""
    found = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    found = [f for f in found if Path(f, "initdb").is_file()]
    return Path(found[-1]) if found else None


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    """A private PostgreSQL cluster in ``root``: its SQLAlchemy URI for database ``mlflow``."""

    root: Path
    port: int
    bin: Path

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://mlflow@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (by the cluster's postmaster PID), bounded."""
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                                     "-w", "-t", "30", "stop"]), capture_output=True, timeout=60, check=False)


def start_postgres(root: str | Path, port: int | None = None, timeout: float = 60.0) -> Postgres:
    """Initialise (trust auth, loopback only) and start a cluster in ``root`` with user and database ``mlflow``."""
    pg = postgres_bin()
    if pg is None:
        raise FileNotFoundError("PostgreSQL binaries not found: apt-get install -y postgresql (or set PG_BIN)")
    root = Path(root)
    (root / "sock").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the postgres user must traverse the (often 0700) temp folders above ``root``
        for parent in root.resolve().parents:
            os.chmod(parent, os.stat(parent).st_mode | 0o001)
        shutil.chown(root, "postgres")
        shutil.chown(root / "sock", "postgres")
    port = port or free_port()
    data = root / "data"
    if not data.exists():
        init = subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-U", "mlflow", "-A", "trust"]),
                              capture_output=True, text=True, timeout=timeout)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    options = f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1"
    subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "-t", str(int(timeout)), "start"]), check=True, capture_output=True,
                   timeout=timeout + 10)
    server = Postgres(root, port, pg)
    created = subprocess.run(_as_postgres([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow",
                                           "mlflow"]), capture_output=True, text=True, timeout=timeout)
    if created.returncode != 0 and "already exists" not in created.stderr:
        server.stop()
        raise RuntimeError(f"createdb failed: {created.stderr}")
    return server


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process (leader of its own process group): its URI and PID."""

    uri: str
    process: subprocess.Popen

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group (gunicorn/uvicorn workers too), SIGKILL after ``timeout``;
        returns once no process of the group is left, so nothing listens on the port any more."""
        pgid = self.process.pid
        if self.process.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        if not wait_group_gone(pgid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_group_gone(pgid, timeout)


def describe_exposure(host: str, port: int, allow_remote: bool) -> str | None:
    """None for a loopback ``host``; else what serving there exposes (ValueError unless ``allow_remote``)."""
    try:
        loopback = all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                       for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP))
    except (OSError, ValueError):
        loopback = False
    if loopback:
        return None
    what = (f"mlflow server on {host}:{port} would be reachable from other machines with NO authentication: "
            f"anyone who reaches it can read, change and delete every experiment, run, model and artifact")
    if not allow_remote:
        raise ValueError(f"{what}. Keep --host 127.0.0.1 and reach it through an SSH tunnel "
                         f"(ssh -N -L {port}:127.0.0.1:{port} <this host>), or pass --allow-remote "
                         f"(see docs/security.md: MLflow's basic-auth app or a TLS + auth reverse proxy)")
    return (f"WARNING: {what} (artifact uploads included). PostgreSQL stays on 127.0.0.1. "
            f"See docs/security.md to put authentication in front of it.")


def start_mlflow_server(backend_uri: str, artifacts: str | Path, *, host: str = "127.0.0.1",
                        port: int | None = None, timeout: float = 120.0, log: Path | None = None) -> MlflowServer:
    """Start ``mlflow server`` (one worker, proxied artifacts under ``artifacts``) and wait until it answers.

    Stopped again if it does not answer in ``timeout`` or if waiting is interrupted (a signal, Ctrl-C)."""
    port = port or free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", host, "--port", str(port),
               "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    out = open(log, "ab") if log else subprocess.DEVNULL  # the server process keeps it open
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(f"http://{host}:{port}", process)
    try:
        _wait_healthy(server, timeout, log)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(server: MlflowServer, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.process.returncode} (see {log})")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server on {server.uri} not ready after {timeout:.0f} s")
