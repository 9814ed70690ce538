"""One batch grading task: grade one submission and return plain data (runs locally or on Dask).

This is the side of ``torchgrade batch`` that runs where the grading happens: on a thread of the
local pool, or as a task on a Dask worker. Like pytest-xdist's worker side, it imports nothing of
the controller (:mod:`torchgrade.instructor.batch`): what crosses over is a :class:`Job` in and an
:class:`Outcome` out, both plain dicts, so a worker needs only torchgrade and the assignment.

:func:`grade_one` starts the grading pytest itself, with the command line and environment that
:func:`torchgrade.instructor.grading.grade` uses (:func:`torchgrade.instructor.grading.pytest_command`),
so that a wall-clock limit can stop the whole grading: pytest and its workers, which start sessions
of their own and would outlive a plain ``killpg`` (:func:`kill_tree`). It never raises: whatever goes
wrong comes back as an outcome whose ``problem`` says what happened, for the batch to turn into a
report. A submission sent to a cluster travels in the job as a gzipped tar (:func:`pack`), unpacked
into a scratch folder where the task runs (:func:`unpack`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

from torchgrade.instructor import grading
from torchgrade.submission_files import list_files, read_regular

#: How much of a grading's log comes back with its result, in bytes (the end is kept).
LOG_TAIL = 20_000
#: Seconds between checks of a running grading for its deadline or an interrupt.
POLL = 0.2

MSG_TIMEOUT = (
    "grading was stopped after {seconds:g} s, the batch's limit per submission (--timeout); "
    "no check result was kept, so every check scores 0"
)
MSG_NO_REPORT = "the grading process ended with exit code {code} without writing a report, so every check scores 0"
MSG_TASK_ERROR = "the submission could not be graded: {error}"

#: Set while a local batch is being interrupted: the gradings in flight stop and return at once.
STOP = threading.Event()


class Job(TypedDict):
    """One submission to grade: the argument of :func:`grade_one` (plain data, sent to Dask)."""

    name: str
    submission: str  # its path on the batch's machine
    payload: bytes | None  # the packed submission for a cluster; None: grade ``submission`` in place
    assignment: str
    isolation: str
    extra_args: list[str]
    timeout: float
    threads: int | None
    scratch_root: str | None  # where the task's scratch folder goes; None: the system's temporary folder


class Outcome(TypedDict):
    """What :func:`grade_one` returns.

    ``kind`` is ``graded`` (``report`` holds the JSON), ``timeout``, ``no report``, ``error`` (the task
    itself failed; ``problem`` says why) or ``interrupted``. ``status`` is set where the batch already
    knows the report's status (:data:`torchgrade.reporting.gradebook.STATUSES`) from how the job failed.
    """

    name: str
    kind: str
    report: dict[str, Any] | None
    exit_code: int | None
    problem: str | None
    started_at: str
    finished_at: str
    seconds: float
    log: str
    host: str
    status: str | None


# -- submissions as files -------------------------------------------------------------------------
def submission_files(path: Path) -> list[tuple[str, Path]]:
    """The regular files of a submission as (relative POSIX path, path), sorted; a file submission is
    itself. Links, pipes and devices are left out (:func:`torchgrade.submission_files.list_files`)."""
    return list(list_files(path).files)


def content_hash(path: Path) -> str:
    """SHA-256 of a submission's files (relative paths and bytes): the key of its report."""
    digest = hashlib.sha256()
    for relative, full in submission_files(path):
        data = read_regular(full)
        digest.update(os.fsencode(relative) + f"\0{len(data)}\0".encode())  # names need not be UTF-8
        digest.update(data)
    return digest.hexdigest()


