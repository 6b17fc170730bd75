"""A fresh machine's test run says what it skipped that CI runs, and the one command that enables it.

CI (``.ci/run``) installs Debian's chromium and postgresql before the README's test command; without them the
browser and PostgreSQL tests skip. tests/conftest.py's ``pytest_terminal_summary`` names them at the end.
"""

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]


def _conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Reporter:
    """The two methods of pytest's terminal reporter the hook uses, writing into a list."""

    def __init__(self, skipped: list[tuple[str, str]]):
        self.stats = {"skipped": [SimpleNamespace(nodeid=node, longrepr=("file.py", 1, f"Skipped: {reason}"))
                                  for node, reason in skipped]}
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"== {title} ==")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def test_the_summary_names_tests_ci_runs_and_the_command():
    conftest = _conftest()
    reporter = _Reporter([("tests/browser/test_ui.py::test_a", "needs Debian's chromium (apt-get install chromium)"),
                          ("tests/hardening/test_pg.py::test_b", "PostgreSQL binaries not found"),
                          ("tests/kernels/test_gpu.py::test_c", "needs a CUDA device")])
    conftest.pytest_terminal_summary(reporter, 0, None)
    text = "\n".join(reporter.lines)
    assert "test_ui.py::test_a" in text and "test_pg.py::test_b" in text and "test_gpu.py" not in text
    assert text.endswith(f"2 skipped: they need Debian's chromium and postgresql; "
                         f"enable them with: {conftest.ENABLE_COMMAND}")


def test_nothing_is_printed_when_nothing_ci_runs_was_skipped():
    reporter = _Reporter([("tests/kernels/test_gpu.py::test_c", "needs a CUDA device")])
    _conftest().pytest_terminal_summary(reporter, 0, None)
    assert reporter.lines == []


def test_the_command_installs_what_ci_installs():
    """Every Debian package .ci/run installs is one the enabling command installs, and no other."""
    installed = set(re.findall(r"apt-get install -y -qq ([\w.+-]+)", (ROOT / ".ci" / "run").read_text()))
    assert installed == set(_conftest().CI_PACKAGES)
