"""One submission's page of a batch: what a TA opens from the summary instead of the JSON report.

The page reads like the student's score table, with everything a TA needs to answer "why did this
submission lose these points?" on one screen:

* the status (and why, when it is not ``graded``), the score, the points awaiting TA review;
* one row per handout question, its points and the messages of the checks that lost points there;
* each check that lost points: its message, its parts, its measurements, the command that reproduces it;
* for a notebook or script: what was graded, and each cell or piece left out of grading and why;
* what the submission printed (the first part, as the worker captured it);
* the notes (adaptations, stand-ins), the sandbox that ran it, the worker's start-up time, versions.

Like every exporter it reads the report's JSON only (``schema/report.schema.json``), so pages can be
written again from any folder of reports. Every text goes through :func:`html_text`: a submission's
name, its messages and its output are the student's text, shown as text, never as markup.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchgrade import atomic
from torchgrade.reporting import export, gradebook

#: The folder of the pages, inside the batch's output folder (relative links go up one level).
FOLDER = "pages"
#: Longest message shown in full on the page; the JSON report has it all.
MESSAGE_CHARS = 4000

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em; color: #222; }
h1, h2, h3, li, p, td.name { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num, td.q { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.q { text-align: left; }
tr.lost { background: #fde8e8; }
tr.pending { background: #f3f3f3; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; padding: 0.5em; margin: 0.3em 0; }
.status { font-weight: bold; }
.problem { color: #a40000; }
nav { margin-bottom: 1em; }
"""


def page_name(report_file: str) -> str:
    """The page's path relative to the output folder, for the report file ``report_file`` (``x.json``
    -> ``pages/x.html``): pages are named as their reports are, so a rerun finds the same page."""
    stem = report_file[: -len(".json")] if report_file.endswith(".json") else report_file
    return f"{FOLDER}/{stem}.html"


def render(
    data: Mapping[str, Any],
    *,
    name: str,
    student: str = "",
    report_file: str | None = None,
    summary_file: str = "summary.html",
) -> str:
    """The HTML page of one submission's report (links are relative to :data:`FOLDER`)."""
    state, why = gradebook.status_and_reason(data)
    title = f"{name} ({student})" if student else name
    nav = [f'<a href="../{href(summary_file)}">Back to the summary</a>']
    if report_file:
        nav.append(f'<a href="../{href(report_file)}">the JSON report</a>')
    body = [
        f"<nav>{' · '.join(nav)}</nav>",
        f"<h1>{html_text(title)}</h1>",
        _headline(data, state, why),
        *_questions(data, graded=state == gradebook.STATUS_GRADED),
        *(_lost_checks(data) if state == gradebook.STATUS_GRADED else _not_run(data)),
        *_extraction(data),
        *_output(data),
        *_details(data),
    ]
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{html_text(title)}: torchgrade</title>\n<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write(data: Mapping[str, Any], path: str | Path, **options: Any) -> Path:
    """Write the page of ``data`` (see :func:`render` for ``options``) to ``path`` atomically."""
    return atomic.write_text(path, render(data, **options))


def _headline(data: Mapping[str, Any], state: str, why: str) -> str:
    score = f"{data['score']:g} / {data['max_score']:g} auto-graded points"
    if data.get("complete") is False:
        score += " of the selected checks only (-k, -m or named checks), not the assignment's total"
    pending = f"; {data['pending_max_score']:g} more await TA review" if data["pending_max_score"] else ""
    if state == gradebook.STATUS_GRADED:
        return f'<p><span class="status">graded</span>: {html_text(score + pending)}.</p>'
    return (
        f'<p class="problem"><span class="status">{html_text(state)}</span>: {html_text(why or state)}</p>'
        f"<p>{html_text(score + pending)}.</p>"
    )


def _questions(data: Mapping[str, Any], *, graded: bool = True) -> list[str]:
    """The score table. For a submission that was not graded, the reason is said once above, so the
    rows give the points only."""
    titled = any(q.get("title") for q in data["questions"])
    rows = []
    for q in data["questions"]:
        label = f"{q['assignment']} {q['id']}"
        title = f"<td>{html_text(q.get('title', ''))}</td>" if titled else ""
        if q["manual"]:
            by_hand = q["status"] == "graded" and q["score"] is not None
            points = f"{q['score']:g} / {q['max_score']:g}" if by_hand else f"pending ({q['max_score']:g})"
            rows.append(
                f'<tr class="pending"><td class="q">{html_text(label)}</td>{title}'
                f'<td class="num">{points}</td><td>graded by hand</td></tr>'
            )
            continue
        lost = [c for c in _checks_of(data, q) if c["points"] < c["max_points"]]
        css = ' class="lost"' if lost else ""
        why = "<br>".join(html_text(f"{_short(c['id'])}: {export.first_line(c)}") for c in lost) if graded else ""
        rows.append(
            f'<tr{css}><td class="q">{html_text(label)}</td>{title}'
            f'<td class="num">{q["score"]:g} / {q["max_score"]:g}</td><td class="name">{why}</td></tr>'
        )
    return [
        "<h2>Score per question</h2>",
        "<table>",
        f"<tr><th>question</th>{'<th>title</th>' if titled else ''}<th>points</th><th>what lost points</th></tr>",
        *rows,
        "</table>",
    ]


