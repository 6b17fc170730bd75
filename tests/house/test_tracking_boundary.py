"""The tracking boundary is typed: outside shapflow/tracking/ nothing calls ``Tracker.call("<client method>")``
(a string naming an MLflow client method), and nothing but tracking/ imports MLflow (test_layering.py).
Each place that needs the store calls a typed ``Tracker`` method or a tracking function instead."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLACES = ("shapflow", "pipelines")


def string_calls(source: str) -> list[int]:
    """The lines of ``<anything>.call("<name>", ...)`` calls: a method named by a string."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)]


def test_no_string_named_client_call_outside_tracking():
    found = [f"{path.relative_to(ROOT)}:{line}" for place in PLACES for path in sorted((ROOT / place).rglob("*.py"))
             if "tracking" not in path.relative_to(ROOT).parts for line in string_calls(path.read_text())]
    assert not found, "tracker.call(\"...\") outside tracking/ (add a typed Tracker method):\n" + "\n".join(found)


def test_a_string_named_call_is_caught():
    assert string_calls("def f(tracker):\n    return tracker.call('get_run', 'x')\n") == [2]
    assert string_calls("def f(tracker):\n    return tracker.get_run('x')\n") == []
