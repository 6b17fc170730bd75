"""Children die with their parent: spawn-pool workers (and the resource tracker) after ``kill -9`` of the driver,
``shapflow server start``'s MLflow server and PostgreSQL after SIGTERM."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import psutil
import pytest
from click.testing import CliRunner

from shapflow.services.lifetime import guard_initializer, stop_on_signals
from shapflow.services.server import describe_exposure, free_port

# Two workers (each leaves a file from its initializer, after the guard is set up) sleeping 10 minutes.
DRIVER = """
import sys, tempfile, time
from shapflow.execution import spawn_pool
for outcome in spawn_pool(time.sleep, [(600,), (600,)], workers=2, initializer=tempfile.mkstemp,
                          initargs=("", "worker-", sys.argv[1])):
    pass
"""


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_survivors(processes: list[psutil.Process]) -> None:
    """Clean-up after a failed assertion: SIGTERM what we started, SIGKILL what is left 10 s later."""
    for process in processes:
        if not _gone(process):
            process.terminate()
    for process in psutil.wait_procs([p for p in processes if not _gone(p)], timeout=10)[1]:
        process.kill()


def test_pool_workers_and_resource_tracker_die_with_a_killed_driver(tmp_path, python, child_env, wait_until):
    driver = subprocess.Popen([python, "-c", DRIVER, str(tmp_path)], env=child_env)
    children: list[psutil.Process] = []
    try:
        assert wait_until(lambda: len(list(tmp_path.iterdir())) == 2 or driver.poll() is not None, 180), \
            "the workers did not start"
        assert driver.poll() is None
        children = psutil.Process(driver.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert sum("spawn_main" in c for c in commands) == 2 and any("resource_tracker" in c for c in commands)
        driver.kill()
        driver.wait(timeout=10)
        assert wait_until(lambda: all(_gone(c) for c in children), 10), \
            f"alive 10 s after kill -9 of the driver: {[c.pid for c in children if not _gone(c)]}"
    finally:
        driver.kill()
        driver.wait(timeout=10)
        _kill_survivors(children)


def test_guard_keeps_the_initializer_and_its_arguments():
    initializer, initargs = guard_initializer(print, ("a", "b"))
    assert initargs == (os.getpid(), print, ("a", "b"))
    assert callable(initializer)


def test_signals_raise_a_keyboard_interrupt_and_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_non_loopback_host_needs_allow_remote():
    assert describe_exposure("127.0.0.1", 5000, False) is None
    assert describe_exposure("localhost", 5000, False) is None
    with pytest.raises(ValueError, match="--allow-remote"):
        describe_exposure("0.0.0.0", 5000, False)
    assert "NO authentication" in describe_exposure("0.0.0.0", 5000, True)

    from shapflow.cli import main

    result = CliRunner().invoke(main, ["server", "start", "--backend-store-uri", "sqlite:///x.db", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--allow-remote" in result.output


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_sigterm_stops_the_mlflow_server_and_postgres(cluster_root, tmp_path, python, child_env, wait_until):
    port = free_port()
    command = [python, "-c", "from shapflow.cli import main; main()", "server", "start", "--postgres-dir",
               str(cluster_root), "--port", str(port), "--artifacts", str(tmp_path / "artifacts")]
    out = tmp_path / "out"
    with out.open("wb") as sink:
        cli = subprocess.Popen(command, env=child_env, stdout=sink, stderr=subprocess.STDOUT)
    started: list[psutil.Process] = []
    try:  # running: it printed the URI (after its own health check), and /health answers
        assert wait_until(lambda: "MLFLOW_TRACKING_URI=" in out.read_text() or cli.poll() is not None, 240)
        assert cli.poll() is None and _healthy(port), out.read_text()
        postmaster = psutil.Process(int((cluster_root / "data/postmaster.pid").read_text().split()[0]))
        started = [postmaster, *psutil.Process(cli.pid).children(recursive=True)]
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=90) == 0, out.read_text()
        assert not _accepts(port), f"something still listens on {port} after SIGTERM"
        assert wait_until(lambda: all(_gone(p) for p in started), 10), \
            f"alive after SIGTERM: {[(p.pid, p.name()) for p in started if not _gone(p)]}"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=10)
        _kill_survivors(started)


# A parent that starts a child guarded by the polling thread alone (PDEATHSIG switched off), then sleeps.
PARENT = """
import os, subprocess, sys, time
child = ("import shapflow.services.lifetime as p, sys, time; p._pdeathsig = lambda: False; "
         "p.die_with_parent(int(sys.argv[1])); open(sys.argv[2], 'w').close(); time.sleep(600)")
subprocess.Popen([sys.executable, "-c", child, str(os.getpid()), sys.argv[1]])
time.sleep(600)
"""


def test_the_polling_thread_alone_ends_an_orphan(tmp_path, python, child_env, wait_until):
    ready = tmp_path / "ready"
    parent = subprocess.Popen([python, "-c", PARENT, str(ready)], env=child_env)
    children: list[psutil.Process] = []
    try:
        assert wait_until(ready.exists, 60)
        children = psutil.Process(parent.pid).children()
        assert len(children) == 1
        parent.kill()
        parent.wait(timeout=10)
        assert wait_until(lambda: _gone(children[0]), 5)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        _kill_survivors(children)


# A process that starts the reaper, then a tree (one grandchild in its own session), then sleeps.
REAPED = """
import subprocess, sys, time
from shapflow.services.lifetime import reap_descendants_on_death
reap_descendants_on_death(0.1)
subprocess.Popen(["bash", "-c", "setsid sleep 600 & exec sleep 600"])
print("started", flush=True)
time.sleep(600)
"""


def test_the_reaper_kills_every_descendant_of_a_sigkilled_process(python, child_env, wait_until):
    """What a SIGKILL-ed Ray driver leaves: children reparented to init (one even in its own session). The
    reaper started before them kills every one once their ancestor is gone."""
    owner = subprocess.Popen([python, "-c", REAPED], env=child_env, stdout=subprocess.PIPE, text=True)
    tree: list[psutil.Process] = []
    try:
        assert owner.stdout.readline().strip() == "started"
        assert wait_until(lambda: len([p for p in psutil.Process(owner.pid).children(recursive=True)
                                       if p.name() == "sleep"]) == 2, 10)
        tree = [p for p in psutil.Process(owner.pid).children(recursive=True) if p.name() == "sleep"]
        time.sleep(0.5)  # a few of the reaper's 0.1 s scans: it kills what it saw alive
        owner.kill()
        owner.wait(timeout=10)
        assert wait_until(lambda: all(_gone(p) for p in tree), 10), [p.pid for p in tree if not _gone(p)]
    finally:
        _kill_survivors(tree)
