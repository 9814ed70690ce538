"""A batch survives any one submission: whatever a submission holds or is named, and whatever fails
while the batch prepares, hashes, names, packs or grades it, that submission gets a zero-point report
that says why (or is graded with what it holds), and the batch goes on to write every other report,
the gradebook and the summary, with exit codes that keep their documented meaning.

The hostile submissions are the tiny assignment's passing one (``tests/test_batch.py``) plus one
thing a student's zip can hold: a dangling link, a link loop, a named pipe, a link to ``/dev/zero``,
a module whose name is not UTF-8; or a name that is hostile itself: not UTF-8, a spreadsheet
formula, too long to carry the report's suffix. Each must keep its 6 points.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from test_batch import ADD, SCALE, bare_job, make_tiny_assignment

from torchgrade import atomic
from torchgrade.instructor import batch, batchjob, cli, grading
from torchgrade.reporting import gradebook, report, summary

pytestmark = pytest.mark.timeout(600)

GOOD = ADD + SCALE
NON_UTF8_FOLDER = os.fsdecode(b"\xe9l\xe8ve")  # Latin-1 "élève": bytes that are not UTF-8
NON_UTF8_MODULE = os.fsdecode(b"caf\xe9.py")
LONG = "a" * 240  # a legal folder name; with ".json" and the atomic writer's temporary name, too long
#: Submission name -> what it holds besides the passing tiny.py, and what the report says was left out.
HOSTILE = {
    "dangling": ("extra.py", "a symbolic link"),
    "loop": ("loop.py", "a symbolic link"),
    "fifo": ("data.py", "a named pipe"),
    "zero": ("weights.bin", "a symbolic link"),
    "module_name": (NON_UTF8_MODULE, None),  # a regular file: kept (not a module name), nothing left out
}
HOSTILE_NAMES = [NON_UTF8_FOLDER, "=1+1", "-1.5", "@SUM(A1)", LONG]
PREPARATION_FAILS = "boom"
#: Nothing here hangs: a per-check limit far above the tiny assignment's 10 s keeps a loaded machine
#: (a cold worker start took 13 s with other test runs on the 2 cores) from failing a check.
SLACK = ("-o", "timeout=120")
NOT_SUBMISSIONS = ["gone.ipynb", "pipe.py", "spiral", "zero.py"]


def make_hostile(folder: Path) -> Path:
    """Every hostile submission of this module, and entries of the folder that are no submissions."""
    folder.mkdir(parents=True)
    for name in [*HOSTILE, *HOSTILE_NAMES, PREPARATION_FAILS]:
        (folder / name).mkdir()
        (folder / name / "tiny.py").write_text(GOOD)
    (folder / "dangling" / "extra.py").symlink_to(folder / "nowhere.py")
    (folder / "loop" / "loop.py").symlink_to(folder / "loop" / "loop.py")
    os.mkfifo(folder / "fifo" / "data.py")
    (folder / "zero" / "weights.bin").symlink_to("/dev/zero")
    (folder / "module_name" / NON_UTF8_MODULE).write_text("VALUE = 1\n")
    # entries of the submissions folder itself that are never opened, hence never block or crash
    (folder / "gone.ipynb").symlink_to(folder / "nowhere.ipynb")
    (folder / "spiral").symlink_to(folder / "spiral")
    os.mkfifo(folder / "pipe.py")
    (folder / "zero.py").symlink_to("/dev/zero")
    return folder


def failing_hash(path: Path) -> str:
    """The batch's content hash, except for one submission, whose preparation raises."""
    if path.name == PREPARATION_FAILS:
        raise RuntimeError("the disk went away")
    return batchjob.content_hash(path)


def read_gradebook(out: Path) -> list[list[str]]:
    text = (out / "gradebook.csv").read_bytes().decode("utf-8")  # strict: the file is UTF-8
    return list(csv.reader(io.StringIO(text, newline="")))


def load_report(out: Path, name: str) -> dict:
    data = json.loads(batch.report_path(out, name).read_bytes())
    report.validate(data)
    return data


def is_safe_cell(cell: str) -> bool:
    """Whether a spreadsheet shows the cell as it is: a number, or text that is no formula."""
    try:
        float(cell)
        return True
    except ValueError:
        return not cell.startswith(gradebook.FORMULA_STARTS)


