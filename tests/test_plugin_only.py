"""``--only ID`` and the manifest in a pytest run, end to end: two assignments sharing a grader module."""

from __future__ import annotations

import json

import pytest

from torchgrade.reporting import report

MANIFEST = """
[red]
title = "The red one"
modules = ["shared"]
names = ["double"]
graders = ["test_shared.py", "test_red.py"]

[red.questions]
R1 = { points = 2, title = "doubling" }
R2 = { points = 1, title = "why", manual = true }
R3 = { points = 3, title = "more doubling" }

[blue]
title = "The blue one"
modules = ["shared"]
names = ["triple"]
graders = ["test_shared.py", "test_blue.py"]

[blue.questions]
B1 = { points = 4, title = "tripling" }
"""

SHARED = """
import pytest

ASSIGNMENT = "red"

@pytest.mark.points(2, question="R1")
def test_double(sub):
    assert sub.double(2) == 4

@pytest.mark.points(4, question="B1", assignment="blue")
def test_triple(sub, blue_data):
    assert sub.triple(blue_data) == 3 * blue_data
"""

RED = """
import pytest

ASSIGNMENT = "red"

@pytest.mark.points(1, question="R3")
def test_more(sub):
    assert sub.double(5) == 10

@pytest.mark.points(2, question="R3")
def test_even_more(sub):
    assert sub.double(-1) == -2
"""

BLUE = """
print("IMPORTING BLUE")
ASSIGNMENT = "blue"

def test_plain():
    pass
"""

CONFTEST = """
import pytest

pytest_plugins = ["torchgrade.engine.plugin"]

@pytest.fixture(scope="session")
def blue_data():
    print("BUILDING BLUE DATA")
    return 7
"""


@pytest.fixture
def repo(pytester: pytest.Pytester):
    pytester.makefile(".toml", assignments=MANIFEST)
    (pytester.path / "student_template").mkdir()
    stubs = "def double(x):\n    ...\n\ndef triple(x):\n    ...\n"
    (pytester.path / "student_template" / "shared.py").write_text(stubs)
    (pytester.path / "sub").mkdir()
    code = "def double(x):\n    return 2 * x\n\ndef triple(x):\n    return 3 * x\n"
    (pytester.path / "sub" / "shared.py").write_text(code)
    graders = pytester.path / "graders"
    graders.mkdir()
    (graders / "conftest.py").write_text(CONFTEST)
    (graders / "test_shared.py").write_text(SHARED)
    (graders / "test_red.py").write_text(RED)
    (graders / "test_blue.py").write_text(BLUE)
    return pytester


def run(repo: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = repo.runpytest_subprocess("graders", "--submission=sub", "--report=out.json", "-s", *args)
    path = repo.path / "out.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if data:
        report.validate(data)
    return result, data


def test_only_grades_one_assignment_of_a_shared_module(repo):
    result, data = run(repo, "--only", "red")
    assert result.ret == 0
    assert sorted(c["id"].split("::")[-1] for c in data["checks"]) == ["test_double", "test_even_more", "test_more"]
    assert (data["score"], data["max_score"], data["pending_max_score"], data["only"]) == (5, 5, 1, "red")
    assert [q["id"] for q in data["questions"]] == ["R1", "R2", "R3"]  # the manifest's order
    assert data["questions"][0]["title"] == "doubling"
    assert data["assignments"] == [
        {
            "id": "red",
            "title": "The red one",
            "score": 5,
            "max_score": 5,
            "pending_max_score": 1,
            "complete": True,
            "declared_max_score": 5,
        }
    ]
    assert "BUILDING BLUE DATA" not in result.stdout.str()  # the other assignment's fixture is never built
    assert "IMPORTING BLUE" not in result.stdout.str()  # nor its own grader module imported
    result.stdout.fnmatch_lines(["*torchgrade: red (The red one): *sub*", " total: 5 / 5 auto-graded points*"])


def test_without_only_each_assignment_has_its_subtotal(repo):
    result, data = run(repo)
    assert "IMPORTING BLUE" in result.stdout.str()
    assert (data["score"], data["max_score"], data["complete"]) == (9, 9, True)
    assert [(a["id"], a["score"], a["max_score"]) for a in data["assignments"]] == [("red", 5, 5), ("blue", 4, 4)]
    result.stdout.fnmatch_lines(
        [
            " subtotal red: 5 / 5; 1 pending (The red one)",
            " subtotal blue: 4 / 4 (The blue one)",
            " total: 9 / 9 auto-graded points; 1 points pending TA review",
        ]
    )


def test_a_selection_is_not_called_a_total(repo):
    result, data = run(repo, "--only", "red", "-k", "double")
    assert (data["score"], data["max_score"], data["complete"]) == (2, 2, False)
    assert data["assignments"][0]["complete"] is False
    result.stdout.fnmatch_lines(["*selected checks: 2 / 2 auto-graded points*not the total of red (5 points)"])
    assert " total: " not in result.stdout.str()


def test_an_unknown_id_lists_the_known_ones(repo):
    result, _ = run(repo, "--only", "green")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown assignment 'green' in *assignments.toml; known: blue, red*"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("R3 = { points = 3", "R3 = { points = 4"),
            "*red.questions? gives R3 4 points, but its checks' points markers add up to 3*test_more (1)*",
        ),
        (('R1 = { points = 2, title = "doubling" }\n', ""), "*test_double: its points marker names question 'R1'*"),
        (("R2 = { points = 1", "R2 = { points = 2"), None),  # manual points are the manifest's: no MANUAL here
    ],
)
def test_the_manifest_and_the_markers_agree(repo, edit, message):
    path = repo.path / "assignments.toml"
    path.write_text(path.read_text().replace(*edit))
    result, data = run(repo)
    if message is None:
        assert result.ret == 0 and data["pending_max_score"] == 2
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])


def test_without_a_manifest_only_selects_by_the_checks_assignments(repo):
    (repo.path / "assignments.toml").unlink()
    result, data = run(repo, "--only", "blue")
    assert result.ret == 0 and data["only"] == "blue" and [a["id"] for a in data["assignments"]] == ["blue"]
    assert "declared_max_score" not in data["assignments"][0]
    result, _ = run(repo, "--only", "green")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown assignment 'green'; known: blue, red*"])
