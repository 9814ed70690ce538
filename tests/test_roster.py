"""``torchgrade batch --roster``: reading a roster, matching submissions to students, the gradebook keyed
by student (with ``missing`` rows), and a bad roster stopping the batch with exit 2 before any grading.

Reports are built as JSON (``tests/test_lms_export.make_report``), so only the last test grades
anything: a real ``torchgrade batch --roster`` over three tiny submissions (``-k add``, in-process).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.test_batch import ADD, SCALE, make_tiny_assignment
from tests.test_batch_statuses import page_text
from tests.test_lms_export import make_report
from torchgrade.instructor import batch, cli, grading
from torchgrade.reporting import gradebook, roster

ROOT = Path(__file__).resolve().parents[1]
ROSTER = (
    "\ufeffName,Student ID,E-mail,SIS Login ID,Section,Submission,GitHub,Gradescope\n"
    "Ada Lovelace,s1,ada@uni.edu,ada,L01,,adalove,\n"
    " Alan Turing ,s2,alan@uni.edu,alan,L01,Turing_HW2;alan-late,,\n"
    "Grace Hopper,s3,grace@uni.edu,grace,L02,,,123456789\n"
    "Edsger Dijkstra,s4,ed@uni.edu,ed,L02,,edsger,\n"
)


def write_roster(tmp_path: Path, text: str = ROSTER, name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- reading ------------------------------------------------------------------------------------------
def test_a_roster_is_read_with_its_bom_header_aliases_and_several_names(tmp_path):
    students = roster.read(write_roster(tmp_path))
    assert students.columns == ("name", "id", "email", "sis_login_id", "section", "submission", "github", "gradescope")
    ada, alan, grace, _ = students.students
    assert (ada.line, ada.name, ada.id, ada.github, ada.label) == (
        2,
        "Ada Lovelace",
        "s1",
        ("adalove",),
        "Ada Lovelace (s1)",
    )
    assert alan.name == "Alan Turing" and alan.submission == ("Turing_HW2", "alan-late")  # trimmed; ';' separates
    assert grace.gradescope == ("123456789",)


def test_a_canvas_export_points_possible_row_and_blank_rows_are_not_students(tmp_path):
    text = "Student,SIS Login ID,Section\n    Points Possible,,\n\nAda,ada,L01\n,,\n"
    students = roster.read(write_roster(tmp_path, text))
    assert [(s.name, s.line) for s in students.students] == [("Ada", 4)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("name,id\n,\n", "has a header row but no students"),
        ("email,github\nada@x,ada\n", "has no 'name' or 'id' column (its columns: 'email', 'github')"),
        ("name,section\nAda,L01\n", "has no column to match submissions by"),
        ("name,student,id\nAda,Ada,1\n", "columns 'name' and 'student' both mean 'name'"),
        ("name,id\nAda,1\n,\n,,\n  ,  \nBob,1\n", "id '1' is on line 2 and line 6"),
        ("name,github\nAda,ADA\nBob,bob;ada\n", "github 'ada' is on line 2 and line 3"),
        ("name,id,section\nAda,1,L1\n,,L2\n", "line 3: the row has neither a name nor an id"),
    ],
)
def test_a_bad_roster_says_what_is_wrong_and_where(tmp_path, text, message):
    with pytest.raises(roster.RosterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        roster.read(write_roster(tmp_path, text))


def test_a_roster_that_is_not_utf8_or_not_there(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("name,id\nJos\xe9,1\n".encode("latin-1"))
    with pytest.raises(roster.RosterError, match="is not UTF-8 text .*save it as 'CSV UTF-8'"):
        roster.read(tmp_path / "latin1.csv")
    with pytest.raises(roster.RosterError, match="does not exist"):
        roster.read(tmp_path / "nowhere.csv")


def test_the_sample_roster_matches_the_demo_samples_and_misses_one_student():
    """fixtures/submissions/roster.csv (with the samples: never in a release), the README's example: the
    demo's six samples and a student who submitted nothing."""
    matching = roster.match(roster.read(ROOT / "fixtures" / "submissions" / "roster.csv"), list(cli.DEMO_SAMPLES))
    assert sorted(matching.owner) == sorted(cli.DEMO_SAMPLES) and matching.unmatched == ()
    assert [s.label for s in matching.missing] == ["Frances Allen (s0007)"]


