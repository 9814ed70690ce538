"""Exporters: a torchgrade report in the formats that grading platforms read.

Exporters read the report's JSON (validated against ``schema/report.schema.json``), never pytest
internals, so any report on disk can be exported again later.

``gradescope``: Gradescope's ``results.json`` (``schema/gradescope-results.schema.json``), validated
before it is written. How the report maps onto it, keeping every total:

* One Gradescope test per check, named ``<assignment> <question>: <check function>``; its score and
  max_score are the check's points, its status is ``passed`` only when it earned every point, and its
  output is the check's message, its parts, its measurements and the command that reproduces it.
* The top-level ``score`` is the report's ``score`` (auto-graded points), which is also the sum of
  the tests' scores. Gradescope takes the autograder's maximum from the assignment's settings: set it
  to the report's ``max_score``, which is the sum of the tests' ``max_score``.
* A manual question becomes a test with neither score nor max_score, whose output says it awaits TA
  review and what it is worth. Not 0 / N: Gradescope would show a failed N-point test, and students
  would read the pending points as lost. The pending points are in the output and in
  ``extra_data["torchgrade"]``, next to the report's other totals, so nothing is lost.
* A hidden check (a module under ``graders/hidden/``, see ``torchgrade.engine.plugin``) is shown
  ``after_published`` by default: students see it, and their total, once grades are published.
  Gradescope's ``hidden`` is meant for tests worth no points; it is allowed but not the default.
  While hidden checks exist, the top-level output names only the visible checks' points.

``markdown``: the score table as Markdown, for GitHub's job summary and GitLab job logs; its last line
``torchgrade score: S / M (P%)`` is what a CI coverage regex can read.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from torchgrade import atomic
from torchgrade.errors import TorchgradeError
from torchgrade.hidden import is_hidden_check
from torchgrade.reporting import report

#: Visibilities a hidden check may get; the first is the default.
HIDDEN_VISIBILITIES = ("after_published", "after_due_date", "hidden")
HELP_HIDDEN_VISIBILITY = (
    "when students see hidden checks (graders/hidden/) on Gradescope: after_published (default: "
    "once grades are published), after_due_date, or hidden (never; Gradescope meant this for "
    "checks worth no points)"
)
#: Pieces of a notebook left out of grading that the overall output lists; the report has them all.
MAX_DROPPED_LINES = 30
#: Longest evidence line in a test's output; measurements are a summary, the report has them all.
EVIDENCE_LINE_CHARS = 160
MSG_PENDING = "Pending TA review: worth {points:g} points, graded by hand; not part of the autograder's score."
MSG_MANUAL_GRADED = "Graded by hand: {score:g} / {points:g} points, recorded outside the autograder's score."
MSG_HIDDEN_TOTAL = (
    "Visible checks: {score:g} / {max_score:g} points. {count} more check(s) are graded too; they and "
    "the total are shown once grades are published."
)


class ReportInputError(TorchgradeError):
    """The file given to an exporter is missing, is not JSON, or is not a torchgrade report."""


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report's JSON and validate it against the report schema.

    Raises:
        ReportInputError: the file is missing, not JSON, or not a valid report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportInputError(f"report {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"report {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"report {path} is not a torchgrade report: its JSON is a {type(data).__name__}")
    try:
        report.validate(data)
    except TorchgradeError as exc:
        raise ReportInputError(f"{path} is not a valid torchgrade report: {exc}") from None
    return data


def only_assignment(data: dict[str, Any], assignment: str | None) -> dict[str, Any]:
    """The report restricted to one assignment (``--only``): its checks and questions, its totals
    (the report's per-assignment subtotal), ``only`` set; the report itself for None.

    Raises:
        ReportInputError: the report graded no such assignment (the message lists those it did).
    """
    if assignment is None:
        return data
    graded = list(dict.fromkeys(item["assignment"] for item in [*data["checks"], *data["questions"]]))
    if assignment not in graded:
        known = ", ".join(graded) or "(none)"
        raise ReportInputError(f"the report grades no assignment {assignment!r}; it grades: {known}")
    checks = [c for c in data["checks"] if c["assignment"] == assignment]
    questions = [q for q in data["questions"] if q["assignment"] == assignment]
    subtotal = next((a for a in data.get("assignments", ()) if a["id"] == assignment), None)
    out = {
        **data,
        "checks": checks,
        "questions": questions,
        "score": round(sum(c["points"] for c in checks), 6),
        "max_score": round(sum(c["max_points"] for c in checks), 6),
        "pending_max_score": round(sum(q["max_score"] for q in questions if q["manual"]), 6),
        "harness_errors": sum(c["outcome"] == "error" for c in checks),
        "only": assignment,
    }
    if subtotal is not None:
        out["assignments"] = [subtotal]
        out["complete"] = subtotal["complete"]
    return out


# -- Gradescope ---------------------------------------------------------------------------------------
def to_gradescope(data: dict[str, Any], *, hidden_visibility: str = HIDDEN_VISIBILITIES[0]) -> dict[str, Any]:
    """Map a report's JSON onto Gradescope's results.json (see the module docstring for the rules).

    Args:
        data: a report's JSON, as validated by :func:`torchgrade.reporting.report.validate`.
        hidden_visibility: the visibility of hidden checks, one of :data:`HIDDEN_VISIBILITIES`.
    """
    if hidden_visibility not in HIDDEN_VISIBILITIES:
        raise ValueError(f"hidden_visibility {hidden_visibility!r} is not one of {', '.join(HIDDEN_VISIBILITIES)}")
    tests = [_check_test(check, hidden_visibility, data.get("only")) for check in data["checks"]]
    tests += [_manual_test(q) for q in data["questions"] if q["manual"]]
    results: dict[str, Any] = {
        "score": data["score"],
        "output": _overall_output(data),
        "output_format": "text",
        "test_output_format": "text",  # messages are plain text; never let Gradescope read them as HTML
        "test_name_format": "text",
        "stdout_visibility": "hidden",  # run_autograder's log has paths and tracebacks: instructors only
        "extra_data": {"torchgrade": _totals(data)},
        "tests": tests,
    }
    elapsed = _elapsed_seconds(data)
    if elapsed is not None:
        results["execution_time"] = elapsed
    return results


def _check_test(check: dict[str, Any], hidden_visibility: str, only: str | None = None) -> dict[str, Any]:
    hidden = is_hidden_check(check["id"])
    return {
        "name": f"{check['assignment']} {check['question']}: {check['id'].split('::', 1)[-1]}",
        "score": check["points"],
        "max_score": check["max_points"],
        "status": "passed" if check["outcome"] == "passed" else "failed",
        "output": check_output(check, hidden=hidden, only=only),
        "tags": [check["assignment"], check["question"]] + (["hidden"] if hidden else []),
        "visibility": hidden_visibility if hidden else "visible",
    }


def _manual_test(question: dict[str, Any]) -> dict[str, Any]:
    title = question.get("title") or "answered by hand"
    if question["status"] == "graded" and question["score"] is not None:
        output = MSG_MANUAL_GRADED.format(score=question["score"], points=question["max_score"])
    else:
        output = MSG_PENDING.format(points=question["max_score"])
    return {
        "name": f"{question['assignment']} {question['id']}: {title}",
        "output": output,
        "tags": [question["assignment"], question["id"], "manual"],
        "visibility": "visible",
    }


def check_output(check: dict[str, Any], *, hidden: bool = False, only: str | None = None) -> str:
    """A check's Gradescope output: the verdict or failure message, its parts, its measurements and,
    for a visible check that lost points, the command that reproduces it (with ``--only`` when the
    report graded one assignment: the student's copy then collects that assignment's checks only)."""
    outcome, points, max_points = check["outcome"], check["points"], check["max_points"]
    if outcome == "passed":
        lines = [f"Passed: {points:g} / {max_points:g} points."]
    elif outcome == "skipped":
        lines = [f"Not run ({points:g} / {max_points:g} points): {check['message'] or 'skipped'}"]
    else:  # failed (the student's) or error (ours; the message says so)
        lines = [check["message"] or outcome, f"({points:g} / {max_points:g} points)"]
    parts = check.get("parts") or []
    if parts:
        lines.append("Parts:")
        lines += [
            f"  {'ok' if p['points'] >= p['max_points'] else '--'} {p['name']}: {p['points']:g} / {p['max_points']:g}"
            for p in parts
        ]
    evidence = summarise_evidence(check.get("data") or {})
    if evidence:
        lines.append("Measurements:")
        lines += [f"  {line}" for line in evidence]
    if outcome == "failed" and not hidden:
        lines.append(f"Reproduce: pytest {check['id']}" + (f" --only={only}" if only else ""))
    return "\n".join(lines)


def summarise_evidence(data: dict[str, Any], *, prefix: str = "") -> list[str]:
    """One line per measurement: numbers to 4 significant digits, long lists as count, min, mean, max."""
    lines = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += summarise_evidence(value, prefix=f"{name}.")
            continue
        lines.append(f"{name}: {_summarise_value(value)}"[:EVIDENCE_LINE_CHARS])
    return lines


def _summarise_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | float):
        return f"{value:.4g}"
    if isinstance(value, list):
        flat = _flatten(value)
        numbers = [v for v in flat if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(flat) <= 8:
            return "[" + ", ".join(_summarise_value(v) for v in value) + "]"
        if len(numbers) == len(flat):
            mean = sum(numbers) / len(numbers)
            return f"{len(numbers)} values, min {min(numbers):.4g}, mean {mean:.4g}, max {max(numbers):.4g}"
        return f"{len(flat)} values"
    return str(value)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _overall_output(data: dict[str, Any]) -> str:
    hidden = [c for c in data["checks"] if is_hidden_check(c["id"])]
    if hidden:
        visible = [c for c in data["checks"] if not is_hidden_check(c["id"])]
        lines = [
            MSG_HIDDEN_TOTAL.format(
                score=sum(c["points"] for c in visible),
                max_score=sum(c["max_points"] for c in visible),
                count=len(hidden),
            )
        ]
    else:
        lines = [f"Auto-graded: {data['score']:g} / {data['max_score']:g} points."]
    pending = [q for q in data["questions"] if q["manual"] and q["status"] == "pending"]
    if pending:
        listed = ", ".join(f"{q['assignment']} {q['id']} ({q['max_score']:g})" for q in pending)
        lines.append(
            f"Pending TA review, not in this score: {listed}; {sum(q['max_score'] for q in pending):g} points in all."
        )
    lines += [f"Adapted: {note}" for note in data["notes"]]
    lines += extraction_lines(data)
    if data["harness_errors"]:
        lines.append(
            f"{data['harness_errors']} check(s) hit a torchgrade error: not your fault; "
            "your instructor has to regrade them."
        )
    return "\n".join(lines)


def extraction_lines(data: dict[str, Any]) -> list[str]:
    """For a notebook or script submission: what was graded, and each piece left out and why, so that
    a student who lost a name sees which cell it was in (at most :data:`MAX_DROPPED_LINES` pieces)."""
    extraction = data.get("extraction")
    if not extraction:
        return []
    modules = ", ".join(extraction["modules"]) or "no module"
    lines = [f"Graded {extraction['source']} ({extraction['kind']}) as {modules}."]
    if extraction.get("error"):
        lines.append(f"It could not be graded: {extraction['error']}")
    dropped = extraction["dropped"]
    if dropped:
        lines.append(f"Left out of grading ({len(dropped)}):")
    for piece in dropped[:MAX_DROPPED_LINES]:
        where = dropped_where(piece)
        names = f" (would define {', '.join(piece['names'])})" if piece["names"] else ""
        excerpt = piece["excerpt"].strip().splitlines()[0][:60] if piece["excerpt"].strip() else ""
        lines.append(f"  {where}: {excerpt!r}: {piece['reason']}{names}")
    if len(dropped) > MAX_DROPPED_LINES:
        lines.append(f"  ... and {len(dropped) - MAX_DROPPED_LINES} more (see the JSON report)")
    return lines


def _totals(data: dict[str, Any]) -> dict[str, Any]:
    """The report's totals, kept where Gradescope stores data without showing it (with the subtotal of
    each assignment and the ``--only`` id where the report has them)."""
    totals = {
        key: data[key]
        for key in (
            "score",
            "max_score",
            "pending_max_score",
            "harness_errors",
            "isolation",
            "versions",
            "started_at",
            "finished_at",
        )
    }
    return totals | {key: data[key] for key in ("assignments", "only", "complete") if key in data}


def _elapsed_seconds(data: dict[str, Any]) -> int | None:
    try:
        started = dt.datetime.fromisoformat(data["started_at"])
        finished = dt.datetime.fromisoformat(data["finished_at"])
    except ValueError:
        return None
    return max(0, round((finished - started).total_seconds()))


@lru_cache(maxsize=1)
def gradescope_schema() -> dict[str, Any]:
    """The JSON Schema of Gradescope's results.json shipped with the package."""
    return json.loads(
        resources.files("torchgrade.reporting").joinpath("schema/gradescope-results.schema.json").read_text()
    )


