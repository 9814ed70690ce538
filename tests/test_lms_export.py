"""``torchgrade export canvas`` and ``export lms``: a batch's reports and a roster to an LMS's grade CSV.

Reports are built as JSON (valid under the schema) and written to a folder as a batch writes them, so
nothing is graded here. The Canvas file is read back as Canvas's importer reads it
(canvas-lms ``GradebookImporter``: ``Student`` and ``ID`` first, the student columns ending with
``Section``, a ``Points Possible`` row, headings ``Name (id)``, a blank cell left unchanged).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from torchgrade.instructor import cli, grading
from torchgrade.reporting import gradebook, lms, report, roster

ROSTER = (
    "name,student_id,email,canvas_id,sis_user_id,sis_login_id,section,github\n"
    "Ada Lovelace,s1,ada@uni.edu,101,SIS1,ada,L01,adalove\n"
    "Alan Turing,s2,alan@uni.edu,102,SIS2,alan,L01,aturing\n"
    "Grace Hopper,s3,grace@uni.edu,,,grace,L02,ghopper\n"
    "Edsger Dijkstra,s4,ed@uni.edu,104,SIS4,ed,L02,edsger\n"
)


def make_report(name: str, points: dict[str, float], *, status: str = "graded", reason: str = "") -> dict:
    """A valid report of submission ``name``: one auto-graded question per assignment worth 4 points,
    ``points`` earned on each, plus a manual question of the first assignment (never exported)."""
    questions = [
        {"assignment": a, "id": "Q1", "score": p, "max_score": 4.0, "manual": False, "status": "graded"}
        for a, p in points.items()
    ]
    first = next(iter(points))
    questions.append(
        {"assignment": first, "id": "Q9", "score": None, "max_score": 2.0, "manual": True, "status": "pending"}
    )
    checks = [
        {
            "id": f"graders/test_{a}.py::test_q1",
            "assignment": a,
            "question": "Q1",
            "points": p,
            "max_points": 4.0,
            "outcome": "passed" if p == 4 else "failed",
            "message": "",
            "duration": 0.1,
        }
        for a, p in points.items()
    ]
    data = {
        "schema_version": 1,
        "submission": f"/class/submissions/{name}",
        "isolation": "process",
        "versions": {"torchgrade": "0", "torch": "2", "python": "3.12"},
        "started_at": "2026-12-02T10:00:00+00:00",
        "finished_at": "2026-12-02T10:00:05+00:00",
        "score": sum(points.values()),
        "max_score": 4.0 * len(points),
        "pending_max_score": 2.0,
        "harness_errors": 0,
        "questions": questions,
        "checks": checks,
        "notes": [],
        "assignments": [
            {
                "id": a,
                "title": f"Homework {a}",
                "score": p,
                "max_score": 4.0,
                "pending_max_score": 0.0,
                "complete": True,
            }
            for a, p in points.items()
        ],
        "status": status,
        "reason": reason,
    }
    report.validate(data)
    return data


def batch_folder(tmp_path: Path, reports: list[dict]) -> Path:
    """A batch's --out folder: each report at <name>.json, beside the gradebook and summary."""
    out = tmp_path / "reports"
    out.mkdir()
    for data in reports:
        (out / f"{Path(data['submission']).name}.json").write_text(json.dumps(data))
    (out / "gradebook.csv").write_text("submission\n")
    return out


@pytest.fixture
def class_files(tmp_path):
    """Ada graded (3/4), Alan unreadable, Grace timed out, Edsger missing, and one stranger."""
    (tmp_path / "roster.csv").write_text(ROSTER)
    reports = [
        make_report("hw2-adalove", {"hw2": 3.0}),
        make_report("hw2-aturing.py", {"hw2": 0.0}, status="unreadable", reason="the file is empty"),
        make_report("hw2-ghopper", {"hw2": 0.0}, status="timed out", reason="stopped after 3600 s"),
        make_report("hw2-stranger", {"hw2": 4.0}),
    ]
    return batch_folder(tmp_path, reports), tmp_path / "roster.csv"


