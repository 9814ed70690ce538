"""A class roster: who the students are, and which submission is whose.

``torchgrade batch --roster roster.csv`` keys the gradebook by student, lists the students who submitted
nothing (status ``missing``) and warns about submissions that match no one; ``torchgrade export canvas``
and ``export lms`` need it to say whose grade is whose. A roster is a CSV file in UTF-8 (a spreadsheet's
byte-order mark is fine) with a header row; one row per student. Column names are read case-insensitively,
with spaces, hyphens and underscores alike (``SIS User ID`` is ``sis_user_id``); other columns are ignored:

==================  ===================================================================================
column              what it holds
==================  ===================================================================================
``name``            the student's display name (also ``student``)
``id``              the student's id in the course, e.g. a student number (also ``student_id``)
``email``           their e-mail address
``canvas_id``       Canvas's user ID (the ``ID`` column of a Canvas gradebook export)
``sis_user_id``     SIS User ID, as Canvas shows it
``sis_login_id``    SIS Login ID, as Canvas shows it
``section``         their section
``submission``      the name(s) their submission comes under: a folder or file name, with or without
                    its ``.py``/``.ipynb`` suffix
``github``          their GitHub user name(s): GitHub Classroom names a student's repository (and so
                    the cloned folder) ``ASSIGNMENT-USERNAME``
``gradescope``      their Gradescope submission id(s): Gradescope's bulk export names each submission's
                    folder ``submission_ID``
==================  ===================================================================================

A roster needs ``name`` or ``id`` (who the student is) and at least one column a submission can be
matched by: ``submission``, ``github``, ``gradescope``, ``id``, ``email``, ``sis_user_id`` or
``sis_login_id``. The three name columns take several values separated by ``;`` (a student who
resubmitted under another name, two GitHub accounts).

**Matching** (:func:`match`) compares trimmed text, case-insensitively. A submission named ``NAME`` (a
file's ``.py``/``.ipynb`` suffix dropped) belongs to the student whose ``submission``, ``github``,
``gradescope``, ``id``, ``email``, ``sis_user_id`` or ``sis_login_id`` equals ``NAME``, who has
``NAME == "submission_" + gradescope``, or whose GitHub user name ends ``NAME`` after a hyphen
(``hw2-adalove`` is ``adalove``'s: GitHub Classroom's ``ASSIGNMENT-USERNAME``). Nothing is guessed
beyond that: a submission that matches two students belongs to neither and is named in a warning, as is
one that matches nobody (its gradebook row has no student). A student with two submissions keeps both
rows, with a warning: the instructor decides which one counts.

**A bad roster stops the batch before any grading** (:class:`RosterError`, exit 2): a file that is
missing, not UTF-8, empty or without students; no ``name``/``id`` column or no column to match by; two columns that mean
the same; a row with neither a name nor an id; the same ``id``, ``email``, ``canvas_id``,
``sis_user_id``, ``sis_login_id``, submission name, GitHub user or Gradescope id on two rows (each
names one person, so a repeat is a typing error; the message gives both rows).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torchgrade.errors import TorchgradeError

#: Every column a roster may have, and the other names each is recognised by (after :func:`_column`).
COLUMNS = {
    "name": ("student", "student_name", "display_name"),
    "id": ("student_id", "student_number"),
    "email": ("e_mail", "email_address"),
    "canvas_id": ("canvas_user_id",),
    "sis_user_id": (),
    "sis_login_id": (),
    "section": (),
    "submission": ("submissions",),
    "github": ("github_username", "github_user", "github_login"),
    "gradescope": ("gradescope_id", "gradescope_submission_id"),
}
#: Columns that identify a student: a value may appear on one row only.
IDENTITIES = ("id", "email", "canvas_id", "sis_user_id", "sis_login_id")
#: Columns that hold several values, separated by :data:`SEPARATOR`.
MULTI = ("submission", "github", "gradescope")
SEPARATOR = ";"
#: Columns a submission's name is compared with (see the module docstring).
MATCHED_BY = ("submission", "github", "gradescope", "id", "email", "sis_user_id", "sis_login_id")
#: How Gradescope's bulk export names a submission's folder: this prefix, then the submission id.
GRADESCOPE_PREFIX = "submission_"
SUBMISSION_SUFFIXES = (".py", ".ipynb")

MSG_NOT_FOUND = "roster {path} does not exist"
MSG_NOT_UTF8 = "roster {path} is not UTF-8 text ({error}); save it as 'CSV UTF-8' and try again"
MSG_EMPTY = "roster {path} is empty: it needs a header row, then one row per student"
MSG_NO_STUDENTS = "roster {path} has a header row but no students: add one row per student"
MSG_NO_WHO = "roster {path} has no 'name' or 'id' column (its columns: {found}); see torchgrade batch --help"
MSG_NO_MATCH = (
    "roster {path} has no column to match submissions by ({wanted}); its columns: {found}; "
    "add the folder or file name each student submits under in a 'submission' column"
)
MSG_SAME_COLUMN = "roster {path}: columns {first!r} and {second!r} both mean {column!r}; keep one"
MSG_NOBODY = "roster {path}, line {line}: the row has neither a name nor an id"
MSG_DUPLICATE = "roster {path}: {column} {value!r} is on line {first} and line {second}; each belongs to one student"
MSG_AMBIGUOUS = "roster: submission {name!r} matches {students}; it is left without a student (fix the roster)"
MSG_UNMATCHED = "roster: submission {name!r} matches no student on the roster"
MSG_TWICE = "roster: {student} has {count} submissions ({names}); each keeps its own gradebook row"


class RosterError(TorchgradeError):
    """The roster cannot be used: the message says what is wrong with the file and where."""


@dataclass(frozen=True)
class Student:
    """One row of the roster. ``line`` is its line in the file (its identity: names may repeat)."""

    line: int
    name: str = ""
    id: str = ""
    email: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    submission: tuple[str, ...] = ()
    github: tuple[str, ...] = ()
    gradescope: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How a person is shown: ``Ada Lovelace (12345)``, or the name or the id alone."""
        if self.name and self.id:
            return f"{self.name} ({self.id})"
        return self.name or self.id

    @functools.cached_property  # 1000 students by 1000 submissions: 0.5 s to match, 2.0 s uncached
    def keys(self) -> frozenset[str]:
        """The names a submission of theirs may have exactly, normalised (:func:`normalise`)."""
        values = [*self.submission, *self.github, *self.gradescope, self.id, self.email]
        values += [self.sis_user_id, self.sis_login_id, *(GRADESCOPE_PREFIX + g for g in self.gradescope)]
        return frozenset(normalise(v) for v in values if v.strip())

    @functools.cached_property
    def github_suffixes(self) -> tuple[str, ...]:
        """``-username`` for each GitHub user name: how GitHub Classroom's folder names end."""
        return tuple("-" + normalise(user) for user in self.github if user.strip())

    def owns(self, name: str) -> bool:
        """Whether a submission called ``name`` is this student's (see the module docstring)."""
        return self._claims(_candidates(name))

    def _claims(self, candidates: frozenset[str]) -> bool:
        if candidates & self.keys:
            return True
        return any(c.endswith(suffix) for c in candidates for suffix in self.github_suffixes)