# -- pieces, without a process ------------------------------------------------------------------------
def fake_report(score: float, question: str = "Q1") -> dict:
    return {
        "score": score,
        "max_score": 4,
        "pending_max_score": 0,
        "harness_errors": 0,
        "notes": [],
        "questions": [{"assignment": "a", "id": question, "score": score, "max_score": 4, "manual": False}],
        "checks": [],
    }


def test_gradebook_text_cells_are_never_formulas_and_numbers_stay_numbers(tmp_path):
    names = ['=HYPERLINK("http://x","y")', "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\uff1d1", "ok", "'=quoted"]
    reports = {name: fake_report(-1.5 if name == "-1" else 2, question="=Q1") for name in names}
    path = gradebook.write(reports, tmp_path / "gradebook.csv")
    header, *rows = read_gradebook(path.parent)
    assert header[1] == "a:=Q1"  # "a:" comes first: not a formula
    assert [row[0] for row in rows] == [
        '\'=HYPERLINK("http://x","y")',
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "'\uff1d1",
        "ok",
        "'=quoted",
    ]
    assert rows[2][1:5] == ["-1.5", "-1.5", "4", "0"]  # a score is a number, even a negative one
    assert all(is_safe_cell(cell) for row in [header, *rows] for cell in row)
    assert gradebook.text_cell("=x") == "'=x" and gradebook.text_cell("x=1") == "x=1"


def test_a_name_that_is_not_utf8_is_shown_by_its_bytes():
    assert gradebook.printable(NON_UTF8_FOLDER) == "\\xe9l\\xe8ve"
    assert gradebook.printable("élève") == "élève"  # valid text is unchanged
    assert gradebook.printable("\ud800") == "\\ud800"  # a lone surrogate no file name has
    header, rows = gradebook.rows({NON_UTF8_FOLDER: fake_report(4)})
    assert rows[0][0] == "\\xe9l\\xe8ve"


def test_the_summary_page_shows_and_links_a_name_that_is_not_utf8(tmp_path, monkeypatch):
    for plot in ("plot_histogram", "plot_pass_rates", "plot_slowest"):  # the page, not matplotlib (fc-list)
        monkeypatch.setattr(summary, plot, lambda data, path: path)
    name = NON_UTF8_FOLDER
    page = summary.write(
        {name: fake_report(4), "=1+1": fake_report(0)},
        tmp_path,
        report_files={name: f"{name}.json"},
        ignored=[os.fsdecode(b"x\xff.txt")],
    )
    text = page.read_bytes().decode("utf-8")  # strict
    assert '<a href="pages/%E9l%E8ve.html">\\xe9l\\xe8ve</a>' in text  # its own page
    assert '<a href="%E9l%E8ve.json">JSON</a>' in text
    assert "x\\xff.txt" in text
    own = (tmp_path / "pages" / f"{name}.html").read_bytes().decode("utf-8")  # named by the name's bytes
    assert "<h1>\\xe9l\\xe8ve</h1>" in own and '<a href="../%E9l%E8ve.json">' in own


def test_discovery_never_follows_or_opens_a_link_or_a_pipe(tmp_path):
    folder = make_hostile(tmp_path / "submissions")
    (folder / "linked").symlink_to(folder / "dangling")  # a link to a real submission: not followed either
    found, ignored = batch.discover(folder)
    assert sorted(s.name for s in found) == sorted([*HOSTILE, *HOSTILE_NAMES, PREPARATION_FAILS])
    assert ignored == sorted([*NOT_SUBMISSIONS, "linked"])


def test_file_stems_fit_every_file_name_the_batch_writes_and_stay_distinct(tmp_path):
    assert batch.file_stem("alice") == "alice" and batch.file_stem(NON_UTF8_FOLDER) == NON_UTF8_FOLDER
    long_a, long_b = "é" * 120, "é" * 119 + "e"  # 240 and 239 bytes
    stem = batch.file_stem(long_a)
    assert stem == batch.file_stem(long_a) != batch.file_stem(long_b)  # stable, and distinct
    assert len(os.fsencode(stem)) <= batch.MAX_STEM_BYTES and stem.startswith("é" * 80)
    assert stem.encode("utf-8")  # cut between characters, never inside one
    for name in (long_a, "x" * 255):
        for path in (
            batch.report_path(tmp_path, name),
            batch.record_path(tmp_path, name),
            batch.log_path(tmp_path, name, ".invalid-report.json"),
        ):
            atomic.write_text(path, "{}")  # the atomic writer's temporary name fits too
            assert path.read_text() == "{}"


