"""``torchgrade batch``: every submission gets a valid report (broken ones included), the gradebook and
the summary page are right, a Dask cluster gives the same reports as the local pool, and a killed
batch resumes without regrading what it had finished.

Grading the real samples costs minutes (training checks), so the mechanics are tested on a tiny
assignment built in a temp dir: its own ``graders/`` (three checks worth 6 points, one manual
question) and submissions that pass, lose a point, crash at import, hang, call ``os._exit``, or are
a single ``.py`` file. Its conftest appends the name of every submission it starts grading to the
file named by ``TINY_GRADING_LOG``, which is how the tests count gradings. One test grades real
bundled samples with the cheap ``-k answers`` selection passed through to pytest.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from fixtures import samples
from torchgrade import atomic
from torchgrade.instructor import batch, batchjob, cli, grading
from torchgrade.reporting import gradebook, report, summary

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)

TINY_CONFTEST = '''
import os
from pathlib import Path

import pytest

pytest_plugins = ["torchgrade.engine.plugin"]


@pytest.fixture(scope="session", autouse=True)
def count_grading(pytestconfig):
    """Count gradings for the tests: one line per graded submission, with the grader's torch threads."""
    import torch

    log = os.environ.get("TINY_GRADING_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{Path(pytestconfig.getoption('submission')).name} {torch.get_num_threads()}\\n")
