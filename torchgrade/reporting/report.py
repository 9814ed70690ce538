"""The report: a few frozen dataclasses, their JSON form, and validation against the schema.

``schema/report.schema.json`` is the contract: every report is validated before it is written, and
exporters read reports, never pytest internals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from torchgrade.errors import TorchgradeError


@dataclass(frozen=True)
class PartResult:
    """One part of a check that awards partial credit (e.g. one receptive field)."""

    name: str
    points: float
    max_points: float
    message: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one grader check."""

    id: str
    assignment: str
    question: str
    points: float
    max_points: float
    outcome: str  # passed | failed | error | skipped
    message: str
    duration: float
    parts: tuple[PartResult, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuestionResult:
    """Points per handout question; manual questions are pending until a TA grades them."""

    assignment: str
    id: str
    score: float | None
    max_score: float
    manual: bool
    status: str  # graded | pending
    title: str = ""


@dataclass(frozen=True)
class AssignmentResult:
    """The subtotal of one assignment of the run.

    ``complete`` is False when only some of its checks ran (``-k``, ``-m``, a file or a node named):
    then ``score``/``max_score`` are those of the selected checks, not the assignment's total, which
    ``declared_max_score`` gives (from the manifest; absent without one).
    """

    id: str
    title: str
    score: float
    max_score: float
    pending_max_score: float
    complete: bool = True
    declared_max_score: float | None = None


@dataclass(frozen=True)
class Dropped:
    """A statement (or cell) of a notebook or script that was left out of grading, and why.

    ``cell`` is the notebook position of the cell (1-based, every cell counted) or, in a script,
    the N of its ``# In[N]:`` marker (None without one); ``lines`` are (first, last), counted within
    the cell in a notebook and in the file in a script.
    """

    cell: int | None
    lines: tuple[int, int]
    excerpt: str
    reason: str
    names: tuple[str, ...] = ()  # what it would have defined


@dataclass(frozen=True)
class Extraction:
    """How a notebook or script submission became gradable modules (absent for a folder)."""

    source: str  # the file's name, e.g. hw2.ipynb
    kind: str  # notebook | script | unknown
    modules: tuple[str, ...]  # the modules the kept code was graded as
    defined: tuple[str, ...]  # top-level names the kept code defines (imports aside)
    dropped: tuple[Dropped, ...]
    error: str = ""  # set when the file could not be graded at all; every check failed with it


@dataclass(frozen=True)
class StudentOutput:
    """What the submission printed: the first ``text`` of it, and how many bytes were left out."""

    text: str
    dropped_bytes: int


@dataclass(frozen=True)
class WorkerStartup:
    """Time spent starting the submission's worker(s) and loading the submission: not in any check's
    ``duration``, so that the first check does not look slow for starting the worker."""

    seconds: float
    starts: int


@dataclass(frozen=True)
class Report:
    submission: str
    isolation: str
    versions: dict[str, str]
    started_at: str
    finished_at: str
    score: float
    max_score: float
    pending_max_score: float
    harness_errors: int
    questions: tuple[QuestionResult, ...]
    checks: tuple[CheckResult, ...]
    notes: tuple[str, ...] = ()
    extraction: Extraction | None = None
    #: What protected the grader from the submission (process isolation): tier, limits, hidden paths.
    sandbox: tuple[str, ...] = ()
    #: The submission's stdout/stderr in the worker, cut at a size cap.
    student_output: StudentOutput | None = None
    #: Worker start-up, apart from the checks' durations (None when no worker was started).
    worker_startup: WorkerStartup | None = None
    #: The subtotal of each assignment graded (one with ``--only``).
    assignments: tuple[AssignmentResult, ...] = ()
    #: ``--only ID``: the one assignment this run graded.
    only: str | None = None
    #: False when some checks were deselected: ``score``/``max_score`` are then a selection's.
    complete: bool = True
    schema_version: int = 1

    def to_json(self) -> dict[str, Any]:
        data = json.loads(json.dumps(dataclasses.asdict(self)))  # tuples become JSON arrays
        for optional in ("sandbox", "student_output", "worker_startup", "assignments", "only"):
            if not data[optional]:
                del data[optional]  # in-process grading: nothing to say
        if data["extraction"] is None:
            del data["extraction"]  # a folder submission: the report reads as before
        elif not data["extraction"]["error"]:
            del data["extraction"]["error"]
        for check in data["checks"]:
            if not check["parts"]:
                del check["parts"]
            if not check["data"]:
                del check["data"]
        for assignment in data.get("assignments", ()):
            if assignment["declared_max_score"] is None:
                del assignment["declared_max_score"]
        for question in data["questions"]:
            if not question["title"]:
                del question["title"]
        return data


def summarise_questions(
    checks: list[CheckResult],
    manual: dict[tuple[str, str], tuple[float, str]],
    titles: dict[tuple[str, str], str] | None = None,
    order: dict[str, list[str]] | None = None,
) -> list[QuestionResult]:
    """Add up check points per (assignment, question) and list the manual questions as pending.

    Args:
        checks: every check of the run.
        manual: (assignment, question id) -> (points, title) of the questions a TA grades.
        titles: (assignment, question id) -> title of the graded questions (from the manifest).
        order: assignment -> its question ids in the handout's order (from the manifest); questions
            are sorted by it, then (not in it) by their ids with digit runs compared as numbers.
    """
    titles = titles or {}
    order = order or {}
    totals: dict[tuple[str, str], list[float]] = {}
    for check in checks:
        earned_max = totals.setdefault((check.assignment, check.question), [0.0, 0.0])
        earned_max[0] += check.points
        earned_max[1] += check.max_points
    questions = [
        QuestionResult(a, q, round(s, 6), round(m, 6), False, "graded", titles.get((a, q), ""))
        for (a, q), (s, m) in totals.items()
    ]
    questions += [
        QuestionResult(a, q, None, pts, True, "pending", title)
        for (a, q), (pts, title) in manual.items()
        if (a, q) not in totals
    ]

    def key(q: QuestionResult) -> tuple:
        ids = order.get(q.assignment, [])
        return (q.assignment, q.id not in ids, ids.index(q.id) if q.id in ids else 0, _question_order(q.id))

    return sorted(questions, key=key)


def _question_order(question_id: str) -> list[Any]:
    """Sort Q2a before Q10a and 3.2 before 3.10: compare digit runs as numbers."""
    import re

    return [int(t) if t.isdigit() else t for t in re.findall(r"\d+|\D+", question_id)]


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The report JSON Schema shipped with the package."""
    return json.loads(resources.files("torchgrade.reporting").joinpath("schema/report.schema.json").read_text())


def validate(data: dict[str, Any]) -> None:
    """Validate a report's JSON form against the schema.

    Raises:
        TorchgradeError: naming the first offending field.
    """
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise TorchgradeError(f"report does not match the schema at {where}: {error.message}")


def write(report: Report, path: str | Path, *, strict: bool = True) -> Path:
    """Validate and write a report atomically (a reader never sees half a file).

    ``strict=False`` skips validation: the last resort of a run whose report broke the schema (a
    torchgrade bug), so that the grades are written rather than lost.
    """
    data = report.to_json()
    if strict:
        validate(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return path
