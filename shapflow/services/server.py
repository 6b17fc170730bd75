"""Tracking services for a cluster: a private PostgreSQL cluster and an ``mlflow server`` on top of it.

Used by ``shapflow server start``, the scale-out tests and ``benchmarks/scaling.py``. Everything listens on
127.0.0.1 only (unless asked otherwise), every wait is bounded, and every process is stopped by its PID
(``pg_ctl stop`` for PostgreSQL). PostgreSQL refuses to run as root, so as root the cluster is initialised
and run as the ``postgres`` system user (``runuser``); parent folders are never chmod-ed (see docs/security.md).

The cluster is locked down: over TCP only the login role ``mlflow`` (NOSUPERUSER NOCREATEDB NOCREATEROLE,
owner of database ``mlflow`` and nothing more) with scram-sha-256; its generated password lives in the 0600
libpq password file ``<root>/mlflow.pgpass``, which ``Postgres.uri`` names (``?passfile=``) so psycopg2 reads
it and the password never appears on a command line. The bootstrap superuser is reachable only through the
cluster's private Unix socket (``<root>/sock``, 0700) by the OS user that owns the cluster (peer auth).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import glob
import hashlib
import hmac
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shapflow.config import InputError
from shapflow.config.extras import require_extra
from shapflow.services.lifetime import wait_group_gone

__all__ = ["FolderInUse", "MlflowServer", "Postgres", "describe_exposure", "free_port", "hold_folder", "postgres_bin",
           "start_mlflow_server", "start_postgres"]

ROLE = "mlflow"  # the login role and its database
PASSFILE = "mlflow.pgpass"
LOCKFILE = "server.lock"  # flock-ed by the process serving the cluster, holding its PID
_PASSWORD = re.compile(r"[A-Za-z0-9_-]{32,128}")


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


def _owner() -> str:
    """The OS user that runs the cluster, and so the name of its bootstrap superuser (peer auth)."""
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


class FolderInUse(InputError):
    """A ``--postgres-dir`` another live process serves; the message names its PID and what to do."""


def hold_folder(root: Path) -> int:
    """Lock ``root/server.lock`` (flock, released when this process ends, however it ends) and write our PID in
    it; returns the descriptor. A live holder is a ``FolderInUse`` naming its PID."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderInUse(f"{root} is in use: `shapflow server start` PID {holder} serves it; stop that one "
                          f"(Ctrl-C there, or kill {holder}) or give another --postgres-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _postmaster_in_use(root: Path) -> FolderInUse | None:
    """The error to give when a PostgreSQL of an earlier, killed server still runs ``root``'s cluster."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
        return FolderInUse(f"{root}: PostgreSQL PID {pid} still runs its cluster (left by a killed `shapflow "
                           f"server start`?): stop it with `pg_ctl -D {root / 'data'} stop` (as user postgres if "
                           f"root) or kill {pid}, then start again")
    return None


@dataclass
class Postgres:
    """A private PostgreSQL cluster in ``root``: its SQLAlchemy URI for database ``mlflow``; ``lock`` is the
    descriptor of the folder's lock this process holds (``hold_folder``), released by ``stop``."""

    root: Path
    port: int
    bin: Path
    lock: int | None = None

    @property
    def passfile(self) -> Path:
        """The libpq password file (0600) holding role ``mlflow``'s password."""
        return self.root.resolve() / PASSFILE

    @property
    def password(self) -> str:
        return self.passfile.read_text().strip().rsplit(":", 1)[1]

    @property
    def uri(self) -> str:
        """``postgresql+psycopg2://mlflow@127.0.0.1:<port>/mlflow?passfile=...``: no secret in it, only the file."""
        passfile = urllib.parse.quote(str(self.passfile), safe="/")
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{ROLE}?passfile={passfile}"

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (by the cluster's postmaster PID), bounded."""
        try:
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                                         "-w", "-t", "30", "stop"]), capture_output=True, timeout=60, check=False)
        finally:
            if self.lock is not None:
                os.close(self.lock)  # releases the flock
                self.lock = None


def _check_traversable(root: Path) -> None:
    """As root: the postgres user must reach ``root`` through folders whose modes we leave alone."""
    chain = [str(p) for p in reversed([root, *root.parents])]
    script = 'for d do [ -x "$d" ] || { printf %s "$d"; exit 1; }; done'
    found = subprocess.run(_as_postgres(["sh", "-c", script, "sh", *chain]), capture_output=True, text=True,
                           timeout=30, check=False)
    if found.returncode != 0:
        raise PermissionError(
            f"the postgres system user cannot traverse {found.stdout or root} on the way to the cluster folder "
            f"{root}; shapflow no longer chmods parent folders: put the cluster in a folder postgres can reach, "
            f"e.g. --postgres-dir $(mktemp -d) (a fresh folder in /tmp), or grant it yourself "
            f"(setfacl -m u:postgres:x {found.stdout or root})")


