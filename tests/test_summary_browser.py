"""``summary.html`` as an instructor sees it: rendered by a headless Chromium, not read as HTML text.

One batch output folder is written the way ``torchgrade batch`` writes it (each report committed by
:func:`batch.commit` under :func:`batch.report_path`, then :func:`batch.write_summaries`), without grading:
a full-marks submission, partial ones with failed checks, an unreadable one, a timed-out one (its report
made by the batch's own :func:`batch.failure_report`), one named like HTML (``<img src=x onerror=...>``)
and one whose name is not UTF-8. The page is served from 127.0.0.1 (``tests/_browser.py`` says why) and
opened at 1280 x 900, a laptop's window; the tests assert on what a person sees there: the overview's
counts, the "Needs a look" list with each reason, every plot loaded and readable, names shown as text,
links that open, no console error, no horizontal scroll bar. One browser serves the whole module (about
2 s to start).

``TORCHGRADE_SCREENSHOT=PATH`` (or ``=1``: ``/tmp/summary_shot.png``) also saves the full-page screenshot
there, to look at the page without a browser.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from tests import _browser
from torchgrade.instructor import batch, batchjob
from torchgrade.reporting import gradebook, report

pytestmark = pytest.mark.timeout(120)

FULL, PARTIAL, SIMILAR = "alice", "bob.py", "carol.ipynb"
UNREADABLE, TIMED_OUT = "empty.py", "slow"
HTMLISH = "<img src=x onerror=alert(1)>.py"  # a folder may be named so; shown as text, never as an element
NOT_UTF8 = os.fsdecode(b"caf\xe9.py")  # a Latin-1 name: its byte \xe9 is not UTF-8
LONG = "smithjohn_1234567_89012345_Assignment1_CNN_final_version2.ipynb"  # as an LMS's export names files
NAMES = [FULL, PARTIAL, SIMILAR, UNREADABLE, TIMED_OUT, HTMLISH, NOT_UTF8, LONG]  # the folder's order
WHY_UNREADABLE = f"{UNREADABLE} could not be graded: the file is empty."
WHY_TIMED_OUT = batchjob.MSG_TIMEOUT.format(seconds=60)
#: (id, question, max points, seconds) of the assignment's checks.
CHECKS = [
    ("graders/test_hw1.py::test_add", "Q1", 2.0, 0.05),
    ("graders/test_hw1.py::test_scale", "Q1", 1.0, 0.04),
    ("graders/test_hw1.py::test_train", "Q2", 3.0, 4.8),
    ("graders/test_hw1.py::test_accuracy", "Q3", 2.0, 0.3),
]
#: Messages of the checks a submission failed, by check name.
FAILURES = {
    PARTIAL: {
        "test_add": "add(2, 3) returned 6; expected 5. Hint: add returns a + b.",
        "test_train": "the training loss went from 2.31 to 2.30 in 20 steps; expected below 1.0. "
        "Hint: call optimizer.zero_grad() before loss.backward().",
    },
    SIMILAR: {"test_add": "add(1, 4) returned 4; expected 5. Hint: add returns a + b."},
    UNREADABLE: {name.rpartition("::")[2]: "add is not defined in the submission." for name, *_ in CHECKS},
    HTMLISH: {"test_accuracy": "get_accuracy returned 0.5 on <b>4</b> & 2 samples; expected 0.75."},
    NOT_UTF8: {"test_scale": "scale([1, 2], 3) returned [1, 2, 3]; expected [3, 6]."},
}


def make_report(name: str) -> dict:
    failed = FAILURES.get(name, {})
    checks = []
    for cid, question, points, seconds in CHECKS:
        message = failed.get(cid.rpartition("::")[2], "")
        outcome = "failed" if message else "passed"
        checks.append(
            report.CheckResult(cid, "hw1", question, 0.0 if message else points, points, outcome, message, seconds)
        )
    data = report.Report(
        submission=f"/course/submissions/{name}",
        isolation="process",
        versions={"torchgrade": "0", "torch": "2", "python": "3"},
        started_at="2026-12-02T10:00:00+00:00",
        finished_at="2026-12-02T10:00:07+00:00",
        score=sum(c.points for c in checks),
        max_score=sum(c.max_points for c in checks),
        pending_max_score=0.0,
        harness_errors=0,
        questions=tuple(report.summarise_questions(checks, {})),
        checks=tuple(checks),
    ).to_json()
    data["worker_startup"] = {"seconds": 2.0 if name != LONG else 3.0, "starts": 1}
    if name == UNREADABLE:
        return {**data, "status": gradebook.STATUS_UNREADABLE, "reason": WHY_UNREADABLE}
    return {**data, "status": gradebook.STATUS_GRADED, "reason": ""}


def timed_out_report(skeleton: dict) -> dict:
    """What the batch writes for a grading it stopped at ``--timeout``."""
    job = {"name": TIMED_OUT, "submission": f"/course/submissions/{TIMED_OUT}", "isolation": "process"}
    outcome = {
        "kind": "timeout",
        "problem": WHY_TIMED_OUT,
        "started_at": "2026-12-02T10:00:00+00:00",
        "finished_at": "2026-12-02T10:01:00+00:00",
        "status": None,
    }
    return batch.failure_report(job, outcome, skeleton)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch's output folder: a report per submission, then the gradebook and the summary page."""
    out = tmp_path_factory.mktemp("batch")
    reports = {name: make_report(name) for name in NAMES if name != TIMED_OUT}
    reports[TIMED_OUT] = timed_out_report(reports[FULL])
    for name in NAMES:
        report.validate(reports[name])
        batch.commit(out, name, reports[name], {"name": name})
    statuses = batch.write_summaries(out, NAMES)
    assert statuses[TIMED_OUT] == gradebook.STATUS_TIMED_OUT and statuses[UNREADABLE] == gradebook.STATUS_UNREADABLE
    return out