def pack(path: Path) -> bytes:
    """A submission as a gzipped tar whose single top-level entry has the submission's name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if path.is_dir():
            tar.add(path, arcname=path.name, recursive=False)
        for relative, full in submission_files(path):
            data = read_regular(full)
            info = tarfile.TarInfo(f"{path.name}/{relative}" if path.is_dir() else path.name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(os.lstat(full).st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack(payload: bytes, destination: Path) -> Path:
    """Unpack :func:`pack`'s archive into ``destination``; return the submission's path there.

    The ``data`` filter refuses absolute paths, ``..`` and links out of ``destination``.
    """
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        members = tar.getmembers()
        top = {member.name.split("/")[0] for member in members}
        if len(top) != 1:
            raise ValueError(f"a packed submission has one top-level entry, not {sorted(top)}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, filter="data")
        else:  # Python before 3.11.4: only plain files and folders, inside the destination
            for member in members:
                plain = member.isfile() or member.isdir()
                if not plain or member.name.startswith("/") or ".." in member.name.split("/"):
                    raise ValueError(f"refusing to unpack {member.name!r}: not a file or folder inside the submission")
            tar.extractall(destination)
    return destination / top.pop()


# -- grading ----------------------------------------------------------------------------------------
def grade_one(job: Job) -> Outcome:
    """Grade one submission in a pytest process of its own, as :func:`grading.grade` would; never raises.

    The same function serves the local pool and Dask: it unpacks ``job["payload"]`` when there is
    one, runs the grading under the job's wall-clock limit, stops the whole process tree when the
    limit passes, and returns the report's JSON with the grading's exit code and log.
    """
    started, started_at = time.monotonic(), now()
    outcome = Outcome(
        name=job["name"],
        kind="error",
        report=None,
        exit_code=None,
        problem=None,
        started_at=started_at,
        finished_at=started_at,
        seconds=0.0,
        log="",
        host=socket.gethostname(),
        status=None,
    )
    try:
        if job["scratch_root"]:
            Path(job["scratch_root"]).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="torchgrade-batch-", dir=job["scratch_root"]) as scratch_name:
            scratch = Path(scratch_name)
            submission = (
                unpack(job["payload"], scratch / "submission")
                if job["payload"] is not None
                else Path(job["submission"])
            )
            outcome.update(_grade_in_child(job, submission, scratch))
    except Exception as exc:  # one submission never stops the batch: this becomes its report
        outcome.update(kind="error", problem=MSG_TASK_ERROR.format(error=f"{type(exc).__name__}: {exc}"))
    outcome.update(finished_at=now(), seconds=round(time.monotonic() - started, 3))
    return outcome


def _grade_in_child(job: Job, submission: Path, scratch: Path) -> dict[str, Any]:
    log_path = scratch / "grading.log"
    threads = {"OMP_NUM_THREADS": str(job["threads"]), "MKL_NUM_THREADS": str(job["threads"])} if job["threads"] else {}
    command = grading.pytest_command(
        submission,
        assignment=Path(job["assignment"]),
        report=scratch / "report.json",
        isolation=job["isolation"],
        extra_args=tuple(job["extra_args"]),
        extra_env=threads,
    )
    with open(log_path, "wb") as log:
        with _sigint_blocked():
            child = subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=command.cwd,
                env=command.env,
            )
    deadline, stopped = time.monotonic() + job["timeout"], None
    try:
        while True:
            try:
                code = child.wait(timeout=POLL)
                break
            except subprocess.TimeoutExpired:
                if STOP.is_set() or time.monotonic() >= deadline:
                    stopped = "interrupted" if STOP.is_set() else "timeout"
                    kill_tree(child.pid)
                    code = child.wait()
                    break
    except BaseException:
        kill_tree(child.pid)
        raise
    result: dict[str, Any] = {"exit_code": code, "log": _tail(log_path)}
    # The plugin writes the report atomically: it is complete even if we stopped pytest later.
    data = grading.read_report(command.report)
    if stopped is None:
        result["exit_code"] = grading.grading_exit_code(code, data)
    if data is not None:
        result.update(kind="graded", report=data)
    elif stopped == "timeout":
        result.update(kind="timeout", problem=MSG_TIMEOUT.format(seconds=job["timeout"]))
    elif stopped == "interrupted":
        result.update(kind="interrupted", problem="the batch was interrupted")
    else:
        result.update(kind="no report", problem=MSG_NO_REPORT.format(code=result["exit_code"]))
    return result


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while it starts a grading, which inherits the blocked mask across
    ``exec`` (so do its workers).

    Ctrl-C in a terminal reaches the whole foreground process group, and a grading interrupted that
    way could write a report of the checks it had finished. With SIGINT blocked, only the batch takes
    the interrupt and stops its gradings itself (:data:`STOP`, :func:`kill_tree`), so no half grading
    is ever kept; SIGTERM and SIGKILL still reach a grading, and it stays in the batch's process
    group, so killing the group still ends everything.
    """
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants, including workers that started their own session.

    Each process is suspended before its children are listed, so that none can start a new one
    (pytest restarts a killed worker) between the listing and the kill.
    """
    import psutil

    try:
        pending = [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return
    frozen: dict[int, psutil.Process] = {}
    while pending:
        process = pending.pop()
        if process.pid in frozen:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            process.suspend()
            frozen[process.pid] = process
            pending.extend(process.children())
    for process in frozen.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()  # SIGKILL ends a suspended process too; our own child is reaped by the caller


def _tail(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_TAIL))
        return handle.read().decode("utf-8", errors="replace")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def has_assignment(path: str) -> bool:
    """Whether ``path`` holds an assignment (run on each Dask worker before the batch starts)."""
    return (Path(path) / "graders").is_dir() and (Path(path) / "pyproject.toml").is_file()


def failed_outcome(job: Job, problem: str, status: str | None = None) -> Outcome:
    """The outcome of a job that never ran (or whose task died): ``problem`` says why; ``status`` is
    the report's status when the batch knows it (else the report says ``crashed``)."""
    when = now()
    return Outcome(
        name=job["name"],
        kind="error",
        report=None,
        exit_code=None,
        problem=problem,
        started_at=when,
        finished_at=when,
        seconds=0.0,
        log="",
        host="",
        status=status,
    )