def test_a_submission_that_cannot_be_packed_gets_a_report_that_says_why(tmp_path, monkeypatch):
    folder = make_hostile(tmp_path / "submissions")
    found, _ = batch.discover(folder)
    jobs = [bare_job(sub.name, sub.path) for sub in found]

    def pack(path: Path) -> bytes:
        if path.name == PREPARATION_FAILS:
            raise MemoryError("no memory left")
        return batchjob.pack(path)

    monkeypatch.setattr(batch, "pack", pack)
    sendable, refused = batch._packed(jobs)
    assert sorted(job["name"] for job in sendable) == sorted(s.name for s in found if s.name != PREPARATION_FAILS)
    ((job, outcome),) = refused
    assert job["name"] == PREPARATION_FAILS
    assert outcome["problem"] == batch.MSG_NOT_PREPARED.format(
        stage=batch.STAGE_PACK, error="MemoryError: no memory left"
    )
    for index, job in enumerate(sendable):  # what travels is what the batch hashed: the regular files only
        unpacked = batchjob.unpack(job["payload"], tmp_path / "unpacked" / str(index))
        assert batchjob.content_hash(unpacked) == batchjob.content_hash(Path(job["submission"]))
        assert not any(p.is_symlink() for p in unpacked.rglob("*"))


def test_the_batch_command_says_its_own_failure_with_exit_code_3(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("a bug in the batch")

    monkeypatch.setattr(batch, "run_batch", broken)
    assert cli.main(["batch", str(tmp_path), "--out", str(tmp_path / "out")]) == grading.EXIT_INTERNAL
    assert batch.MSG_INTERNAL.format(error="ValueError: a bug in the batch") in capsys.readouterr().err


# -- the whole batch ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    """The tiny assignment and one batch over every hostile submission (2 at a time)."""
    root = tmp_path_factory.mktemp("hostile")
    assignment = make_tiny_assignment(root)
    subs = make_hostile(root / "submissions")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "content_hash", failing_hash)
        result = batch.run_batch(
            subs, out=root / "reports", assignment=assignment, jobs=2, extra_args=SLACK, timeout=240, progress=False
        )
    return {"assignment": assignment, "submissions": subs, "result": result}


def test_every_hostile_submission_gets_a_valid_report_and_the_batch_goes_on(hostile):
    result = hostile["result"]
    graded = [*HOSTILE, *HOSTILE_NAMES]
    assert sorted(result.graded) == sorted([*graded, PREPARATION_FAILS]) and result.skipped == ()
    assert list(result.ignored) == NOT_SUBMISSIONS
    assert result.statuses == {name: gradebook.STATUS_GRADED for name in graded} | {
        PREPARATION_FAILS: gradebook.STATUS_UNREADABLE  # its files could not be read
    }
    assert result.exit_code == grading.EXIT_FAILED  # a failed grading, as --help documents it
    for name in graded:
        data = load_report(result.out, name)
        assert (data["score"], data["max_score"], data["harness_errors"]) == (6, 6, 0), name
        assert data["submission"] == str(hostile["submissions"] / name)


def test_what_a_submission_holds_but_no_check_reads_is_named_in_its_report(hostile):
    for name, (entry, kind) in HOSTILE.items():
        notes = " ".join(load_report(hostile["result"].out, name)["notes"])
        if kind is None:
            assert "left out" not in notes, name
        else:
            assert f"{entry}: {kind}" in notes, name


def test_a_submission_whose_preparation_raises_gets_a_zero_that_says_why(hostile):
    data = load_report(hostile["result"].out, PREPARATION_FAILS)
    problem = batch.MSG_NOT_PREPARED.format(stage=batch.STAGE_PREPARE, error="RuntimeError: the disk went away")
    assert data["notes"] == [gradebook.NOTE_PREFIX + problem]
    assert (data["score"], data["max_score"], data["pending_max_score"]) == (0, 6, 2)
    assert {(c["outcome"], c["points"], c["message"]) for c in data["checks"]} == {("error", 0, problem)}
    assert len(data["checks"]) == 3
    record = json.loads(batch.record_path(hostile["result"].out, PREPARATION_FAILS).read_text())
    assert record["content_hash"] is None  # no key: the next batch grades it again


