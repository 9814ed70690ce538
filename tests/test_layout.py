"""The package's layout keeps the trust boundary visible: who may import whom, read from the source.

- ``torchgrade.wire`` imports nothing of torchgrade: both sides of the boundary share it.
- The worker (``torchgrade.worker``) imports only the wire, the submission's file lister, itself and
  the probes: nothing of the grader side runs next to student code.
- Probes (``torchgrade.probes``), the only functions the worker may apply, import only other probes.
- No import cycle anywhere, counting imports inside functions, so no local import can hide one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchgrade"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The torchgrade modules that ``name`` imports anywhere in its source (``from torchgrade.x import y``
    counts ``torchgrade.x.y`` when that is a module, else ``torchgrade.x``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target == "torchgrade" or target.startswith("torchgrade.")}
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize("name", ["torchgrade.wire", "torchgrade.submission_files"])
def test_modules_both_sides_use_import_nothing_of_torchgrade(name):
    assert GRAPH[name] == set()


@pytest.mark.parametrize("name", [n for n in MODULES if within(n, "torchgrade.worker")])
def test_the_worker_imports_only_shared_leaves_itself_and_the_probes(name):
    allowed = ("torchgrade.wire", "torchgrade.submission_files", "torchgrade.worker", "torchgrade.probes")
    outside = {target for target in GRAPH[name] if target != "torchgrade" and not within(target, *allowed)}
    assert outside == set(), f"{name} runs next to student code and imports grader-side {sorted(outside)}"


@pytest.mark.parametrize("name", [n for n in MODULES if within(n, "torchgrade.probes")])
def test_probes_import_only_probes(name):
    outside = {target for target in GRAPH[name] if target != "torchgrade" and not within(target, "torchgrade.probes")}
    assert outside == set(), f"{name} is applied next to student objects and imports {sorted(outside)}"


def test_no_import_cycle_anywhere():
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    assert cycles == []


def test_the_reader_of_imports_sees_them():
    # Guard the guard: known edges of the layout are found.
    assert "torchgrade.wire" in GRAPH["torchgrade.worker.session"]
    assert "torchgrade.instructor.grading" in GRAPH["torchgrade.instructor.cli"]
