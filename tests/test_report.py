"""The report schema: what validates, what does not, and the exact message."""

from __future__ import annotations

import json

import pytest

from torchgrade.errors import TorchgradeError
from torchgrade.reporting import report


def minimal_report(**overrides) -> report.Report:
    check = report.CheckResult(
        id="graders/test_x.py::test_a",
        assignment="shoes",
        question="Q1b",
        points=1.5,
        max_points=4,
        outcome="failed",
        message="m",
        duration=0.1,
        parts=(report.PartResult("a", 1.5, 2), report.PartResult("b", 0, 2, "why")),
    )
    fields = dict(
        submission="sub",
        isolation="none",
        versions={"torchgrade": "0", "torch": "2", "python": "3"},
        started_at="2026-11-23T01:00:00+00:00",
        finished_at="2026-11-23T01:00:05+00:00",
        score=1.5,
        max_score=4,
        pending_max_score=1,
        harness_errors=0,
        questions=tuple(report.summarise_questions([check], {("shoes", "Q1a"): (1.0, "why")})),
        checks=(check,),
    )
    fields.update(overrides)
    return report.Report(**fields)


def test_a_report_validates_and_round_trips(tmp_path):
    path = report.write(minimal_report(), tmp_path / "r.json")
    data = json.loads(path.read_text())
    report.validate(data)
    assert [q["id"] for q in data["questions"]] == ["Q1a", "Q1b"]
    assert data["questions"][0] == {
        "assignment": "shoes",
        "id": "Q1a",
        "score": None,
        "max_score": 1.0,
        "manual": True,
        "status": "pending",
        "title": "why",
    }
    assert data["checks"][0]["parts"][1] == {"name": "b", "points": 0, "max_points": 2, "message": "why"}


def test_an_invalid_report_names_the_field(tmp_path):
    with pytest.raises(TorchgradeError, match=r"at checks/0/outcome: 'maybe' is not one of"):
        report.write(
            minimal_report(checks=(report.CheckResult("x", "shoes", "Q1b", 0, 1, "maybe", "", 0.0),)),
            tmp_path / "r.json",
        )
    assert not (tmp_path / "r.json").exists()


def test_questions_sort_numerically():
    checks = [
        report.CheckResult(f"t{i}", "a", q, 1, 1, "passed", "", 0.0) for i, q in enumerate(["Q10a", "Q2b", "Q2a"])
    ]
    assert [q.id for q in report.summarise_questions(checks, {})] == ["Q2a", "Q2b", "Q10a"]
