"""The summary page of a batch: ``summary.html`` and the PNG plots it shows, in one folder.

An instructor opens one page to see how the class did and what needs a look: the score
histogram, each question's pass rate (which questions the class found hard, or which grader may
be wrong), the slowest checks (what to optimise before the next batch), the submissions that need a
look (every status but ``graded``, with its reason: unreadable, timed out, crashed, harness error; see
:mod:`torchgrade.reporting.gradebook`), and a table of every submission with its status and reason,
linking to its JSON report. The page refers to
the plots and reports by relative paths, so the folder can be zipped or served as it is.

Plots are drawn with matplotlib's object-oriented API on the Agg canvas: no pyplot, no global
backend state, no display needed. Like every exporter, this module reads reports only. Every text
on the page goes through :func:`_e`, so a submission whose name is not UTF-8 is shown with its
undecodable bytes as ``\\xNN`` and still links to its report.
"""

from __future__ import annotations

import datetime as dt
import html
import statistics
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchgrade import atomic
from torchgrade.reporting import gradebook

HISTOGRAM, PASS_RATE, SLOWEST = "score_histogram.png", "question_pass_rate.png", "slowest_checks.png"
#: How many checks the "slowest checks" plot and table show.
N_SLOWEST = 15


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

    Reports the batch wrote for a grading that did not finish are left out: their checks never ran.
    """
    runs: dict[str, list[tuple[float, str]]] = {}
    for name, data in reports.items():
        if any(note.startswith(gradebook.NOTE_PREFIX) for note in data.get("notes", ())):
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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.problem { background: #fde8e8; }
img { max-width: 100%; }
"""


