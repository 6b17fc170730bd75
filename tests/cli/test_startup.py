"""Start-up of the ``shapflow`` command: a user error is answered before torch, MLflow, scikit-learn, diffusers or
peft is imported (they take seconds; the answer must take well under 2 s: docs/results/2026-12-08-cli-latency.md).
Counted by the modules loaded, not timed."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "sklearn", "diffusers", "peft", "scipy", "ray")

PROBE = """
import sys, click
from shapflow.cli import main
try:
    main({args!r}, standalone_mode=False)
except click.ClickException as err:
    print("exit", err.exit_code, err.format_message())
print("heavy", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def _probe(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--use-case", "nosuch"], "unknown use case 'nosuch'"),
    (["run", "--overrides", "sft.steps=[1,"], "is not valid YAML"),
    (["run", "--method", "nosuch"], "'nosuch' is not one of"),
    (["coalitions", "run", "--index", "0", "--use-case", "nosuch"], "unknown use case 'nosuch'"),
])
def test_a_user_error_is_answered_before_any_heavy_import(args, message):
    out = _probe(args)
    assert "exit 2" in out and message in out, out
    assert "heavy []" in out, out


def test_the_cli_entry_imports_only_light_modules():
    out = _probe(["run", "--help"])
    assert "--use-case" in out and "heavy []" in out, out
