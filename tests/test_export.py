"""``torchgrade export``: Gradescope's results.json and the Markdown score table, from real reports
(a buggy sample graded on a cheap selection that still has partial credit and manual questions) and
from hand-built ones for what cheap gradings do not produce (hidden checks, harness errors, evidence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import samples
from torchgrade.engine.results import MSG_HARNESS_ERROR
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import cli, grading
from torchgrade.reporting import export, report

ROOT = Path(__file__).resolve().parents[1]
#: Every check of graders/test_answers.py and one of test_shoes.py, which brings the shoe
#: assignment's manual questions into the report; about 8 s.
SELECTION = ("-k", "answers or test_generate_same_pair")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """fc1_formula graded on SELECTION: it keeps 1 of Q3d's 3 points (partial credit)."""
    tmp = tmp_path_factory.mktemp("export")
    folder = samples.materialise(samples.load("fc1_formula"), tmp)
    code, data = grading.grade(
        folder, assignment=ROOT, isolation="none", report=tmp / "report.json", extra_args=SELECTION
    )
    assert code == grading.EXIT_FAILED and data is not None, code
    return tmp / "report.json", data


def test_real_report_exports_valid_results_with_the_same_totals(graded, tmp_path):
    report_path, data = graded
    out = tmp_path / "results.json"
    assert cli.main(["export", "gradescope", str(report_path), "--out", str(out)]) == grading.EXIT_OK
    results = json.loads(out.read_text())
    export.validate_gradescope(results)

    scored = [t for t in results["tests"] if "score" in t]
    assert results["score"] == data["score"] == sum(t["score"] for t in scored)
    assert sum(t["max_score"] for t in scored) == data["max_score"]
    assert results["extra_data"]["torchgrade"]["pending_max_score"] == data["pending_max_score"] > 0
    assert [t["name"].split(": ")[-1] for t in scored] == [c["id"].split("::")[-1] for c in data["checks"]]

    by_check = {t["name"]: t for t in scored}
    partial = by_check["shoes Q3d: test_param_counts"]
    assert (partial["score"], partial["max_score"], partial["status"]) == (1, 3, "failed")
    message = next(c["message"] for c in data["checks"] if c["id"].endswith("::test_param_counts"))
    assert partial["output"].startswith(message)
    assert "Reproduce: pytest graders/test_answers.py::test_param_counts" in partial["output"]
    assert "  ok cnn_channel_param_count(n, k): 1 / 1" in partial["output"]
    passed = by_check["shoes Q2a: test_conv1d_forward"]
    assert passed["status"] == "passed" and passed["output"].startswith("Passed: 2 / 2 points.")
    assert all(t["visibility"] == "visible" for t in results["tests"])


def test_manual_questions_are_pending_tests_without_points(graded):
    _, data = graded
    results = export.to_gradescope(data)
    manual = [t for t in results["tests"] if "manual" in t["tags"]]
    pending = [q for q in data["questions"] if q["manual"]]
    assert len(manual) == len(pending) > 0
    assert all("score" not in t and "max_score" not in t and "status" not in t for t in manual)
    q1a = next(t for t in manual if t["name"].startswith("shoes Q1a: "))
    assert q1a["output"] == export.MSG_PENDING.format(points=1)
    assert f"{data['pending_max_score']:g} points in all" in results["output"]
    assert results["output"].startswith(f"Auto-graded: {data['score']:g} / {data['max_score']:g} points.")


def test_markdown_table_lists_failing_checks_and_the_total(graded):
    _, data = graded
    text = export.to_markdown(data)
    assert "| shoes | Q3d | 1 / 3 | test_param_counts: " in text
    assert "| shoes | Q1a | pending TA review (1) | |" in text
    percent = 100 * data["score"] / data["max_score"]
    assert data["complete"] is False  # a -k selection: its sum is not called the assignment's total
    assert text.splitlines()[-1] == (
        f"torchgrade score: {data['score']:g} / {data['max_score']:g} ({percent:.2f}%)"
        " for the selected checks only, not the assignment's total"
    )


# -- hand-built reports ----------------------------------------------------------------------------------
HARNESS_ERROR = MSG_HARNESS_ERROR.format(type="KeyError", error="'x'")


def hand_built_report() -> dict:
    check = report.CheckResult
    checks = [
        check(
            "graders/test_x.py::test_visible",
            "shoes",
            "Q1",
            0,
            2,
            "failed",
            "f(1) returned 3; expected 2.",
            0.1,
            data={"accuracy": 0.4567891, "curve": [i / 10 for i in range(50)]},
        ),
        check("graders/test_x.py::test_broken", "shoes", "Q2", 0, 1, "error", HARNESS_ERROR, 0.1),
        check("graders/hidden/test_x_hidden.py::test_secret", "shoes", "Q1", 0, 3, "failed", "g(2) returned 5.", 0.2),
        check("graders/hidden/test_x_hidden.py::test_secret_ok", "shoes", "Q3", 4, 4, "passed", "", 0.2),
    ]
    questions = report.summarise_questions(checks, {("shoes", "Q9"): (2.0, "explain")})
    return report.Report(
        submission="sub",
        isolation="process",
        versions={"torchgrade": "0", "torch": "2", "python": "3"},
        started_at="2026-11-23T01:00:00+00:00",
        finished_at="2026-11-23T01:00:41+00:00",
        score=4,
        max_score=10,
        pending_max_score=2,
        harness_errors=1,
        questions=tuple(questions),
        checks=tuple(checks),
        notes=("CNN: called as CNN() (no n)",),
    ).to_json()


