"""From pytest outcomes to the report: which failures are the student's, and the report itself.

A failure is the student's when it is a :class:`~torchgrade.errors.CheckFailure` (or a plain
``AssertionError``) or a timeout; anything else a grader raises is a harness error, reported with
:data:`MSG_HARNESS_ERROR` and its own exit code, never a silent zero.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from typing import Any

import pytest

import torchgrade
from torchgrade import errors
from torchgrade.engine.state import CheckRecord, CheckSpec, RunState
from torchgrade.reporting import report

MSG_HARNESS_ERROR = "torchgrade internal error ({type}: {error}); this is not your fault, tell your instructor."


def classify(excinfo: pytest.ExceptionInfo | None) -> tuple[str, str]:
    """The outcome (``failed``: the student's; ``error``: ours) and message of a failed phase."""
    if excinfo is None:
        return "error", "unknown failure"
    exc = excinfo.value
    if isinstance(exc, AssertionError):
        return "failed", capped(errors.failure_text(exc))
    if type(exc).__name__ == "Failed" and "Timeout" in str(exc):
        return "failed", capped(str(exc).strip().splitlines()[0])
    return "error", capped(MSG_HARNESS_ERROR.format(type=type(exc).__name__, error=exc))


#: The longest message a check's result keeps: its head (what was called) and its tail (the error).
MAX_MESSAGE_CHARS = 4000
MSG_CUT = "\n[... {count:,} characters cut ...]\n"


def capped(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The last safeguard on a message's length, whatever built it: at most ``limit`` characters,
    keeping the head and the tail and saying how much of the middle was cut."""
    if len(message) <= limit:
        return message
    head, tail = limit * 5 // 8, limit * 3 // 8
    return message[:head] + MSG_CUT.format(count=len(message) - head - tail) + message[-tail:]


def skip_reason(rep: pytest.TestReport) -> str:
    longrepr = rep.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def build_report(state: RunState) -> report.Report:
    """Turn the recorded outcomes into a :class:`torchgrade.reporting.report.Report`."""
    # Imported here, for its version only: a run without a check that needed torch (or ``pytest
    # --help``, which loads the plugin) does not pay for importing it.
    import torch

    checks = [
        _check_result(nodeid, spec, state.results.get(nodeid, CheckRecord("skipped", "not run")))
        for nodeid, spec in state.specs.items()
    ]
    repository = state.repository
    declared = repository.assignments if repository is not None else {}
    titles = {(a.id, q.id): q.title for a in declared.values() for q in a.questions}
    order = {a.id: [q.id for q in a.questions] for a in declared.values()}
    questions = report.summarise_questions(checks, state.manual, titles, order)
    subtotals = _subtotals(state, checks, questions)
    record = state.record
    output = report.StudentOutput(record.output, record.dropped_output) if record and record.output else None
    return report.Report(
        submission=str(state.submission),
        isolation=state.isolation,
        versions={
            "torchgrade": torchgrade.__version__,
            "torch": torch.__version__,
            "python": platform.python_version() or sys.version.split()[0],
        },
        started_at=state.started_at,
        finished_at=now(),
        score=round(sum(c.points for c in checks), 6),
        max_score=round(sum(c.max_points for c in checks), 6),
        pending_max_score=round(sum(q.max_score for q in questions if q.manual), 6),
        harness_errors=sum(c.outcome == "error" for c in checks),
        questions=tuple(questions),
        checks=tuple(checks),
        notes=record.notes if record else (),
        extraction=state.extraction,
        sandbox=record.sandbox if record else (),
        student_output=output,
        worker_startup=report.WorkerStartup(record.startup_seconds, record.startups)
        if record and record.startups
        else None,
        assignments=subtotals,
        only=state.only,
        complete=all(a.complete for a in subtotals),
    )


def _subtotals(
    state: RunState, checks: list[report.CheckResult], questions: list[report.QuestionResult]
) -> tuple[report.AssignmentResult, ...]:
    """One subtotal per assignment of the run, in the manifest's order (then by id)."""
    declared = state.repository.assignments if state.repository is not None else {}
    ids = list(dict.fromkeys([c.assignment for c in checks] + [q.assignment for q in questions]))
    ids.sort(key=lambda a: (a not in declared, list(declared).index(a) if a in declared else 0, a))
    out = []
    for aid in ids:
        mine = [c for c in checks if c.assignment == aid]
        max_score = round(sum(c.max_points for c in mine), 6)
        manifest = declared.get(aid)
        full = round(manifest.auto_points, 6) if manifest is not None else None
        complete = aid not in state.partial and (full is None or abs(max_score - full) < 1e-6)
        out.append(
            report.AssignmentResult(
                id=aid,
                title=manifest.title if manifest is not None else aid,
                score=round(sum(c.points for c in mine), 6),
                max_score=max_score,
                pending_max_score=round(sum(q.max_score for q in questions if q.manual and q.assignment == aid), 6),
                complete=complete,
                declared_max_score=full,
            )
        )
    return tuple(out)


def _check_result(nodeid: str, spec: CheckSpec, entry: CheckRecord) -> report.CheckResult:
    if entry.outcome == "passed":
        points = spec.max_points
    elif entry.outcome == "failed" and entry.parts:
        points = sum(p.points for p in entry.parts)
    else:
        points = 0.0
    return report.CheckResult(
        id=nodeid,
        assignment=spec.assignment,
        question=spec.question,
        points=points,
        max_points=spec.max_points,
        outcome=entry.outcome,
        message=entry.message,
        duration=round(entry.duration, 4),
        parts=entry.parts,
        data=plain(entry.data),
    )


def plain(data: Any) -> Any:
    """Evidence goes into JSON: keep numbers, strings and containers of them."""
    return json.loads(json.dumps(data, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def now() -> str:
    """The current time for the report: ISO 8601, UTC, in seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