@pytest.fixture(scope="module")
def browser():
    with _browser.chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def served(folder: Path):
    with _browser.serve(folder) as site:
        yield site


@pytest.fixture
def summary(browser, served):
    """``summary.html`` open at 1280 x 900; the test fails if anything went wrong while it was shown."""
    with _browser.visit(browser, served.url("summary.html")) as seen:
        yield seen
        assert seen.problems == [], "the page had problems a person would see"


def _rows(page, heading: str) -> list[list[str]]:
    """The cells' text, row by row, of the first table after the ``<h2>`` named ``heading``."""
    rows = page.locator(f"h2:text-is('{heading}') ~ table").first.locator("tr").all()
    return [[cell.strip() for cell in row.locator("th, td").all_inner_texts()] for row in rows]


def table(page, heading: str) -> list[dict[str, str]]:
    """The rows of a table with a header row, as shown: {column header: text}."""
    header, *body = _rows(page, heading)
    return [dict(zip(header, row, strict=True)) for row in body]


def pairs(page, heading: str) -> dict[str, str]:
    """A table of (label, value) rows, as shown."""
    return dict(_rows(page, heading))


# -- what a person reads ---------------------------------------------------------------------------------
def test_the_overview_counts_submissions_and_statuses(summary):
    page = summary.page
    assert page.get_by_role("heading", name="Overview").is_visible()
    overview = pairs(page, "Overview")
    assert overview["submissions"] == str(len(NAMES))
    assert overview[gradebook.STATUS_GRADED] == "6"
    assert overview[gradebook.STATUS_UNREADABLE] == "1" and overview[gradebook.STATUS_TIMED_OUT] == "1"
    for state in (gradebook.STATUS_CRASHED, gradebook.STATUS_HARNESS_ERROR):
        assert overview.get(state, "0") == "0"  # shown as 0, or not at all
    assert page.locator("h1").inner_text().endswith(f"{len(NAMES)} submissions")


def test_needs_a_look_names_the_unreadable_and_timed_out_submissions_with_their_reasons(summary):
    page = summary.page
    heading = page.get_by_role("heading", name="Needs a look")
    assert heading.is_visible()
    items = page.locator("h2:text-is('Needs a look') + ul > li")
    texts = items.all_inner_texts()
    assert texts == [
        f"{UNREADABLE} ({gradebook.STATUS_UNREADABLE}): {WHY_UNREADABLE}",
        f"{TIMED_OUT} ({gradebook.STATUS_TIMED_OUT}): {WHY_TIMED_OUT}",
    ]
    assert all(item.is_visible() for item in items.all())
    body = page.inner_text("body")
    assert f"{FULL} (" not in body and f"{PARTIAL} (" not in body  # an honest score needs no look


