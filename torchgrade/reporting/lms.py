"""Grades for a learning management system: Canvas's gradebook import CSV, and a generic LMS CSV.

``torchgrade export canvas REPORTS/ --roster roster.csv`` and ``torchgrade export lms ...`` read a
batch's output folder (its reports: the report schema is the contract, not the gradebook) and the
roster (:mod:`torchgrade.reporting.roster`), and write one row per student on the roster, one column
per assignment: its auto-graded points (a report of several assignments has a subtotal for each;
``--only ID`` exports one). Manual questions are not in it: a TA grades those in the LMS.

What a cell holds, by the student's status (:mod:`torchgrade.reporting.gradebook`):

* ``graded``: the points earned;
* ``unreadable``: 0, an honest zero (the submission held nothing to grade; its reason says why);
* ``timed out``, ``crashed``, ``harness error``: blank, with a warning, never a silent zero: the
  grading did not finish, which may be our fault (rerun the batch with ``--retry-failed``);
* ``missing`` (no submission on the roster's terms): blank by default, 0 with ``--missing zero``;
* two submissions of one student: blank, with a warning naming both (the instructor decides);
* a submission that matches no student: not exported, with a warning.

Every report in the folder counts, as the roster matches it: the report of a submission removed from
the batch's submissions folder stays in its output folder until it is moved out.

**Canvas.** The file follows Canvas's gradebook import format, as documented in "How do I import grades
in the Gradebook?"
(https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807)
and as Canvas's importer reads it (canvas-lms, ``app/models/gradebook_importer.rb``: ``GradebookImporter``):

* the header row starts ``Student, ID, SIS User ID, SIS Login ID, Section`` (the importer requires
  ``Student`` then ``ID`` first, and the last student column to be ``Section``); then one column per
  assignment, headed ``Name (Canvas assignment id)`` when ``--canvas-id ASSIGNMENT=NUMBER`` gives the
  id (Canvas then updates that assignment whatever its name), else ``Name`` alone (Canvas updates the
  assignment of exactly that title, or offers to create one);
* the second row starts ``Points Possible``, with each assignment's maximum (it sets the points of an
  assignment Canvas creates);
* Canvas finds each student by ``ID`` (Canvas's own user ID: the roster's ``canvas_id``, never the
  course's student number), else ``SIS User ID``, else ``SIS Login ID``, else the exact name; a
  student with none of the three ids is matched by name only (a warning says how many);
* a blank cell leaves Canvas's grade unchanged; scores are plain numbers with a decimal point.

**Generic LMS CSV.** One row per student: ``student``, ``id`` and the roster's ``email``, ``canvas_id``,
``sis_user_id``, ``sis_login_id``, ``section`` (those it has), ``submission``, then ``score:ID`` and
``max:ID`` per assignment, then ``status`` and ``reason``.

Every text cell goes through :func:`torchgrade.reporting.gradebook.text_cell` (safe from CSV injection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchgrade.errors import TorchgradeError
from torchgrade.reporting import gradebook, report, roster

CANVAS_DOC = "https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807"
#: Canvas's student columns, in the order its importer requires.
CANVAS_STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
#: The roster's column behind each of them (``Student`` is the display name).
CANVAS_FROM_ROSTER = ("name", "canvas_id", "sis_user_id", "sis_login_id", "section")
POINTS_POSSIBLE = "Points Possible"
#: How Canvas's importer reads an assignment heading's id (Assignment.title_and_id): `` (digits)`` at the end.
CANVAS_TITLE_AND_ID = re.compile(r"\A(.*)\s\((\d+)\)\Z")
MISSING_CHOICES = ("blank", "zero")
HELP_MISSING = (
    "what a roster's student without a submission gets: blank (default; Canvas leaves a blank cell's grade "
    "unchanged) or zero"
)
HELP_CANVAS_ID = (
    "the Canvas assignment id of an assignment (ASSIGNMENT=NUMBER, repeatable; NUMBER alone with one "
    "assignment): its column is headed 'Title (NUMBER)', which Canvas matches by id"
)
#: Statuses whose points are exported: an unreadable submission's zero is honest.
EXPORTED = (gradebook.STATUS_GRADED, gradebook.STATUS_UNREADABLE)
STATUS_SEVERAL = "several submissions"
DESCRIPTION = """\
A row per student on the roster, a column per assignment (its auto-graded points). A cell holds the
points of a 'graded' submission, 0 for an 'unreadable' one (an honest zero), and is left blank, with a
warning, for a 'timed out', 'crashed' or 'harness error' one (rerun the batch with --retry-failed) and
for a student with two submissions; a 'missing' student's cell is blank (Canvas keeps its grade) unless
--missing zero. Submissions that match no student are not exported (a warning names them)."""

MSG_NO_FOLDER = "{folder} is not a folder of reports (give torchgrade batch's --out folder)"
MSG_NO_REPORTS = "{folder} holds no reports (*.json): give torchgrade batch's --out folder"
MSG_BAD_REPORT = (
    "{path} is not a valid torchgrade report ({error}); regrade it (torchgrade batch --force) or move it out "
    "of the folder"
)
MSG_SAME_SUBMISSION = (
    "{folder} holds two reports of a submission named {name!r} (from two batches?): keep one batch's reports in it"
)
MSG_NO_ASSIGNMENT = "the reports grade no assignment {only!r}; they grade: {known}"
MSG_BAD_CANVAS_ID = (
    "--canvas-id {value!r}: give ASSIGNMENT=NUMBER, where NUMBER is the id in the Canvas assignment's URL"
)
MSG_CANVAS_ID_WHICH = "--canvas-id {value!r}: the reports grade {count} assignments ({known}); give ASSIGNMENT=NUMBER"
MSG_TITLE_LOOKS_LIKE_ID = (
    "assignment {id!r}'s title {title!r} ends like a Canvas assignment id, so Canvas would read it as one; "
    "give its real id with --canvas-id {id}=NUMBER"
)
MSG_NOT_EXPORTED = (
    "{student}: left blank: their submission {name} is '{status}' ({reason}); regrade it with --retry-failed"
)
MSG_SEVERAL = (
    "{student}: left blank: {count} submissions ({names}); move the reports of those that do not count out of "
    "the folder and export again"
)
MSG_NOT_GRADED_HERE = "{student}: left blank for {assignment}: the report of {name} does not grade it"
MSG_MISSING = "no submission from {count} of the roster's students ({names}): {what}"
MSG_UNMATCHED = "not exported, matching no student on the roster: {count} submission(s) ({names})"
MSG_NAME_ONLY = (
    "{count} of the roster's students have no canvas_id, sis_user_id or sis_login_id: Canvas matches them by "
    "their exact name only"
)
MSG_INCOMPLETE = (
    "{count} of the reports graded a selection of the checks (-k, -m): their points are that selection's, "
    "not the assignment's"
)


class ExportInputError(TorchgradeError):
    """The folder, the roster or an option cannot be exported from: the message says which and why."""


@dataclass(frozen=True)
class Assignment:
    """An assignment column: its id (as the reports name it), its title and its maximum points."""

    id: str
    title: str
    max_score: float


@dataclass(frozen=True)
class StudentGrade:
    """One student's row: their submission(s), status, why, and points per assignment (None: blank)."""

    student: roster.Student
    submissions: tuple[str, ...]
    status: str
    reason: str
    points: dict[str, float | None]