def test_hidden_checks_are_shown_after_publication_and_never_reveal_the_total():
    data = hand_built_report()
    report.validate(data)
    results = export.to_gradescope(data)
    export.validate_gradescope(results)
    tests = {t["name"]: t for t in results["tests"]}
    secret = tests["shoes Q1: test_secret"]
    assert secret["visibility"] == "after_published" and "hidden" in secret["tags"]
    assert "Reproduce" not in secret["output"]  # students do not have graders/hidden/
    assert tests["shoes Q1: test_visible"]["visibility"] == "visible"
    assert results["score"] == 4 and results["execution_time"] == 41
    assert results["output"].splitlines()[0] == export.MSG_HIDDEN_TOTAL.format(score=0, max_score=3, count=2)
    assert "4 / 10" not in results["output"]
    never = export.to_gradescope(data, hidden_visibility="hidden")
    assert {t["visibility"] for t in never["tests"] if "hidden" in t["tags"]} == {"hidden"}


def test_errors_adaptations_and_evidence_are_in_the_output():
    results = export.to_gradescope(hand_built_report())
    tests = {t["name"]: t for t in results["tests"]}
    broken = tests["shoes Q2: test_broken"]
    assert broken["status"] == "failed" and broken["output"].startswith(HARNESS_ERROR)
    assert "1 check(s) hit a torchgrade error" in results["output"]
    assert "Adapted: CNN: called as CNN() (no n)" in results["output"]
    assert results["extra_data"]["torchgrade"]["harness_errors"] == 1
    visible = tests["shoes Q1: test_visible"]["output"].splitlines()
    assert visible[visible.index("Measurements:") + 1 :] == [
        "  accuracy: 0.4568",
        "  curve: 50 values, min 0, mean 2.45, max 4.9",
        "Reproduce: pytest graders/test_x.py::test_visible",
    ]
    # A report of one assignment (--only): the student's command collects that assignment alone too.
    one = export.to_gradescope({**hand_built_report(), "only": "shoes"})
    visible = next(t for t in one["tests"] if t["name"] == "shoes Q1: test_visible")
    assert visible["output"].endswith("Reproduce: pytest graders/test_x.py::test_visible --only=shoes")


def test_a_notebook_submission_says_what_was_left_out():
    data = hand_built_report()
    data["extraction"] = {
        "source": "hw2.ipynb",
        "kind": "notebook",
        "modules": ["shoes"],
        "defined": ["CNN"],
        "dropped": [
            {
                "cell": 3,
                "lines": [1, 2],
                "excerpt": "drive.mount('/content/drive')\n",
                "reason": "Colab only",
                "names": [],
            },
            {
                "cell": 7,
                "lines": [1, 9],
                "excerpt": "for k in (3, 5):\n    train()",
                "reason": "runs training on import",
                "names": ["model"],
            },
        ],
    }
    report.validate(data)
    output = export.to_gradescope(data)["output"].splitlines()
    start = output.index("Graded hw2.ipynb (notebook) as shoes.")
    assert output[start + 1 : start + 4] == [
        "Left out of grading (2):",
        "  cell 3, lines 1-2: \"drive.mount('/content/drive')\": Colab only",
        "  cell 7, lines 1-9: 'for k in (3, 5):': runs training on import (would define model)",
    ]
    assert "Left out of grading (2):" in export.to_markdown(data)


def test_the_schema_rejects_what_gradescope_would_misread():
    with pytest.raises(TorchgradeError, match=r"at tests/0/visibility: 'public' is not one of"):
        export.validate_gradescope({"score": 1, "tests": [{"name": "x", "visibility": "public"}]})
    with pytest.raises(TorchgradeError, match=r"at tests/0: 'score' is a required property"):  # none at the top
        export.validate_gradescope({"tests": [{"name": "x", "max_score": 1}]})
    with pytest.raises(TorchgradeError, match=r"'points' was unexpected"):
        export.validate_gradescope({"score": 1, "tests": [{"points": 1}]})
    export.validate_gradescope({"tests": [{"score": 1, "max_score": 1, "status": "passed"}]})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        ('{"score": 1}', "is not a valid torchgrade report"),
    ],
)
def test_a_bad_report_is_a_usage_error(tmp_path, capsys, content, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["export", "gradescope", str(path), "--out", str(tmp_path / "r.json")]) == grading.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
