"""The pytest plugin end to end, in a subprocess: points, parts, manual questions, the score
table, the report, and the line between a student's failure and a harness error."""

from __future__ import annotations

import json
import textwrap

import pytest

from torchgrade.engine import plugin
from torchgrade.reporting import report

GRADER = """
import pytest
from torchgrade.errors import CheckFailure

ASSIGNMENT = "toy"
MANUAL = {"Q9": (2, "explain")}

@pytest.mark.points(2, question="Q1")
def test_passes(sub):
    assert sub.double(3) == 6

@pytest.mark.points(3, question="Q2")
def test_parts(sub, parts):
    with parts.part(1, "small"):
        assert sub.double(1) == 2
    with parts.part(2, "negative"):
        got = sub.double(-4)
        if got != -8:
            raise CheckFailure(f"double(-4) returned {got}; expected -8.")

@pytest.mark.points(1, question="Q2")
def test_student_crash(sub):
    sub.crash()

@pytest.mark.points(1, question="Q3")
def test_not_implemented(sub):
    sub.todo()

@pytest.mark.points(1, question="Q3", assignment="other")
def test_missing(sub):
    sub.nowhere()

def test_without_points():
    pass
"""

SUBMISSION = """
def double(x):
    return 2 * abs(x)

def crash():
    return {}["key"]

def todo():
    raise NotImplementedError
"""


@pytest.fixture
def assignment(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(test_toy=GRADER)
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "toy.py").write_text(textwrap.dedent(SUBMISSION))
    return pytester


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_points_parts_and_report(assignment, isolation):
    result = assignment.runpytest_subprocess("--submission=sub", f"--isolation={isolation}", "--report=out.json")
    assert result.ret == 1
    data = json.loads((assignment.path / "out.json").read_text())
    report.validate(data)
    checks = {c["id"].split("::")[-1]: c for c in data["checks"]}
    assert "test_without_points" not in checks
    assert checks["test_passes"]["outcome"] == "passed" and checks["test_passes"]["points"] == 2
    parts = checks["test_parts"]
    assert (parts["outcome"], parts["points"], parts["max_points"]) == ("failed", 1, 3)
    assert parts["message"].startswith("1 of 2 parts failed (1 points kept); [negative: 0/2] double(-4) returned 8")
    assert [p["points"] for p in parts["parts"]] == [1, 0]
    assert checks["test_student_crash"]["message"].startswith("crash() raised KeyError: 'key'")
    assert 'File "toy.py", line 6, in crash' in checks["test_student_crash"]["message"]
    assert checks["test_not_implemented"]["message"] == "todo() is not implemented yet (it raises NotImplementedError)."
    assert checks["test_missing"]["message"] == (
        "the submission has no `nowhere`: none of its modules defines it (modules: toy.py)."
    )
    assert {(q["assignment"], q["id"]): (q["score"], q["max_score"], q["status"]) for q in data["questions"]} == {
        ("toy", "Q1"): (2, 2, "graded"),
        ("toy", "Q2"): (1, 4, "graded"),
        ("toy", "Q3"): (0, 1, "graded"),
        ("other", "Q3"): (0, 1, "graded"),
        ("toy", "Q9"): (None, 2, "pending"),
    }
    assert (data["score"], data["max_score"], data["pending_max_score"], data["harness_errors"]) == (3, 8, 2, 0)
    assert data["isolation"] == isolation
    # Starting the worker and loading the submission is stated apart, not in the first check's time.
    assert data["worker_startup"]["starts"] == 1
    if isolation == "process":  # a process that imports torch: far longer than doubling 3
        assert checks["test_passes"]["duration"] < data["worker_startup"]["seconds"]
    result.stdout.fnmatch_lines(
        [f"Reproduce: pytest test_toy.py::test_parts --submission=*sub --isolation={isolation}"]
    )
    result.stdout.fnmatch_lines(
        [
            f"*torchgrade: *sub ({isolation} isolation)*",
            " ok toy * Q1 * 2 / 2*",
            " -- toy * Q2 * 1 / 4*",
            "      test_parts: failed, see its failure above",
            "      test_student_crash: failed, see its failure above",
            " pending TA review: Q9 (2)",
            " total: 3 / 8 auto-graded points; 2 points pending TA review",
        ]
    )