def export(argv: list[str]) -> int:
    """The export command as ``torchgrade`` dispatches it (no process is started)."""
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# -- Canvas -------------------------------------------------------------------------------------------
def test_canvas_csv_follows_canvas_import_format(class_files, tmp_path, capsys):
    out, roster_path = class_files
    target = tmp_path / "canvas.csv"
    code = export(
        ["export", "canvas", str(out), "--roster", str(roster_path), "--out", str(target), "--canvas-id", "777"]
    )
    assert code == grading.EXIT_OK
    header, possible, *rows = read_csv(target)
    # Canvas's importer: Student then ID, then SIS User ID and SIS Login ID, the last student column Section
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert header[5:] == ["Homework hw2 (777)"]  # Assignment.title_and_id reads the id in parentheses
    assert re.fullmatch(r"(.*)\s\((\d+)\)", header[5]).groups() == ("Homework hw2", "777")
    assert possible == ["Points Possible", "", "", "", "", "4"]  # manual questions are not in the maximum
    by_name = {row[0]: row for row in rows}
    assert list(by_name) == ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"]  # roster order
    assert by_name["Ada Lovelace"] == ["Ada Lovelace", "101", "SIS1", "ada", "L01", "3"]
    assert by_name["Alan Turing"][5] == "0"  # unreadable: an honest zero
    assert by_name["Grace Hopper"][1:] == ["", "", "grace", "L02", ""]  # timed out: blank, never a silent 0
    assert by_name["Edsger Dijkstra"][5] == ""  # missing: blank by default (Canvas keeps its grade)
    assert target.read_bytes().count(b"\r\n") == 6  # RFC 4180 line ends
    err = capsys.readouterr().err
    assert "Grace Hopper (s3): left blank: their submission hw2-ghopper is 'timed out'" in err
    assert "no submission from 1 of the roster's students (Edsger Dijkstra (s4))" in err
    assert "not exported, matching no student on the roster: 1 submission(s) (hw2-stranger)" in err
    assert "Canvas matches them by their exact name only" not in err  # everyone has an SIS login id


def test_canvas_missing_zero_and_headings_without_an_id(class_files, tmp_path):
    out, roster_path = class_files
    target = tmp_path / "canvas.csv"
    argv = ["export", "canvas", str(out), "--roster", str(roster_path), "--out", str(target), "--missing", "zero"]
    assert export(argv) == grading.EXIT_OK
    header, _, *rows = read_csv(target)
    assert header[5] == "Homework hw2"  # no id: Canvas matches the assignment by its exact title
    assert {row[0]: row[5] for row in rows}["Edsger Dijkstra"] == "0"


def test_canvas_one_column_per_assignment_and_only(tmp_path):
    (tmp_path / "roster.csv").write_text("name,submission\nAda,ada\nAlan,alan\n")
    out = batch_folder(
        tmp_path, [make_report("ada", {"a1": 4.0, "a2": 1.5}), make_report("alan", {"a1": 2.0, "a2": 0.25})]
    )
    data = lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv"))
    table = lms.canvas_rows(data, ["a1=11", "a2=22"])
    assert table[0][5:] == ["Homework a1 (11)", "Homework a2 (22)"]
    assert table[1][5:] == ["4", "4"]
    assert [row[5:] for row in table[2:]] == [["4", "1.5"], ["2", "0.25"]]
    only = lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv"), only="a2")
    assert lms.canvas_rows(only)[0][5:] == ["Homework a2"]
    with pytest.raises(lms.ExportInputError, match="no assignment 'a3'; they grade: a1, a2"):
        lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv"), only="a3")
    with pytest.raises(lms.ExportInputError, match="the reports grade 2 assignments"):
        lms.canvas_rows(data, ["11"])
    with pytest.raises(lms.ExportInputError, match="NUMBER is the id"):
        lms.canvas_rows(data, ["a1=eleven"])


def test_a_title_canvas_would_read_as_an_id_needs_the_real_id():
    columns = [lms.Assignment("hw", "Homework (2)", 4.0)]
    with pytest.raises(
        lms.ExportInputError, match=r"Canvas would read it as one; give its real id with --canvas-id hw"
    ):
        lms.canvas_headings(columns)
    assert lms.canvas_headings(columns, ["hw=5"]) == ["Homework (2) (5)"]


def test_two_submissions_of_one_student_are_left_blank_with_a_warning(tmp_path):
    (tmp_path / "roster.csv").write_text("name,github\nAda,adalove\n")
    out = batch_folder(tmp_path, [make_report("hw1-adalove", {"a": 4.0}), make_report("hw2-adalove", {"a": 1.0})])
    data = lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv"))
    assert data.rows[0].points == {"a": None} and data.rows[0].status == lms.STATUS_SEVERAL
    assert "Ada: left blank: 2 submissions (hw1-adalove, hw2-adalove)" in data.warnings[0]