@dataclass(frozen=True)
class Roster:
    """The students of a roster file, in its order, and the roster columns it has."""

    path: Path
    students: tuple[Student, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Matching:
    """Which submission is whose (:func:`match`).

    Attributes:
        roster: the roster matched against.
        owner: submission name -> its student, for each submission that matches exactly one.
        submissions: each student (by line) -> their submissions' names, in folder order.
        missing: students with no submission, in roster order.
        unmatched: submissions that match no student, in folder order.
        ambiguous: submission name -> the students it matches, for those that match several (they
            are in ``unmatched`` too: they belong to nobody).
    """

    roster: Roster
    owner: dict[str, Student]
    submissions: dict[int, list[str]]
    missing: tuple[Student, ...]
    unmatched: tuple[str, ...]
    ambiguous: dict[str, tuple[Student, ...]] = field(default_factory=dict)

    def labels(self) -> dict[str, str]:
        """Submission name -> its student's :attr:`Student.label` (for the summary page)."""
        return {name: student.label for name, student in self.owner.items()}

    def warnings(self) -> list[str]:
        """One line per thing an instructor must look at: ambiguous, unmatched, doubled submissions."""
        lines = []
        for name in self.unmatched:
            if name in self.ambiguous:
                students = " and ".join(s.label for s in self.ambiguous[name])
                lines.append(MSG_AMBIGUOUS.format(name=name, students=students))
            else:
                lines.append(MSG_UNMATCHED.format(name=name))
        for student in self.roster.students:
            names = self.submissions.get(student.line, [])
            if len(names) > 1:
                lines.append(MSG_TWICE.format(student=student.label, count=len(names), names=", ".join(names)))
        return lines


def normalise(text: str) -> str:
    """Trimmed and case-folded: how roster values and submission names are compared."""
    return text.strip().casefold()


def _candidates(name: str) -> frozenset[str]:
    """A submission's name as compared with a roster: whole and without its suffix, normalised."""
    return frozenset((normalise(name), normalise(stem(name))))


def stem(name: str) -> str:
    """A submission's name without its ``.py``/``.ipynb`` suffix (a folder's name as it is)."""
    for suffix in SUBMISSION_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _column(header: str) -> str:
    """A header cell as compared with :data:`COLUMNS`: trimmed, lower case, ``_`` for spaces and ``-``."""
    return "_".join(header.strip().casefold().replace("-", " ").split())


def read(path: str | Path) -> Roster:
    """Read and check a roster file (see the module docstring for its columns).

    Raises:
        RosterError: the file is missing, not UTF-8, empty, lacks the columns it needs, has a row
            without a name or id, or repeats a value that identifies one student.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: a spreadsheet's byte-order mark is fine
    except FileNotFoundError:
        raise RosterError(MSG_NOT_FOUND.format(path=path)) from None
    except UnicodeDecodeError as exc:
        raise RosterError(MSG_NOT_UTF8.format(path=path, error=exc)) from None
    except OSError as exc:
        raise RosterError(f"roster {path} cannot be read: {exc}") from None
    table = [(line, row) for line, row in _rows(text) if any(cell.strip() for cell in row)]
    if not table:
        raise RosterError(MSG_EMPTY.format(path=path))
    (_, header), *body = table
    where = _header(path, header)
    found = ", ".join(repr(h) for h in header if h.strip()) or "(none)"
    if not {"name", "id"} & set(where):
        raise RosterError(MSG_NO_WHO.format(path=path, found=found))
    if not set(MATCHED_BY) & set(where):
        raise RosterError(MSG_NO_MATCH.format(path=path, wanted=", ".join(MATCHED_BY), found=found))
    students = []
    for line, row in body:
        cells = {column: (row[i].strip() if i < len(row) else "") for column, i in where.items()}
        if not any(cells.values()) or _is_points_possible(cells):
            continue
        if not (cells.get("name") or cells.get("id")):
            raise RosterError(MSG_NOBODY.format(path=path, line=line))
        values = {c: _split(v) if c in MULTI else v for c, v in cells.items()}
        students.append(Student(line=line, **values))
    if not students:
        raise RosterError(MSG_NO_STUDENTS.format(path=path))
    _check_unique(path, students)
    return Roster(path=path, students=tuple(students), columns=tuple(c for c in COLUMNS if c in where))


def _header(path: Path, header: Sequence[str]) -> dict[str, int]:
    """Each known column -> its index in the header row."""
    alias = {name: column for column, names in COLUMNS.items() for name in (column, *names)}
    where: dict[str, int] = {}
    for index, cell in enumerate(header):
        column = alias.get(_column(cell))
        if column is None:
            continue
        if column in where:
            first = header[where[column]]
            raise RosterError(MSG_SAME_COLUMN.format(path=path, first=first, second=cell, column=column))
        where[column] = index
    return where


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV row with the line of the file it starts on (a quoted cell may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    for row in reader:
        yield line, row
        line = reader.line_num + 1


def _is_points_possible(cells: dict[str, str]) -> bool:
    """Canvas's gradebook export has a "Points Possible" row under its header: not a student."""
    return cells.get("name", "").strip().casefold() == "points possible" and not cells.get("id")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(SEPARATOR) if part.strip())