def validate_gradescope(results: dict[str, Any]) -> None:
    """Validate a results.json against the Gradescope schema.

    Raises:
        TorchgradeError: naming the first offending field (an exporter bug, never the student's).
    """
    validator = jsonschema.Draft202012Validator(gradescope_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(results))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise TorchgradeError(f"Gradescope results do not match the schema at {where}: {error.message}")


def write_gradescope(
    report_path: str | Path,
    out: str | Path,
    *,
    hidden_visibility: str = HIDDEN_VISIBILITIES[0],
    only: str | None = None,
) -> dict[str, Any]:
    """Export a report file to a validated results.json, written atomically; returns the results.
    ``only``: export one assignment of the report (:func:`only_assignment`)."""
    data = only_assignment(load_report(report_path), only)
    results = to_gradescope(data, hidden_visibility=hidden_visibility)
    validate_gradescope(results)
    atomic.write_text(out, json.dumps(results, indent=2) + "\n")
    return results


# -- Markdown ---------------------------------------------------------------------------------------
def to_markdown(data: dict[str, Any]) -> str:
    """The score table as Markdown: one row per question, the failing checks, the total."""
    percent = 100.0 * data["score"] / data["max_score"] if data["max_score"] else 100.0
    lines = ["| assignment | question | points | failing checks |", "| --- | --- | --- | --- |"]
    for q in data["questions"]:
        if q["manual"]:
            lines.append(f"| {q['assignment']} | {q['id']} | pending TA review ({q['max_score']:g}) | |")
            continue
        failing = [
            c
            for c in data["checks"]
            if (c["assignment"], c["question"]) == (q["assignment"], q["id"]) and c["outcome"] != "passed"
        ]
        reasons = "<br>".join(_markdown_cell(f"{c['id'].split('::')[-1]}: {first_line(c)}") for c in failing)
        lines.append(f"| {q['assignment']} | {q['id']} | {q['score']:g} / {q['max_score']:g} | {reasons} |")
    lines.append("")
    extraction = extraction_lines(data)
    if extraction:
        lines += ["```", *extraction, "```", ""]
    if data["pending_max_score"]:
        lines.append(f"{data['pending_max_score']:g} points await TA review and are not in the score.")
    if data["harness_errors"]:
        lines.append(f"**{data['harness_errors']} check(s) hit a torchgrade error** (not the submission's fault).")
    subtotals = data.get("assignments", [])
    if len(subtotals) > 1:
        lines += [f"- {a['id']}: {a['score']:g} / {a['max_score']:g}" for a in subtotals] + [""]
    named = f" ({data['only']})" if data.get("only") else ""
    selected = "" if data.get("complete", True) else " for the selected checks only, not the assignment's total"
    lines.append(f"torchgrade score{named}: {data['score']:g} / {data['max_score']:g} ({percent:.2f}%){selected}")
    return "\n".join(lines) + "\n"


def first_line(check: dict[str, Any]) -> str:
    """The first line of a check's message (its outcome when the message is empty or blank)."""
    text = (check["message"] or check["outcome"]).strip()
    return text.splitlines()[0] if text else check["outcome"]


def dropped_where(piece: dict[str, Any]) -> str:
    """Where a piece left out of a notebook or script was: ``cell 7, lines 1-2`` (no cell for a script)."""
    cell = f"cell {piece['cell']}, " if piece["cell"] is not None else ""
    return cell + "lines {}-{}".format(*piece["lines"])


def _markdown_cell(text: str, limit: int = 200) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:limit]


def write_markdown(report_path: str | Path, out: str | Path | None, *, only: str | None = None) -> str:
    """Export a report file as Markdown to ``out`` (None: only return it); ``only``: one assignment of it."""
    text = to_markdown(only_assignment(load_report(report_path), only))
    if out is not None:
        atomic.write_text(out, text)
    return text
