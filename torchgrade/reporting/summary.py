"""The summary page of a batch: ``summary.html``, the PNG plots it shows, and a page per submission.

An instructor opens one page to see how the class did and what to teach next week:

* the overview: how many submissions, how many of each status (graded, unreadable, timed out, crashed,
  harness error, and, with a roster, missing; see :mod:`torchgrade.reporting.gradebook`), mean and median;
* what needs a look: every submission that was not graded, with why; the roster's students who did not
  submit; the submissions that match no one on the roster;
* **what the class got wrong**: per question, the failures grouped by their message with numbers,
  paths and values abstracted (:func:`message_pattern`), largest group first, with how many and who;
* the score histogram and each question's pass rate (which questions the class found hard, or which
  grader may be wrong);
* the slowest checks (what to optimise before the next batch), without the worker's start-up, which is
  shown apart (the check that happened to start a worker is not slow for it);
* a table of every submission, linking to its own page (:mod:`torchgrade.reporting.submission_page`:
  score table, messages, the notebook cells left out, what it printed) and to its JSON report.

The page refers to the plots, pages and reports by relative paths, so the folder can be zipped or
served as it is. Plots are drawn with matplotlib's object-oriented API on the Agg canvas: no pyplot,
no global backend state, no display needed. Like every exporter, this module reads reports only.
Every text on the page goes through :func:`_e`, so a submission whose name is not UTF-8 is shown with
its undecodable bytes as ``\\xNN`` and still links to its report, and a name or message that looks
like HTML is shown as text.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchgrade import atomic
from torchgrade.reporting import gradebook, submission_page
from torchgrade.reporting.submission_page import href as _href
from torchgrade.reporting.submission_page import html_text as _e

HISTOGRAM, PASS_RATE, SLOWEST = "score_histogram.png", "question_pass_rate.png", "slowest_checks.png"
#: How many checks the "slowest checks" plot and table show.
N_SLOWEST = 15
#: How many submissions a failure group names before "and N more"; how long a pattern is shown.
N_NAMED, PATTERN_CHARS = 12, 300

#: What :func:`message_pattern` abstracts, in order: paths (a scratch folder differs per grading), hex
#: addresses, numbers (not inside a name such as ``fc1`` or ``Q4b``), then runs of abstracted numbers.
_ABSTRACTED = (
    (re.compile(r"(?:/[\w.+~-]+){2,}/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "#"),
    (re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+|\.(?=[,)\]]))?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])|\b(?:nan|inf)\b"), "#"),
    (re.compile(r"#(?:(?:\s*,\s*|\s+)(?:#|\.\.\.|…))+"), "#, …"),
    (re.compile(r"\s+"), " "),
)


@dataclass(frozen=True)
class QuestionStat:
    """How the class did on one question: ``passed`` submissions earned all ``max_score`` points."""

    assignment: str
    id: str
    max_score: float
    mean_score: float
    passed: int
    graded: int

    @property
    def label(self) -> str:
        return f"{self.assignment}:{self.id}"

    @property
    def pass_rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


@dataclass(frozen=True)
class CheckTime:
    """Wall-clock seconds of one check over the submissions where it ran (setup included)."""

    id: str
    mean: float
    max: float
    slowest_submission: str
    runs: int


@dataclass(frozen=True)
class FailureGroup:
    """Submissions whose check failed on one question with the same message, numbers aside.

    ``pattern`` is the message's first line with its numbers, paths and values abstracted
    (:func:`message_pattern`); ``example`` is one of the messages in full; ``submissions`` are sorted;
    ``parts`` names the parts of checks that failed with it (empty for checks without parts).
    """

    assignment: str
    question: str
    pattern: str
    example: str
    submissions: tuple[str, ...]
    parts: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.submissions)


def message_pattern(message: str) -> str:
    """The first line of a failure message with what differs between submissions abstracted: numbers
    (``#``), runs of them (``#, …``: a shape, a list of values), paths (``<path>``: a grading's scratch
    folder) and addresses, so that the same mistake made by many students reads as one line.

    >>> message_pattern("forward(x) returned shape (2, 3, 64); expected (2, 10) at /tmp/ab/c.py")
    'forward(x) returned shape (#, …); expected (#, …) at <path>'
    """
    lines = message.strip().splitlines()
    text = lines[0] if lines else ""
    for pattern, replacement in _ABSTRACTED:
        text = pattern.sub(replacement, text)
    text = text.strip()
    return text if len(text) <= PATTERN_CHARS else text[: PATTERN_CHARS - 1] + "…"


def failure_groups(reports: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], list[FailureGroup]]:
    """Per auto-graded question (handout order), the failures of the class grouped by
    :func:`message_pattern`, largest group first (ties: by pattern).

    Only submissions whose status is ``graded`` count: an unreadable or timed-out submission fails
    every check with one message, which the "Needs a look" list already gives. A torchgrade error is
    not the student's failure and is left out too (it is listed there as a harness error). A submission
    is named once per group even when several of its checks in the question failed the same way. A check
    made of parts is grouped by the message of each part it failed, and the group names those parts
    (a crash that fails four parts of one check is one group, not four).
    """
    found: dict[tuple[str, str], dict[str, tuple[str, set[str], dict[str, None]]]] = {}
    for name, data in reports.items():
        if gradebook.status(data) != gradebook.STATUS_GRADED:
            continue
        for check in data["checks"]:
            if check["outcome"] != "failed":
                continue
            key = (check["assignment"], check["question"])
            for pattern, example, part in _failures_of(check):
                _, names, parts = found.setdefault(key, {}).setdefault(pattern, (example, set(), {}))
                names.add(name)
                if part:
                    parts[part] = None
    order = {key: index for index, key in enumerate(gradebook.question_columns(reports.values()))}
    groups = {}
    for key in sorted(found, key=lambda k: (order.get(k, len(order)), k)):
        made = [
            FailureGroup(*key, pattern, example, tuple(sorted(names)), tuple(parts))
            for pattern, (example, names, parts) in found[key].items()
        ]
        groups[key] = sorted(made, key=lambda g: (-g.count, g.pattern))
    return groups


def _failures_of(check: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(pattern, message, part name) of each way a failed check failed: one per failed part (a check
    of several parts fails in as many ways as it has failed parts), else its message (no part)."""
    lost = [p for p in check.get("parts") or () if p["points"] < p["max_points"]]
    if lost:
        return [
            (message_pattern(p["message"] or check["message"]), p["message"] or check["message"], p["name"])
            for p in lost
        ]
    return [(message_pattern(check["message"] or "failed"), check["message"], "")]


