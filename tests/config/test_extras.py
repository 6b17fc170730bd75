"""Every optional extra a command needs and lacks is one line, exit 2, with the command that installs it, before
anything starts (it was an ImportError, or "mlflow server exited with 1 (see None)" for psycopg2)."""

import sys

import pytest
from click.testing import CliRunner

from shapflow.cli.main import main
from shapflow.config.extras import EXTRAS, MissingExtra, require_extra


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_a_missing_extra_names_its_install_command(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # find_spec answers None: as if not installed
    with pytest.raises(MissingExtra, match=rf'feature X needs {module}, .*pip install -e "\.\[{EXTRAS[module]}\]"'):
        require_extra(module, "feature X")


def test_executor_ray_without_ray_exits_2_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    out = CliRunner().invoke(main, ["run", "--use-case", "digits-classes", "--executor", "ray"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert 'executor=ray needs ray, which is not installed here: pip install -e ".[scaleout]"' in out.output
    assert not (tmp_path / "mlruns.db").exists()


def test_server_start_without_psycopg2_exits_2_before_starting_postgres(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    out = CliRunner().invoke(main, ["server", "start", "--postgres-dir", str(tmp_path / "pg")])
    assert out.exit_code == 2, (out.output, out.exception)
    assert 'needs psycopg2, which is not installed here: pip install -e ".[scaleout]"' in out.output
    assert not (tmp_path / "pg").exists()