'''

TINY_GRADER = """
import pytest

from torchgrade.errors import CheckFailure

ASSIGNMENT = "tiny"
MANUAL = {"Q3": (2, "explain why addition commutes")}


def expect(call, got, expected):
    if got != expected:
        raise CheckFailure(f"{call} returned {got!r}; expected {expected!r}.")


@pytest.mark.points(2, question="Q1")
def test_add(sub):
    expect("add(2, 3)", sub.add(2, 3), 5)


@pytest.mark.points(1, question="Q1")
def test_add_negative(sub):
    expect("add(-2, -3)", sub.add(-2, -3), -5)


@pytest.mark.points(3, question="Q2")
def test_scale(sub):
    expect("scale([1.0, 2.0], 3.0)", sub.scale([1.0, 2.0], 3.0), [3.0, 6.0])
"""

# The repository's pytest configuration, with a short per-check limit so that a hanging call costs
# seconds; generous enough for a cold worker start (about 2-4 s on the shared 2-core machine).
TINY_PYPROJECT = """
[tool.pytest.ini_options]
addopts = ["--strict-markers", "--strict-config", "-ra"]
xfail_strict = true
timeout = 10
filterwarnings = ["error", "ignore::DeprecationWarning:torch.*"]
"""

ADD = "def add(a, b):\n    return a + b\n"
SCALE = "def scale(xs, k):\n    return [x * k for x in xs]\n"
TINY_SUBMISSIONS = {
    "good": ADD + SCALE,
    "partial": "def add(a, b):\n    return a + abs(b)\n" + SCALE,
    "import_crash": "raise RuntimeError('boom while importing')\n" + ADD + SCALE,
    "hang": ADD + "def scale(xs, k):\n    while True:\n        pass\n",
    "exits": ADD + "import os\n\ndef scale(xs, k):\n    os._exit(3)\n",
}
#: Points each tiny submission earns under process isolation, out of 6.
TINY_SCORES = {"good": 6, "partial": 5, "import_crash": 0, "hang": 3, "exits": 3}


def make_tiny_assignment(root: Path) -> Path:
    assignment = root / "assignment"
    (assignment / "graders").mkdir(parents=True)
    (assignment / "graders" / "conftest.py").write_text(TINY_CONFTEST)
    (assignment / "graders" / "test_tiny.py").write_text(TINY_GRADER)
    (assignment / "pyproject.toml").write_text(TINY_PYPROJECT)
    return assignment


def make_submissions(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).mkdir()
        (folder / name / "tiny.py").write_text(TINY_SUBMISSIONS[name])
    return folder


def bare_job(name: str, submission: Path, isolation: str = "none") -> batchjob.Job:
    """A job that names a submission and nothing else: for tests that never start its grading."""
    return batchjob.Job(
        name=name,
        submission=str(submission),
        payload=None,
        assignment="",
        isolation=isolation,
        extra_args=[],
        timeout=1.0,
        threads=None,
        scratch_root=None,
    )


def gradings(log: Path) -> list[str]:
    """The submissions graded so far, in order (see TINY_CONFTEST)."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def grading_threads(log: Path) -> set[int]:
    return {int(line.split()[1]) for line in log.read_text().splitlines()}


def verdicts(data: dict) -> dict:
    """What must not depend on where or when a submission was graded: scores and check outcomes.

    Messages are left out: a worker that calls ``os._exit(3)`` is reported as "exit code 3" or as
    "killed by signal 9", depending on whether it had exited when the grader noticed the closed pipe.
    """
    return {
        "score": data["score"],
        "max_score": data["max_score"],
        "notes": data["notes"],
        "questions": data["questions"],
        "checks": {c["id"]: (c["outcome"], c["points"], c["max_points"]) for c in data["checks"]},
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """The tiny assignment and a batch over all its submissions on the local pool (2 at a time)."""
    root = tmp_path_factory.mktemp("tiny")
    assignment = make_tiny_assignment(root)
    subs = make_submissions(root / "submissions", list(TINY_SUBMISSIONS))
    (subs / "solo.py").write_text(ADD + SCALE)  # a script submission
    (subs / "broken.ipynb").write_text("{ this is not JSON")  # a notebook that cannot be read
    (subs / "notes.txt").write_text("not a submission")
    (subs / "__pycache__").mkdir()
    log = root / "gradings.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TINY_GRADING_LOG", str(log))
        result = batch.run_batch(subs, out=root / "reports", assignment=assignment, jobs=2, progress=False)
    return {"root": root, "assignment": assignment, "submissions": subs, "result": result, "log": log}


def load_report(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    report.validate(data)
    return data


# -- the local pool on the tiny assignment ------------------------------------------------------------
def test_every_submission_gets_a_valid_report(tiny):
    result, out = tiny["result"], tiny["result"].out
    names = sorted([*TINY_SUBMISSIONS, "solo.py", "broken.ipynb"])
    assert sorted(result.graded) == names and result.skipped == ()
    assert result.ignored == ("notes.txt",)
    assert sorted(gradings(tiny["log"])) == names  # each graded once
    assert grading_threads(tiny["log"]) == {1}  # two gradings at once: one torch thread each
    for name in names:
        data = load_report(out, name)
        assert data["isolation"] == "process"
        assert data["submission"] == str(tiny["submissions"] / name)
    for name, score in {**TINY_SCORES, "solo.py": 6, "broken.ipynb": 0}.items():
        data = load_report(out, name)
        assert (data["score"], data["max_score"], data["pending_max_score"]) == (score, 6, 2), name
    # every submission's code was graded but the notebook's, which is not JSON: exit code 1 says so
    assert result.statuses == {name: gradebook.STATUS_GRADED for name in names} | {
        "broken.ipynb": gradebook.STATUS_UNREADABLE
    }
    assert result.exit_code == grading.EXIT_FAILED


def test_misbehaving_submissions_fail_their_checks_only(tiny):
    out = tiny["result"].out
    checks = {
        name: {c["id"].split("::")[-1]: c for c in load_report(out, name)["checks"]}
        for name in ("import_crash", "hang", "exits", "partial", "broken.ipynb")
    }
    assert all(c["outcome"] == "failed" for c in checks["import_crash"].values())
    assert "timed out" in checks["hang"]["test_scale"]["message"]
    assert "died" in checks["exits"]["test_scale"]["message"]
    assert checks["partial"]["test_add_negative"]["message"] == "add(-2, -3) returned 1; expected -5."
    for name in ("hang", "exits"):
        assert checks[name]["test_add"]["outcome"] == "passed", name  # the worker was restarted
    unreadable = load_report(out, "broken.ipynb")["extraction"]["error"]
    assert {c["message"] for c in checks["broken.ipynb"].values()} == {unreadable}


def test_records_and_logs_are_kept_for_every_submission(tiny):
    out = tiny["result"].out
    for name in [*TINY_SUBMISSIONS, "solo.py", "broken.ipynb"]:
        record = json.loads(batch.record_path(out, name).read_text())
        assert record["content_hash"] == batchjob.content_hash(tiny["submissions"] / name)
        assert record["report_sha256"] == hashlib.sha256((out / f"{name}.json").read_bytes()).hexdigest()
        assert (out / batch.STATE_DIR / "logs" / f"{name}.log").is_file()
    assert not list(out.glob(".*.tmp"))


def test_gradebook_has_a_row_per_submission_and_a_column_per_question(tiny):
    out = tiny["result"].out
    with open(out / "gradebook.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        *("submission", "tiny:Q1", "tiny:Q2", "tiny:Q3", "total", "max", "pending_max", "status", "reason")
    ]
    by_name = {row["submission"]: row for row in rows}
    assert sorted(by_name) == sorted([*TINY_SUBMISSIONS, "solo.py", "broken.ipynb"])
    for name in TINY_SUBMISSIONS:
        data = load_report(out, name)
        scores = {q["id"]: q["score"] for q in data["questions"]}
        row = by_name[name]
        assert (float(row["tiny:Q1"]), float(row["tiny:Q2"])) == (scores["Q1"], scores["Q2"])
        assert row["tiny:Q3"] == ""  # the manual question is pending
        assert (float(row["total"]), float(row["max"]), row["status"]) == (TINY_SCORES[name], 6, "graded")
        assert row["reason"] == ""
    assert by_name["broken.ipynb"]["status"] == "unreadable"
    assert by_name["broken.ipynb"]["reason"].startswith("broken.ipynb could not be graded: it is not valid notebook")


def test_summary_page_refers_to_its_plots_and_reports(tiny):
    out = tiny["result"].out
    page = (out / "summary.html").read_text()
    for image in (summary.HISTOGRAM, summary.PASS_RATE, summary.SLOWEST):
        assert f'src="{image}"' in page
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in TINY_SUBMISSIONS:
        assert f'<a href="pages/{name}.html">{name}</a>' in page and f'<a href="{name}.json">JSON</a>' in page
        assert f"<h1>{name}</h1>" in (out / "pages" / f"{name}.html").read_text()
    assert "<td>tiny:Q2</td>" in page  # the pass-rate table
    assert "test_tiny.py::test_scale" in page  # the slowest check: the hanging one
    assert "Not graded (not a folder, .py or .ipynb file): notes.txt" in page


# -- failures the batch reports itself ---------------------------------------------------------------
def descendants_while(action):
    """Run ``action()``; return its result and every process descended from this one meanwhile, with
    its command line when first seen, and the pids of those that were this process's own children."""
    seen: dict[int, tuple[psutil.Process, str]] = {}
    direct_children: set[int] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            direct_children.update(process.pid for process in psutil.Process().children())
            for process in psutil.Process().children(recursive=True):
                if process.pid not in seen:
                    try:
                        seen[process.pid] = (process, " ".join(process.cmdline()))
                    except psutil.Error:
                        pass  # gone already
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return action(), list(seen.values()), direct_children
    finally:
        done.set()
        watcher.join()


def test_a_hanging_grading_is_stopped_with_its_whole_process_tree(tmp_path, tiny):
    subs = make_submissions(tmp_path / "submissions", ["hang"])
    # The checks' own limit is raised past the batch's, so only the batch can stop the hang.
    result, processes, direct_children = descendants_while(
        lambda: batch.run_batch(
            subs,
            out=tmp_path / "reports",
            assignment=tiny["assignment"],
            jobs=1,
            timeout=8,
            extra_args=("-o", "timeout=120"),
            progress=False,
        )
    )
    assert result.statuses == {"hang": gradebook.STATUS_TIMED_OUT} and result.exit_code == grading.EXIT_FAILED
    data = load_report(result.out, "hang")
    message = batchjob.MSG_TIMEOUT.format(seconds=8)
    assert data["notes"] == [gradebook.NOTE_PREFIX + message]
    assert (data["status"], data["reason"]) == (gradebook.STATUS_TIMED_OUT, message)
    assert (data["score"], data["max_score"], data["pending_max_score"], data["harness_errors"]) == (0, 6, 2, 0)
    assert {c["id"].split("::")[-1]: (c["outcome"], c["points"], c["message"]) for c in data["checks"]} == {
        name: ("failed", 0, message) for name in ("test_add", "test_add_negative", "test_scale")
    }
    assert [p for p, command in processes if "torchgrade.worker" in command], "the hanging worker was never seen"
    # the batch starts the grading pytest itself: no interpreter in between
    children = [command for p, command in processes if p.pid in direct_children]
    assert children and all(" -I -m pytest " in command for command in children), children
    # every process of the grading is gone, the worker too, though it runs in a session of its own
    assert [command for p, command in processes if _alive(p)] == []


def _alive(process: psutil.Process) -> bool:
    """Still running: a killed process that nobody reaped yet (a zombie) has stopped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_grading_that_dies_without_a_report_gets_one(tmp_path, tiny):
    # Without process isolation, os._exit in the submission ends pytest itself: no report at all.
    subs = make_submissions(tmp_path / "submissions", ["exits"])
    result = batch.run_batch(
        subs, out=tmp_path / "reports", assignment=tiny["assignment"], jobs=1, isolation="none", progress=False
    )
    data = load_report(result.out, "exits")
    message = batchjob.MSG_NO_REPORT.format(code=3)
    assert data["notes"] == [gradebook.NOTE_PREFIX + message] and data["isolation"] == "none"
    assert data["score"] == 0 and data["harness_errors"] == len(data["checks"]) == 3
    assert all(c["outcome"] == "error" and c["message"] == message for c in data["checks"])
    assert result.statuses == {"exits": gradebook.STATUS_CRASHED} and result.exit_code == grading.EXIT_FAILED
    with open(result.out / "gradebook.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert (row["status"], row["reason"]) == (gradebook.STATUS_CRASHED, message)
    assert "Needs a look" in (result.out / "summary.html").read_text()


# -- Dask ------------------------------------------------------------------------------------------
def test_a_dask_cluster_gives_the_same_reports_as_the_local_pool(tmp_path, tiny):
    distributed = pytest.importorskip("distributed")
    names = ["good", "partial", "import_crash", "exits"]
    subs = tmp_path / "submissions"
    subs.mkdir()
    for name in names:  # a copy elsewhere: the task must grade what it was sent, not a shared path
        shutil.copytree(tiny["submissions"] / name, subs / name)
    # A worker process of its own, reached over TCP: jobs and outcomes really are serialised.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None, local_directory=tmp_path / "dask"
    ) as cluster:
        result = batch.run_batch(
            subs,
            out=tmp_path / "reports",
            assignment=tiny["assignment"],
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert sorted(result.graded) == sorted(names) and result.exit_code == grading.EXIT_OK
    for name in names:
        on_dask, local = load_report(result.out, name), load_report(tiny["result"].out, name)
        assert on_dask["submission"] == str(subs / name)
        log = (result.out / batch.STATE_DIR / "logs" / f"{name}.log").read_text()
        assert f"/submission/{name} (process isolation)" in log and str(subs) not in log  # the copy it was sent
        assert verdicts(on_dask) == verdicts(local), name
        if name != "exits":  # see verdicts()
            assert [c["message"] for c in on_dask["checks"]] == [c["message"] for c in local["checks"]], name
    assert (result.out / "gradebook.csv").read_text().splitlines()[0] == (
        tiny["result"].out / "gradebook.csv"
    ).read_text().splitlines()[0]


def test_a_dask_worker_without_the_assignment_is_a_usage_error(tmp_path, tiny):
    distributed = pytest.importorskip("distributed")
    subs = make_submissions(tmp_path / "submissions", ["good"])
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, local_directory=tmp_path / "dask"
    ) as cluster:
        with pytest.raises(batch.BatchUsageError, match="have no assignment at"):
            list(batch.run_dask([], cluster.scheduler_address, assignment=tmp_path / "nowhere"))
        # the batch itself checks the assignment on the client first
        with pytest.raises(batch.BatchUsageError, match="is not an assignment"):
            batch.run_batch(subs, out=tmp_path / "out", assignment=tmp_path, scheduler=cluster.scheduler_address)


# -- resuming ---------------------------------------------------------------------------------------
def test_a_killed_batch_resumes_without_regrading_finished_submissions(tmp_path, tiny):
    names = ["good", "partial", "import_crash"]
    subs = make_submissions(tmp_path / "submissions", names)
    out, log = tmp_path / "reports", tmp_path / "gradings.log"
    env = {**os.environ, "TINY_GRADING_LOG": str(log)}
    command = [
        sys.executable,
        "-m",
        "torchgrade",
        "--assignment",
        str(tiny["assignment"]),
        "batch",
        str(subs),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--no-progress",
        "--",
        "-k",
        "add",
    ]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the batch and its gradings, as a crash or Ctrl-C would
    process.wait()
    finished = {p.stem: p.read_bytes() for p in out.glob("*.json")}
    assert 1 <= len(finished) < len(names), "the batch must be killed midway"
    scratch = out / batch.STATE_DIR / "scratch"
    (scratch / "torchgrade-batch-killed").mkdir(parents=True, exist_ok=True)  # as a grading in flight leaves

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TINY_GRADING_LOG", str(log))
        before = len(gradings(log))
        code = cli.main(
            [
                "--assignment",
                str(tiny["assignment"]),
                "batch",
                str(subs),
                "--out",
                str(out),
                "--jobs",
                "2",
                "--no-progress",
                "--",
                "-k",
                "add",
            ]
        )
        resumed = gradings(log)[before:]
        assert code == grading.EXIT_OK
        assert sorted(resumed) == sorted(set(names) - set(finished))  # nothing finished is graded again
        assert list(scratch.iterdir()) == []  # the killed batch's leftovers are gone, and the rerun left none
        for name, content in finished.items():
            assert (out / f"{name}.json").read_bytes() == content
        for name in names:  # -k add reached pytest: only the two add checks were graded
            data = load_report(out, name)
            assert {c["id"].split("::")[-1] for c in data["checks"]} == {"test_add", "test_add_negative"}
            assert data["max_score"] == 3

        before = len(gradings(log))
        again = batch.run_batch(subs, out=out, assignment=tiny["assignment"], extra_args=("-k", "add"), progress=False)
        assert again.graded == () and sorted(again.skipped) == sorted(names) and len(gradings(log)) == before

        (subs / "partial" / "tiny.py").write_text(TINY_SUBMISSIONS["good"])  # an edited submission
        edited = batch.run_batch(subs, out=out, assignment=tiny["assignment"], extra_args=("-k", "add"), progress=False)
        assert edited.graded == ("partial",) and gradings(log)[before:] == ["partial"]
        assert load_report(out, "partial")["score"] == 3


def test_a_report_is_reused_only_when_it_matches_its_record(tmp_path):
    sub = tmp_path / "alice"
    sub.mkdir()
    (sub / "tiny.py").write_text(ADD)
    out = tmp_path / "out"
    job = bare_job("alice", sub, isolation="process")
    when = "2024-01-01T00:00:00+00:00"
    outcome = batchjob.Outcome(
        name="alice",
        kind="timeout",
        report=None,
        exit_code=None,
        problem="stopped",
        started_at=when,
        finished_at=when,
        seconds=1.0,
        log="",
        host="",
    )
    data = batch.failure_report(job, outcome, None, "no checks")
    report.validate(data)
    content = batchjob.content_hash(sub)
    batch.commit(out, "alice", data, {"content_hash": content, "setup_hash": "s1", "kind": "timeout"})
    assert batch.is_up_to_date(out, "alice", content, "s1")
    assert not batch.is_up_to_date(out, "alice", content, "s1", retry_failed=True)  # a failed grading
    assert not batch.is_up_to_date(out, "alice", content, "s2")  # other graders or arguments
    (sub / "tiny.py").write_text(ADD + SCALE)
    assert not batch.is_up_to_date(out, "alice", batchjob.content_hash(sub), "s1")  # an edited submission
    # killed after the record of a new grading was written but before its report: graded again
    text = batch.report_path(out, "alice").read_text()
    assert '"score": 0.0' in text
    batch.report_path(out, "alice").write_text(text.replace('"score": 0.0', '"score": 0'))
    assert not batch.is_up_to_date(out, "alice", content, "s1")


# -- the pieces -------------------------------------------------------------------------------------
def test_command_line_help_and_usage_errors(tmp_path, capsys):
    assert cli.main(["batch", "--help"]) == grading.EXIT_OK
    assert "Exit codes:" in capsys.readouterr().out
    assert cli.main(["batch"]) == grading.EXIT_USAGE  # no folder
    assert cli.main(["batch", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "many"]) == grading.EXIT_USAGE
    code = cli.main(["--assignment", str(ROOT), "batch", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert code == grading.EXIT_USAGE
    assert "submissions folder" in capsys.readouterr().err
    code = cli.main(["--assignment", str(tmp_path), "batch", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == grading.EXIT_USAGE
    assert "is not an assignment" in capsys.readouterr().err


def test_discovery_takes_folders_and_notebook_or_script_files(tmp_path):
    for folder in ("bob", ".hidden", "__pycache__", "out"):
        (tmp_path / folder).mkdir()
    for file in ("carol.py", "dave.ipynb", "readme.md", ".DS_Store"):
        (tmp_path / file).write_text("")
    found, ignored = batch.discover(tmp_path, exclude=[tmp_path / "out"])
    assert [(s.name, s.path) for s in found] == [(n, tmp_path / n) for n in ("bob", "carol.py", "dave.ipynb")]
    assert ignored == ["readme.md"]


def test_content_hash_follows_the_files_and_ignores_caches(tmp_path):
    sub = tmp_path / "sub"
    (sub / "pkg").mkdir(parents=True)
    (sub / "tiny.py").write_text(ADD)
    first = batchjob.content_hash(sub)
    (sub / "__pycache__").mkdir()
    (sub / "__pycache__" / "tiny.cpython-311.pyc").write_bytes(b"\0")
    assert batchjob.content_hash(sub) == first
    (sub / "pkg" / "helper.py").write_text("")
    assert batchjob.content_hash(sub) != first
    (sub / "pkg" / "helper.py").unlink()
    (sub / "tiny.py").write_text(ADD.replace("+", "-"))
    assert batchjob.content_hash(sub) != first


def test_pack_and_unpack_keep_the_submission_and_refuse_escapes(tmp_path):
    import io
    import tarfile

    sub = tmp_path / "alice"
    (sub / "data").mkdir(parents=True)
    (sub / "tiny.py").write_text(ADD)
    (sub / "data" / "weights.bin").write_bytes(bytes(range(256)))
    unpacked = batchjob.unpack(batchjob.pack(sub), tmp_path / "copy")
    assert unpacked == tmp_path / "copy" / "alice"
    assert batchjob.content_hash(unpacked) == batchjob.content_hash(sub)
    single = tmp_path / "bob.py"
    single.write_text(ADD)
    assert batchjob.unpack(batchjob.pack(single), tmp_path / "copy2").read_text() == ADD

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("alice/../../escaped.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.OutsideDestinationError):
        batchjob.unpack(evil.getvalue(), tmp_path / "copy3")
    assert not (tmp_path / "escaped.py").exists()


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic.write_text(tmp_path / "a.json", "{}")
    (tmp_path / ".a.json.123.tmp").write_text("half a file from a killed writer")
    assert atomic.remove_leftovers(tmp_path) == [tmp_path / ".a.json.123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_summary_statistics_from_reports():
    def check(cid, points, max_points, duration):
        return {
            "id": cid,
            "points": points,
            "max_points": max_points,
            "duration": duration,
            "outcome": "passed" if points == max_points else "failed",
        }

    def fake(score_q1, duration, notes=()):
        return {
            "score": score_q1,
            "max_score": 4,
            "pending_max_score": 1,
            "harness_errors": 0,
            "notes": list(notes),
            "questions": [
                {"assignment": "a", "id": "Q1", "score": score_q1, "max_score": 4, "manual": False},
                {"assignment": "a", "id": "Q2", "score": None, "max_score": 1, "manual": True},
            ],
            "checks": [check("t::fast", score_q1 / 2, 2, 0.1), check("t::slow", score_q1 / 2, 2, duration)],
        }

    timeout = gradebook.NOTE_PREFIX + batchjob.MSG_TIMEOUT.format(seconds=60)
    reports = {"x": fake(4, 3.0), "y": fake(2, 1.0), "z": fake(0, 0.0, [timeout])}
    assert summary.score_percentages(reports) == [100.0, 50.0, 0.0]
    (q1,) = summary.question_stats(reports)  # the manual question has no pass rate
    assert (q1.label, q1.passed, q1.graded, q1.mean_score) == ("a:Q1", 1, 3, 2.0)
    slow, fast = summary.check_times(reports)  # z's grading failed: its checks never ran
    assert (slow.id, slow.mean, slow.max, slow.slowest_submission, slow.runs) == ("t::slow", 2.0, 3.0, "x", 2)
    assert fast.id == "t::fast"
    header, rows = gradebook.rows(reports)
    assert header == ["submission", "a:Q1", "a:Q2", "total", "max", "pending_max", "status", "reason"]
    assert (
        rows
        == [  # z has no status of its own (an older batch's report): derived from its note
            ["x", "4", "", "4", "4", "1", "graded", ""],
            ["y", "2", "", "2", "4", "1", "graded", ""],
            ["z", "0", "", "0", "4", "1", "timed out", timeout[len(gradebook.NOTE_PREFIX) :]],
        ]
    )


# -- real samples, cheap checks only ------------------------------------------------------------------
def test_batch_over_real_samples_with_a_pytest_selection(tmp_path):
    """The reference, the template, a buggy sample and a Colab notebook of the reference, graded on
    the hand-computation checks only (``-- -k answers``: seconds each, no training)."""
    from fixtures.notebooks import colab

    subs = tmp_path / "submissions"
    expected_lost = {}
    for name in ["reference", "template", "fc1_formula"]:
        sample = samples.load(name)
        samples.materialise(sample, subs)
        expected_lost[name] = sample.lost
    notebook = colab.write_notebook(subs).name
    names = [*expected_lost, notebook]
    result = batch.run_batch(
        subs,
        out=tmp_path / "reports",
        assignment=ROOT,
        jobs=2,
        extra_args=("-k", "answers", "--data-root", "synthetic"),
        progress=False,
    )
    assert sorted(result.graded) == sorted(names) and result.exit_code == grading.EXIT_OK
    reports = {name: load_report(result.out, name) for name in names}
    maximum = reports["reference"]["max_score"]
    assert reports["reference"]["score"] == maximum > 0
    assert all(c["id"].startswith("graders/test_answers.py::") for c in reports["reference"]["checks"])
    assert reports["template"]["score"] == 0 and reports["template"]["max_score"] == maximum
    selected = {q["id"] for q in reports["reference"]["questions"] if not q["manual"]}
    lost = {
        q["id"]: q["max_score"] - q["score"]
        for q in reports["fc1_formula"]["questions"]
        if not q["manual"] and q["score"] != q["max_score"]
    }
    assert lost == {q: p for q, p in expected_lost["fc1_formula"].items() if q in selected}
    assert verdicts(reports[notebook])["checks"] == verdicts(reports["reference"])["checks"]
    dropped = " ".join(d["excerpt"] for d in reports[notebook]["extraction"]["dropped"])
    assert "!pip install" in dropped and "drive.mount" in dropped  # the Colab-only cells were left out
    with open(result.out / "gradebook.csv", newline="") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    for name in names:
        assert float(rows[name]["total"]) == reports[name]["score"]
        assert float(rows[name]["max"]) == maximum
    assert (result.out / "summary.html").is_file()