def _check_unique(path: Path, students: Iterable[Student]) -> None:
    """A value that names one person (an id, a GitHub user...) may not be on two rows."""
    seen: dict[tuple[str, str], int] = {}
    for student in students:
        for column in (*IDENTITIES, *MULTI):
            value = getattr(student, column)
            for item in value if isinstance(value, tuple) else (value,):
                if not item:
                    continue
                first = seen.setdefault((column, normalise(item)), student.line)
                if first != student.line:
                    raise RosterError(
                        MSG_DUPLICATE.format(path=path, column=column, value=item, first=first, second=student.line)
                    )


def match(roster: Roster, names: Sequence[str]) -> Matching:
    """Which of the submissions ``names`` (entries of the submissions folder) is whose.

    A submission matching one student is theirs; one matching several or none is nobody's (and
    listed in :attr:`Matching.unmatched`, with :attr:`Matching.ambiguous` naming the candidates).
    """
    owner: dict[str, Student] = {}
    submissions: dict[int, list[str]] = {}
    unmatched: list[str] = []
    ambiguous: dict[str, tuple[Student, ...]] = {}
    for name in names:
        candidates = _candidates(name)
        found = tuple(s for s in roster.students if s._claims(candidates))
        if len(found) == 1:
            owner[name] = found[0]
            submissions.setdefault(found[0].line, []).append(name)
            continue
        unmatched.append(name)
        if found:
            ambiguous[name] = found
    missing = tuple(s for s in roster.students if s.line not in submissions)
    return Matching(roster, owner, submissions, missing, tuple(unmatched), ambiguous)