@dataclass(frozen=True)
class Export:
    """What :func:`grades` found: the assignment columns, a row per student, and warnings to print."""

    assignments: tuple[Assignment, ...]
    rows: tuple[StudentGrade, ...]
    warnings: tuple[str, ...]


def load_reports(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The reports of a batch's output folder: submission name (the report's ``submission`` path's last
    part) -> report JSON, in the order of their file names.

    Raises:
        ExportInputError: no such folder, no report in it, or a file that is not a valid report.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportInputError(MSG_NO_FOLDER.format(folder=folder))
    reports = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
            report.validate(data)
        except (OSError, ValueError, TorchgradeError) as exc:
            raise ExportInputError(MSG_BAD_REPORT.format(path=path, error=" ".join(str(exc).split()))) from None
        name = Path(data["submission"]).name
        if name in reports:
            raise ExportInputError(MSG_SAME_SUBMISSION.format(name=gradebook.printable(name), folder=folder))
        reports[name] = data
    if not reports:
        raise ExportInputError(MSG_NO_REPORTS.format(folder=folder))
    return reports


def assignments_of(reports: Mapping[str, Mapping[str, Any]], only: str | None = None) -> list[Assignment]:
    """The assignments the reports grade, in the reports' order, with the greatest maximum any report
    gives (a failed grading's report has them all); ``only`` keeps that one.

    Raises:
        ExportInputError: ``only`` names no assignment of the reports.
    """
    found: dict[str, Assignment] = {}
    for data in reports.values():
        for item in _subtotals(data):
            known = found.get(item.id)
            if known is None or item.max_score > known.max_score:
                found[item.id] = item if known is None else Assignment(known.id, known.title, item.max_score)
    if only is not None:
        if only not in found:
            raise ExportInputError(MSG_NO_ASSIGNMENT.format(only=only, known=", ".join(found) or "(none)"))
        return [found[only]]
    return list(found.values())


