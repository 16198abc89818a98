"""The architecture, checked: dependencies point down, and no module imports itself back.

Layers, top to bottom: config; the pages and transports (ops, api, evapi_bridge);
the wire adapter (kamailio); the versions of plans (versions); the domain (outcomes,
blocklists, rating, routing, then tenants). A package may import from the layers below
it only. Imports inside functions count too: a lazy import that dodges a cycle is still
a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [
    {"config"},
    {"ops", "api", "evapi_bridge"},
    {"kamailio"},
    {"versions"},
    {"outcomes"},
    {"blocklists"},
    {"rating"},
    {"routing"},
    {"tenants"},
]
PACKAGES = set().union(*LAYERS)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (the longest known module of each import)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, packages in enumerate(LAYERS) if top in packages)


def test_every_package_imports_only_from_the_layers_below():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(target) < layer(module)
    )
    assert wrong == []


def test_no_module_imports_itself_back():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                # A package's __init__ re-exporting its own submodules is not a cycle of design.
                cycle = [*path[path.index(target) :], target]
                if not all(step.startswith(target + ".") for step in cycle[1:-1]):
                    cycles.append(" -> ".join(cycle))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_is_seen(package):
    assert any(name.split(".")[0] == package for name in modules())
