"""The house: imports go one way down the data flow, and no module imports itself back, lazily or not.

Every ``import`` / ``from ... import`` in shapflow/ counts, at module top or inside a function (a lazy import
that hides a cycle is still a cycle), and so does a dynamic one: ``importlib.import_module("shapflow.x")``, and
in a module that imports dynamically, every string naming a shapflow module (``"shapflow.cli.models:group"``).
Subpackages are ranked in data-flow order; a module may import its own subpackage and any lower-ranked one,
never a higher one. The self-tests at the bottom break each rule on a made-up module and see it caught.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shapflow"
# Lowest first: what a layer may import is everything on its left. shapley (pure numpy) sits just above config.
LAYERS = ("__init__", "cache", "config", "shapley", "services", "data", "models", "kernels", "training", "generation",
          "properties", "standins", "testing", "utility", "execution", "tracking", "attribution", "evaluation", "cli")
MAX_TOP_LEVEL_MODULES = 8
DYNAMIC_IMPORTS = {"import_module", "__import__"}
MODULE_STRING = re.compile(r"^(shapflow(?:\.\w+)*)(?::[\w.]+)?$")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dynamic_imports(tree: ast.AST) -> set[str]:
    """The shapflow modules a module imports by name: the string arguments of ``import_module``/``__import__``
    and, when it calls them at all, every string in it naming a shapflow module (names kept in a table)."""
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in DYNAMIC_IMPORTS]
    if not calls:
        return set()
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return {match.group(1) for text in strings if (match := MODULE_STRING.match(text))}


def _imports(source: str, name: str, is_package: bool) -> set[str]:
    """Every shapflow module the module ``name`` (source text) imports (relative imports resolved), anywhere."""
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    found = _dynamic_imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "shapflow"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base.split(".")[0] != "shapflow":
                continue
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def _sources() -> dict[str, tuple[str, bool]]:
    """{module name: (source, is a package)} of every module under shapflow/."""
    return {_module_name(p): (p.read_text(), p.name == "__init__.py") for p in PACKAGE.rglob("*.py")}


def _graph(sources: dict[str, tuple[str, bool]] | None = None) -> dict[str, set[str]]:
    """{module: the shapflow modules it imports} (only modules that exist, never itself)."""
    sources = _sources() if sources is None else sources
    return {name: {m for m in _imports(text, name, is_package) if m in sources and m != name}
            for name, (text, is_package) in sources.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_has_a_layer():
    tops = {_layer(m) for m in _graph()}
    assert tops <= set(LAYERS), f"place {sorted(tops - set(LAYERS))} in LAYERS (data-flow order)"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                  if LAYERS.index(_layer(target)) > LAYERS.index(_layer(module)))


def test_imports_go_one_way_down_the_data_flow():
    upward = _upward(_graph())
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state, stack, cycles = {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_between_modules():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_top_level_stays_small():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


@pytest.mark.parametrize("forbidden", ["torch", "mlflow"])
def test_estimators_are_pure_numpy(forbidden):
    """No module of shapflow.shapley imports torch or mlflow (estimators are functions of masks and utilities)."""
    for path in (PACKAGE / "shapley").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert forbidden not in names, f"{path.name} imports {forbidden}"


def test_mlflow_is_imported_only_by_tracking():
    for path in PACKAGE.rglob("*.py"):
        if _layer(_module_name(path)) == "tracking":
            continue
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "mlflow" not in names, f"{path.relative_to(PACKAGE)} imports mlflow: only shapflow.tracking may"


# Self-tests: each rule, broken on purpose in made-up modules, is caught.

_LOW, _HIGH = "shapflow.config.made_up", "shapflow.cli.made_up"


@pytest.mark.parametrize("source", [
    "from shapflow.cli import made_up\n",
    "def f():\n    import shapflow.cli.made_up\n",
    "import importlib\ndef f():\n    return importlib.import_module('shapflow.cli.made_up')\n",
    "import importlib\nTABLE = {'x': 'shapflow.cli.made_up:thing'}\n"
    "def f(name):\n    module, _ = TABLE[name].split(':')\n    return importlib.import_module(module)\n",
])
def test_an_upward_import_is_caught_however_it_is_written(source):
    graph = _graph({_LOW: (source, False), _HIGH: ("", False)})
    assert _upward(graph) == [f"{_LOW} -> {_HIGH}"]


def test_a_cycle_is_caught():
    graph = _graph({_LOW: ("from shapflow.config import other\n", False),
                    "shapflow.config.other": ("from shapflow.config.made_up import x\n", False)})
    assert _cycles(graph) == ["shapflow.config.made_up -> shapflow.config.other -> shapflow.config.made_up"]


def test_shapley_sits_just_above_config():
    assert LAYERS.index("shapley") == LAYERS.index("config") + 1


def duplicate_file_names(package: Path) -> dict[str, list[str]]:
    """{file name: the folders holding it} for every module name used in two folders (``__init__``/``__main__``
    excepted): a name says what a file is, and means one thing in the whole package."""
    folders: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        if not path.name.startswith("__"):
            folders.setdefault(path.name, []).append(str(path.parent.relative_to(package.parent)))
    return {name: where for name, where in folders.items() if len(where) > 1}


def test_no_file_name_in_two_folders():
    twice = duplicate_file_names(PACKAGE)
    assert not twice, "file names used in two folders (rename one for what it is):\n" + "\n".join(
        f"{name}: {', '.join(where)}" for name, where in sorted(twice.items()))


def test_a_file_name_in_two_folders_is_caught(tmp_path):
    for folder in ("shapflow/data", "shapflow/properties"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "digits.py").write_text("")
        (tmp_path / folder / "__init__.py").write_text("")
    assert duplicate_file_names(tmp_path / "shapflow") == {"digits.py": ["shapflow/data", "shapflow/properties"]}
