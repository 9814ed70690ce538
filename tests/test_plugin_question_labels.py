"""The question labels the template writes next to a public name (``raise NotImplementedError("Q1b:
...")``, ``(Q2d)`` in a docstring, ``Q1b ``load_shoes``\\`` in a module docstring) are the questions the
graders score that name under, as the manifest (assignments.toml) names them (issue 19: the template
called ``get_accuracy`` Q3g, a TA-graded question, while its check scores Q5a)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from torchgrade import assignments

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = assignments.load(ROOT)
#: A label at the start of a NotImplementedError's message: "Q1b: ...", "3.1: ...", "Basics-1a: ...".
RAISED = re.compile(r"^([A-Za-z]*\d[\w.\-]*|[A-Z]\w*-[\w\-]+)(?:/([a-z]))?: ")
#: A "Q" label in parentheses in a docstring: "(Q2d)", "(Q3.6b and c)".
IN_DOCSTRING = re.compile(r"\((Q\d[\w.]*?)(?: and ([a-z]))?\)")
#: A label followed by the names it covers in a module docstring: "Q1b ``load_shoes``", "3.1 ``a`` and ``b``".
IN_MODULE = re.compile(r"\b(Q\d+(?:\.\d+)*[a-z]?|\d+(?:\.\d+)+[a-z]?) ((?:``\w+``(?:,? and |, )?)+)")


def _checks(assignment: assignments.Assignment) -> list[tuple[str, str]]:
    """(question, source text) of every check of the assignment's grader modules."""
    out = []
    for name in assignment.graders:
        if not name.startswith("test_"):
            continue
        tree = ast.parse((ROOT / "graders" / name).read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("mark.points"):
                    question = next((k.value for k in deco.keywords if k.arg == "question"), None)
                    if isinstance(question, ast.Constant):
                        out.append((str(question.value), ast.get_source_segment(tree_source(name), node) or ""))
    return out


def tree_source(name: str) -> str:
    return (ROOT / "graders" / name).read_text()


def _allowed(assignment: assignments.Assignment, name: str) -> set[str]:
    """The auto-graded questions whose checks (or titles) name ``name``; every auto-graded question of the
    assignment when none does (a name graded through a helper module only)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()  # GraphAttentionLayer: test_graph_attention_layer
    word = re.compile(rf"\b{re.escape(name)}\b|\btest_{re.escape(snake)}\b")
    auto = {q.id for q in assignment.questions if not q.manual}
    found = {q for q, source in _checks(assignment) if word.search(source)}
    found |= {q.id for q in assignment.questions if not q.manual and word.search(q.title)}
    return (found & auto) or auto


def _walk_owned(node: ast.AST):
    """The nodes of a public function or class, less its public methods other than ``forward``
    (``TextGenerationModel.sample``): graders reach those through helpers, and their labels name finer
    questions than the class's own (checked by the method-level test below)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if _is_method(node, child):
            continue
        yield from _walk_owned(child)


def _is_method(owner: ast.AST, child: ast.AST) -> bool:
    return (
        isinstance(owner, ast.ClassDef)
        and isinstance(child, ast.FunctionDef)
        and not child.name.startswith("_")
        and child.name != "forward"
    )


def _method_labels(assignment: assignments.Assignment) -> list[tuple[str, str, str]]:
    """(class.method, label) for the NotImplementedError labels of public methods."""
    out = []
    for module, names in assignment.modules.items():
        tree = ast.parse((REPOSITORY.root / "student_template" / f"{module}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in names:
                for method in (c for c in node.body if _is_method(node, c)):
                    for const in ast.walk(method):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str):
                            match = RAISED.match(const.value)
                            if match:
                                label, sibling = match.groups()
                                out.append((module, f"{node.name}.{method.name}", label))
                                if sibling:
                                    out.append(
                                        (module, f"{node.name}.{method.name}", re.sub(r"[a-z]$", sibling, label))
                                    )
    return out


def _labels(assignment: assignments.Assignment) -> list[tuple[str, str, str]]:
    """(module, name, label) for every label the template writes next to one of the assignment's names."""
    out = []
    for module, names in assignment.modules.items():
        path = REPOSITORY.root / "student_template" / f"{module}.py"
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name not in names:
                continue
            for inner in _walk_owned(node):
                if (
                    isinstance(inner, ast.Raise)
                    and inner.exc is not None
                    and "NotImplementedError" in ast.unparse(inner.exc)
                ):
                    for const in ast.walk(inner.exc):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str):
                            match = RAISED.match(const.value)
                            if match:
                                label, sibling = match.groups()  # "Q2.4b/c: ..." labels Q2.4b and Q2.4c
                                out.append((module, node.name, label))
                                if sibling:
                                    out.append((module, node.name, re.sub(r"[a-z]$", sibling, label)))
                if isinstance(inner, (ast.FunctionDef, ast.ClassDef)):
                    first = (ast.get_docstring(inner) or "").split("\n\n")[0]
                    for label, also in IN_DOCSTRING.findall(first):
                        out.append((module, node.name, label))
                        if also:
                            out.append((module, node.name, re.sub(r"[a-z]$", also, label)))
        doc = " ".join((ast.get_docstring(tree) or "").split())
        for label, covered in IN_MODULE.findall(doc):
            for name in re.findall(r"``(\w+)``", covered):
                if name in names:
                    out.append((module, name, label))
    return out


def _fits(label: str, allowed: set[str]) -> bool:
    """The label is one of the questions, or a group of them ("Q2.4" for Q2.4a-c, "1.4" for 1.4.1)."""
    return label in allowed or any(q.startswith(label) and not q[len(label)].isdigit() for q in allowed)


@pytest.mark.parametrize("assignment_id", REPOSITORY.ids)
def test_the_templates_question_labels_are_the_graders(assignment_id):
    assignment = REPOSITORY.assignments[assignment_id]
    labels = _labels(assignment)
    assert labels, f"no question label found in the template for {assignment_id}: is the parsing broken?"
    wrong = [
        f"student_template/{module}.py: {name} is labelled {label!r}; its checks grade it as "
        f"{', '.join(sorted(_allowed(assignment, name)))}"
        for module, name, label in labels
        if not _fits(label, _allowed(assignment, name))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("assignment_id", REPOSITORY.ids)
def test_the_templates_method_labels_are_auto_graded_questions(assignment_id):
    assignment = REPOSITORY.assignments[assignment_id]
    auto = {q.id for q in assignment.questions if not q.manual}
    wrong = [
        f"student_template/{module}.py: {name} is labelled {label!r}, not an auto-graded question of {assignment_id}"
        for module, name, label in _method_labels(assignment)
        if not _fits(label, auto)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_parser_finds_the_labels_it_is_meant_to():
    shoes = {(name, label) for _, name, label in _labels(REPOSITORY.assignments["shoes"])}
    assert {("load_shoes", "Q1b"), ("receptive_field_1d", "Q2d"), ("train_model", "Q4a")} <= shoes
    assert ("get_accuracy", "Q5a") in shoes
    uva = {(name, label) for _, name, label in _labels(REPOSITORY.assignments["uva-a2"])}
    assert {("TextGenerationModel", "Q2.4a"), ("MoleculeMLP", "Q3.6c"), ("LSTM", "Q2.3")} <= uva
    methods = {(name, label) for _, name, label in _method_labels(REPOSITORY.assignments["uva-a2"])}
    assert {("TextGenerationModel.sample", "Q2.4b"), ("TextGenerationModel.sample", "Q2.4c")} <= methods
    assert _fits("Q2.4", {"Q2.4a"}) and _fits("1.4", {"1.4.1"}) and not _fits("Q2", {"Q21"})
    assert not _fits("2.3", {"Q2.3"})
