"""The house: imports go one way down the data flow, and no module imports itself back, lazily or not.

Every ``import`` / ``from ... import`` in shapflow/ counts, at module top or inside a function (a lazy import
that hides a cycle is still a cycle). Subpackages are ranked in data-flow order; a module may import its own
subpackage and any lower-ranked one, never a higher one.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shapflow"
# Lowest first: what a layer may import is everything on its left.
LAYERS = ("__init__", "cache", "config", "data", "models", "kernels", "training", "generation", "properties",
          "testing", "shapley", "utility", "execution", "tracking", "attribution", "evaluation", "cli")
MAX_TOP_LEVEL_MODULES = 8


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every shapflow module ``path`` imports (relative imports resolved), anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_has_a_layer():
    tops = {_layer(m) for m in _graph()}
    assert tops <= set(LAYERS), f"place {sorted(tops - set(LAYERS))} in LAYERS (data-flow order)"


def test_imports_go_one_way_down_the_data_flow():
    upward = [f"{module} -> {target}" for module, targets in _graph().items() for target in targets
              if LAYERS.index(_layer(target)) > LAYERS.index(_layer(module))]
    assert not upward, "imports against the data flow:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_modules():
    graph, state, stack, cycles = _graph(), {}, [], []

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
        if _layer(_module_name(path)) in ("tracking", "cli"):
            continue
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "mlflow" not in names, f"{path.relative_to(PACKAGE)} imports mlflow: only shapflow.tracking may"