def test_the_submissions_table_shows_each_score_and_status(summary):
    rows = {row["submission"]: row for row in table(summary.page, "Submissions")}
    assert list(rows) == [gradebook.printable(name) for name in NAMES]
    assert (rows[FULL]["score"], rows[FULL]["max"], rows[FULL]["status"]) == ("8", "8", gradebook.STATUS_GRADED)
    assert (rows[PARTIAL]["score"], rows[PARTIAL]["status"]) == ("3", gradebook.STATUS_GRADED)
    assert (rows[UNREADABLE]["status"], rows[UNREADABLE]["reason"]) == (gradebook.STATUS_UNREADABLE, WHY_UNREADABLE)
    assert (rows[TIMED_OUT]["score"], rows[TIMED_OUT]["status"]) == ("0", gradebook.STATUS_TIMED_OUT)
    assert rows[TIMED_OUT]["reason"] == WHY_TIMED_OUT


def test_names_and_messages_that_look_like_html_show_as_text(summary):
    page = summary.page
    shown = page.get_by_text(HTMLISH, exact=True)
    assert shown.count() >= 1 and shown.first.is_visible()
    assert page.locator("img[src='x']").count() == 0  # no element was made of the name (nor an alert: problems)
    assert page.get_by_text(gradebook.printable(NOT_UTF8), exact=True).first.is_visible()  # caf\xe9.py


def test_every_plot_loads_and_is_shown_at_a_readable_size(summary, folder):
    page = summary.page
    images = page.evaluate(_browser.IMAGES_JS)
    assert len(images) >= 2, "expected the score histogram and the per-question plot at least"
    for image in images:
        assert image["complete"] and image["natural"][0] > 0, f"{image['src']} did not load"
        assert (folder / urllib.parse.unquote(image["src"])).is_file()
        assert image["alt"], f"{image['src']} has no alt text"
        width, height = image["shown"]
        assert width >= 300 and height >= 150, f"{image['src']} is shown at {width:g} x {height:g} px"
        assert width <= 1280, f"{image['src']} is wider than the window"
    for img in page.locator("img").all():
        img.scroll_into_view_if_needed()
        assert img.is_visible()


def test_what_the_class_got_wrong_groups_one_mistake_and_opens_a_full_message(summary):
    """Per question, the same failure made by two students (numbers aside) is one row with its count and
    both names; the full message of one of them shows once the row is opened, not before."""
    page = summary.page
    assert page.locator("h2:text-is('What the class got wrong')").is_visible()
    heading = page.locator("h3", has_text="hw1 Q1")
    assert heading.inner_text() == "hw1 Q1: 3 of 8 with full marks"
    table = page.locator("h3:has-text('hw1 Q1') + table")
    rows = [[cell.strip() for cell in row.locator("th, td").all_inner_texts()] for row in table.locator("tr").all()]
    assert rows[1] == ["2", "add(#, …) returned #; expected #. Hint: add returns a + b.", "bob.py, carol.ipynb"]
    assert rows[2][0] == "1" and rows[2][1].startswith("scale([#, …], #) returned [#, …]")
    example = table.locator("tr").nth(1).locator("pre")
    assert not example.is_visible()
    table.locator("tr").nth(1).locator("summary").click()
    assert example.is_visible() and example.inner_text() in {
        FAILURES[PARTIAL]["test_add"],
        FAILURES[SIMILAR]["test_add"],
    }
    # The unreadable submission failed every check with one message: it is under "Needs a look", not here.
    assert UNREADABLE not in page.locator("h2:text-is('What the class got wrong') ~ table").first.inner_text()


def test_the_worker_start_up_is_shown_apart_from_the_slowest_checks(summary):
    text = summary.page.locator("h2:text-is('Slowest checks') + p").inner_text()
    assert "not counted in the checks' times: mean 2.14 s, at most 3.00 s per submission (7 submissions)" in text


def test_the_page_fits_a_1280_px_window(summary):
    width = summary.page.evaluate(_browser.OVERFLOW_JS)
    assert width["scroll"] <= width["client"], f"the page scrolls sideways; too wide: {width['widest']}"


def test_a_full_page_screenshot_shows_the_page(summary, tmp_path):
    shot = tmp_path / "summary.png"
    summary.page.screenshot(path=str(shot), full_page=True)
    if wanted := os.environ.get("TORCHGRADE_SCREENSHOT"):
        summary.page.screenshot(path="/tmp/summary_shot.png" if wanted == "1" else wanted, full_page=True)
    with Image.open(shot) as image:
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert width == 1280 and 900 <= height <= 20_000, (width, height)
    assert shot.stat().st_size > 20_000  # text and plots, not a blank page
    assert colours is None or len(colours) > 50