def _lost_checks(data: Mapping[str, Any]) -> list[str]:
    lost = [c for c in data["checks"] if c["points"] < c["max_points"]]
    if not lost:
        return []
    out = ["<h2>Checks that lost points</h2>"]
    for check in lost:
        heading = f"{check['assignment']} {check['question']}: {_short(check['id'])}"
        verdict = {"failed": "failed", "error": "torchgrade error (not the student's fault)", "skipped": "not run"}
        out.append(
            f"<h3>{html_text(heading)} ({check['points']:g} / {check['max_points']:g}, "
            f"{html_text(verdict.get(check['outcome'], check['outcome']))})</h3>"
        )
        out.append(f"<pre>{html_text(_capped(check['message'] or check['outcome']))}</pre>")
        parts = check.get("parts") or []
        if parts:
            items = "".join(
                f"<li>{'✓' if p['points'] >= p['max_points'] else '✗'} {html_text(p['name'])}: "
                f"{p['points']:g} / {p['max_points']:g}</li>"
                for p in parts
            )
            out.append(f"<p>Parts:</p><ul>{items}</ul>")
        evidence = export.summarise_evidence(check.get("data") or {})
        if evidence:
            out.append(f"<p>Measurements:</p><pre>{html_text(chr(10).join(evidence))}</pre>")
        if check["outcome"] == "failed":
            command = f"pytest {check['id']}"
            if data.get("only"):
                command += f" --only={data['only']}"
            out.append(f"<p>Reproduce: <code>{html_text(command)} --submission=FOLDER</code></p>")
    return out


def _not_run(data: Mapping[str, Any]) -> list[str]:
    """For a submission that was not graded: its checks by name, without the one reason (said above)
    that each of them repeats."""
    if not data["checks"]:
        return []
    names = ", ".join(_short(c["id"]) for c in data["checks"])
    return [f"<p>Its checks, none of which could grade it: {html_text(names)}.</p>"]


def _extraction(data: Mapping[str, Any]) -> list[str]:
    extraction = data.get("extraction")
    if not extraction:
        return []
    modules = ", ".join(extraction["modules"]) or "no module"
    out = [
        "<h2>What was graded</h2>",
        f"<p>{html_text(extraction['source'])} ({html_text(extraction['kind'])}), graded as {html_text(modules)}.</p>",
    ]
    if extraction.get("error"):
        out.append(f'<p class="problem">It could not be graded: {html_text(extraction["error"])}</p>')
    dropped = extraction["dropped"]
    if dropped:
        out += [
            f"<h3>Left out of grading ({len(dropped)})</h3>",
            "<table>",
            "<tr><th>where</th><th>why</th><th>would define</th><th>code</th></tr>",
        ]
        for piece in dropped:
            out.append(
                f"<tr><td>{html_text(export.dropped_where(piece))}</td><td>{html_text(piece['reason'])}</td>"
                f"<td>{html_text(', '.join(piece['names']))}</td>"
                f"<td><pre>{html_text(_capped(piece['excerpt'], 600))}</pre></td></tr>"
            )
        out.append("</table>")
    return out


def _output(data: Mapping[str, Any]) -> list[str]:
    printed = data.get("student_output")
    if not printed:
        return []
    more = f" ({printed['dropped_bytes']} more bytes were left out)" if printed["dropped_bytes"] else ""
    return [
        "<h2>What the submission printed</h2>",
        f"<p>The first part of its output{html_text(more)}:</p>",
        f"<pre>{html_text(printed['text'])}</pre>",
    ]


def _details(data: Mapping[str, Any]) -> list[str]:
    out = []
    if data.get("notes"):
        out += ["<h2>Notes</h2>", "<ul>", *(f"<li>{html_text(note)}</li>" for note in data["notes"]), "</ul>"]
    facts = [
        ("graded", f"{data.get('started_at', '?')} to {data.get('finished_at', '?')}"),
        ("isolation", data.get("isolation", "?")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (data.get("versions") or {}).items())),
    ]
    startup = data.get("worker_startup")
    if startup:
        facts.append(
            ("worker start-up", f"{startup['seconds']:.2f} s in {startup['starts']} start(s), not in the checks' times")
        )
    out += [
        "<h2>How it was graded</h2>",
        "<table>",
        *(f"<tr><th>{html_text(k)}</th><td>{html_text(v)}</td></tr>" for k, v in facts),
        "</table>",
    ]
    if data.get("sandbox"):
        lines = "".join(f"<li>{html_text(line)}</li>" for line in data["sandbox"])
        out.append(f"<details><summary>Sandbox</summary><ul>{lines}</ul></details>")
    return out


def _checks_of(data: Mapping[str, Any], question: Mapping[str, Any]) -> list[dict[str, Any]]:
    key = (question["assignment"], question["id"])
    return [c for c in data["checks"] if (c["assignment"], c["question"]) == key]


def _short(check_id: str) -> str:
    return check_id.rpartition("::")[2] or check_id


def _capped(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def href(file_name: str) -> str:
    """A relative URL of a file; a name that is not UTF-8 links by its bytes."""
    try:
        return urllib.parse.quote(file_name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # no file has this name: link to its printable form
        return urllib.parse.quote(gradebook.printable(file_name))


def html_text(value: object) -> str:
    """HTML text of ``value``; a name that is not UTF-8 shows its bytes (:func:`gradebook.printable`)."""
    return html.escape(gradebook.printable(str(value)), quote=True)
