"""``torchgrade batch`` says what happened to each submission, and survives being interrupted.

* Statuses: a batch over an untouched template, an empty ``.py``, a ``.py`` that does not parse and a
  notebook that is not JSON gives ``graded`` for the template (an honest zero: its code ran and
  raised ``NotImplementedError``) and ``unreadable`` with a reason for the three others, in the
  reports, ``gradebook.csv`` and the text a person reads on ``summary.html``; the exit code is 1.
  The unit tests cover what the batch decides from a folder's files (no module, nothing parses, none
  of the assignment's names) without grading anything.
* Interrupts: a real ``torchgrade batch`` process over three tiny submissions gets SIGINT (sent to its
  whole process group, as a terminal's Ctrl-C is) or SIGTERM (sent to the batch, as ``kill`` does)
  once its first report lands. It exits 130 or 143, its gradebook and summary list exactly the
  reports it finished and are not older than any of them, and a rerun grades only the rest.

The tiny assignment of ``tests/test_batch.py`` keeps each grading to seconds; ``--isolation none``
and ``-k add`` keep them cheaper still.
"""

from __future__ import annotations

import csv
import html.parser
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_batch import ADD, SCALE, gradings, load_report, make_tiny_assignment
from torchgrade.instructor import batch, cli, grading
from torchgrade.reporting import gradebook

pytestmark = pytest.mark.timeout(300)

TEMPLATE = "def add(a, b):\n    raise NotImplementedError\n\n\ndef scale(xs, k):\n    raise NotImplementedError\n"


class _Text(html.parser.HTMLParser):
    """The text a browser shows of a page (no markup, no style), with runs of white space collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.skip += tag in ("style", "script", "title")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "script", "title")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text())
    return " ".join(" ".join(parser.parts).split())


def read_gradebook(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "gradebook.csv", newline="") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


# -- statuses ----------------------------------------------------------------------------------------
def test_unreadable_submissions_are_named_with_their_reason_not_graded_as_zeros(tmp_path):
    assignment = make_tiny_assignment(tmp_path)
    subs = tmp_path / "submissions"
    (subs / "template").mkdir(parents=True)
    (subs / "template" / "tiny.py").write_text(TEMPLATE)
    (subs / "empty.py").write_text("")
    (subs / "syntax.py").write_text("def add(a, b)\n    return a + b\n")
    (subs / "broken.ipynb").write_text("{ this is not JSON")
    out = tmp_path / "reports"
    result = batch.run_batch(subs, out=out, assignment=assignment, jobs=1, isolation="none", progress=False)

    unreadable = gradebook.STATUS_UNREADABLE
    expected = {
        "template": (gradebook.STATUS_GRADED, ""),
        "empty.py": (unreadable, "empty.py could not be graded: the file is empty."),
        "syntax.py": (unreadable, "syntax.py could not be graded: none of its code parses as Python"),
        "broken.ipynb": (unreadable, "broken.ipynb could not be graded: it is not valid notebook JSON"),
    }
    assert result.statuses == {name: state for name, (state, _) in expected.items()}
    assert result.exit_code == grading.EXIT_FAILED  # some submissions had nothing to grade
    rows = read_gradebook(result.out)
    text = page_text(result.out / "summary.html")
    for name, (state, why) in expected.items():
        data = load_report(result.out, name)  # status and reason are in the schema
        assert data["score"] == 0 and data["status"] == state and data["reason"].startswith(why), name
        assert rows[name]["status"] == state and rows[name]["reason"] == data["reason"], name
        if state == gradebook.STATUS_UNREADABLE:
            assert f"{name} ({state}): {data['reason']}" in text  # the "Needs a look" list
    assert "Needs a look" in text and "unreadable 3" in text and "graded 1" in text  # the overview's counts
    assert "template (" not in text  # an honest zero needs no look


def test_a_folder_with_nothing_gradable_is_unreadable(tmp_path):
    """What the batch reads from a folder's own files (parsed, never run) once no check earned a point."""
    folder = tmp_path / "sub"
    folder.mkdir()
    assert batch.nothing_gradable(folder, None, set()) == batch.MSG_NO_MODULE
    (folder / "hw.ipynb").write_text("{}")
    assert "submit the notebook itself" in batch.nothing_gradable(folder, None, set())
    (folder / "tiny.py").write_text("def add(a, b)\n")
    assert batch.nothing_gradable(folder, None, set()) == batch.MSG_UNPARSABLE.format(
        problems="tiny.py: expected ':' at line 1"
    )
    (folder / "tiny.py").write_text("import os\nx = 1\n")
    why = batch.nothing_gradable(folder, None, {"add", "scale"})
    assert why == "it defines none of the assignment's names (add, scale); it defines x"
    assert batch.nothing_gradable(folder, None, set()) == ""  # no manifest: any definition is code to grade
    (folder / "other.py").write_text(ADD)
    assert batch.nothing_gradable(folder, None, {"add", "scale"}) == ""
    extraction = {"source": "hw.py", "defined": ["x"]}
    assert "none of the assignment's names" in batch.nothing_gradable(folder / "hw.py", extraction, {"add"})


