"""The layers import one way: vpd_stream (core) <- engines <- plugins <- offline_train.

Read from the source with ast, so a violation fails here even in code no other test runs.
The CLI (vpd_stream/cli.py) is the composition root and the only core module allowed to
reach up. Imports between project files (at module level or inside functions) form no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vpd_stream", "engines", "plugins", "offline_train")
RANK = {name: i for i, name in enumerate(PACKAGES)}
COMPOSITION_ROOT = "vpd_stream.cli"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at module level or in a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from package import module` imports a module too
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def layer_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for name, path in project_modules(root).items():
        layer = name.split(".")[0]
        if name == COMPOSITION_ROOT:
            continue
        for target, line in imports(path, root):
            other = target.split(".")[0]
            if other in RANK and RANK[other] > RANK[layer]:
                problems.append(f"{path.relative_to(root)}:{line} ({layer}) imports {target}")
    return problems


def test_imports_run_one_way() -> None:
    problems = layer_problems()
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_nothing_imports_the_cli() -> None:
    users = [f"{path.relative_to(ROOT)}:{line}" for name, path in project_modules().items()
             if name != COMPOSITION_ROOT
             for target, line in imports(path) if target == COMPOSITION_ROOT]
    assert not users, f"only the console entry point may import {COMPOSITION_ROOT}: {users}"


def test_no_import_cycles_between_files() -> None:
    modules = project_modules()
    graph = {name: sorted({t for t, _ in imports(path) if t in modules and t != name})
             for name, path in modules.items()}
    # A package's __init__ importing its own submodules is not a cycle with them.
    for name in graph:
        graph[name] = [t for t in graph[name] if not (modules[name].name == "__init__.py" and t.startswith(name + "."))]
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("layer, source, bad", [
    ("plugins", "from offline_train.nns import x\n", True),
    ("plugins", "def f():\n    import offline_train.recognition\n", True),
    ("engines", "from plugins.student import StudentPlugin\n", True),
    ("vpd_stream", "from . import cli\nimport engines\n", True),
    ("plugins", "from vpd_stream.heads.nns import flip_min_costs\nimport engines\n", False),
    ("offline_train", "import plugins.detector\n", False),
])
def test_the_layer_check_catches_a_module_reaching_up(tmp_path, layer, source, bad) -> None:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / layer / "probe.py").write_text(source, encoding="utf-8")
    problems = layer_problems(tmp_path)
    assert bool(problems) == bad, problems
