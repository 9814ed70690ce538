"""The manifest loader: assignments.toml and the interface read from student_template/'s syntax tree."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

from torchgrade import assignments
from torchgrade.assignments import REQUIRED, HandoutParameter, ManifestError, UnknownAssignment

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "torchgrade"

MANIFEST = """
template = "starter"

[one]
title = "Assignment one"
modules = ["shared", "alone"]
names = ["f", "Model", "g"]
graders = ["test_one.py", "_one.py"]
fixtures = ["data.py"]

[one.questions]
Q1 = { points = 2, title = "f" }
Q2 = { points = 1, title = "why", manual = true }
Q3 = { points = 3, title = "the model" }

[one.calls]
Model = {}
g = { positional = 1, droppable = ["c"] }

[one.aliases]
width = ["w", "n_hidden"]

[two]
title = "Assignment two"
modules = ["shared"]
names = ["h"]

[two.questions]
"1.1" = { points = 4 }
"""

STARTER = {
    "shared.py": """
        import torch.nn as nn
        CONSTANT = 3
        def f(x, y=2.5, *, z=None): ...
        def h(a, b=(1, 2)): ...
        def _private(): ...
        class Model(nn.Module):
            def __init__(self, width=4, kind="a", dtype=torch.float32):
                super().__init__()
    """,
    "alone.py": """
        def g(data, b, c, *args, **kwargs): ...
    """,
}


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    (tmp_path / "assignments.toml").write_text(MANIFEST)
    (tmp_path / "starter").mkdir()
    for name, text in STARTER.items():
        (tmp_path / "starter" / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_questions_modules_names_and_data(repo_root):
    repo = assignments.load(repo_root)
    assert repo.ids == ("one", "two")
    one = repo.get("one")
    assert [q.id for q in one.questions] == ["Q1", "Q2", "Q3"]
    assert (one.auto_points, one.manual_points) == (5, 1)
    assert one.modules == {"shared": ("f", "Model"), "alone": ("g",)}
    assert repo.modules() == {"shared": ("f", "Model", "h"), "alone": ("g",)}
    assert repo.name_to_module() == {"f": "shared", "Model": "shared", "h": "shared", "g": "alone"}
    assert repo.only("two").modules() == {"shared": ("h",)}
    data = assignments.assignment_data(repo_root, "one")
    assert data["modules"] == {"shared": ["f", "Model"], "alone": ["g"]}
    assert data["graders"] == ["test_one.py", "_one.py"] and data["fixtures"] == ["data.py"]
    assert data["auto_points"] == 5 and data["questions"][1] == {
        "id": "Q2",
        "points": 1,
        "title": "why",
        "manual": True,
    }


def test_signatures_come_from_the_template(repo_root):
    calls = assignments.load(repo_root).calls()
    model = calls["Model"]
    assert [(p.name, p.default) for p in model[:2]] == [("width", 4), ("kind", "a")]
    assert repr(model[2].default) == "torch.float32"  # not a literal: its source text
    assert calls["g"] == (
        HandoutParameter("data", REQUIRED, positional=True),
        HandoutParameter("b", REQUIRED),
        HandoutParameter("c", REQUIRED, droppable=True),
    )
    assert assignments.load(repo_root).call_aliases() == {"Model": {"width": ("w", "n_hidden")}, "g": {}}


def test_an_unknown_id_lists_the_known_ones(repo_root):
    with pytest.raises(UnknownAssignment, match=r"unknown assignment 'three'.*known: one, two"):
        assignments.load(repo_root).get("three")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('names = ["h"]', 'names = ["h", "nowhere"]'),
            r"\[two\] names 'nowhere', which no module of its",
        ),
        (('modules = ["shared"]', 'modules = ["missing"]'), r"cannot read the template module .*missing.py"),
        (("Model = {}", "f2 = {}"), r"calls.f2: 'f2' is not one of its names"),
        (('"1.1" = { points = 4 }', '"1.1" = { pts = 4 }'), r"question '1.1': write"),
        (('title = "Assignment two"', 'titel = "x"'), r"\[two\] has unknown keys \['titel'\]"),
        (("[one.aliases]", "[one.aliases"), r"assignments.toml"),
    ],
)
def test_a_malformed_manifest_says_where(repo_root, edit, message):
    path = repo_root / "assignments.toml"
    path.write_text(path.read_text().replace(*edit))
    with pytest.raises(ManifestError, match=message):
        assignments.load(repo_root)


def test_loading_is_cached_until_a_file_changes(repo_root):
    first = assignments.load(repo_root)
    assert assignments.load(repo_root) is first
    path = repo_root / "starter" / "shared.py"
    path.write_text(path.read_text().replace("def h(a, b=(1, 2))", "def h(a, b=(1, 2), c=0)"))
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert assignments.load(repo_root) is not first


def test_find_manifest_walks_up(repo_root):
    (repo_root / "graders").mkdir()
    assert assignments.find_manifest(None, repo_root / "graders") == repo_root / "assignments.toml"


def test_activate_and_restore():
    before = assignments.active()
    previous = assignments.activate(assignments.EMPTY)
    try:
        assert assignments.active() is assignments.EMPTY
    finally:
        assignments.restore(previous)
    assert assignments.active() is before


def test_the_repository_s_manifest_matches_the_graders_markers():
    """The manifest's points are the graders' (also checked at every collection): here by reading the
    markers of graders/ without importing them."""
    repo = assignments.load(ROOT)
    marked: dict[tuple[str, str], float] = {}
    for path in sorted((ROOT / "graders").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        constants = {
            t.id: ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("mark.points"):
                kw = {
                    k.arg: constants[k.value.id] if isinstance(k.value, ast.Name) else ast.literal_eval(k.value)
                    for k in node.keywords
                }
                points = node.args[0]
                value = constants[points.id] if isinstance(points, ast.Name) else ast.literal_eval(points)
                key = (kw.get("assignment", constants["ASSIGNMENT"]), kw["question"])
                marked[key] = marked.get(key, 0) + value
    declared = {(a.id, q.id): q.points for a in repo.assignments.values() for q in a.questions if not q.manual}
    assert marked == declared
    assert {a.id: a.auto_points for a in repo.assignments.values()} == {
        "shoes": 49,
        "uva-a2": 62,
        "eecs182": 16,
        "csc413-a4": 48,
    }


#: Modules of torchgrade/ that still name an assignment, each with why; everything else, checks/ and
#: probes/ included, names none (an assignment's own probes and checks live with its graders:
#: graders/_probes_<topic>.py, applied through their source, and the graders' private modules).
STILL_TO_MOVE: dict[str, str] = {}
#: torch's own namespaces: ``nn.LSTM`` is torch's layer, not an assignment's name.
TORCH_NAMESPACES = ("torch", "nn", "F")


def _torch_attribute(node: ast.Attribute) -> bool:
    root = node.value
    while isinstance(root, ast.Attribute):
        root = root.value
    return isinstance(root, ast.Name) and root.id in TORCH_NAMESPACES


def test_the_engine_names_no_assignment():
    """The engine knows no course: no assignment id, template module or public name of the manifest
    appears in torchgrade/'s code, its probes and checks included, but for :data:`STILL_TO_MOVE`
    (docstrings and comments may give examples; in strings only ids and public names count,
    ``answers`` being also a word; torch's own ``nn.LSTM`` is no assignment's)."""
    repo = assignments.load(ROOT)
    strings = set(repo.ids) | set(repo.name_to_module())
    words = strings | set(repo.modules())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in STILL_TO_MOVE:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                hits = strings & set(re.findall(r"(?<![.\w])[A-Za-z_][\w-]*", node.value))
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {sorted(hits)}" for _ in [0] if hits]
            elif isinstance(node, ast.Name | ast.Attribute) and not (
                isinstance(node, ast.Attribute) and _torch_attribute(node)
            ):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if name in words:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []
    assert all((PACKAGE / rel).is_file() for rel in STILL_TO_MOVE), "a module moved: take it off STILL_TO_MOVE"


def test_the_gradebook_gives_a_subtotal_per_assignment_when_there_are_several():
    from torchgrade.reporting import gradebook

    def fake(red: float, blue: float) -> dict:
        return {
            "score": red + blue,
            "max_score": 6,
            "pending_max_score": 1,
            "harness_errors": 0,
            "notes": [],
            "questions": [
                {"assignment": "red", "id": "R1", "score": red, "max_score": 2, "manual": False},
                {"assignment": "red", "id": "R2", "score": None, "max_score": 1, "manual": True},
                {"assignment": "blue", "id": "B1", "score": blue, "max_score": 4, "manual": False},
            ],
            "checks": [],
        }

    header, rows = gradebook.rows({"x": fake(2, 1), "y": fake(0, 4)})
    assert header == [
        "submission", "red:R1", "red:R2", "blue:B1", "total:red", "total:blue", "total", "max", "pending_max", "status",
        "reason",
    ]  # fmt: skip
    assert rows == [
        ["x", "2", "", "1", "2", "1", "3", "6", "1", "graded", ""],
        ["y", "0", "", "4", "0", "4", "4", "6", "1", "graded", ""],
    ]
    one, _ = gradebook.rows({"x": {**fake(2, 1), "questions": fake(2, 1)["questions"][:2]}})
    assert "total:red" not in one  # one assignment: its total is the total