# -- matching -----------------------------------------------------------------------------------------
def test_submissions_match_by_stem_github_classroom_gradescope_and_id(tmp_path):
    students = roster.read(write_roster(tmp_path))
    names = ["hw2-AdaLove", "turing_hw2.ipynb", "submission_123456789", "S4.py", "stranger", "notebook.ipynb"]
    matching = roster.match(students, names)
    assert {name: s.name for name, s in matching.owner.items()} == {
        "hw2-AdaLove": "Ada Lovelace",  # GitHub Classroom: ASSIGNMENT-USERNAME, any case
        "turing_hw2.ipynb": "Alan Turing",  # the submission column, suffix dropped
        "submission_123456789": "Grace Hopper",  # Gradescope's export folder
        "S4.py": "Edsger Dijkstra",  # the student id
    }
    assert matching.unmatched == ("stranger", "notebook.ipynb") and matching.missing == ()
    assert matching.warnings() == [roster.MSG_UNMATCHED.format(name=n) for n in ("stranger", "notebook.ipynb")]
    assert matching.labels()["S4.py"] == "Edsger Dijkstra (s4)"


def test_a_github_name_matches_only_after_a_hyphen_at_the_end():
    ada = roster.Student(line=2, name="Ada", github=("ada",))
    assert ada.owns("hw2-ada") and ada.owns("ADA") and ada.owns("hw2-ada.ipynb")
    assert not ada.owns("hw2-adam") and not ada.owns("hw2_ada") and not ada.owns("ada-hw2")


def test_a_submission_matching_two_students_belongs_to_neither(tmp_path):
    text = "name,github,submission\nBob Smith,smith,\nBob,,hw-bob-smith\nAnn,bob-smith,\n"
    students = roster.read(write_roster(tmp_path, text))
    matching = roster.match(students, ["hw-bob-smith"])
    assert matching.owner == {} and matching.unmatched == ("hw-bob-smith",)
    assert [s.name for s in matching.ambiguous["hw-bob-smith"]] == ["Bob Smith", "Bob", "Ann"]
    assert [s.name for s in matching.missing] == ["Bob Smith", "Bob", "Ann"]
    reason = gradebook.MSG_MISSING_AMBIGUOUS.format(names="hw-bob-smith")
    assert gradebook.missing_reason(matching, 2) == reason and "also matches another student" in reason
    students = "Bob Smith and Bob and Ann"
    assert matching.warnings() == [roster.MSG_AMBIGUOUS.format(name="hw-bob-smith", students=students)]
    assert "it is left without a student" in matching.warnings()[0]


def test_two_submissions_of_one_student_keep_both_with_a_warning(tmp_path):
    students = roster.read(write_roster(tmp_path))
    matching = roster.match(students, ["turing_hw2", "alan-late.py"])
    assert matching.submissions[3] == ["turing_hw2", "alan-late.py"]
    assert "Alan Turing (s2) has 2 submissions (turing_hw2, alan-late.py)" in matching.warnings()[0]
    assert [s.name for s in matching.missing] == ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"]


# -- the gradebook keyed by student -------------------------------------------------------------------
def test_the_gradebook_is_keyed_by_student_with_missing_rows_and_unmatched_last(tmp_path):
    students = roster.read(write_roster(tmp_path))
    reports = {
        "stranger": make_report("stranger", {"a": 4.0}),
        "hw2-adalove": make_report("hw2-adalove", {"a": 3.0}),
        "turing_hw2.py": make_report("turing_hw2.py", {"a": 0.0}, status="unreadable", reason="empty"),
    }
    matching = roster.match(students, [*reports, "alan-late"])  # alan-late: found, but no report (yet)
    header, rows = gradebook.rows(reports, matching=matching)
    assert header == [
        "student", "id", "email", "sis_login_id", "section",
        "submission", "a:Q1", "a:Q9", "total", "max", "pending_max", "status", "reason",
    ]  # fmt: skip
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["student"], r["submission"], r["status"]) for r in table] == [
        ("Ada Lovelace", "hw2-adalove", "graded"),
        ("Alan Turing", "turing_hw2.py", "unreadable"),
        ("Alan Turing", "alan-late", "missing"),
        ("Grace Hopper", "", "missing"),
        ("Edsger Dijkstra", "", "missing"),
        ("", "stranger", "graded"),
    ]
    assert table[0]["id"] == "s1" and table[0]["email"] == "ada@uni.edu" and table[0]["total"] == "3"
    assert table[3]["reason"] == gradebook.MSG_MISSING and table[3]["total"] == table[3]["a:Q1"] == ""  # not 0
    assert table[2]["reason"] == gradebook.MSG_NO_REPORT.format(name="alan-late")