def _subtotals(data: Mapping[str, Any]) -> list[Assignment]:
    """Each assignment's auto-graded maximum in one report: its ``assignments`` subtotals, else (an
    older report) the sum of its auto-graded questions."""
    if data.get("assignments"):
        return [Assignment(a["id"], a["title"] or a["id"], a["max_score"]) for a in data["assignments"]]
    totals: dict[str, float] = {}
    for question in data["questions"]:
        if not question["manual"]:
            totals[question["assignment"]] = totals.get(question["assignment"], 0.0) + question["max_score"]
    return [Assignment(a, a, round(points, 6)) for a, points in totals.items()]


def points_of(data: Mapping[str, Any], assignment: str) -> float | None:
    """The auto-graded points a report gives one assignment (None if it does not grade it)."""
    for item in data.get("assignments", ()):
        if item["id"] == assignment:
            return item["score"]
    scores = [q["score"] for q in data["questions"] if q["assignment"] == assignment and not q["manual"]]
    return round(sum(s or 0.0 for s in scores), 6) if scores else None


def grades(
    reports: Mapping[str, Mapping[str, Any]],
    students: roster.Roster,
    *,
    only: str | None = None,
    missing: str = MISSING_CHOICES[0],
) -> Export:
    """Each roster student's points per assignment, and the warnings (see the module docstring).

    Args:
        reports: submission name -> report JSON (:func:`load_reports`).
        students: the roster.
        only: export this assignment alone.
        missing: what a student without a submission gets, one of :data:`MISSING_CHOICES`.

    Raises:
        ExportInputError: ``only`` or ``missing`` is not valid.
    """
    if missing not in MISSING_CHOICES:
        raise ExportInputError(f"--missing {missing!r}: choose from {', '.join(MISSING_CHOICES)}")
    columns = assignments_of(reports, only)
    matching = roster.match(students, list(reports))
    rows, warnings = [], []
    for student in students.students:
        names = tuple(matching.submissions.get(student.line, ()))
        blank: dict[str, float | None] = dict.fromkeys((a.id for a in columns), None)
        if not names:
            points = dict.fromkeys(blank, 0.0) if missing == "zero" else blank
            why = gradebook.missing_reason(matching, student.line)
            rows.append(StudentGrade(student, (), gradebook.STATUS_MISSING, why, points))
            continue
        if len(names) > 1:
            shown = ", ".join(map(gradebook.printable, names))
            warnings.append(MSG_SEVERAL.format(student=student.label, count=len(names), names=shown))
            rows.append(StudentGrade(student, names, STATUS_SEVERAL, f"{len(names)} submissions: {shown}", blank))
            continue
        data = reports[names[0]]
        state, why = gradebook.status_and_reason(data)
        if state in EXPORTED:
            points = {a.id: points_of(data, a.id) for a in columns}
            for assignment in (a for a, value in points.items() if value is None):
                name = gradebook.printable(names[0])
                warnings.append(MSG_NOT_GRADED_HERE.format(student=student.label, assignment=assignment, name=name))
        else:
            points = blank
            name = gradebook.printable(names[0])
            warnings.append(MSG_NOT_EXPORTED.format(student=student.label, name=name, status=state, reason=why))
        rows.append(StudentGrade(student, names, state, why, points))
    absent = [r.student.label for r in rows if r.status == gradebook.STATUS_MISSING]
    if absent:
        what = "0 points (--missing zero)" if missing == "zero" else "left blank (--missing zero gives them 0)"
        warnings.append(MSG_MISSING.format(count=len(absent), names=_listed(absent), what=what))
    if matching.unmatched:
        names = [gradebook.printable(n) for n in matching.unmatched]
        warnings.append(MSG_UNMATCHED.format(count=len(names), names=_listed(names)))
    partial = sum(data.get("complete") is False for data in reports.values())
    if partial:
        warnings.append(MSG_INCOMPLETE.format(count=partial))
    return Export(tuple(columns), tuple(rows), tuple(warnings))