def startup_times(reports: Mapping[str, Mapping[str, Any]]) -> list[float]:
    """Each submission's worker start-up seconds (spawn, imports, loading the submission), where its
    report states them: the time no check's duration includes."""
    return [data["worker_startup"]["seconds"] for data in reports.values() if data.get("worker_startup")]


def score_percentages(reports: Mapping[str, Mapping[str, Any]]) -> list[float]:
    """Each submission's auto-graded score as a percentage of its maximum (0 when the maximum is 0)."""
    return [100.0 * r["score"] / r["max_score"] if r["max_score"] else 0.0 for r in reports.values()]


def question_stats(reports: Mapping[str, Mapping[str, Any]]) -> list[QuestionStat]:
    """Per auto-graded question, in handout order: mean score and how many earned full marks.

    A submission that was not graded (unreadable, timed out...) counts with its zero: the gradebook
    gives it zero too.
    """
    stats = []
    for assignment, qid in gradebook.question_columns(reports.values()):
        found = [
            q
            for r in reports.values()
            for q in r["questions"]
            if (q["assignment"], q["id"]) == (assignment, qid) and not q["manual"]
        ]
        if not found:
            continue  # a manual question: nothing to plot until a TA grades it
        scores = [q["score"] for q in found]
        stats.append(
            QuestionStat(
                assignment,
                qid,
                max(q["max_score"] for q in found),
                statistics.fmean(scores),
                sum(q["score"] >= q["max_score"] for q in found),
                len(found),
            )
        )
    return stats


def check_times(reports: Mapping[str, Mapping[str, Any]], limit: int = N_SLOWEST) -> list[CheckTime]:
    """The ``limit`` checks with the greatest mean duration, slowest first.

    Only submissions whose status is ``graded`` count: the checks of a grading that did not finish
    never ran, and those of an unreadable one failed at once, which says nothing of their speed.
    """
    runs: dict[str, list[tuple[float, str]]] = {}
    for name, data in reports.items():
        if gradebook.status(data) != gradebook.STATUS_GRADED:
            continue
        for check in data["checks"]:
            if check["outcome"] != "skipped":
                runs.setdefault(check["id"], []).append((check["duration"], name))
    times = [
        CheckTime(cid, statistics.fmean(d for d, _ in got), max(got)[0], max(got)[1], len(got))
        for cid, got in runs.items()
    ]
    return sorted(times, key=lambda t: (-t.mean, t.id))[:limit]