# -- links -------------------------------------------------------------------------------------------------
def test_every_link_on_the_page_opens(summary, served):
    links = summary.page.evaluate(_browser.LINKS_JS)
    assert {link["text"] for link in links} >= {"gradebook.csv", *map(gradebook.printable, NAMES)}
    for link in links:
        response = summary.page.request.get(link["href"])
        assert response.status == 200, f"the link {link['text']!r} ({link['href']}) gives HTTP {response.status}"
    assert served.failed() == []


#: What a submission's own page must show besides its name: its status or score, and every reason and message.
SHOWN_ON_ITS_PAGE = {
    PARTIAL: [gradebook.STATUS_GRADED, "3 / 8", *FAILURES[PARTIAL].values()],
    UNREADABLE: [gradebook.STATUS_UNREADABLE, WHY_UNREADABLE],
    TIMED_OUT: [gradebook.STATUS_TIMED_OUT, WHY_TIMED_OUT],
    HTMLISH: [*FAILURES[HTMLISH].values()],  # "<b>4</b>" as text
    NOT_UTF8: [*FAILURES[NOT_UTF8].values()],
}


@pytest.mark.parametrize("name", [*SHOWN_ON_ITS_PAGE, LONG])  # LONG: a name without spaces wraps
def test_clicking_a_submission_opens_its_page_which_shows_what_it_lost_and_leads_back(browser, served, name):
    """The name's link in the submissions table opens the submission's own page (HTML, not the bare JSON
    report); that page shows the name, the status, every message, and leads back. A submission that was
    not graded gives its reason once (status line, and the batch's note), not once per check."""
    shown = gradebook.printable(name)
    with _browser.visit(browser, served.url("summary.html")) as seen:
        page = seen.page
        row = (
            page.locator("h2:text-is('Submissions') ~ table")
            .first.locator("tr")
            .filter(has=page.get_by_role("link", name=shown, exact=True))
        )
        assert row.count() == 1, f"one row of the submissions table links {shown!r}"
        with page.expect_navigation() as navigation:
            row.get_by_role("link", name=shown, exact=True).click()
        response = navigation.value
        assert response is not None and response.status == 200, f"{shown}: {response and response.status}"
        assert "text/html" in response.headers.get("content-type", ""), "its own page, not the bare JSON"
        assert shown in page.locator("h1").inner_text()
        body = page.inner_text("body")
        for text in SHOWN_ON_ITS_PAGE.get(name, [gradebook.STATUS_GRADED, "8 / 8"]):
            assert text in body, f"{shown}'s page does not show {text!r}"
        if name == TIMED_OUT:
            assert body.count(WHY_TIMED_OUT) <= 2, body
        assert page.locator("img[src='x']").count() == 0
        width = page.evaluate(_browser.OVERFLOW_JS)
        assert width["scroll"] <= width["client"], f"{shown}'s page scrolls sideways: {width['widest']}"
        for link in page.evaluate(_browser.LINKS_JS):  # the JSON report, back to the summary
            assert page.request.get(link["href"]).status == 200, link
        with page.expect_navigation() as back:
            page.get_by_role("link", name="summary").first.click()
        assert back.value.status == 200 and page.url.endswith("/summary.html")
        assert seen.problems == []


# -- opened from disk ----------------------------------------------------------------------------------
def test_the_folder_opened_from_disk_shows_its_plots_and_links_to_files_that_exist(browser, folder):
    """An instructor who unzips the folder opens summary.html from disk (file://): plots and links work."""
    with _browser.visit(browser, (folder / "summary.html").as_uri()) as seen:
        images = seen.page.evaluate(_browser.IMAGES_JS)
        assert images and all(image["natural"][0] > 0 for image in images)
        for link in seen.page.evaluate(_browser.LINKS_JS):
            url = urllib.parse.urlsplit(link["href"])
            assert url.scheme == "file", link  # relative: the folder can move
            assert os.path.isfile(urllib.parse.unquote_to_bytes(url.path)), f"{link['text']!r} links to a missing file"
        with seen.page.expect_navigation():
            seen.page.get_by_role("link", name=PARTIAL, exact=True).first.click()
        assert PARTIAL in seen.page.locator("body").inner_text()  # its page, or its JSON report
        assert seen.problems == []