def test_write_summaries_with_a_roster(tmp_path):
    students = roster.read(write_roster(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("hw2-adalove", "stranger"):
        (out / f"{name}.json").write_text(json.dumps(make_report(name, {"a": 2.0})))
    matching = roster.match(students, ["hw2-adalove", "stranger"])
    statuses = batch.write_summaries(out, ["hw2-adalove", "stranger"], matching=matching)
    assert statuses == {"hw2-adalove": "graded", "stranger": "graded"}  # missing students are no submission
    with open(out / "gradebook.csv", newline="") as handle:
        assert [row["student"] for row in csv.DictReader(handle)] == [
            "Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "",
        ]  # fmt: skip
    text = page_text(out / "summary.html")
    assert "Alan Turing (s2)" in text and "stranger" in text
    line = batch.roster_line(matching)
    assert line.startswith("roster: 1 of 4 students have a submission; missing: Alan Turing (s2), Grace Hopper")
    assert "matching no student: stranger" in line


def test_a_bad_roster_stops_the_batch_before_any_grading(tmp_path, capsys):
    assignment = make_tiny_assignment(tmp_path)
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    bad = write_roster(tmp_path, "name,id\nAda,1\nBob,1\n")
    out = tmp_path / "out"
    argv = ["--assignment", str(assignment), "batch", str(tmp_path / "subs"), "--out", str(out), "--roster", str(bad)]
    args = cli.build_parser().parse_args(argv)  # as torchgrade dispatches it, without cli.main (no process)
    assert args.func(args) == grading.EXIT_USAGE
    assert f"torchgrade batch: roster {bad}: id '1' is on line 2 and line 3" in capsys.readouterr().err
    assert not out.exists()  # nothing graded, nothing written


# -- end to end ---------------------------------------------------------------------------------------
def test_batch_with_a_roster_end_to_end(tmp_path, capsys):
    assignment = make_tiny_assignment(tmp_path)
    subs = tmp_path / "submissions"
    for name in ("hw-adalove", "hw-stranger"):
        (subs / name).mkdir(parents=True)
        (subs / name / "tiny.py").write_text(ADD + SCALE)
    (subs / "s2.py").write_text("")  # Alan's, by his id: unreadable
    path = write_roster(tmp_path, "name,id,github\nAda,s1,adalove\nAlan,s2,\nGrace,s3,ghopper\n")
    out = tmp_path / "reports"
    argv = ["--assignment", str(assignment), "batch", str(subs), "--out", str(out), "--roster", str(path)]
    code = cli.main([*argv, "--jobs", "1", "--isolation", "none", "--no-progress", "--", "-k", "add"])
    assert code == grading.EXIT_FAILED  # Alan's empty file; Grace's absence does not change it
    err = capsys.readouterr().err
    assert roster.MSG_UNMATCHED.format(name="hw-stranger") in err
    assert "roster: 2 of 3 students have a submission; missing: Grace (s3); matching no student: hw-stranger" in err
    with open(out / "gradebook.csv", newline="") as handle:
        rows = [(r["student"], r["id"], r["submission"], r["status"]) for r in csv.DictReader(handle)]
    assert rows == [
        ("Ada", "s1", "hw-adalove", "graded"),
        ("Alan", "s2", "s2.py", "unreadable"),
        ("Grace", "s3", "", "missing"),
        ("", "", "hw-stranger", "graded"),
    ]
    text = page_text(out / "summary.html")
    assert "Grace (s3)" in text and "hw-stranger" in text
    # the batch's own folder exports to Canvas: Ada's points, Alan's honest 0, Grace blank
    target = tmp_path / "canvas.csv"
    args = cli.build_parser().parse_args(["export", "canvas", str(out), "--roster", str(path), "--out", str(target)])
    assert args.func(args) == grading.EXIT_OK
    with open(target, newline="") as handle:
        header, possible, *rows = list(csv.reader(handle))
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] and len(header) == 6
    assert possible[0] == "Points Possible" and float(possible[5]) > 0
    assert [(row[0], row[5]) for row in rows] == [("Ada", possible[5]), ("Alan", "0"), ("Grace", "")]