def write(
    reports: Mapping[str, Mapping[str, Any]],
    folder: str | Path,
    *,
    report_files: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
    not_graded: Sequence[str] = (),
    title: str = "torchgrade batch",
) -> Path:
    """Write ``summary.html`` and its plots into ``folder``; return the page's path.

    Args:
        reports: submission name -> report JSON; the submissions table follows this order.
        folder: where the page and the PNGs go (the batch's ``--out``).
        report_files: submission name -> the report's file name relative to ``folder``, for links.
        ignored: entries of the submissions folder that were not graded (not a folder, .py or .ipynb).
        not_graded: submissions without a report yet (the batch was interrupted before grading them).
        title: the page's heading.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    percentages, stats, times = score_percentages(reports), question_stats(reports), check_times(reports)
    images = []
    if reports:
        images.append(("Scores", plot_histogram(percentages, folder / HISTOGRAM), "Histogram of auto-graded scores"))
    if stats:
        images.append(
            (
                "Questions",
                plot_pass_rates(stats, folder / PASS_RATE),
                "Share of submissions with full marks per question",
            )
        )
    if times:
        images.append(
            (
                "Slowest checks",
                plot_slowest(times, folder / SLOWEST),
                "Mean and greatest duration of the slowest checks",
            )
        )
    body = [
        f"<h1>{_e(title)}: {len(reports)} submission{'s' if len(reports) != 1 else ''}</h1>",
        f"<p>Written {_e(dt.datetime.now(dt.UTC).isoformat(timespec='seconds'))} from the JSON reports in "
        'this folder; <a href="gradebook.csv">gradebook.csv</a> has the same scores.</p>',
    ]
    body += _overview(reports, percentages)
    if ignored:
        body.append(f"<p>Not graded (not a folder, .py or .ipynb file): {_e(', '.join(ignored))}</p>")
    if not_graded:
        body.append(
            f"<p>Not graded yet ({len(not_graded)}; the batch was interrupted: run it again to grade them): "
            f"{_e(', '.join(not_graded))}</p>"
        )
    body += _problems(reports, report_files or {})
    for heading, image, alt in images:
        body += [f"<h2>{_e(heading)}</h2>", f'<p><img src="{_e(image.name)}" alt="{_e(alt)}"></p>']
        if image.name == PASS_RATE:
            body += _question_table(stats)
        elif image.name == SLOWEST:
            body += _slowest_table(times)
    body += _submission_table(reports, report_files or {})
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    return atomic.write_text(folder / "summary.html", page)


def _overview(reports: Mapping[str, Mapping[str, Any]], percentages: list[float]) -> list[str]:
    if not reports:
        return ["<p>No submissions were graded.</p>"]
    counts = dict.fromkeys(gradebook.STATUSES, 0)
    for data in reports.values():
        counts[gradebook.status(data)] += 1
    counts = {state: n for state, n in counts.items() if n or state == gradebook.STATUS_GRADED}
    return [
        "<h2>Overview</h2>",
        "<table>",
        *(
            f'<tr><th>{_e(label)}</th><td class="num">{_e(value)}</td></tr>'
            for label, value in (
                ("submissions", len(reports)),
                *((status, count) for status, count in counts.items()),
                ("mean score", f"{statistics.fmean(percentages):.1f} %"),
                ("median score", f"{statistics.median(percentages):.1f} %"),
            )
        ),
        "</table>",
    ]


def _problems(reports: Mapping[str, Mapping[str, Any]], files: Mapping[str, str]) -> list[str]:
    rows = []
    for name, data in reports.items():
        state, why = gradebook.status_and_reason(data)
        if state == gradebook.STATUS_GRADED:
            continue
        rows.append(f"<li>{_link(name, files)} ({_e(state)}): {_e(why or state)}</li>")
    if not rows:
        return []
    return ["<h2>Needs a look</h2>", f"<ul>\n{chr(10).join(rows)}\n</ul>"]


def _question_table(stats: list[QuestionStat]) -> list[str]:
    rows = [
        f'<tr><td>{_e(s.label)}</td><td class="num">{s.max_score:g}</td><td class="num">{s.mean_score:.2f}</td>'
        f'<td class="num">{s.passed} / {s.graded}</td></tr>'
        for s in stats
    ]
    return ["<table>", "<tr><th>question</th><th>max</th><th>mean</th><th>full marks</th></tr>", *rows, "</table>"]


def _slowest_table(times: list[CheckTime]) -> list[str]:
    rows = [
        f'<tr><td>{_e(t.id)}</td><td class="num">{t.mean:.2f}</td><td class="num">{t.max:.2f}</td>'
        f'<td>{_e(t.slowest_submission)}</td><td class="num">{t.runs}</td></tr>'
        for t in times
    ]
    return [
        "<table>",
        "<tr><th>check</th><th>mean s</th><th>max s</th><th>slowest on</th><th>runs</th></tr>",
        *rows,
        "</table>",
    ]


def _submission_table(reports: Mapping[str, Mapping[str, Any]], files: Mapping[str, str]) -> list[str]:
    rows = []
    for name, data in reports.items():
        state, why = gradebook.status_and_reason(data)
        lost = sum(c["points"] < c["max_points"] for c in data["checks"])
        css = "" if state == gradebook.STATUS_GRADED else ' class="problem"'
        values = (f"{data['score']:g}", f"{data['max_score']:g}", lost)
        numbers = "".join(f'<td class="num">{value}</td>' for value in values)
        rows.append(f"<tr{css}><td>{_link(name, files)}</td>{numbers}<td>{_e(state)}</td><td>{_e(why)}</td></tr>")
    return [
        "<h2>Submissions</h2>",
        "<table>",
        "<tr><th>submission</th><th>score</th><th>max</th><th>checks short of full marks</th><th>status</th>"
        "<th>reason</th></tr>",
        *rows,
        "</table>",
    ]


def _link(name: str, files: Mapping[str, str]) -> str:
    target = files.get(name)
    return f'<a href="{_e(_href(target))}">{_e(name)}</a>' if target else _e(name)


def _href(file_name: str) -> str:
    """A relative URL of a file in the page's folder; a name that is not UTF-8 links by its bytes."""
    try:
        return urllib.parse.quote(file_name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # no file has this name: link to its printable form
        return urllib.parse.quote(gradebook.printable(file_name))


def _e(value: object) -> str:
    """HTML text of ``value``; a name that is not UTF-8 shows its bytes (:func:`gradebook.printable`)."""
    return html.escape(gradebook.printable(str(value)), quote=True)