# -- plots ------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_histogram(percentages: list[float], path: Path) -> Path:
    figure = _figure(6.4, 3.6)
    axes = figure.subplots()
    axes.hist(percentages, bins=[10.0 * i for i in range(11)], color="#4c72b0", edgecolor="white")
    axes.set_xlim(0, 100)
    axes.set_xlabel("auto-graded score (% of the maximum)")
    axes.set_ylabel("submissions")
    axes.set_title(f"Score distribution ({len(percentages)} submissions)")
    axes.yaxis.get_major_locator().set_params(integer=True)
    figure.savefig(path, dpi=100)
    return path


def plot_pass_rates(stats: list[QuestionStat], path: Path) -> Path:
    figure = _figure(6.4, 1.2 + 0.3 * len(stats))
    axes = figure.subplots()
    labels = [gradebook.printable(s.label) for s in stats][::-1]  # first question at the top
    axes.barh(labels, [100.0 * s.pass_rate for s in stats][::-1], color="#55a868")
    axes.set_xlim(0, 100)
    axes.set_xlabel("submissions with full marks (%)")
    axes.set_title("Pass rate per question")
    figure.savefig(path, dpi=100)
    return path


def plot_slowest(times: list[CheckTime], path: Path) -> Path:
    figure = _figure(7.2, 1.2 + 0.3 * len(times))
    axes = figure.subplots()
    labels = [gradebook.printable(_short(t.id)) for t in times][::-1]
    axes.barh(labels, [t.mean for t in times][::-1], color="#c44e52", label="mean")
    axes.plot([t.max for t in times][::-1], labels, "k|", markersize=10, label="slowest submission")
    axes.set_xlabel("seconds per check (setup included)")
    axes.set_title("Slowest checks")
    axes.legend(loc="best")
    figure.savefig(path, dpi=100)
    return path


def _short(check_id: str) -> str:
    """``graders/test_shoes.py::test_train`` -> ``test_shoes::test_train``: the plot's labels stay short."""
    module, _, name = check_id.rpartition("::")
    return f"{Path(module).stem}::{name}" if module else check_id


