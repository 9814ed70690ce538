"""The text score table printed after ``pytest graders``: read from a report, nothing of pytest."""

from __future__ import annotations

from pathlib import Path

from torchgrade.intake import notebook
from torchgrade.reporting import report

#: The width of the table's title line.
WIDTH = 78


def score_table(result: report.Report, report_path: Path | None = None) -> list[str]:
    """The score table: one row per question, failing checks under it, then notes and the sandbox."""
    lines = ["", f" torchgrade: {result.submission} ({result.isolation} isolation) ".center(WIDTH, "=")]
    by_question: dict[tuple[str, str], list[report.CheckResult]] = {}
    for check in result.checks:
        by_question.setdefault((check.assignment, check.question), []).append(check)
    for q in result.questions:
        if q.manual:
            continue
        mark = "ok" if q.score == q.max_score else "--"
        lines.append(f" {mark} {q.assignment:<8} {q.id:<6} {q.score:>5g} / {q.max_score:<4g}")
        for check in by_question.get((q.assignment, q.id), []):
            if check.outcome != "passed":
                name = check.id.split("::")[-1]
                first = check.message.splitlines()[0] if check.message else check.outcome
                lines.append(f"      {name}: {first}"[:200])
    pending = [q for q in result.questions if q.manual]
    if pending:
        lines.append(" pending TA review: " + ", ".join(f"{q.id} ({q.max_score:g})" for q in pending))
    lines.append(
        f" total: {result.score:g} / {result.max_score:g} auto-graded points"
        + (f"; {result.pending_max_score:g} points pending TA review" if pending else "")
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
