"""``--only ID`` in the command line: grade, check, demo, batch and export pass it through (or filter the
report by it), and an unknown id is a usage error listing the known ones. Gradings are replaced here:
what reaches pytest is checked, and ``pytest graders --only`` itself in tests/test_plugin_only.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchgrade import assignments
from torchgrade.instructor import cli, grading
from torchgrade.reporting import export, report

ROOT = Path(__file__).resolve().parents[1]
KNOWN = "known: csc413-a4, eecs182, shoes, uva-a2"


def test_grade_passes_only_to_pytest(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "grade", lambda folder, **options: calls.append(options) or (0, None))
    assert cli.main(["--assignment", str(ROOT), "grade", str(tmp_path), "--only", "shoes"]) == grading.EXIT_OK
    assert calls[0]["extra_args"] == ("--only", "shoes")


@pytest.mark.parametrize(
    "argv",
    [
        ["grade", ".", "--only", "nope"],
        ["check", str(ROOT), "--only", "nope"],
        ["demo", "--only", "nope"],
        ["batch", ".", "--out", "out", "--only", "nope"],
    ],
    ids=["grade", "check", "demo", "batch"],
)
def test_an_unknown_id_is_a_usage_error_listing_the_known_ones(monkeypatch, capsys, argv):
    monkeypatch.setattr(grading, "grade", lambda *a, **k: pytest.fail("graded despite a usage error"))
    assert cli.main(["--assignment", str(ROOT), *argv]) == grading.EXIT_USAGE
    assert f"unknown assignment 'nope' in {ROOT / 'assignments.toml'}; {KNOWN}" in capsys.readouterr().err


def fake_grading(calls: list):
    def fake_grade(folder, *, assignment, isolation, report, extra_args=(), **options):
        calls.append((folder.name, extra_args))
        return grading.EXIT_OK, {"score": 1, "max_score": 1, "harness_errors": 0, "questions": [], "checks": []}

    return fake_grade


def test_check_grades_the_samples_of_one_assignment_with_its_checks(monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(grading, "grade", fake_grading(calls))
    cli.main(["check", str(ROOT), "--only", "eecs182", "--jobs", "1", "--fresh"])
    names = [name for name, _ in calls]
    questions = {q.id for q in assignments.load(ROOT).get("eecs182").questions}
    from fixtures import samples

    for name in names:
        sample = samples.load(name)
        assert sample.lost is None or name == "reference" or set(sample.lost) & questions or not sample.lost
    assert {"reference", "template"} <= set(names)
    assert "fc1_formula" not in names  # a shoe bug
    assert all(extra[:2] == ("--only", "eecs182") for _, extra in calls)


def test_demo_with_only_grades_its_samples_only(monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(grading, "grade", fake_grading(calls))
    assert cli.main(["--assignment", str(ROOT), "demo", "--only", "uva-a2", "--fresh"]) == grading.EXIT_OK
    assert [name for name, _ in calls] == ["reference", "template"]  # the demo's bugs are the shoes'
    assert all(extra == ("--only", "uva-a2") for _, extra in calls)


# -- export ---------------------------------------------------------------------------------------------
def two_assignment_report() -> dict:
    def check(assignment, question, points, max_points):
        outcome = "passed" if points == max_points else "failed"
        return report.CheckResult(
            f"graders/t.py::test_{question}", assignment, question, points, max_points, outcome, "", 0.1
        )

    checks = [check("red", "R1", 2, 2), check("red", "R2", 0, 3), check("blue", "B1", 4, 4)]
    questions = report.summarise_questions(checks, {("red", "R9"): (1.0, "why")})
    result = report.Report(
        submission="sub",
        isolation="none",
        versions={"torchgrade": "0", "torch": "0", "python": "3"},
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:05+00:00",
        score=6,
        max_score=9,
        pending_max_score=1,
        harness_errors=0,
        questions=tuple(questions),
        checks=tuple(checks),
        assignments=(
            report.AssignmentResult("red", "Red", 2, 5, 1, True, 5),
            report.AssignmentResult("blue", "Blue", 4, 4, 0, True, 4),
        ),
    )
    data = result.to_json()
    report.validate(data)
    return data


def test_export_only_keeps_one_assignment_and_its_total(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(two_assignment_report()))
    out = tmp_path / "results.json"
    argv = ["export", "gradescope", str(path), "--out", str(out), "--only", "red"]
    assert cli.main(argv) == grading.EXIT_OK
    results = json.loads(out.read_text())
    export.validate_gradescope(results)
    assert results["score"] == 2 and results["extra_data"]["torchgrade"]["max_score"] == 5
    assert {t["name"].split(":")[0] for t in results["tests"]} == {"red R1", "red R2", "red R9"}
    assert cli.main(["export", "markdown", str(path), "--only", "red"]) == grading.EXIT_OK
    text = capsys.readouterr().out
    assert "torchgrade score (red): 2 / 5" in text and "| blue |" not in text
    assert cli.main(["export", "markdown", str(path)]) == grading.EXIT_OK
    assert "- red: 2 / 5\n- blue: 4 / 4" in capsys.readouterr().out
    assert cli.main(["export", "markdown", str(path), "--only", "green"]) == grading.EXIT_USAGE
    assert "the report grades no assignment 'green'; it grades: red, blue" in capsys.readouterr().err


def test_a_command_whose_extra_is_not_installed_names_the_extra(monkeypatch, capsys):
    """The core install leaves out Dask and rich: a command that needs them says which extra to install
    instead of a bare ModuleNotFoundError."""

    def without_dask(args):
        raise ModuleNotFoundError("No module named 'distributed'", name="distributed")

    monkeypatch.setattr(cli, "_cmd_demo", without_dask)
    assert cli.main(["demo"]) == grading.EXIT_USAGE
    assert "python -m pip install 'torchgrade[batch]'" in capsys.readouterr().err
