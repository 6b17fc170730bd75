"""``shapflow server start`` on a folder another server holds answers with one line naming the PID that holds it
(it used to fail deep in ``pg_ctl`` with a ``CalledProcessError``)."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from shapflow.cli.main import main
from shapflow.services.server import FolderInUse, hold_folder, postgres_bin

HOLDER = "import sys, time; from pathlib import Path; from shapflow.services.server import hold_folder; " \
         "hold_folder(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"


def test_a_held_folder_names_its_holder(tmp_path):
    fd = hold_folder(tmp_path / "pg")
    try:
        with pytest.raises(FolderInUse, match=f"PID {os.getpid()} serves it"):
            hold_folder(tmp_path / "pg")
    finally:
        os.close(fd)
    os.close(hold_folder(tmp_path / "pg"))  # released with its holder: free again


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL binaries not installed (apt-get install postgresql)")
def test_a_second_server_start_on_one_folder_exits_2_naming_the_pid(tmp_path, child_env):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "pg")], env=child_env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = CliRunner().invoke(main, ["server", "start", "--postgres-dir", str(tmp_path / "pg")])
        assert out.exit_code == 2, (out.output, out.exception)
        assert f"is in use: `shapflow server start` PID {holder.pid} serves it" in out.output, out.output
        assert not (tmp_path / "pg" / "data").exists()  # refused before touching the cluster
    finally:
        holder.kill()
        holder.wait(timeout=10)


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL binaries not installed (apt-get install postgresql)")
def test_a_postgres_left_running_on_the_folder_is_named(tmp_path):
    (tmp_path / "pg" / "data").mkdir(parents=True)
    (tmp_path / "pg" / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n/x\n")  # a live PID
    out = CliRunner().invoke(main, ["server", "start", "--postgres-dir", str(tmp_path / "pg")])
    assert out.exit_code == 2, (out.output, out.exception)
    assert f"PostgreSQL PID {os.getpid()} still runs its cluster" in out.output, out.output