def test_hostile_names_survive_into_report_files_gradebook_and_summary(hostile):
    out = hostile["result"].out
    assert (out / f"{NON_UTF8_FOLDER}.json").is_file()  # the report's file name keeps the folder's bytes
    assert batch.report_path(out, LONG).is_file() and batch.report_path(out, LONG).name != f"{LONG}.json"
    assert (out / batch.STATE_DIR / "logs" / f"{NON_UTF8_FOLDER}.log").is_file()
    header, *rows = read_gradebook(out)
    assert all(is_safe_cell(cell) for row in [header, *rows] for cell in row)
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert sorted(by_name) == sorted(
        ["\\xe9l\\xe8ve", "'=1+1", "'-1.5", "'@SUM(A1)", LONG, *HOSTILE, PREPARATION_FAILS]
    )
    assert by_name["'-1.5"]["total"] == "6" and by_name[PREPARATION_FAILS]["status"] == gradebook.STATUS_UNREADABLE
    page = (out / "summary.html").read_bytes().decode("utf-8")
    assert '<a href="pages/%E9l%E8ve.html">\\xe9l\\xe8ve</a>' in page and '<a href="%E9l%E8ve.json">JSON</a>' in page
    stem = batch.report_path(out, LONG).stem  # a long name's page is named as its report: its stem and a hash
    assert f'<a href="pages/{stem}.html">{LONG}</a>' in page and (out / "pages" / f"{stem}.html").is_file()
    assert (out / "pages" / f"{NON_UTF8_FOLDER}.html").is_file()
    assert "Not graded (not a folder, .py or .ipynb file): gone.ipynb, pipe.py, spiral, zero.py" in page


def test_a_rerun_reuses_every_hostile_report_and_grades_the_failed_one_again(hostile):
    result = batch.run_batch(
        hostile["submissions"],
        out=hostile["result"].out,
        assignment=hostile["assignment"],
        jobs=2,
        extra_args=SLACK,
        progress=False,
    )
    assert result.graded == (PREPARATION_FAILS,)
    assert sorted(result.skipped) == sorted([*HOSTILE, *HOSTILE_NAMES])
    assert load_report(result.out, PREPARATION_FAILS)["score"] == 6
    assert result.exit_code == grading.EXIT_OK


def test_a_bug_in_a_grading_task_fails_that_submission_only(tmp_path, monkeypatch):
    def grade(job: batchjob.Job) -> batchjob.Outcome:
        if job["name"] == PREPARATION_FAILS:
            raise KeyError("a bug")
        return batchjob.failed_outcome(job, "not graded in this test")

    monkeypatch.setattr(batch, "grade_one", grade)
    jobs = [bare_job(name, tmp_path / name) for name in (PREPARATION_FAILS, "alice")]
    problems = {job["name"]: outcome["problem"] for job, outcome in batch.run_local(jobs, 2)}
    assert problems == {
        PREPARATION_FAILS: batchjob.MSG_TASK_ERROR.format(error="KeyError: 'a bug'"),
        "alice": "not graded in this test",
    }


def test_a_report_the_output_folder_refuses_is_said_and_the_batch_goes_on(tmp_path, monkeypatch, capsys):
    subs = tmp_path / "submissions"
    for name in (PREPARATION_FAILS, "alice"):
        (subs / name).mkdir(parents=True)
        (subs / name / "tiny.py").write_text(GOOD)
    real = batch.commit

    def commit(out: Path, name: str, data: dict, record: dict) -> Path:
        if name == PREPARATION_FAILS:
            raise OSError(28, "No space left on device")
        return real(out, name, data, record)

    monkeypatch.setattr(batch, "commit", commit)
    assignment = make_tiny_assignment(tmp_path)
    result = batch.run_batch(
        subs, out=tmp_path / "out", assignment=assignment, jobs=2, isolation="none", extra_args=SLACK, progress=False
    )
    assert result.graded == ("alice",) and result.statuses == {"alice": gradebook.STATUS_GRADED}
    assert result.exit_code == grading.EXIT_INTERNAL  # the batch itself failed, as --help documents it
    error = "OSError: [Errno 28] No space left on device"
    assert batch.MSG_UNWRITTEN.format(name=PREPARATION_FAILS, error=error) in capsys.readouterr().err
    assert [row[0] for row in read_gradebook(result.out)[1:]] == ["alice"]
