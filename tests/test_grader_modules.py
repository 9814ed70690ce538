"""Graders read like the handout: students read them, so their shape is checked, from the source.

Each grader module grades one assignment; its graded checks come first, each with a one-line
docstring that states the property; it cites handout questions, never a file that a student's copy
does not have.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

GRADERS = Path(__file__).resolve().parents[1] / "graders"
MODULES = sorted(GRADERS.glob("test_*.py"))
#: Files that exist only on the instructor's side: a student reading a grader cannot open them.
INSTRUCTOR_ONLY = re.compile(
    r"DESIGN\.md|ASSIGNMENTS\.md|\b00\d_[0-9a-f.]+|reference/|benchmarks/|fixtures/submissions"
)


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def graded_checks(tree: ast.Module) -> list[ast.FunctionDef]:
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("mark.points" in ast.unparse(decorator) for decorator in node.decorator_list)
    ]


def module_constant(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_graded_checks_come_first_with_a_docstring(path):
    tree = parsed(path)
    checks = graded_checks(tree)
    definitions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert checks, f"{path.name} grades nothing"
    assert definitions[: len(checks)] == checks, f"{path.name}: a helper comes before a graded check"
    missing = [check.name for check in checks if not ast.get_docstring(check)]
    assert missing == [], f"{path.name}: graded checks without a docstring"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_one_assignment_per_module(path):
    tree = parsed(path)
    assignment = module_constant(tree, "ASSIGNMENT")
    assert isinstance(assignment, ast.Constant), f"{path.name} names no ASSIGNMENT"
    for check in graded_checks(tree):
        for decorator in check.decorator_list:
            for keyword in getattr(decorator, "keywords", []):
                assert keyword.arg != "assignment", f"{path.name}::{check.name} grades another assignment"
    manual = module_constant(tree, "MANUAL")
    if isinstance(manual, ast.Dict):
        assert not any(isinstance(key, ast.Tuple) for key in manual.keys), f"{path.name}: MANUAL of another assignment"


@pytest.mark.parametrize("path", sorted(GRADERS.glob("*.py")), ids=lambda p: p.name)
def test_graders_cite_only_what_students_have(path):
    found = INSTRUCTOR_ONLY.findall(path.read_text())
    assert found == [], f"{path.name} cites files that a student's copy does not have"
