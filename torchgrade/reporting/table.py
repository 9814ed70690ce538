"""The text score table printed after ``pytest graders``: read from a report, nothing of pytest."""

from __future__ import annotations

from pathlib import Path

from torchgrade.intake import notebook
from torchgrade.reporting import report

#: The width of the table's title line.
WIDTH = 78


def score_table(result: report.Report, report_path: Path | None = None, *, messages: bool = True) -> list[str]:
    """The score table: one row per question, failing checks under it, then notes and the sandbox.

    ``messages=False`` (pytest printed each failure's message above it) names a failed check without
    its message, so that the student reads each message once; errors and skips keep theirs.
    """
    named = ""
    if result.only is not None:
        title = next((a.title for a in result.assignments if a.id == result.only), "")
        named = f"{result.only}" + (f" ({title})" if title and title != result.only else "") + ": "
    lines = ["", f" torchgrade: {named}{result.submission} ({result.isolation} isolation) ".center(WIDTH, "=")]
    by_question: dict[tuple[str, str], list[report.CheckResult]] = {}
    for check in result.checks:
        by_question.setdefault((check.assignment, check.question), []).append(check)
    width = max([6, *(len(q.id) for q in result.questions if not q.manual)])
    for q in result.questions:
        if q.manual:
            continue
        mark = "ok" if q.score == q.max_score else "--"
        lines.append(f" {mark} {q.assignment:<8} {q.id:<{width}} {q.score:>5g} / {q.max_score:<4g}")
        for check in by_question.get((q.assignment, q.id), []):
            if check.outcome != "passed":
                name = check.id.split("::")[-1]
                if check.outcome == "failed" and not messages:
                    lines.append(f"      {name}: failed, see its failure above")
                    continue
                first = check.message.splitlines()[0] if check.message else check.outcome
                lines.append(f"      {name}: {first}"[:200])
    pending = [q for q in result.questions if q.manual]
    if pending:
        lines.append(" pending TA review: " + ", ".join(f"{q.id} ({q.max_score:g})" for q in pending))
    if len(result.assignments) > 1:
        for a in result.assignments:
            lines.append(
                f" subtotal {a.id}: {a.score:g} / {a.max_score:g}"
                + ("" if a.complete else _selection(a))
                + (f"; {a.pending_max_score:g} pending" if a.pending_max_score else "")
                + (f" ({a.title})" if a.title and a.title != a.id else "")
            )
    pending_text = f"; {result.pending_max_score:g} points pending TA review" if pending else ""
    if result.complete:
        lines.append(f" total: {result.score:g} / {result.max_score:g} auto-graded points{pending_text}")
    else:
        # -k and friends: the sum of the checks that ran is not the assignment's grade.
        partial = [a for a in result.assignments if not a.complete]
        lines.append(
            f" selected checks: {result.score:g} / {result.max_score:g} auto-graded points{pending_text}"
            + (f"; a selection, not the total of {', '.join(_declared(a) for a in partial)}" if partial else "")
        )
    lines += [f" note: {note}" for note in result.notes]
    if result.sandbox:
        lines.append(" " + "; ".join(result.sandbox[:1] + result.sandbox[2:]))  # the tier and what it protects
    if result.extraction is not None:
        lines += notebook.summary(result.extraction)
    if result.harness_errors:
        lines.append(f" {result.harness_errors} check(s) hit a torchgrade error: not the submission's fault.")
    if report_path is not None:
        lines.append(f" report: {report_path}")
    return lines


def _declared(assignment: report.AssignmentResult) -> str:
    if assignment.declared_max_score is None:
        return assignment.id
    return f"{assignment.id} ({assignment.declared_max_score:g} points)"


def _selection(assignment: report.AssignmentResult) -> str:
    full = f" of {assignment.declared_max_score:g}" if assignment.declared_max_score is not None else ""
    return f" (selected checks only{full})"
