"""The CSV gradebook of a batch: one row per submission, one column per handout question.

It reads reports (the schema is the contract), never pytest internals, so it works on any folder
of reports, whoever wrote them. Columns are ``submission``, one ``assignment:question`` column per
question (manual questions stay empty until a TA grades them), ``total``, ``max``, ``pending_max``
(points of manual questions), ``status`` and ``reason`` (reports of several assignments also get a
``total:ID`` column per assignment, its auto-graded points, before ``total``). The status tells an
instructor which rows need a look, and the reason says why in one line (:data:`STATUSES`):

* ``graded``: the submission's code was graded; its score is what it earned (reason empty);
* ``unreadable``: nothing in it could be graded: an empty file, a ``.py`` or notebook that does not
  parse, a folder or file that defines none of the assignment's names; the reason says which;
* ``timed out``: the batch stopped its grading at ``--timeout``;
* ``crashed``: its grading ended without a report (the grading process died, a cluster task died);
* ``harness error``: a torchgrade error, never the student's fault: some checks hit one, or the batch
  could not make a valid report;
* ``missing``: a roster's student with no submission (no report exists for them; see below).

A report's ``status`` and ``reason`` fields (written by ``torchgrade batch``, which decides them from
what the grader side saw: the report's extraction, its check outcomes, the grading's exit, the
submission's own files parsed, never run) are taken as they are; a report without them (``torchgrade
grade``, an older batch) gets a status derived from its content by :func:`status_and_reason`.

With a roster (``torchgrade batch --roster``, :mod:`torchgrade.reporting.roster`) the gradebook is keyed
by student: its first columns are ``student`` (the display name), ``id`` and those of ``email``,
``canvas_id``, ``sis_user_id``, ``sis_login_id`` and ``section`` that the roster has, then
``submission`` and the columns above. Rows follow the roster's order; a student with two submissions
gets two rows; a student with no submission gets one row with status ``missing``, empty scores (not
zeros: whether a missing submission is a zero is the instructor's call) and a reason; the submissions
that match no student (or several) come last, their student columns empty.

Every cell is safe to open in a spreadsheet. A text cell (a submission's name, a column's name, a
status) that a spreadsheet would take for a formula, one starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return (:data:`FORMULA_STARTS`), gets a leading ``'``, as OWASP advises against CSV
injection: a student may name a folder ``=HYPERLINK(...)``. Scores are numbers and stay numbers
(``-1.5`` is not text). A name that is not UTF-8 (a folder name is bytes on Linux) is written with
its undecodable bytes as ``\\xNN`` (:func:`printable`), so the file stays UTF-8 and every row keeps
its submission. Rows end with CRLF (RFC 4180), so that a cell holding a line break, even a lone
carriage return, is quoted and stays one cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torchgrade import atomic
from torchgrade.reporting.roster import Matching

#: Notes that the batch adds to a report it had to write itself start with this.
NOTE_PREFIX = "torchgrade batch: "
STATUS_GRADED, STATUS_UNREADABLE, STATUS_TIMED_OUT = "graded", "unreadable", "timed out"
STATUS_CRASHED, STATUS_HARNESS_ERROR, STATUS_MISSING = "crashed", "harness error", "missing"
#: Every status, in the order the summary counts them (see the module docstring).
STATUSES = (
    STATUS_GRADED,
    STATUS_UNREADABLE,
    STATUS_TIMED_OUT,
    STATUS_CRASHED,
    STATUS_HARNESS_ERROR,
    STATUS_MISSING,
)
#: Statuses of a grading that did not finish: ``--retry-failed`` grades these again (an unreadable
#: submission reads the same the next time).
RETRIED = (STATUS_TIMED_OUT, STATUS_CRASHED, STATUS_HARNESS_ERROR)
#: How the batch's timeout note starts (torchgrade.instructor.batchjob.MSG_TIMEOUT), for reports
#: written before reports carried their status.
TIMEOUT_NOTE = "grading was stopped after"
FIXED_BEFORE, FIXED_AFTER = ["submission"], ["total", "max", "pending_max", "status", "reason"]
#: With a roster: the student's columns before ``submission`` (``student`` and ``id`` always, the others
#: when the roster has them), as (gradebook column, roster column).
STUDENT_COLUMNS = (("student", "name"), ("id", "id"))
OPTIONAL_STUDENT_COLUMNS = ("email", "canvas_id", "sis_user_id", "sis_login_id", "section")
MSG_MISSING = "no submission in the folder matches this student on the roster"
MSG_MISSING_AMBIGUOUS = "no submission is theirs alone: {names} also matches another student on the roster (fix it)"
MSG_NO_REPORT = (
    "their submission {name} has no report (not graded yet, or its report could not be written): run the batch again"
)
#: A text cell starting with one of these is a formula to a spreadsheet (the full-width forms too:
#: some spreadsheets read U+FF1D as ``=``).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def status_and_reason(report: Mapping[str, Any]) -> tuple[str, str]:
    """The report's status (one of :data:`STATUSES`) and, unless ``graded``, why, on one line.

    The report's own ``status``/``reason`` when it has them; else derived: a batch's note
    (:data:`NOTE_PREFIX`) is a timeout or a crash, an extraction error makes it unreadable, a check's
    torchgrade error a harness error.
    """
    if report.get("status") in STATUSES:
        return report["status"], _line(report.get("reason", ""))
    notes = [n[len(NOTE_PREFIX) :] for n in report.get("notes", ()) if n.startswith(NOTE_PREFIX)]
    if notes:
        return (STATUS_TIMED_OUT if notes[0].startswith(TIMEOUT_NOTE) else STATUS_CRASHED), _line(notes[0])
    error = (report.get("extraction") or {}).get("error")
    if error:
        return STATUS_UNREADABLE, _line(error)
    if report.get("harness_errors"):
        messages = [c["message"] for c in report.get("checks", ()) if c.get("outcome") == "error"]
        return STATUS_HARNESS_ERROR, _line(messages[0] if messages else "a check hit a torchgrade error")
    return STATUS_GRADED, ""


def status(report: Mapping[str, Any]) -> str:
    """The report's status: see :func:`status_and_reason`."""
    return status_and_reason(report)[0]