def test_statuses_of_reports_without_their_own_are_derived_from_their_content():
    base = {"notes": [], "harness_errors": 0, "checks": []}
    assert gradebook.status_and_reason(base) == (gradebook.STATUS_GRADED, "")
    unreadable = {**base, "extraction": {"error": "hw.ipynb could not be graded: it contains no code."}}
    assert gradebook.status_and_reason(unreadable) == (gradebook.STATUS_UNREADABLE, unreadable["extraction"]["error"])
    crash = {**base, "notes": [gradebook.NOTE_PREFIX + "the grading process ended with exit code 3 ..."]}
    assert gradebook.status(crash) == gradebook.STATUS_CRASHED
    harness = {**base, "harness_errors": 1, "checks": [{"outcome": "error", "message": "torchgrade bug\nmore"}]}
    assert gradebook.status_and_reason(harness) == (gradebook.STATUS_HARNESS_ERROR, "torchgrade bug")
    own = {**unreadable, "status": "crashed", "reason": "its own"}
    assert gradebook.status_and_reason(own) == ("crashed", "its own")
    assert gradebook.STATUS_MISSING in gradebook.STATUSES  # reserved for a roster


# -- interrupts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signum", "to_group", "code"),
    [(signal.SIGINT, True, batch.EXIT_INTERRUPTED), (signal.SIGTERM, False, batch.EXIT_TERMINATED)],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupted_batch_writes_the_gradebook_and_summary_of_its_finished_reports(
    tmp_path, signum, to_group, code
):
    assignment = make_tiny_assignment(tmp_path)
    subs = tmp_path / "submissions"
    names = ["a", "b", "c"]
    for name in names:
        (subs / name).mkdir(parents=True)
        (subs / name / "tiny.py").write_text(ADD + SCALE)
    out, log = tmp_path / "reports", tmp_path / "gradings.log"
    arguments = ["--assignment", str(assignment), "batch", str(subs), "--out", str(out), "--jobs", "1"]
    arguments += ["--isolation", "none", "--no-progress", "--", "-k", "add"]
    process = subprocess.Popen(
        [sys.executable, "-m", "torchgrade", *arguments],
        env={**os.environ, "TINY_GRADING_LOG": str(log)},
        start_new_session=True,  # its own process group, as a terminal's foreground job
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if to_group:
        os.killpg(process.pid, signum)  # Ctrl-C reaches the batch and its gradings
    else:
        process.send_signal(signum)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == code, output

    finished = sorted(p.name.removesuffix(".json") for p in out.glob("*.json"))
    assert 1 <= len(finished) < len(names), output  # interrupted midway
    rows = read_gradebook(out)
    assert sorted(rows) == finished and all(rows[n]["status"] == gradebook.STATUS_GRADED for n in finished)
    newest_report = max((out / f"{n}.json").stat().st_mtime_ns for n in finished)
    for written in ("gradebook.csv", "summary.html"):
        assert (out / written).stat().st_mtime_ns >= newest_report, written  # never older than the reports
    text = page_text(out / "summary.html")
    assert "Not graded yet" in text and all(n in text for n in names)
    assert "run the same command again" in output and "Traceback" not in output
    assert not list((out / batch.STATE_DIR / "scratch").glob("*")), "a stopped grading left its scratch folder"
    for name in finished:
        load_report(out, name)

    with pytest.MonkeyPatch.context() as patch:  # the rerun resumes: only the rest is graded
        patch.setenv("TINY_GRADING_LOG", str(log))
        before = len(gradings(log))
        assert cli.main(arguments) == grading.EXIT_OK
        assert sorted(gradings(log)[before:]) == sorted(set(names) - set(finished))
    assert sorted(read_gradebook(out)) == names
    assert "Not graded yet" not in page_text(out / "summary.html")
    assert json.loads((out / "a.json").read_text())["status"] == gradebook.STATUS_GRADED
