"""``torchgrade batch SUBMISSIONS/ --out reports/``: grade a whole class, on local cores or a Dask cluster.

Every entry of ``SUBMISSIONS/`` is one submission: a folder, or a single ``.py`` / ``.ipynb`` file
(hidden entries and ``__pycache__`` are ignored). Each is graded as :func:`torchgrade.instructor.grading.grade`
grades, by a fresh pytest process in ``--isolation process`` by default, and its report lands in ``--out``::

    reports/<name>.json                     the report (``<name>`` keeps a file's suffix: bob.py.json)
    reports/gradebook.csv                   one row per submission (torchgrade.reporting.gradebook)
    reports/summary.html, *.png             the summary page and its plots (torchgrade.reporting.summary)
    reports/pages/<name>.html               each submission's page (torchgrade.reporting.submission_page)
    reports/.torchgrade-batch/<name>.json   the resumability record of each report
    reports/.torchgrade-batch/logs/         pytest's output for each grading
    reports/.torchgrade-batch/scratch/      the local gradings in flight (a rerun removes leftovers)

Run one batch at a time per output folder.

Every report says what happened to its submission in a ``status`` and a ``reason``, decided on the
grader side only: from the report's extraction and check outcomes, the grading's exit, and the
submission's own files parsed (never run) by the batch, never from what the submission's worker
claims alone. They are the gradebook's ``status`` and ``reason`` columns
(:mod:`torchgrade.reporting.gradebook`) and the summary's "Needs a look" list:

=================  ===========================================================================
status             when
=================  ===========================================================================
``graded``         the submission's code was graded; its score is what it earned
``unreadable``     nothing gradable: an empty file, a ``.py`` or notebook that does not parse, a
                   folder without a module, or code that defines none of the assignment's names
                   (and no check earned a point); a submission whose files cannot be read
``timed out``      the grading ran past ``--timeout`` and was stopped
``crashed``        the grading ended without a report (its process or its cluster task died)
``harness error``  a torchgrade error: a check hit one, the grading wrote an invalid report or
                   ended abnormally, or the batch failed to pack or report it
``missing``        a roster's student without a submission (``--roster``): a gradebook row
                   only, never a report
=================  ===========================================================================

With ``--roster roster.csv`` (:mod:`torchgrade.reporting.roster` describes its columns and how a
submission's name is matched: folder or file names, GitHub Classroom's ``ASSIGNMENT-USERNAME``,
Gradescope's ``submission_ID``, ids, e-mails) the gradebook is keyed by student: a row per student,
``missing`` for those with no submission, then the submissions that match no student. A bad roster is
a usage error (exit 2) before anything is graded. The batch prints a warning for each submission that
matches no student or several (it belongs to none: nothing is guessed) and each student with two
submissions (both rows are kept); the summary page lists the missing students and the unmatched
submissions. Missing students do not change the exit code, which speaks of the gradings only: who
did not submit is the roster's news, not a failure of the batch.

The exit code of ``torchgrade batch`` (:data:`EPILOG`) keeps the meanings of ``torchgrade grade``'s
0-3 where they apply: 0 every submission was graded (whatever its score: a class always loses points,
so scores do not fail a batch), 1 some submissions are unreadable, timed out or crashed (each has a
zero-point report saying why; ``--retry-failed`` grades the timed-out and crashed ones again), 2 a
usage error, 3 a harness error or a failure of the batch itself (it wins over 1: the grader needs
fixing before the grades mean anything), 130 interrupted by Ctrl-C (SIGINT) and 143 by SIGTERM
(128 + the signal, as shells report it). An interrupted batch first writes ``gradebook.csv`` and
``summary.html`` from every report it finished, so the summary is never older than the reports; the
gradings in flight are stopped and graded again by the next run, which resumes as any rerun does.

Design decisions:

* **One task, two executors.** :func:`torchgrade.instructor.batchjob.grade_one` grades one submission and
  returns plain data: the report's JSON, the exit code, the log. The local pool runs it on threads
  (``--jobs N``; the work is in child processes, so threads are enough) and Dask runs it as a task
  (``--scheduler``). Reports are written only by the batch's own process, as results arrive, so both
  give the same files.
* **Resumable, keyed by content.** A report is reused when its record names the same submission
  content hash (SHA-256 of every file's relative path and bytes, ``__pycache__`` left out) and the
  same grading set-up hash (the assignment's ``graders/``, ``fixtures/`` and ``pyproject.toml``,
  the isolation mode, the pass-through pytest arguments and torchgrade's version) and the report's
  own SHA-256 still matches. An edited submission, an edited grader or another ``-k`` selection is
  graded again; ``--force`` regrades everything and ``--retry-failed`` regrades reports whose
  status is not ``graded``.
* **Nothing finished is lost.** The record is written first and the report second, each
  atomically (:mod:`torchgrade.atomic`): the report's rename is the commit point. A batch killed at
  any moment leaves every finished report valid and reusable; at most the gradings in flight run
  again.
* **One submission never stops the batch.** Each grading runs in its own process tree with a
  wall-clock limit (``--timeout``, default :data:`DEFAULT_TIMEOUT` s, on top of the per-check limits
  of the graders). A grading that times out, dies without a report, or writes one that breaks the
  schema gets a report written by the batch: every check of the assignment at zero points, with a
  note starting with :data:`torchgrade.reporting.gradebook.NOTE_PREFIX` that says why (``failed`` checks for
  a timeout, ``error`` checks for a crash, which is never the student's fault under process
  isolation). The whole tree (pytest and its workers) is frozen, then killed. A submission that
  fails before or after its grading gets the same kind of report: any error while hashing or
  packing it, or while turning its result into a report (:data:`MSG_NOT_PREPARED`); the batch goes
  on and still writes the gradebook and the summary.
* **A submission is data until it is graded.** Its files are read as
  :mod:`torchgrade.submission_files` reads them: regular files only, never through a link, never
  blocking, within caps; a link, a named pipe or a device inside it is left out and named in its
  report. An entry of ``SUBMISSIONS/`` that is itself a link is not a submission (links are never
  followed). Names are file-system names: one that is not UTF-8 keeps its bytes in its report's file
  name and is shown with them as ``\\xNN`` in the gradebook and on the page; one too long to carry
  the report's suffix is shortened, with a hash of the whole name (:func:`file_stem`).
* **On a cluster, submissions travel with the task.** The batch packs each submission into a
  gzipped tar (at most :data:`MAX_PAYLOAD` bytes) and the task unpacks it into a scratch folder on
  the worker, so workers need no shared file system and can never read one another's submissions.
  The assignment (graders, fixtures, data) is the instructor's trusted set-up and must be installed
  on every worker at the same path as on the client, like torchgrade itself: the batch checks this
  on every worker before submitting anything. Reports come back as JSON and are written locally.
* **One torch thread per grading when gradings run side by side**: ``OMP_NUM_THREADS`` is set for the
  grading process, whose torch passes its thread count on to the worker (``TORCHGRADE_THREADS``).
  Two gradings each spinning two OpenMP threads on two shared cores made training 3-9x slower.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import stat
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torchgrade
from torchgrade import atomic
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import batchjob, grading
from torchgrade.instructor.batchjob import Job, Outcome, content_hash, failed_outcome, grade_one, has_assignment, pack
from torchgrade.reporting import gradebook, roster
from torchgrade.submission_files import IGNORED_DIRS, read_regular

#: Wall-clock seconds one submission's grading may take before the batch stops it.
DEFAULT_TIMEOUT = 3600.0
#: Largest packed submission sent to a cluster, in bytes.
MAX_PAYLOAD = 64 * 2**20
#: Where the resumability records and logs live, inside --out.
STATE_DIR = ".torchgrade-batch"
SUBMISSION_SUFFIXES = (".py", ".ipynb")
#: Wall-clock seconds allowed to list the assignment's checks (pytest --collect-only).
SKELETON_TIMEOUT = 300.0
#: The longest file-system name kept as a report's file stem, in bytes: 255 less the longest suffix
#: (``.invalid-report.json``) and the atomic writer's temporary name (``.NAME.<32 hex>.tmp``).
MAX_STEM_BYTES = 190

HELP = "grade every submission in a folder, in parallel or on a Dask cluster; write a gradebook and a summary"
HELP_JOBS = "gradings run at once on this machine (default: the number of cores)"
HELP_SCHEDULER = (
    "address of a Dask scheduler (tcp://HOST:PORT): send each submission to its cluster as a task; "
    "the assignment must be installed at the same path on every worker"
)
HELP_TIMEOUT = (
    f"wall-clock seconds per submission before its grading is stopped with zero points (default {DEFAULT_TIMEOUT:g})"
)
HELP_THREADS = "torch threads per grading (default: 1 when gradings run side by side, else torch's default)"
HELP_FORCE = "regrade every submission, even those with an up-to-date report"
HELP_RETRY = "regrade the submissions whose report is 'timed out', 'crashed' or 'harness error'"
HELP_ROSTER = (
    "a CSV of the class (name, id, email, sis_user_id, sis_login_id, section, and the names a submission "
    "comes under: submission, github, gradescope): key the gradebook by student and list who is missing"
)
EPILOG = """\
Arguments after a lone -- go to pytest for every grading, e.g. -- -k answers. The graders are those
of torchgrade's --assignment folder (default: the current folder).