def test_cells_are_safe_from_csv_injection(tmp_path):
    (tmp_path / "roster.csv").write_text('name,submission,section\n"=HYPERLINK(""http://x"")",x,@L1\n')
    out = batch_folder(tmp_path, [make_report("x", {"a": 2.0})])
    table = lms.canvas_rows(lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv")))
    assert table[2][0] == '\'=HYPERLINK("http://x")' and table[2][4] == "'@L1" and table[2][5] == "2"


def test_students_without_a_canvas_or_sis_id_are_named_in_a_warning(tmp_path, capsys):
    (tmp_path / "roster.csv").write_text("name,submission\nAda,ada\n")
    out = batch_folder(tmp_path, [make_report("ada", {"a": 2.0})])
    assert (
        export(
            ["export", "canvas", str(out), "--roster", str(tmp_path / "roster.csv"), "--out", str(tmp_path / "c.csv")]
        )
        == 0
    )
    assert lms.MSG_NAME_ONLY.format(count=1) in capsys.readouterr().err


# -- generic LMS CSV ----------------------------------------------------------------------------------
def test_lms_csv_one_row_per_student_with_score_max_and_status(class_files, tmp_path):
    out, roster_path = class_files
    target = tmp_path / "grades.csv"
    assert export(["export", "lms", str(out), "--roster", str(roster_path), "--out", str(target)]) == grading.EXIT_OK
    header, *rows = read_csv(target)
    assert header == [
        "student", "id", "email", "canvas_id", "sis_user_id", "sis_login_id", "section",
        "submission", "score:hw2", "max:hw2", "status", "reason",
    ]  # fmt: skip
    table = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert table["Ada Lovelace"]["score:hw2"] == "3" and table["Ada Lovelace"]["max:hw2"] == "4"
    assert table["Ada Lovelace"]["email"] == "ada@uni.edu" and table["Ada Lovelace"]["status"] == "graded"
    assert table["Alan Turing"]["status"] == "unreadable" and table["Alan Turing"]["reason"] == "the file is empty"
    assert table["Grace Hopper"]["score:hw2"] == "" and table["Grace Hopper"]["status"] == "timed out"
    missing = table["Edsger Dijkstra"]
    assert (missing["submission"], missing["status"], missing["reason"]) == ("", "missing", gradebook.MSG_MISSING)


# -- usage errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda out, r: ["export", "canvas", str(out.parent / "nowhere"), "--roster", str(r)],
            "is not a folder of reports",
        ),
        (lambda out, r: ["export", "canvas", str(out), "--roster", str(out / "nope.csv")], "does not exist"),
        (lambda out, r: ["export", "lms", str(out), "--roster", str(r), "--only", "zz"], "no assignment 'zz'"),
    ],
)
def test_bad_input_is_a_usage_error_with_a_message(class_files, tmp_path, capsys, make, message):
    out, roster_path = class_files
    assert export([*make(out, roster_path), "--out", str(tmp_path / "x.csv")]) == grading.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_a_broken_report_in_the_folder_stops_the_export(class_files, tmp_path, capsys):
    out, roster_path = class_files
    (out / "broken.json").write_text('{"score": 1}')
    argv = ["export", "canvas", str(out), "--roster", str(roster_path), "--out", str(tmp_path / "x.csv")]
    assert export(argv) == grading.EXIT_USAGE
    assert "broken.json is not a valid torchgrade report" in capsys.readouterr().err


def test_an_empty_folder_has_no_reports(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(lms.ExportInputError, match="holds no reports"):
        lms.load_reports(tmp_path / "empty")


def test_a_report_that_does_not_grade_an_assignment_leaves_its_cell_blank_with_a_warning(tmp_path):
    (tmp_path / "roster.csv").write_text("name,submission\nAda,ada\nAlan,alan\n")
    out = batch_folder(tmp_path, [make_report("ada", {"a1": 4.0, "a2": 1.0}), make_report("alan", {"a1": 2.0})])
    data = lms.grades(lms.load_reports(out), roster.read(tmp_path / "roster.csv"))
    assert [row.points for row in data.rows] == [{"a1": 4.0, "a2": 1.0}, {"a1": 2.0, "a2": None}]
    assert lms.MSG_NOT_GRADED_HERE.format(student="Alan", assignment="a2", name="alan") in data.warnings


def test_two_reports_of_one_submission_name_stop_the_export(tmp_path):
    out = batch_folder(tmp_path, [make_report("ada", {"a": 1.0})])
    (out / "copy.json").write_text((out / "ada.json").read_text())
    with pytest.raises(lms.ExportInputError, match="two reports of a submission named 'ada'"):
        lms.load_reports(out)
