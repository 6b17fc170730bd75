"""No load path in shapflow/ unpickles: weights are safetensors + JSON (PEFT folders for LoRA), registered models
are MLflow models-from-code.

Flagged anywhere in the package (the AST, so comments and docstrings do not count): ``torch.load`` without
``weights_only=True``, ``pickle.load``/``pickle.loads``/``pd.read_pickle``, ``np.load(allow_pickle=True)``, any
import of ``cloudpickle`` or ``dill``, and a ``pickle.Unpickler`` subclass that does not restrict ``find_class``
(CIFAR-100's own files are pickles: they are read by such a restricted unpickler).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shapflow"
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pd", "read_pickle"), ("pandas", "read_pickle"),
                ("joblib", "load")}


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _dotted(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def unpickling(source: str) -> list[str]:
    """What in ``source`` unpickles, one line each ("<line>: <what>")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and (name := _dotted(node.func)):
            if name == ("torch", "load") and _keyword(node, "weights_only") is not True:
                found.append(f"{node.lineno}: torch.load without weights_only=True")
            elif name in UNSAFE_CALLS:
                found.append(f"{node.lineno}: {'.'.join(name)}")
            elif name[1] == "load" and name[0] in ("np", "numpy") and _keyword(node, "allow_pickle") is True:
                found.append(f"{node.lineno}: np.load(allow_pickle=True)")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: import {m}" for m in modules if m.split(".")[0] in ("cloudpickle", "dill")]
        elif isinstance(node, ast.ClassDef) and any(_dotted(base) == ("pickle", "Unpickler") for base in node.bases):
            methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            if "find_class" not in methods:
                found.append(f"{node.lineno}: pickle.Unpickler subclass {node.name} without a restricting find_class")
    return found


@pytest.mark.parametrize("snippet", [
    "import torch\nstate = torch.load(path)", "torch.load(path, weights_only=False)", "import pickle\npickle.loads(b)",
    "import cloudpickle", "from cloudpickle import loads", "np.load(path, allow_pickle=True)", "pd.read_pickle(p)",
    "class U(pickle.Unpickler):\n    pass",
])
def test_the_scan_flags_each_way_to_unpickle(snippet):
    assert unpickling(snippet), snippet


def test_the_scan_accepts_the_safe_forms():
    assert not unpickling("torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p)\n"
                          "class U(pickle.Unpickler):\n    def find_class(self, module, name):\n        raise E\n")


def test_nothing_in_shapflow_unpickles():
    found = {str(path.relative_to(PACKAGE)): hits for path in sorted(PACKAGE.rglob("*.py"))
             if (hits := unpickling(path.read_text()))}
    assert not found, found