A rerun skips submissions whose report is up to date (same submission content, same graders and
arguments); a killed batch keeps every report it finished.

Exit codes:
  0    every submission was graded (status 'graded', whatever its score)
  1    some submissions are 'unreadable', 'timed out' or 'crashed': their reports give zero
       points and say why (gradebook.csv's status and reason columns)
  2    usage error (bad arguments, missing folders, a cluster worker without the assignment)
  3    some reports are 'harness error' (a torchgrade error), or the batch itself failed
  130  interrupted (Ctrl-C), 143 terminated (SIGTERM): the gradebook and the summary of every
       finished report were written first; run the same command again to grade the rest
Students on the --roster without a submission ('missing') do not change the exit code.

A roster (--roster roster.csv) is a CSV in UTF-8 with a header row and one row per student:
  name, id                     who the student is (at least one of them)
  email, canvas_id, sis_user_id, sis_login_id, section
                               kept in the gradebook; canvas_id is Canvas's user ID (torchgrade export canvas)
  submission, github, gradescope
                               the names a submission comes under (several: separate them with ;)
A submission belongs to the student whose submission, github, gradescope, id, email, sis_user_id or
sis_login_id is its name (a file's .py/.ipynb dropped; case and surrounding spaces ignored), whose
GitHub user name ends it after a hyphen (GitHub Classroom's hw2-USERNAME), or whose Gradescope id
follows 'submission_' (Gradescope's export). A submission matching several students or none is
warned about and belongs to nobody (its row comes last, without a student); a student with two
submissions gets two rows; a student with none gets a row with status 'missing' and empty scores.
Then, for Canvas's gradebook (Grades, Import):
  torchgrade export canvas reports/ --roster roster.csv --out canvas.csv
"""

MSG_INVALID = "the grading wrote a report that breaks the report schema ({error}), so every check scores 0"
MSG_NOT_PREPARED = "the batch could not {stage} ({error}), so every check scores 0"
STAGE_PREPARE = "read and hash the submission's files"
STAGE_PACK = "pack the submission for the cluster"
STAGE_REPORT = "make a report of the grading's result"
MSG_UNWRITTEN = "torchgrade batch: could not write the report of {name} ({error}); it is left out of the gradebook"
MSG_INTERNAL = "torchgrade batch: internal error (not caused by any submission): {error}"
MSG_INTERRUPTED = (
    "torchgrade batch: {what}; gradebook.csv and summary.html list the {done} finished reports; "
    "run the same command again to grade the rest"
)
MSG_ABNORMAL_EXIT = (
    "pytest ended other than with passed or failed checks (an internal or collection error, or no check "
    "selected), though it wrote a report; see its log in .torchgrade-batch/logs"
)
MSG_NO_MODULE = "the folder has no Python module (.py file)"
MSG_ONLY_NOTEBOOKS = "; notebooks inside a folder are not graded ({notebooks}): submit the notebook itself"
MSG_UNPARSABLE = "none of its Python modules parses ({problems})"
MSG_SOME_UNPARSABLE = "; some of its Python modules do not parse ({problems})"
MSG_NO_NAMES = "it defines none of the assignment's names ({wanted}){defined}"
MSG_NOTHING_DEFINED = "it defines nothing at the top level (no function, class or variable)"
#: Exit codes of an interrupted batch: 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
#: How many names a reason lists before "...".
MAX_LISTED = 6
MSG_TOO_LARGE = "the submission is {size} MiB packed, more than the {limit} MiB that can be sent to a cluster"
MSG_NO_ASSIGNMENT = (
    "Dask worker(s) {workers} have no assignment at {path} (graders/ and pyproject.toml): install it "
    "at the same path on every worker"
)


@dataclass(frozen=True)
class BatchEntry:
    """One submission as the batch found it: an entry of the submissions folder (a subfolder, ``.py`` or
    ``.ipynb`` file); ``name`` is the entry's name (a file keeps its suffix). Not to be confused with the
    grader's proxy of a loaded submission (:class:`torchgrade.engine.proxy.Submission`)."""

    name: str
    path: Path


@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes:
        graded: submissions graded by this run.
        skipped: submissions whose up-to-date report was reused.
        statuses: every submission's :func:`torchgrade.reporting.gradebook.status`, in folder order.
        ignored: entries of the folder that are not submissions.
        out: the output folder.
        exit_code: see :data:`EPILOG`.
        interrupted: the signal that stopped the batch early (``SIGINT``/``SIGTERM``), else None.
        missing: with a roster, its students (display labels) without a submission.
        unmatched: with a roster, the submissions that belong to no student on it.
    """

    graded: tuple[str, ...]
    skipped: tuple[str, ...]
    statuses: dict[str, str]
    ignored: tuple[str, ...]
    out: Path
    exit_code: int
    interrupted: str | None = None
    missing: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the batch's main thread so that it stops as Ctrl-C does (exit 143)."""


# -- submissions and their keys ---------------------------------------------------------------------
def discover(folder: Path, *, exclude: Sequence[Path] = ()) -> tuple[list[BatchEntry], list[str]]:
    """The submissions in ``folder``, sorted by name, and the names of the entries that are not.

    Args:
        folder: one submission per subfolder, ``.py`` or ``.ipynb`` file.
        exclude: paths never taken as submissions (the output folder, when it lies inside).

    A link is never a submission (links are never followed), nor is a pipe or a device; none of them
    is opened here, so none can block or crash the listing.
    """
    excluded = {p.resolve() for p in exclude}
    found, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name in IGNORED_DIRS or _resolved(entry) in excluded:
            continue
        try:
            mode = entry.lstat().st_mode
        except OSError:  # gone since the folder was listed
            continue
        if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and entry.suffix in SUBMISSION_SUFFIXES):
            found.append(BatchEntry(entry.name, entry))
        else:
            ignored.append(entry.name)
    return found, ignored


def _resolved(path: Path) -> Path | None:
    """``path`` with its links resolved; None where that fails."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop raises one or the other, by Python version
        return None


def setup_hash(assignment: Path, isolation: str, extra_args: Sequence[str]) -> str:
    """SHA-256 of what grading depends on besides the submission: graders, fixtures, configuration,
    isolation, pytest arguments and torchgrade's version. A change regrades every submission."""
    digest = hashlib.sha256(json.dumps([torchgrade.__version__, isolation, list(extra_args)]).encode())
    for part in ("graders", "fixtures", "pyproject.toml"):
        if (assignment / part).exists():
            digest.update(f"{part}\0{content_hash(assignment / part)}\0".encode())
    return digest.hexdigest()


# -- executors ----------------------------------------------------------------------------------
def run_local(jobs: list[Job], workers: int) -> Iterator[tuple[Job, Outcome]]:
    """Grade ``jobs`` on this machine, ``workers`` at a time; yield each result as it is ready.

    Closing the iterator early (Ctrl-C, an error in the caller) stops the gradings in flight.
    """
    batchjob.STOP.clear()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="torchgrade-batch")
    futures = {pool.submit(grade_one, job): job for job in jobs}
    try:
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()  # grade_one never raises, but a bug there must not stop the batch
            except Exception as exc:
                outcome = failed_outcome(job, batchjob.MSG_TASK_ERROR.format(error=_describe(exc)))
            yield job, outcome
    finally:
        batchjob.STOP.set()
        pool.shutdown(wait=True, cancel_futures=True)
        batchjob.STOP.clear()


def run_dask(jobs: list[Job], scheduler: str, *, assignment: Path) -> Iterator[tuple[Job, Outcome]]:
    """Grade ``jobs`` as tasks on the Dask cluster at ``scheduler``; yield each result as it is ready.

    Each job carries its packed submission (see the module docstring).

    Raises:
        BatchUsageError: a worker lacks the assignment.
    """
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(scheduler, timeout="60s", set_as_default=False) as client:
        client.wait_for_workers(1, timeout=120)
        present = client.run(has_assignment, str(assignment))
        missing = sorted(worker for worker, ok in present.items() if not ok)
        if missing:
            raise BatchUsageError(MSG_NO_ASSIGNMENT.format(workers=", ".join(missing), path=assignment))
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(grade_one, job, key=f"torchgrade-{run}-{i}", pure=False): job for i, job in enumerate(jobs)
        }
        try:
            for future in dask_completed(futures, loop=client.loop):
                job = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the task died with its worker, or could not run at all
                    outcome = failed_outcome(job, batchjob.MSG_TASK_ERROR.format(error=_describe(exc)))
                yield job, outcome
        finally:
            client.cancel(list(futures))


class BatchUsageError(Exception):
    """The batch cannot start: a missing folder, a bad option, a cluster without the assignment."""


# -- reports the batch writes itself ----------------------------------------------------------------
def collect_skeleton(assignment: Path, isolation: str, extra_args: Sequence[str]) -> tuple[dict | None, str]:
    """A report of every selected check with no result (``pytest --collect-only``), or None and why.

    It gives a failed grading's report the assignment's checks, questions and maximum score.
    """
    outcome = grade_one(
        Job(
            name="(collection)",
            submission=str(assignment),
            payload=None,
            assignment=str(assignment),
            isolation=isolation,
            extra_args=[*extra_args, "--collect-only"],
            timeout=SKELETON_TIMEOUT,
            threads=None,
            scratch_root=None,
        )
    )
    if outcome["report"] is None:
        return None, outcome["problem"] or outcome["kind"]
    return outcome["report"], ""


def failure_report(job: Job, outcome: Outcome, skeleton: dict | None, why_no_skeleton: str = "") -> dict[str, Any]:
    """The report of a submission the batch could not grade: every check at zero, and why.

    A timeout fails the checks (the submission was too slow: the graders limit every call); any
    other failure makes them errors, which are never the student's fault.
    """
    problem = outcome["problem"] or outcome["kind"]
    outcome_name = "failed" if outcome["kind"] == "timeout" else "error"
    headline = problem.splitlines()[0]
    state = outcome.get("status") or (
        gradebook.STATUS_TIMED_OUT if outcome["kind"] == "timeout" else gradebook.STATUS_CRASHED
    )
    notes = [f"{gradebook.NOTE_PREFIX}{problem}"]
    if skeleton is None:
        notes.append(f"{gradebook.NOTE_PREFIX}the assignment's checks could not be listed: {why_no_skeleton}")
        skeleton = {"versions": _versions(), "questions": [], "checks": [], "max_score": 0.0, "pending_max_score": 0.0}
    checks = [
        {key: check[key] for key in ("id", "assignment", "question", "max_points")}
        | {"points": 0.0, "outcome": outcome_name, "message": headline, "duration": 0.0}
        for check in skeleton["checks"]
    ]
    questions = [question if question["manual"] else {**question, "score": 0.0} for question in skeleton["questions"]]
    return {
        "schema_version": 1,
        "submission": job["submission"],
        "isolation": job["isolation"],
        "versions": skeleton["versions"],
        "started_at": outcome["started_at"],
        "finished_at": outcome["finished_at"],
        "score": 0.0,
        "max_score": skeleton["max_score"],
        "pending_max_score": skeleton["pending_max_score"],
        "harness_errors": sum(c["outcome"] == "error" for c in checks),
        "questions": questions,
        "checks": checks,
        "notes": notes,
        "status": state,
        "reason": headline,
    }


def _versions() -> dict[str, str]:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "unknown"
    return {"torchgrade": torchgrade.__version__, "torch": torch_version, "python": platform.python_version()}


# -- resumability -----------------------------------------------------------------------------------
def file_stem(name: str) -> str:
    """The stem of a submission's report, record and log files: its name, or, for a name longer than
    :data:`MAX_STEM_BYTES` bytes, the name's first bytes, ``~`` and 12 hex digits of its SHA-256.

    The stem keeps the name's bytes (a name that is not UTF-8 stays so), and the same name always
    gives the same stem, so that a rerun finds the report again.
    """
    raw = os.fsencode(name)
    if len(raw) <= MAX_STEM_BYTES:
        return name
    cut = MAX_STEM_BYTES - 13
    while cut > 0 and raw[cut] & 0xC0 == 0x80:  # not in the middle of a UTF-8 character
        cut -= 1
    return f"{os.fsdecode(raw[:cut])}~{hashlib.sha256(raw).hexdigest()[:12]}"


def report_path(out: Path, name: str) -> Path:
    return out / f"{file_stem(name)}.json"


def record_path(out: Path, name: str) -> Path:
    return out / STATE_DIR / f"{file_stem(name)}.json"


def log_path(out: Path, name: str, suffix: str = ".log") -> Path:
    return out / STATE_DIR / "logs" / f"{file_stem(name)}{suffix}"


def is_up_to_date(out: Path, name: str, content: str, setup: str, *, retry_failed: bool = False) -> bool:
    """Whether ``out`` holds a valid report of this exact submission content and grading set-up."""
    from torchgrade.reporting import report  # here: jsonschema is slow to import, and the CLI imports this module

    try:
        record = json.loads(record_path(out, name).read_text())
        text = report_path(out, name).read_bytes()
        data = json.loads(text)
        report.validate(data)
    except (OSError, ValueError, TorchgradeError):
        return False
    if not isinstance(record, dict) or (record.get("content_hash"), record.get("setup_hash")) != (content, setup):
        return False
    if record.get("report_sha256") != hashlib.sha256(text).hexdigest():
        return False  # killed between the record and the report: the record describes another report
    return not (retry_failed and gradebook.status(data) in gradebook.RETRIED)


def commit(out: Path, name: str, data: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write a submission's record, then its report (the commit point), each atomically."""
    text = json.dumps(data, indent=2) + "\n"
    record = {**record, "report_sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic.write_text(record_path(out, name), json.dumps(record, indent=2) + "\n")
    return atomic.write_text(report_path(out, name), text)


# -- the batch --------------------------------------------------------------------------------------
def run_batch(
    submissions: Path,
    *,
    out: Path,
    assignment: Path,
    jobs: int | None = None,
    scheduler: str | None = None,
    isolation: str = "process",
    timeout: float = DEFAULT_TIMEOUT,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    roster_file: Path | None = None,
) -> BatchResult:
    """Grade every submission in ``submissions`` that has no up-to-date report in ``out``; write the
    gradebook and the summary page of all of them.

    Args:
        submissions: the folder of submissions (see :func:`discover`).
        out: the output folder (created if needed).
        assignment: the folder holding ``graders/``, ``fixtures/`` and ``pyproject.toml``.
        jobs: gradings at once on this machine (default: the number of cores); ignored with ``scheduler``.
        scheduler: a Dask scheduler's address; grade there instead of locally.
        isolation: ``process`` (default) or ``none``, as in ``torchgrade grade``.
        timeout: wall-clock seconds per submission.
        threads: torch threads per grading (default: 1 when gradings run side by side).
        extra_args: pytest arguments for every grading (e.g. ``("-k", "answers")``).
        force: regrade even up-to-date reports.
        retry_failed: regrade reports whose status is not ``graded``.
        progress: show a progress bar (per-submission lines are printed either way).
        roster_file: a roster (:mod:`torchgrade.reporting.roster`): key the gradebook by student.

    Raises:
        BatchUsageError: missing folders, bad values, a bad roster, a cluster worker without the assignment.
    """
    submissions, out, assignment = submissions.resolve(), out.resolve(), assignment.resolve()
    jobs = jobs or cores()
    _check_options(submissions, assignment, jobs=jobs, timeout=timeout, threads=threads, isolation=isolation)
    try:
        students = roster.read(roster_file) if roster_file is not None else None
    except roster.RosterError as exc:
        raise BatchUsageError(str(exc)) from None
    found, ignored = discover(submissions, exclude=[out])
    matching = roster.match(students, [sub.name for sub in found]) if students is not None else None
    for folder in (out, out / STATE_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        atomic.remove_leftovers(folder)
    shutil.rmtree(out / STATE_DIR / "scratch", ignore_errors=True)  # a killed batch's gradings in flight
    setup = setup_hash(assignment, isolation, extra_args)
    if threads is None and (scheduler or jobs > 1):
        threads = 1
    # Local gradings keep their scratch folders (report, log) under --out, so that a rerun removes what a
    # killed batch left; on a cluster they go to each worker's temporary folder.
    scratch_root = None if scheduler else str(out / STATE_DIR / "scratch")
    graded: list[str] = []
    unwritten: list[str] = []
    skipped: list[str] = []
    interrupted: str | None = None
    try:
        work: list[Job] = []
        refused: list[tuple[Job, Outcome]] = []  # submissions that cannot be graded: their outcome already
        contents: dict[str, str | None] = {}
        for sub in found:
            job = Job(
                name=sub.name,
                submission=str(sub.path),
                payload=None,
                assignment=str(assignment),
                isolation=isolation,
                extra_args=list(extra_args),
                timeout=float(timeout),
                threads=threads,
                scratch_root=scratch_root,
            )
            try:
                content = content_hash(sub.path)
                if not force and is_up_to_date(out, sub.name, content, setup, retry_failed=retry_failed):
                    skipped.append(sub.name)
                    continue
            except Exception as exc:  # one submission never stops the batch; no key: graded again next time
                contents[sub.name] = None
                problem = MSG_NOT_PREPARED.format(stage=STAGE_PREPARE, error=_describe(exc))
                refused.append((job, failed_outcome(job, problem, gradebook.STATUS_UNREADABLE)))
                continue
            contents[sub.name] = content
            work.append(job)
        display = _Display(len(found), len(skipped), enabled=progress)
        todo = len(work) + len(refused)
        where = f"on the Dask cluster at {scheduler}" if scheduler else f"{min(jobs, max(1, len(work)))} at a time"
        display.say(
            f"{len(found)} submissions in {gradebook.printable(str(submissions))}: {todo} to grade ({where}), "
            f"{len(skipped)} up to date"
            + (f"; not submissions: {', '.join(map(gradebook.printable, ignored))}" if ignored else "")
        )
        for warning in matching.warnings() if matching else ():
            display.say(gradebook.printable(warning))
        skeleton: list[tuple[dict | None, str]] = []  # computed at the first failure, then reused

        def skeleton_once() -> tuple[dict | None, str]:
            if not skeleton:
                skeleton.append(collect_skeleton(assignment, isolation, extra_args))
            return skeleton[0]

        with display:
            if scheduler:
                sendable, too_large = _packed(work)
                results = _chain(refused + too_large, run_dask(sendable, scheduler, assignment=assignment))
            else:
                results = _chain(refused, run_local(work, jobs))
            with contextlib.closing(results):
                for job, outcome in results:
                    if outcome["kind"] == "interrupted":
                        continue
                    try:
                        data = _settle(job, outcome, skeleton_once, out)
                        _write_log(out, job["name"], outcome["log"])
                        commit(out, job["name"], data, _record(job, outcome, contents[job["name"]], setup))
                    except Exception as exc:  # the output folder refused it: the batch goes on, and says so at the end
                        with contextlib.suppress(OSError, ValueError):
                            report_path(out, job["name"]).unlink(missing_ok=True)  # an older report is not this one
                        unwritten.append(job["name"])
                        display.say(MSG_UNWRITTEN.format(name=gradebook.printable(job["name"]), error=_describe(exc)))
                        continue
                    graded.append(job["name"])
                    display.finished(job["name"], data, outcome)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the finished reports are kept
        interrupted = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    with _signals_held() if interrupted else contextlib.nullcontext():  # the summary must follow the reports
        statuses = write_summaries(
            out, [sub.name for sub in found], ignored=ignored, interrupted=interrupted, matching=matching
        )
    print(f"reports, gradebook.csv and summary.html in {gradebook.printable(str(out))}", file=sys.stderr)
    if matching is not None:
        print(roster_line(matching), file=sys.stderr)
    values = set(statuses.values())
    code = grading.EXIT_OK
    if values & {gradebook.STATUS_UNREADABLE, gradebook.STATUS_TIMED_OUT, gradebook.STATUS_CRASHED}:
        code = grading.EXIT_FAILED
    if gradebook.STATUS_HARNESS_ERROR in values or unwritten or len(statuses) < len(found):
        code = grading.EXIT_INTERNAL  # a report the batch could not write or read back: the batch failed
    if interrupted:
        code = EXIT_TERMINATED if interrupted == "SIGTERM" else EXIT_INTERRUPTED
    missing = tuple(s.label for s in matching.missing) if matching else ()
    unmatched = matching.unmatched if matching else ()
    return BatchResult(
        tuple(graded), tuple(skipped), statuses, tuple(ignored), out, code, interrupted, missing, unmatched
    )


def roster_line(matching: roster.Matching) -> str:
    """The batch's last word on the roster: how many students submitted, who did not, what matched no one."""
    students = matching.roster.students
    line = f"roster: {len(students) - len(matching.missing)} of {len(students)} students have a submission"
    if matching.missing:
        line += f"; missing: {_listed([s.label for s in matching.missing])}"
    if matching.unmatched:
        line += f"; matching no student: {_listed(list(matching.unmatched))}"
    return line + " (gradebook.csv, summary.html)"


def write_summaries(
    out: Path,
    names: list[str],
    *,
    ignored: Sequence[str] = (),
    interrupted: str | None = None,
    matching: roster.Matching | None = None,
) -> dict[str, str]:
    """Write ``gradebook.csv`` and ``summary.html`` from the reports of ``names`` in ``out`` (reports of
    submissions no longer in the folder are left out); return each submission's status.

    ``ignored`` names the entries of the submissions folder that are not submissions, and
    ``interrupted`` the signal that stopped the batch (its submissions without a report are then
    listed as not graded yet), for the page. With a roster's ``matching`` the gradebook is keyed by
    student and the page shows whose each submission is, who is missing and what matches no one."""
    from torchgrade.reporting import summary

    reports = {}
    for name in names:
        try:
            reports[name] = json.loads(report_path(out, name).read_bytes())
        except (OSError, ValueError):  # no report (it could not be written), or not one: left out
            continue
    gradebook.write(reports, out / "gradebook.csv", matching=matching)
    pending = [name for name in names if name not in reports] if interrupted else []
    students = {}
    if matching is not None:
        students = {
            "students": matching.labels(),
            "missing": [s.label for s in matching.missing],
            "unmatched": list(matching.unmatched),
        }
    summary.write(
        reports,
        out,
        report_files={name: report_path(out, name).name for name in reports},
        ignored=ignored,
        not_graded=pending,
        **students,
    )
    return {name: gradebook.status(data) for name, data in reports.items()}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while an interrupted batch writes its gradebook and summary (a few
    seconds), so that a second Ctrl-C cannot leave the summary older than the reports."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


# -- statuses -----------------------------------------------------------------------------------------
def judge(job: Job, outcome: Outcome, data: dict[str, Any]) -> tuple[str, str]:
    """The status and reason of a report the grading wrote (see the module docstring).

    Decided here, on the grader side, from the report's extraction and check outcomes, the grading's
    exit, and, for a submission no check gave a point, its own files parsed (never run): a status or
    reason already in the report is not taken.
    """
    state, why = gradebook.status_and_reason({k: v for k, v in data.items() if k not in ("status", "reason")})
    if state != gradebook.STATUS_GRADED:
        return state, why
    if outcome["exit_code"] == grading.EXIT_INTERNAL:
        return gradebook.STATUS_HARNESS_ERROR, MSG_ABNORMAL_EXIT
    if not data["checks"] or any(c["points"] > 0 or c["outcome"] == "passed" for c in data["checks"]):
        return gradebook.STATUS_GRADED, ""
    why = nothing_gradable(Path(job["submission"]), data.get("extraction"), interface_names(Path(job["assignment"])))
    return (gradebook.STATUS_UNREADABLE, why) if why else (gradebook.STATUS_GRADED, "")


def interface_names(assignment: Path) -> set[str]:
    """The public names of the assignment's interface (its manifest and template); empty without one."""
    from torchgrade import assignments

    try:
        return set(assignments.load(assignment).name_to_module())
    except Exception:  # no manifest (a bare graders/ folder): the interface is unknown
        return set()


def nothing_gradable(path: Path, extraction: dict[str, Any] | None, wanted: set[str]) -> str:
    """Why ``path`` holds nothing to grade, or "" when it does.

    A notebook or script is read through its report's extraction (what its kept code defines); a
    folder's ``.py`` modules are parsed here. Nothing is gradable without a module that parses, or
    when the code defines none of ``wanted`` (the interface's names; without them: nothing at all).
    """
    problems: list[str] = []
    if extraction is not None:
        defined = set(extraction["defined"])
    elif path.is_dir():
        defined, modules, problems, notebooks = scan_folder(path)
        if not modules:
            return MSG_NO_MODULE + (MSG_ONLY_NOTEBOOKS.format(notebooks=_listed(notebooks)) if notebooks else "")
        if len(problems) == modules:
            return MSG_UNPARSABLE.format(problems=_listed(problems))
    else:
        return ""
    if (defined & wanted) if wanted else defined:
        return ""
    if not wanted:
        why = MSG_NOTHING_DEFINED
    else:
        said = f"; it defines {_listed(sorted(defined))}" if defined else "; it defines nothing at the top level"
        why = MSG_NO_NAMES.format(wanted=_listed(sorted(wanted)), defined=said)
    return why + (MSG_SOME_UNPARSABLE.format(problems=_listed(problems)) if problems else "")


def scan_folder(path: Path) -> tuple[set[str], int, list[str], list[str]]:
    """A folder submission as the grader finds it, read and parsed but never run: the top-level names
    its ``.py`` modules define (imports aside), how many modules it has, why each that does not parse
    fails, and its notebooks."""
    import ast

    defined: set[str] = set()
    modules, problems, notebooks = 0, [], []
    for relative, full in batchjob.submission_files(path):
        if relative.endswith(".ipynb"):
            notebooks.append(relative)
        if not relative.endswith(".py"):
            continue
        modules += 1
        try:
            tree = ast.parse(read_regular(full))
        except SyntaxError as exc:
            problems.append(f"{relative}: {exc.msg} at line {exc.lineno}")
            continue
        except Exception as exc:  # unreadable bytes, a file over the caps, NUL bytes
            problems.append(f"{relative}: {_describe(exc)}")
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined.update(t.id for t in targets if isinstance(t, ast.Name))
    return defined, modules, problems, notebooks


def _listed(items: Sequence[str]) -> str:
    """``a, b, c``, at most :data:`MAX_LISTED` of them, then how many more."""
    shown = ", ".join(gradebook.printable(item) for item in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _check_options(
    submissions: Path, assignment: Path, *, jobs: int, timeout: float, threads: int | None, isolation: str
) -> None:
    if not submissions.is_dir():
        raise BatchUsageError(f"submissions folder {submissions} does not exist")
    if not has_assignment(str(assignment)):
        raise BatchUsageError(f"{assignment} is not an assignment (no graders/ or pyproject.toml); use --assignment")
    if jobs < 1 or timeout <= 0 or (threads is not None and threads < 1):
        raise BatchUsageError(
            f"--jobs and --threads must be at least 1 and --timeout positive (got {jobs}, {threads}, {timeout:g})"
        )
    if isolation not in ("none", "process"):
        raise BatchUsageError(f"unknown isolation {isolation!r}; choose from 'none', 'process'")


def _packed(work: list[Job]) -> tuple[list[Job], list[tuple[Job, Outcome]]]:
    """Pack each job's submission for the cluster: (jobs to send, outcomes of those that cannot be sent)."""
    sendable, refused = [], []
    for job in work:
        try:
            payload = pack(Path(job["submission"]))
        except Exception as exc:  # one submission never stops the batch
            problem = MSG_NOT_PREPARED.format(stage=STAGE_PACK, error=_describe(exc))
            refused.append((job, failed_outcome(job, problem, gradebook.STATUS_HARNESS_ERROR)))
            continue
        if len(payload) <= MAX_PAYLOAD:
            sendable.append(Job(**{**job, "payload": payload}))
        else:
            size, limit = len(payload) // 2**20, MAX_PAYLOAD // 2**20
            problem = MSG_TOO_LARGE.format(size=size, limit=limit)
            refused.append((job, failed_outcome(job, problem, gradebook.STATUS_UNREADABLE)))
    return sendable, refused


def _chain(first: list[tuple[Job, Outcome]], then: Iterator[tuple[Job, Outcome]]) -> Iterator[tuple[Job, Outcome]]:
    """``first``, then ``then``; closing it closes ``then`` (itertools.chain cannot be closed)."""
    yield from first
    with contextlib.closing(then):
        yield from then


def _settle(job: Job, outcome: Outcome, skeleton_once: Callable, out: Path) -> dict[str, Any]:
    """:func:`_final_report`; if that fails, a failure report that says why (:data:`STAGE_REPORT`)."""
    try:
        return _final_report(job, outcome, skeleton_once, out)
    except Exception as exc:
        problem = MSG_NOT_PREPARED.format(stage=STAGE_REPORT, error=_describe(exc))
        failed = Outcome(**{**outcome, "kind": "error", "problem": problem, "status": gradebook.STATUS_HARNESS_ERROR})
        return failure_report(job, failed, *skeleton_once())


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line, its undecodable bytes shown as ``\\xNN``."""
    text = " ".join(str(exc).split()) or "(no message)"
    return gradebook.printable(f"{type(exc).__name__}: {text}")


def _final_report(job: Job, outcome: Outcome, skeleton_once: Callable, out: Path) -> dict[str, Any]:
    """The report to write for an outcome: the grading's own (under the client's submission path),
    else one written by the batch. A report that breaks the schema is kept next to the log."""
    from torchgrade.reporting import report

    data = outcome["report"]
    if data is not None:
        data = {**data, "submission": job["submission"]}  # on a cluster, the task graded a scratch copy
        try:
            report.validate(data)
        except TorchgradeError as exc:
            kept = log_path(out, job["name"], ".invalid-report.json")
            atomic.write_text(kept, json.dumps(data, indent=2) + "\n")
            problem = MSG_INVALID.format(error=exc)
            outcome = Outcome(
                **{**outcome, "kind": "error", "problem": problem, "status": gradebook.STATUS_HARNESS_ERROR}
            )
        else:
            state, why = judge(job, outcome, data)
            data = {**data, "status": state, "reason": why}
            report.validate(data)
            return data
    data = failure_report(job, outcome, *skeleton_once())
    report.validate(data)
    return data


def _record(job: Job, outcome: Outcome, content: str | None, setup: str) -> dict[str, Any]:
    return {
        "name": job["name"],
        "submission": job["submission"],
        "content_hash": content,
        "setup_hash": setup,
        "kind": outcome["kind"],
        "exit_code": outcome["exit_code"],
        "seconds": outcome["seconds"],
        "host": outcome["host"],
        "graded_at": outcome["finished_at"],
    }


def _write_log(out: Path, name: str, log: str) -> None:
    atomic.write_text(log_path(out, name), gradebook.printable(log))


def cores() -> int:
    """The cores this process may run on: the default number of gradings at once."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Display:
    """The progress bar (rich): done / failed / remaining and seconds per submission, plus one line per
    finished submission, on stderr."""

    def __init__(self, total: int, skipped: int, *, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, highlight=False)
        self.done, self.failed, self.remaining = skipped, 0, total - skipped
        self.seconds: list[float] = []
        self.progress = Progress(
            TextColumn("grading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]} · remaining {task.fields[remaining]} · {task.fields[per]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "grading", total=total, completed=skipped, failed=0, remaining=self.remaining, per=""
        )

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def say(self, text: str) -> None:
        self.progress.console.print(text, markup=False, soft_wrap=True)

    def finished(self, name: str, data: dict[str, Any], outcome: Outcome) -> None:
        state, why = gradebook.status_and_reason(data)
        self.done, self.remaining = self.done + 1, self.remaining - 1
        self.failed += state != gradebook.STATUS_GRADED
        self.seconds.append(outcome["seconds"])
        mean = sum(self.seconds) / len(self.seconds)
        self.progress.update(
            self.task, completed=self.done, failed=self.failed, remaining=self.remaining, per=f"{mean:.1f} s/submission"
        )
        line = f"{gradebook.printable(name)}: {data['score']:g} / {data['max_score']:g} in {outcome['seconds']:.1f} s"
        if state != gradebook.STATUS_GRADED:
            line += f" ({state}: {why or 'see its report'})"
        self.say(line)


# -- command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchgrade batch",
        description=HELP,
        epilog=EPILOG,
        usage="torchgrade [--assignment DIR] batch SUBMISSIONS --out DIR [options] [-- PYTEST_ARGS ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("submissions", type=Path, help="folder with one submission per subfolder, .py or .ipynb file")
    parser.add_argument("--out", type=Path, required=True, help="folder for the reports, gradebook.csv, summary.html")
    parser.add_argument("--jobs", "-j", type=int, default=None, help=HELP_JOBS)
    parser.add_argument("--scheduler", default=None, help=HELP_SCHEDULER)
    parser.add_argument(
        "--isolation",
        choices=("none", "process"),
        default="process",
        help="where student code runs, as in torchgrade grade (default: process)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=HELP_TIMEOUT)
    parser.add_argument("--threads", type=int, default=None, help=HELP_THREADS)
    parser.add_argument("--force", action="store_true", help=HELP_FORCE)
    parser.add_argument("--retry-failed", action="store_true", help=HELP_RETRY)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--roster", type=Path, default=None, metavar="CSV", help=HELP_ROSTER)
    parser.add_argument("--only", metavar="ID", default=None, help=grading.HELP_ONLY)
    parser.add_argument(
        "--assignment",
        type=Path,
        default=argparse.SUPPRESS,
        help="the assignment's folder (also accepted before the subcommand; this one wins)",
    )
    return parser


def add_parser(subparsers: Any) -> None:
    """Register ``batch`` with the ``torchgrade`` command's subparsers.

    argparse cannot take pass-through arguments after ``--`` in a subparser, so ``batch`` takes its
    arguments as they are and parses them with :func:`build_parser` itself.
    """
    batch_parser = subparsers.add_parser("batch", help=HELP, add_help=False, prefix_chars="+")
    batch_parser.add_argument("arguments", nargs=argparse.REMAINDER)
    batch_parser.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    arguments = list(args.arguments)
    pytest_args = arguments[arguments.index("--") + 1 :] if "--" in arguments else []
    own = arguments[: arguments.index("--")] if "--" in arguments else arguments
    try:
        options = build_parser().parse_args(own)
    except SystemExit as exc:
        return grading.EXIT_USAGE if exc.code else grading.EXIT_OK
    assignment = getattr(options, "assignment", args.assignment)
    try:
        pytest_args = [*grading.only_args(assignment, options.only), *pytest_args]
    except TorchgradeError as exc:
        print(f"torchgrade batch: {exc}", file=sys.stderr)
        return grading.EXIT_USAGE
    import signal

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main else None
    try:
        result = run_batch(
            options.submissions,
            out=options.out,
            assignment=assignment,
            jobs=options.jobs,
            scheduler=options.scheduler,
            isolation=options.isolation,
            timeout=options.timeout,
            threads=options.threads,
            extra_args=pytest_args,
            force=options.force,
            retry_failed=options.retry_failed,
            progress=not options.no_progress,
            roster_file=options.roster,
        )
    except BatchUsageError as exc:
        print(f"torchgrade batch: {exc}", file=sys.stderr)
        return grading.EXIT_USAGE
    except Exception as exc:  # exit code 1 is reserved for failed gradings: our own failure is 3
        traceback.print_exc(file=sys.stderr)
        print(MSG_INTERNAL.format(error=_describe(exc)), file=sys.stderr)
        return grading.EXIT_INTERNAL
    except KeyboardInterrupt as exc:  # before the batch could start grading: nothing of this run to write
        terminated = isinstance(exc, Terminated)
        print(
            f"torchgrade batch: {'terminated' if terminated else 'interrupted'} before grading; every "
            "earlier report is kept: run the same command again to grade the rest",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if result.interrupted:
        what = "terminated (SIGTERM)" if result.interrupted == "SIGTERM" else "interrupted (Ctrl-C)"
        print(MSG_INTERRUPTED.format(what=what, done=len(result.statuses)), file=sys.stderr)
    return result.exit_code