def test_each_failure_message_is_printed_once(assignment):
    """pytest's failure section gives the message and the command that reproduces it; the short
    summary and the score table name the check only (issue 19)."""
    result = assignment.runpytest_subprocess("--submission=sub", "--report=out.json", "-ra")
    out = result.stdout.str()
    assert out.count("double(-4) returned 8") == 1, out
    assert out.count("crash() raised KeyError: 'key'") == 1, out
    assert out.count("Reproduce: pytest test_toy.py::test_parts --submission=") == 1
    result.stdout.fnmatch_lines(["FAILED test_toy.py::test_parts", "FAILED test_toy.py::test_student_crash"])
    # Without failure sections (``--tb=no``, as ``torchgrade grade`` runs), the table gives the messages.
    quiet = assignment.runpytest_subprocess("--submission=sub", "--report=out.json", "--tb=no", "-rN")
    quiet.stdout.fnmatch_lines(["      test_parts: 1 of 2 parts failed (1 points kept); ?negative: 0/2? double(-4)*"])
    assert quiet.stdout.str().count("double(-4) returned 8") == 1


def test_parts_with_one_message_share_a_line():
    from torchgrade.engine.parts import Parts, parts_message

    parts = Parts()
    for name, points in (("a", 1), ("b", 2), ("c", 1)):
        with parts.part(points, name):
            if name != "c":
                raise AssertionError("f() is not implemented yet")
    assert parts_message(parts) == "2 of 3 parts failed (1 points kept); [a: 0/1; b: 0/2] f() is not implemented yet"


FIXTURE_GRADER = """
import pytest
from torchgrade.errors import CheckFailure

ASSIGNMENT = "toy"

@pytest.fixture
def trained(sub):
    return sub.todo()

@pytest.fixture
def broken():
    return {}["oops"]

@pytest.mark.points(2, question="Q1")
def test_uses_unimplemented(trained):
    assert trained

@pytest.mark.points(1, question="Q2")
def test_harness_bug(broken):
    pass
"""


def test_a_student_failure_in_a_fixture_is_the_checks_failure(pytester: pytest.Pytester):
    """NotImplementedError reached in a fixture: the check fails (not a pytest error) with the student's
    message; a grader bug in a fixture stays an error and the run exits 3."""
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(test_toy=FIXTURE_GRADER)
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "toy.py").write_text(textwrap.dedent(SUBMISSION))
    result = pytester.runpytest_subprocess("--submission=sub", "--report=out.json", "-k", "unimplemented")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, errors=0)
    [check] = json.loads((pytester.path / "out.json").read_text())["checks"]
    assert (check["outcome"], check["points"]) == ("failed", 0)
    assert check["message"] == "todo() is not implemented yet (it raises NotImplementedError)."
    result.stdout.fnmatch_lines(["*= FAILURES =*", "todo() is not implemented yet*", "Reproduce: pytest *"])
    both = pytester.runpytest_subprocess("--submission=sub", "--report=out.json")
    assert both.ret == pytest.ExitCode.INTERNAL_ERROR
    both.assert_outcomes(failed=1, errors=1)
    checks = json.loads((pytester.path / "out.json").read_text())["checks"]
    outcomes = {c["id"].split("::")[-1]: c["outcome"] for c in checks}
    assert outcomes == {"test_uses_unimplemented": "failed", "test_harness_bug": "error"}