def _password_file(root: Path) -> str:
    """Role ``mlflow``'s password: read from ``root/mlflow.pgpass``, created (0600, random) the first time."""
    path = root / PASSFILE
    if not path.exists():
        password = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"127.0.0.1:*:{ROLE}:{ROLE}:{password}\n")  # host:port:database:user:password
    info = os.lstat(path)
    if not path.is_file() or path.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} must be a regular file owned by uid {os.geteuid()} with mode 0600: "
                              f"fix with chmod 600 {path}, or delete it and the cluster folder and start again")
    password = path.read_text().strip().rsplit(":", 1)[-1]
    if not _PASSWORD.fullmatch(password):
        raise ValueError(f"{path} does not hold a password written by shapflow: delete the cluster folder {root} "
                         f"and start again")
    return password


def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677): the server never sees the password."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = [base64.b64encode(x).decode() for x in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


def _write_hba(data: Path) -> None:
    """pg_hba.conf: peer for the cluster owner on the private socket, scram for ``mlflow`` over TCP; no trust."""
    hba = data / "pg_hba.conf"
    hba.write_text("# written by shapflow.services.server on every start; edits are overwritten\n"
                   f"local all {_owner()} peer\n"
                   f"host {ROLE} {ROLE} 127.0.0.1/32 scram-sha-256\n")
    if os.geteuid() == 0:
        shutil.chown(hba, "postgres", "postgres")
    os.chmod(hba, 0o600)


def _grant(pg: Path, root: Path, port: int, password: str, timeout: float) -> None:
    """As the owner, over the private socket: role ``mlflow`` (login, no other privilege), its database."""
    sql = (f"SELECT 'CREATE ROLE {ROLE}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}')\\gexec\n"
           f"ALTER ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
           f"PASSWORD '{_scram_verifier(password)}';\n"
           f"SELECT 'CREATE DATABASE {ROLE} OWNER {ROLE}' "
           f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{ROLE}')\\gexec\n"
           f"REVOKE ALL ON DATABASE {ROLE} FROM PUBLIC;\n")
    done = subprocess.run(_as_postgres([str(pg / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                                        str(root / "sock"), "-p", str(port), "-U", _owner(), "-d", "postgres"]),
                          input=sql, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"setting up role {ROLE} failed: {done.stderr[-2000:]}")


def _prepare(root: Path, pg: Path, timeout: float) -> str:
    """Create (or check) the folder layout and the cluster; return the ``mlflow`` password."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711 if os.geteuid() == 0 else 0o700)  # the cluster's own folder; parents untouched
    if os.geteuid() == 0:
        _check_traversable(root)
    data = root / "data"
    initialised = (data / "PG_VERSION").exists()
    if initialised and not (root / PASSFILE).exists():
        raise RuntimeError(f"{data} was initialised by an older shapflow (trust auth, superuser role {ROLE}); "
                           f"refusing to run it: dump what you need (pg_dump), delete {root} and start again")
    password = _password_file(root)
    for folder in (data, root / "sock"):
        folder.mkdir(mode=0o700, exist_ok=True)
    (root / "log").touch(mode=0o600, exist_ok=True)
    if os.geteuid() == 0:  # what the postgres user writes is its own; root and the password file stay ours
        for owned in (data, root / "sock", root / "log"):
            shutil.chown(owned, "postgres", "postgres")
    if not initialised:
        init = subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-U", _owner(),
                                            "--auth-local=peer", "--auth-host=reject"]),
                              capture_output=True, text=True, timeout=timeout, check=False)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    _write_hba(data)
    return password


def start_postgres(root: str | Path, port: int | None = None, timeout: float = 60.0) -> Postgres:
    """Initialise (once) and start a locked-down cluster in ``root`` with login role and database ``mlflow``.

    As root, the ``postgres`` system user must be able to traverse the folders above ``root``
    (a ``PermissionError`` names the one that blocks it); ``root`` itself gets mode 0711.
    """
    pg = postgres_bin()
    if pg is None:
        raise FileNotFoundError("PostgreSQL binaries not found: apt-get install -y postgresql (or set PG_BIN)")
    root = Path(root).absolute()
    lock = hold_folder(root)  # a second server on this folder is told who holds it, before touching it
    try:
        in_use = _postmaster_in_use(root)
        if in_use is not None:
            raise in_use
        password = _prepare(root, pg, timeout)
    except BaseException:
        os.close(lock)
        raise
    port = port or free_port()
    server = Postgres(root, port, pg, lock)
    options = (f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 -c unix_socket_permissions=0700 "
               f"-c password_encryption=scram-sha-256")
    try:
        subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l",
                                     str(root / "log"), "-w", "-t", str(int(timeout)), "start"]),
                       check=True, capture_output=True, timeout=timeout + 10)
        _grant(pg, root, port, password, timeout)
    except BaseException:  # a failed start or a signal: leave no postmaster behind
        server.stop()
        raise
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
    if backend_uri.startswith("postgresql"):
        require_extra("psycopg2", "an MLflow server on PostgreSQL")
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