def reason(report: Mapping[str, Any]) -> str:
    """Why the report's status is not ``graded`` (empty when it is): see :func:`status_and_reason`."""
    return status_and_reason(report)[1]


def _line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, at most ``limit`` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "\u2026"


def question_columns(reports: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every (assignment, question id) of the reports, in the reports' own (handout) order.

    Reports of one batch come from the same graders and list their questions in the same order;
    a question missing from the first report is appended where it is first seen.
    """
    seen: dict[tuple[str, str], None] = {}
    for data in reports:
        for question in data["questions"]:
            seen.setdefault((question["assignment"], question["id"]), None)
    return list(seen)


def rows(
    reports: Mapping[str, Mapping[str, Any]], *, matching: Matching | None = None
) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the gradebook.

    Args:
        reports: submission name -> report JSON; rows follow the mapping's order.
        matching: the roster's students and which submission is whose (see the module docstring);
            None: one row per report, keyed by submission.
    """
    columns = question_columns(reports.values())
    assignments = list(dict.fromkeys(a for a, _ in columns))
    subtotals = assignments if len(assignments) > 1 else []
    header = FIXED_BEFORE + [f"{a}:{q}" for a, q in columns] + [f"total:{a}" for a in subtotals] + FIXED_AFTER

    def row(name: str, data: Mapping[str, Any]) -> list[str]:
        scores = {(q["assignment"], q["id"]): q["score"] for q in data["questions"]}
        cells = [text_cell(name)] + [_number(scores.get(key)) for key in columns]
        for assignment in subtotals:
            auto = [q["score"] for q in data["questions"] if q["assignment"] == assignment and not q["manual"]]
            cells.append(_number(round(sum(auto), 6) if auto else None))
        cells += [_number(data["score"]), _number(data["max_score"]), _number(data["pending_max_score"])]
        state, why = status_and_reason(data)
        return [*cells, text_cell(state), text_cell(why)]

    if matching is None:
        return [text_cell(cell) for cell in header], [row(name, data) for name, data in reports.items()]
    kept = [c for c in OPTIONAL_STUDENT_COLUMNS if c in matching.roster.columns]
    who = [*STUDENT_COLUMNS, *((c, c) for c in kept)]
    empty = [""] * (len(header) - 3)  # everything between the submission and the status

    def missing(why: str, name: str = "") -> list[str]:
        return [text_cell(name), *empty, STATUS_MISSING, text_cell(why)]

    table, placed = [], set()
    for student in matching.roster.students:
        cells = [text_cell(getattr(student, attribute)) for _, attribute in who]
        names = matching.submissions.get(student.line, [])
        for name in names:
            placed.add(name)
            if name in reports:
                table.append(cells + row(name, reports[name]))
            else:
                table.append(cells + missing(MSG_NO_REPORT.format(name=printable(name)), name))
        if not names:
            table.append(cells + missing(missing_reason(matching, student.line)))
    for name, data in reports.items():  # matching no student, or several
        if name not in placed:
            table.append([""] * len(who) + row(name, data))
    return [text_cell(cell) for cell in [c for c, _ in who] + header], table


def missing_reason(matching: Matching, line: int) -> str:
    """Why the roster's student on ``line`` has no submission: none matches them, or those that do
    match another student too."""
    shared = [name for name, students in matching.ambiguous.items() if any(s.line == line for s in students)]
    if shared:
        return MSG_MISSING_AMBIGUOUS.format(names=", ".join(printable(name) for name in shared))
    return MSG_MISSING


def write(reports: Mapping[str, Mapping[str, Any]], path: str | Path, *, matching: Matching | None = None) -> Path:
    """Write the gradebook of ``reports`` (name -> report JSON) to ``path`` atomically; keyed by
    student with a roster's ``matching`` (see :func:`rows`)."""
    header, table = rows(reports, matching=matching)
    return write_csv([header, *table], path)


def write_csv(table: Sequence[Sequence[str]], path: str | Path) -> Path:
    """Write rows of cells as CSV (UTF-8) atomically, with RFC 4180's CRLF: a text cell holding a lone
    carriage return is then quoted too. The gradebook and the LMS exports write through it."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    return atomic.write_text(path, buffer.getvalue())


def printable(text: str) -> str:
    """``text`` as valid UTF-8: a name read from the file system keeps each byte that is not UTF-8 (a
    surrogate escape, as :func:`os.fsdecode` makes it) as the four characters ``\\xNN``; any other
    lone surrogate becomes ``\\udNNN``. Valid text is returned unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (from a JSON escape)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def text_cell(text: str) -> str:
    """A text cell that a spreadsheet shows as text: :func:`printable`, and a leading ``'`` if it would
    otherwise be a formula (see :data:`FORMULA_STARTS`)."""
    text = printable(text)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _number(value: float | None) -> str:
    """An empty cell for a pending (None) or absent score; ``3`` rather than ``3.0``."""
    return "" if value is None else f"{value:.10g}"