def test_a_grader_bug_is_a_harness_error_not_a_zero(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(
        test_bug="""
import pytest
ASSIGNMENT = "toy"

@pytest.mark.points(1, question="Q1")
def test_grader_bug(sub):
    {}["oops"]
"""
    )
    (pytester.path / "sub").mkdir()
    result = pytester.runpytest_subprocess("--submission=sub", "--report=out.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    data = json.loads((pytester.path / "out.json").read_text())
    assert data["harness_errors"] == 1 and data["checks"][0]["outcome"] == "error"
    assert "torchgrade internal error (KeyError: 'oops'); this is not your fault" in data["checks"][0]["message"]
    result.stdout.fnmatch_lines(["*1 check(s) hit a torchgrade error: not the submission's fault.*"])


def test_a_missing_question_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.points(1)
def test_x():
    pass
"""
    )
    result = pytester.runpytest_subprocess("--submission=.")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*write @pytest.mark.points(N, question='Q3a')*"])


def test_deselected_checks_are_not_reported(assignment):
    assignment.runpytest_subprocess("--submission=sub", "--report=out.json", "-k", "passes")
    data = json.loads((assignment.path / "out.json").read_text())
    assert [c["id"].split("::")[-1] for c in data["checks"]] == ["test_passes"]


def test_a_hung_check_fails_with_a_timeout(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(
        test_hang="""
import pytest
ASSIGNMENT = "toy"

@pytest.mark.points(1, question="Q1")
@pytest.mark.timeout(10)
def test_hang(sub):
    sub.spin()

@pytest.mark.points(1, question="Q2")
def test_after(sub):
    assert sub.ok() == 1
"""
    )
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "toy.py").write_text(
        "def spin():\n    while True:\n        pass\n\ndef ok():\n    return 1\n"
    )
    pytester.runpytest_subprocess("--submission=sub", "--isolation=process", "--report=out.json")
    checks = json.loads((pytester.path / "out.json").read_text())["checks"]
    assert checks[0]["outcome"] == "failed"
    # Stopped by its budget of 10 CPU seconds, or by its 39 s backstop where load starves it of them.
    assert checks[0]["message"].startswith("spin() timed out")
    assert checks[1]["outcome"] == "passed"


def test_a_report_that_breaks_the_schema_is_still_written(assignment):
    """A torchgrade bug in the report must not lose the grades: written unvalidated, exit code 3."""
    assignment.makeconftest("""
import pytest
from torchgrade.reporting import report

pytest_plugins = ["torchgrade.engine.plugin"]

def pytest_configure(config):
    real = report.Report.to_json
    report.Report.to_json = lambda self: {**real(self), "unexpected": 1}
""")
    result = assignment.runpytest_subprocess("--submission=sub", "--report=out.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    data = json.loads((assignment.path / "out.json").read_text())
    assert data["score"] == 3 and data["unexpected"] == 1
    result.stdout.fnmatch_lines(["*torchgrade internal error: the report failed its schema check and was written*"])


EXAMPLE_CNN = """
import torch
from torch import nn


class CNN(nn.Module):
    def __init__(self, n=4, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv2d(3, n, kernel_size, padding=kernel_size // 2)
        self.fc = nn.Linear(n, {outputs})

    def forward(self, x):
        return self.fc(torch.amax(torch.relu(self.conv(x)), dim=(2, 3)))
"""


def plugin_example() -> str:
    """The example check of the plugin's docstring, as a grader module."""
    doc = plugin.__doc__
    example = doc[doc.index("::\n") + 3 :].split("\n\n")[0]
    return "import pytest\nimport torch\nfrom torchgrade.checks import shapes\n\nASSIGNMENT = 'shoes'\n\n" + (
        textwrap.dedent(example)
    )


@pytest.mark.parametrize(("outputs", "outcome"), [(2, "passed"), (100, "failed")])
def test_the_plugin_docstring_example_grades(pytester: pytest.Pytester, outputs: int, outcome: str):
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(test_example=plugin_example())
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "shoes.py").write_text(EXAMPLE_CNN.format(outputs=outputs))
    pytester.runpytest_subprocess("--submission=sub", "--report=out.json")
    [check] = json.loads((pytester.path / "out.json").read_text())["checks"]
    assert (check["id"], check["question"], check["max_points"]) == ("test_example.py::test_cnn_output_shape", "Q3a", 3)
    assert check["outcome"] == outcome
    if outcome == "failed":
        assert check["message"] == "CNN(n=4)(x[2, 3, 448, 224]) returned shape [2, 100]; expected [2, 2]."