# -- the page ---------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em; color: #222; }
h1, h2, h3, li, p, summary, td.name { overflow-wrap: anywhere; }
td.name { min-width: 8em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.problem { background: #fde8e8; }
img { max-width: 100%; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; padding: 0.5em; }
summary { cursor: pointer; }
.parts { color: #555; font-size: 0.9em; }
"""


def write(
    reports: Mapping[str, Mapping[str, Any]],
    folder: str | Path,
    *,
    report_files: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
    not_graded: Sequence[str] = (),
    title: str = "torchgrade batch",
    students: Mapping[str, str] | None = None,
    missing: Sequence[str] = (),
    unmatched: Sequence[str] = (),
) -> Path:
    """Write ``summary.html``, its plots and a page per submission into ``folder``; return the page's path.

    Args:
        reports: submission name -> report JSON; the submissions table follows this order.
        folder: where the page and the PNGs go (the batch's ``--out``); the submissions' pages go to
            its ``pages/`` folder.
        report_files: submission name -> the report's file name relative to ``folder``, for links;
            a submission without one gets no page.
        ignored: entries of the submissions folder that were not graded (not a folder, .py or .ipynb).
        not_graded: submissions without a report yet (the batch was interrupted before grading them).
        title: the page's heading.
        students: submission name -> the roster's student it belongs to (a display label), shown
            beside the submission.
        missing: the roster's students (display labels) who submitted nothing.
        unmatched: submissions that match no student on the roster.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files, students = dict(report_files or {}), dict(students or {})
    pages = _write_pages(reports, folder, files, students)
    percentages, stats, times = score_percentages(reports), question_stats(reports), check_times(reports)
    body = [
        f"<h1>{_e(title)}: {len(reports)} submission{'s' if len(reports) != 1 else ''}</h1>",
        f"<p>Written {_e(dt.datetime.now(dt.UTC).isoformat(timespec='seconds'))} from the JSON reports in "
        'this folder; <a href="gradebook.csv">gradebook.csv</a> has the same scores.</p>',
    ]
    body += _overview(reports, percentages, missing)
    if ignored:
        body.append(f"<p>Not graded (not a folder, .py or .ipynb file): {_e(', '.join(ignored))}</p>")
    if not_graded:
        body.append(
            f"<p>Not graded yet ({len(not_graded)}; the batch was interrupted: run it again to grade them): "
            f"{_e(', '.join(not_graded))}</p>"
        )
    body += _problems(reports, pages, missing, unmatched)
    body += _failure_section(failure_groups(reports), stats, pages)
    if reports:
        image = plot_histogram(percentages, folder / HISTOGRAM)
        body += ["<h2>Scores</h2>", _image(image, "Histogram of auto-graded scores")]
    if stats:
        image = plot_pass_rates(stats, folder / PASS_RATE)
        body += ["<h2>Questions</h2>", _image(image, "Share of submissions with full marks per question")]
        body += _question_table(stats)
    if times:
        image = plot_slowest(times, folder / SLOWEST)
        body += ["<h2>Slowest checks</h2>", *_startup_line(startup_times(reports))]
        body += [_image(image, "Mean and greatest duration of the slowest checks"), *_slowest_table(times)]
    body += _submission_table(reports, pages, files, students)
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{_e(title)}</title>\n<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
    return atomic.write_text(folder / "summary.html", page)


def _write_pages(
    reports: Mapping[str, Mapping[str, Any]], folder: Path, files: Mapping[str, str], students: Mapping[str, str]
) -> dict[str, str]:
    """Write each submission's page (:mod:`~torchgrade.reporting.submission_page`) under ``pages/``;
    remove the pages of submissions no longer in the batch; return name -> page path for links."""
    (folder / submission_page.FOLDER).mkdir(exist_ok=True)
    pages = {}
    for name, data in reports.items():
        if name not in files:
            continue
        page = submission_page.page_name(files[name])
        try:
            submission_page.write(
                data, folder / page, name=name, student=students.get(name, ""), report_file=files[name]
            )
        except (KeyError, TypeError, ValueError, OSError):  # not a report this page can read: link the JSON
            continue
        pages[name] = page
    kept = {folder / page for page in pages.values()}
    for old in (folder / submission_page.FOLDER).glob("*.html"):
        if old not in kept:
            old.unlink(missing_ok=True)
    return pages


def _image(image: Path, alt: str) -> str:
    return f'<p><img src="{_e(_href(image.name))}" alt="{_e(alt)}"></p>'


def _overview(reports: Mapping[str, Mapping[str, Any]], percentages: list[float], missing: Sequence[str]) -> list[str]:
    if not reports and not missing:
        return ["<p>No submissions were graded.</p>"]
    counts = dict.fromkeys(gradebook.STATUSES, 0)
    for data in reports.values():
        counts[gradebook.status(data)] += 1
    counts[gradebook.STATUS_MISSING] += len(missing)
    counts = {state: n for state, n in counts.items() if n or state == gradebook.STATUS_GRADED}
    rows = [("submissions", len(reports)), *counts.items()]
    if percentages:
        rows += [
            ("mean score", f"{statistics.fmean(percentages):.1f} %"),
            ("median score", f"{statistics.median(percentages):.1f} %"),
        ]
    return [
        "<h2>Overview</h2>",
        "<table>",
        *(f'<tr><th>{_e(label)}</th><td class="num">{_e(value)}</td></tr>' for label, value in rows),
        "</table>",
    ]


def _problems(
    reports: Mapping[str, Mapping[str, Any]],
    pages: Mapping[str, str],
    missing: Sequence[str],
    unmatched: Sequence[str],
) -> list[str]:
    rows = []
    for name, data in reports.items():
        state, why = gradebook.status_and_reason(data)
        if state == gradebook.STATUS_GRADED:
            continue
        rows.append(f"<li>{_link(name, pages)} ({_e(state)}): {_e(why or state)}</li>")
    if missing:
        rows.append(
            f"<li>{len(missing)} student(s) on the roster submitted nothing ({_e(gradebook.STATUS_MISSING)}): "
            f"{_e(', '.join(missing))}</li>"
        )
    if unmatched:
        rows.append(
            f"<li>{len(unmatched)} submission(s) match no student on the roster: "
            + ", ".join(_link(name, pages) for name in unmatched)
            + "</li>"
        )
    if not rows:
        return []
    return ["<h2>Needs a look</h2>", f"<ul>\n{chr(10).join(rows)}\n</ul>"]


def _failure_section(
    groups: Mapping[tuple[str, str], list[FailureGroup]], stats: list[QuestionStat], pages: Mapping[str, str]
) -> list[str]:
    """What the class got wrong: per question, each failure message (numbers aside) with its count
    and the submissions that failed so, largest group first."""
    if not groups:
        return []
    graded = {(s.assignment, s.id): s for s in stats}
    out = [
        "<h2>What the class got wrong</h2>",
        "<p>Per question, the failures of the graded submissions grouped by their message, numbers, paths "
        "and values abstracted (<code>#</code>), the most common first. Open a group for one full message.</p>",
    ]
    for (assignment, question), found in groups.items():
        stat = graded.get((assignment, question))
        rate = f": {stat.passed} of {stat.graded} with full marks" if stat else ""
        out += [
            f"<h3>{_e(assignment)} {_e(question)}{_e(rate)}</h3>",
            "<table>",
            '<tr><th class="num">submissions</th><th>failure</th><th>who</th></tr>',
        ]
        for group in found:
            named = ", ".join(_link(name, pages) for name in group.submissions[:N_NAMED])
            if group.count > N_NAMED:
                named += f" and {group.count - N_NAMED} more"
            parts = f'<br><span class="parts">in: {_e("; ".join(group.parts))}</span>' if group.parts else ""
            out.append(
                f'<tr><td class="num">{group.count}</td><td><details><summary>{_e(group.pattern)}</summary>'
                f'<pre>{_e(group.example)}</pre></details>{parts}</td><td class="name">{named}</td></tr>'
            )
        out.append("</table>")
    return out


def _question_table(stats: list[QuestionStat]) -> list[str]:
    rows = [
        f'<tr><td>{_e(s.label)}</td><td class="num">{s.max_score:g}</td><td class="num">{s.mean_score:.2f}</td>'
        f'<td class="num">{s.passed} / {s.graded}</td></tr>'
        for s in stats
    ]
    return ["<table>", "<tr><th>question</th><th>max</th><th>mean</th><th>full marks</th></tr>", *rows, "</table>"]


def _startup_line(seconds: list[float]) -> list[str]:
    if not seconds:
        return []
    return [
        f"<p>Worker start-up (starting the process, importing torch, loading the submission), not counted in "
        f"the checks' times: mean {statistics.fmean(seconds):.2f} s, at most {max(seconds):.2f} s per "
        f"submission ({len(seconds)} submissions).</p>"
    ]


def _slowest_table(times: list[CheckTime]) -> list[str]:
    rows = [
        f'<tr><td class="name">{_e(t.id)}</td><td class="num">{t.mean:.2f}</td><td class="num">{t.max:.2f}</td>'
        f'<td class="name">{_e(t.slowest_submission)}</td><td class="num">{t.runs}</td></tr>'
        for t in times
    ]
    return [
        "<table>",
        "<tr><th>check</th><th>mean s</th><th>max s</th><th>slowest on</th><th>runs</th></tr>",
        *rows,
        "</table>",
    ]


def _submission_table(
    reports: Mapping[str, Mapping[str, Any]],
    pages: Mapping[str, str],
    files: Mapping[str, str],
    students: Mapping[str, str],
) -> list[str]:
    rows = []
    for name, data in reports.items():
        state, why = gradebook.status_and_reason(data)
        lost = sum(c["points"] < c["max_points"] for c in data["checks"])
        css = "" if state == gradebook.STATUS_GRADED else ' class="problem"'
        who = f"<td>{_e(students.get(name, ''))}</td>" if students else ""
        values = (f"{data['score']:g}", f"{data['max_score']:g}", lost)
        numbers = "".join(f'<td class="num">{value}</td>' for value in values)
        raw = f'<a href="{_e(_href(files[name]))}">JSON</a>' if name in files else ""
        rows.append(
            f'<tr{css}><td class="name">{_link(name, pages)}</td>{who}{numbers}<td>{_e(state)}</td><td>{_e(why)}</td>'
            f"<td>{raw}</td></tr>"
        )
    student = "<th>student</th>" if students else ""
    return [
        "<h2>Submissions</h2>",
        "<table>",
        f"<tr><th>submission</th>{student}<th>score</th><th>max</th><th>checks short of full marks</th>"
        "<th>status</th><th>reason</th><th>report</th></tr>",
        *rows,
        "</table>",
    ]


def _link(name: str, pages: Mapping[str, str]) -> str:
    target = pages.get(name)
    return f'<a href="{_e(_href(target))}">{_e(name)}</a>' if target else _e(name)
