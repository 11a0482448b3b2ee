"""The structure rules of dorc's own code, checked from its source (nothing is imported):

- no import cycles in ``dorc/`` and ``sim/`` (installed as ``dorc_sim``);
- imports point down the flow definition -> plan -> targets -> result -> front ends: each module
  has a rank, and none imports a module of a higher rank;
- no module imports another module's private names;
- every package folder is listed in pyproject.toml (the simulator's folder is not named like its
  package, so setuptools cannot find it by itself).

Lazy imports inside functions count: a cycle through a function-level import is still a cycle.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"dorc": ROOT / "dorc", "dorc_sim": ROOT / "sim"}
# The executor plugin runs inside LocalStack's own venv and imports LocalStack, never dorc.
EXCLUDED = [ROOT / "sim" / "localstack" / "plugin"]

# Lowest first. A module may import modules of its own rank or lower. The first matching prefix wins.
RANKS: list[tuple[str, int]] = [
    ("dorc.errors", 0), ("dorc.models", 0), ("dorc.result", 0), ("dorc.observer", 0), ("dorc.registry", 0),
    ("dorc_sim", 1), ("dorc.package", 1), ("dorc.project", 1), ("dorc.pipeline", 1), ("dorc.graph", 1),
    ("dorc.permissions", 1),
    ("dorc.loader", 2), ("dorc.validate", 2), ("dorc.import_check", 2), ("dorc.taskroot", 2),
    ("dorc.plan", 3),
    ("dorc.localstack", 4), ("dorc.records", 4),
    ("dorc.targets", 5),
    ("dorc.promote", 6), ("dorc.planning", 6), ("dorc.resume", 6), ("dorc.watch", 6),
    ("dorc.delivery", 7), ("dorc.api", 7), ("dorc.local_aws", 7), ("dorc.doctor", 7), ("dorc.describe", 7), ("dorc.scaffold", 7), ("dorc.triggers", 7),
    ("dorc.render", 8), ("dorc.cli", 8), ("dorc.daemon", 8), ("dorc.pytest_plugin", 8), ("dorc.__main__", 8), ("dorc", 8),
]


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            if any(path.is_relative_to(x) for x in EXCLUDED):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of dorc's own modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if _is_package(name) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # `from pkg import submodule` imports the submodule
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            out += [(s, [], node.lineno) for s in subs]
            if rest or not subs:
                out.append((target, rest, node.lineno))
    return [(t, n, line) for t, n, line in out if t.split(".")[0] in PACKAGES and t in MODULES]


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _rank(name: str) -> int:
    for prefix, rank in RANKS:
        if name == prefix or name.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{name} has no rank in tests/test_layout.py: give it one")


def test_every_module_has_a_rank():
    for name in MODULES:
        _rank(name)


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in GRAPH[v]:
            if w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_point_down_the_flow():
    upward = [f"{MODULES[src].relative_to(ROOT)}:{line}: {src} (rank {_rank(src)}) imports {dst} (rank {_rank(dst)})"
              for src, edges in GRAPH.items() for dst, _, line in edges if _rank(dst) > _rank(src)]
    assert not upward, "imports that point up the flow:\n" + "\n".join(upward)


def test_no_module_takes_another_modules_private_names():
    private = [f"{MODULES[src].relative_to(ROOT)}:{line}: {', '.join(n for n in names if n.startswith('_'))} from {dst}"
               for src, edges in GRAPH.items() for dst, names, line in edges
               if dst != src and any(n.startswith("_") and not n.startswith("__") for n in names)]
    assert not private, "private names imported from other modules:\n" + "\n".join(private)


def test_pyproject_lists_every_package_and_maps_the_simulator():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {name for name in MODULES if _is_package(name)}
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    assert config["package-dir"]["dorc_sim"] == "sim"


@pytest.mark.parametrize("module", ["sim"])
def test_the_simulator_is_not_a_top_level_sim_module(module):
    """From the checkout's root ``./sim`` is on ``sys.path``: importing it by that name fails clearly."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "imported as 'dorc_sim'" in proc.stderr