def _listed(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def canvas_headings(columns: Sequence[Assignment], canvas_ids: Sequence[str] = ()) -> list[str]:
    """Each assignment column's Canvas heading: ``Title (id)``, or ``Title`` without an id.

    Args:
        columns: the assignments exported.
        canvas_ids: ``ASSIGNMENT=NUMBER`` items (``NUMBER`` alone when there is one assignment).

    Raises:
        ExportInputError: a malformed item, an unknown assignment, or a title Canvas would misread.
    """
    ids: dict[str, str] = {}
    known = {a.id for a in columns}
    for value in canvas_ids:
        assignment, _, number = value.rpartition("=")
        if not assignment and len(columns) == 1:
            assignment = columns[0].id
        elif not assignment:
            listed = ", ".join(sorted(known))
            raise ExportInputError(MSG_CANVAS_ID_WHICH.format(value=value, count=len(columns), known=listed))
        if not re.fullmatch(r"[0-9]+", number.strip()):
            raise ExportInputError(MSG_BAD_CANVAS_ID.format(value=value))
        if assignment.strip() not in known:
            raise ExportInputError(
                MSG_NO_ASSIGNMENT.format(only=assignment.strip(), known=", ".join(a.id for a in columns))
            )
        ids[assignment.strip()] = number.strip()
    headings = []
    for column in columns:
        if column.id in ids:
            headings.append(f"{column.title} ({ids[column.id]})")
        elif CANVAS_TITLE_AND_ID.match(column.title):
            raise ExportInputError(MSG_TITLE_LOOKS_LIKE_ID.format(id=column.id, title=column.title))
        else:
            headings.append(column.title)
    return headings


def canvas_rows(export: Export, canvas_ids: Sequence[str] = ()) -> list[list[str]]:
    """Canvas's gradebook import table: the header, the Points Possible row, a row per student."""
    header = [*CANVAS_STUDENT_COLUMNS, *canvas_headings(export.assignments, canvas_ids)]
    possible = [POINTS_POSSIBLE, *[""] * (len(CANVAS_STUDENT_COLUMNS) - 1)]
    table = [header, possible + [_number(a.max_score) for a in export.assignments]]
    for row in export.rows:
        who = [getattr(row.student, column) for column in CANVAS_FROM_ROSTER]
        who[0] = row.student.name or row.student.label
        table.append([gradebook.text_cell(v) for v in who] + [_number(row.points[a.id]) for a in export.assignments])
    return [[gradebook.text_cell(cell) for cell in table[0]], *table[1:]]


def name_only(export: Export) -> int:
    """How many students Canvas can match by name only (no canvas_id, sis_user_id or sis_login_id)."""
    return sum(not (r.student.canvas_id or r.student.sis_user_id or r.student.sis_login_id) for r in export.rows)


def lms_rows(export: Export, columns: Sequence[str]) -> list[list[str]]:
    """The generic LMS table (see the module docstring); ``columns``: the roster's columns."""
    kept = [c for c in gradebook.OPTIONAL_STUDENT_COLUMNS if c in columns]
    who = [("student", "name"), ("id", "id"), *((c, c) for c in kept)]
    per_assignment = [f"{kind}:{a.id}" for a in export.assignments for kind in ("score", "max")]
    header = [*(c for c, _ in who), "submission", *per_assignment, "status", "reason"]
    table = [[gradebook.text_cell(cell) for cell in header]]
    for row in export.rows:
        cells = [gradebook.text_cell(getattr(row.student, attribute)) for _, attribute in who]
        cells.append(gradebook.text_cell("; ".join(row.submissions)))
        for assignment in export.assignments:
            cells += [_number(row.points[assignment.id]), _number(assignment.max_score)]
        table.append([*cells, gradebook.text_cell(row.status), gradebook.text_cell(row.reason)])
    return table


def _number(value: float | None) -> str:
    """A blank cell for None; ``3`` rather than ``3.0``; a decimal point, never a comma."""
    return "" if value is None else f"{round(value, 6):.10g}"
