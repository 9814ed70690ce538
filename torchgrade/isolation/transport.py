"""Backends: how encoded requests reach a worker session, and how a worker process is supervised.

A backend only moves bytes: it takes an encoded request frame and returns the reply frame, starts a
worker (and says where that worker sees the submission), stops what the submission left running,
and closes. What the frames mean (requests, handles, the check's deadline, notes, failures) is the
business of the proxies (:mod:`torchgrade.engine.proxy`), the same for every backend; so is loading
the submission after each (re)start.

* :class:`InProcessBackend` (``--isolation none``) hands each frame to a
  :class:`~torchgrade.worker.session.WorkerSession` in this process: fast, debuggable, not isolated.
* :class:`ProcessBackend` (``--isolation process``) writes it to ``python -m torchgrade.worker``,
  stops a call whose check has spent its CPU budget, or that outlived its wall-clock backstop, by
  killing the worker's process group, and starts a fresh worker when asked after a crash or a timeout.

Why CPU time: a check's budget is a property of the submission's work, not of the machine. Counted
in wall-clock seconds, a grading beside other work (a batch's other jobs, a neighbour forking
spinners) lost points to load alone: at a load of 8 on 2 cores the reference lost 18 points. The
CPU seconds (user and system) a call uses do not grow with load, so each backend charges those to a
:class:`CpuBudget`; wall-clock time is only a generous backstop (see
:data:`torchgrade.engine.proxy.BACKSTOP_FACTOR`) for calls that wait without computing (``sleep``, a
blocked read), which no CPU budget would ever stop.

Both live here so that this module is the grader side's one link to the code of the worker side.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from torchgrade import errors, wire
from torchgrade.isolation import sandbox
from torchgrade.isolation.cgroup import PidsGroup
from torchgrade.worker.session import WorkerSession

#: How much of the submission's stdout/stderr the report keeps, in bytes.
OUTPUT_CAP = 64 * 1024
#: How long a worker may take to start or to load the submission, in seconds (a loaded machine).
START_TIMEOUT = 120.0
#: The request that tells a started worker is up and idle (the only frame a backend makes itself).
PING = wire.encode({"op": "ping"})
#: How often the CPU time of a worker is read while a call runs, in seconds: a call overruns its
#: budget by at most this much times its threads before it is stopped.
CPU_POLL_INTERVAL = 0.25
MSG_CPU_SPENT = (
    "{label} timed out: the check's calls used {used:.1f} s of CPU time of a {budget:.4g} s budget "
    "(time the machine spent on other work is not counted)."
)
MSG_BACKSTOP = (
    "{label} timed out after {wall:.0f} s of wall-clock time, having used {used:.1f} s of CPU time{of_budget}: "
    "the wall-clock backstop stops calls that wait without computing (sleep, a blocked read or lock)."
)
MSG_NO_CPU_METER = " (this platform cannot measure the worker's CPU time: wall-clock time is counted instead)"
MSG_STOPPED = " The worker was stopped."
MSG_FINISHED = " In-process grading cannot stop a call: it ran to its end and then failed the check."


@dataclass
class CpuBudget:
    """CPU seconds (user and system, all threads) the calls of a check may use in total.

    The backends charge each call's CPU time to :attr:`spent`: in a worker process, what the
    worker and its children used (its cgroup's count where it has one, else its processes in
    ``/proc``); in-process, this process's ``time.process_time()`` across the call. Starting a
    worker and loading the submission are never charged.

    Attributes:
        seconds: the budget.
        spent: the CPU seconds charged so far.
        measured: False once a call could only be timed by the wall clock (no ``/proc``, no psutil).
    """

    seconds: float
    spent: float = 0.0
    measured: bool = True

    @property
    def exhausted(self) -> bool:
        return self.spent > self.seconds

    def message(self, label: str) -> str:
        return MSG_CPU_SPENT.format(label=label, used=self.spent, budget=self.seconds) + (
            "" if self.measured else MSG_NO_CPU_METER
        )


def backstop_message(label: str, wall: float, used: float, budget: CpuBudget | None) -> str:
    """Why a call was stopped by the wall-clock backstop, not by its CPU budget."""
    of_budget = ""
    if budget is not None:
        of_budget = f" (the check's calls: {budget.spent:.1f} s of a {budget.seconds:.4g} s budget)"
    return MSG_BACKSTOP.format(label=label, wall=wall, used=used, of_budget=of_budget) + MSG_STOPPED


class Backend:
    """Moves encoded frames to a :class:`~torchgrade.worker.session.WorkerSession` and back.

    Attributes:
        enforces_timeouts: :meth:`exchange` stops a call at its timeout or when its CPU budget is
            spent. An in-process call cannot be interrupted: it is charged once it returns, and
            pytest-timeout stops a hung check.
        protections: lines for the report on what protected the grader (empty in-process).
    """

    enforces_timeouts = False
    protections: tuple[str, ...] = ()

    @property
    def running(self) -> bool:  # pragma: no cover - interface
        """A worker is up, holding the objects handed out since :meth:`start` returned."""
        raise NotImplementedError

    def start(self) -> Path:  # pragma: no cover - interface
        """Start a worker (clearing what a dead one left) and return the folder where it sees the
        submission; the caller sends the load request."""
        raise NotImplementedError

    def exchange(
        self,
        frame: bytes,
        label: str,
        timeout: float,
        limit: int = wire.MAX_FRAME_BYTES,
        budget: CpuBudget | None = None,
    ) -> bytes:  # pragma: no cover - interface
        """Send one request frame to the running worker and return its reply frame, charging the
        CPU time of the call to ``budget`` (whatever the outcome).

        Raises:
            StudentTimeout: the call spent what was left of ``budget`` (a worker process is stopped
                then; in-process the call ran to its end first), or no whole reply came within the
                wall-clock backstop of ``timeout`` seconds; the worker was stopped.
            WorkerCrashed: the worker died; ``label`` names the call in the message.
            FrameTooLarge: the reply is over ``limit`` bytes; a worker process was stopped unread.
        """
        raise NotImplementedError

    def abandon(self) -> None:
        """Stop the worker: what it sends can no longer be trusted to be in step with the requests."""

    def stop_background(self) -> int:
        """Stop what the submission left running between checks; return how many processes."""
        return 0

    def close(self) -> tuple[str, int]:
        """Release everything; return what the submission printed (text kept, bytes dropped)."""
        return "", 0


class InProcessBackend(Backend):
    """Runs the worker session in this process (``--isolation none``)."""

    def __init__(self, submission: Path) -> None:
        self.submission = Path(submission)
        self.session: WorkerSession | None = None

    @property
    def running(self) -> bool:
        return self.session is not None

    def start(self) -> Path:
        self.session = WorkerSession()
        return self.submission

    def exchange(
        self,
        frame: bytes,
        label: str,
        timeout: float,
        limit: int = wire.MAX_FRAME_BYTES,
        budget: CpuBudget | None = None,
    ) -> bytes:
        # The same charge as a worker process's: this process's CPU time (all threads) across the
        # call, and that of the children it reaped meanwhile.
        started = own_cpu_seconds()
        try:
            reply = self.session.handle(frame)
        finally:
            if budget is not None:
                budget.spent += own_cpu_seconds() - started
        if budget is not None and budget.exhausted:  # the verdict a worker process would have got
            raise errors.StudentTimeout(budget.message(label) + MSG_FINISHED)
        if len(reply) > limit:  # the same verdict as a worker process, whose reply is refused unread
            raise wire.FrameTooLarge(len(reply), limit)
        return reply

    def close(self) -> tuple[str, int]:
        session, self.session = self.session, None
        if session is not None and session.submission is not None:
            session.submission.unload()
        return "", 0


@dataclass
class WorkerProcess:
    """One started worker process and what belongs to it alone."""

    process: subprocess.Popen
    to_worker: int  # the request pipe's writing end
    from_worker: int  # the reply pipe's reading end
    scratch: sandbox.Scratch
    group: PidsGroup | None
    ended: bool = False
    #: The group's processes before any student code ran: the worker and its sandbox's own.
    own: frozenset[int] = frozenset()
    #: The processes of its session last time ``/proc`` was read whole (see :class:`CpuMeter`).
    members: tuple[int, ...] = ()

    def end(self, grace: float = 0.0) -> int:
        """Stop the worker (after ``grace`` seconds to exit by itself), every process it left, and
        its scratch copy; return its exit code (negative: killed by that signal). Ending it again
        (after pytest-timeout interrupted the first time) only waits for the process."""
        if self.ended:
            return self.process.wait()
        if grace:
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = self.process.wait()
        if self.group is not None:  # what left the process group (setsid, daemons) dies here
            self.group.kill()
        for fd in (self.to_worker, self.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self.scratch.remove()
        self.ended = True
        return code


class ProcessBackend(Backend):
    """Runs the worker as ``python -m torchgrade.worker`` (``--isolation process``).

    Every (re)start copies the submission into a fresh scratch folder and starts the worker in the
    sandbox tier of :func:`torchgrade.isolation.sandbox.choose` (bubblewrap, unshare, or resource limits
    only), in a pids cgroup of its own where the machine allows one. The worker's stdout and stderr
    (the student's prints) go through a pipe into an :class:`OutputCapture`, never onto disk.

    After the first restart (a crash or a timeout: a submission that may well do it again), a spare
    worker is started ahead of need; it imports torch while the checks run, so the next restart
    only hands it the submission (milliseconds, not the 1.2 s of a cold start; ``benchmarks/isolation.py``
    measures both). A submission that never crashes never pays for a spare.

    Args:
        submission: the folder copied into each worker's scratch folder.
        hidden: paths the worker must not read, from :func:`torchgrade.isolation.sandbox.hidden_paths`.
    """

    enforces_timeouts = True

    def __init__(self, submission: Path, hidden: Sequence[Path]) -> None:
        self.submission = Path(submission)
        self.sandbox = sandbox.choose()
        self.protections = tuple(self.sandbox.protections())
        self.hidden = list(hidden)
        self.capture = OutputCapture(OUTPUT_CAP)
        self.worker: WorkerProcess | None = None
        self.spare: WorkerProcess | None = None
        self.restarts = 0

    @property
    def process(self) -> subprocess.Popen | None:
        """The running worker's process (None before the first call and after a kill)."""
        return self.worker.process if self.worker is not None else None

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.process.poll() is None

    def _spawn(self) -> WorkerProcess:
        """Start a worker in the sandbox; it imports torch, then waits for its first request."""
        box = self.sandbox
        scratch = sandbox.Scratch.create(self.submission, sandbox.NOBODY if box.drops_privileges else None)
        group = PidsGroup.create(box.limits.processes) if box.pids_cgroup else None
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        output_w = self.capture.attach()
        # -u: what the student printed reaches the capture even when the worker is killed mid-call.
        argv = [sys.executable, "-I", "-u", "-m", "torchgrade.worker", str(request_r), str(reply_w)]
        try:
            process = subprocess.Popen(
                box.command(argv, scratch, self.hidden),
                pass_fds=(request_r, reply_w),
                stdin=subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                start_new_session=True,
                env=box.environment(scratch, torch.get_num_threads()),
                cwd=scratch.submission,
                preexec_fn=box.preexec(group),
            )
        finally:
            for fd in (request_r, reply_w, output_w):
                os.close(fd)
        return WorkerProcess(process, request_w, reply_r, scratch, group)

    def start(self) -> Path:
        self._kill()  # a worker that died between calls: clear what it left
        spare, self.spare = self.spare, None
        if spare is not None and spare.process.poll() is not None:
            spare.end()
            spare = None
        self.worker = spare or self._spawn()
        if self.worker.group is not None:  # the worker is up and idle: what is in its group is ours
            self.exchange(PING, "starting the worker", START_TIMEOUT)
            self.worker.own = frozenset(self.worker.group.members())
        if self.restarts:
            self.spare = self._spawn()
        return self.worker.scratch.submission

    def exchange(
        self,
        frame: bytes,
        label: str,
        timeout: float,
        limit: int = wire.MAX_FRAME_BYTES,
        budget: CpuBudget | None = None,
    ) -> bytes:
        worker = self.worker
        if worker is None:
            raise errors.TorchgradeError(f"grader bug: {label} was sent before a worker was started")
        meter = CpuMeter(worker)
        started = time.monotonic()
        deadline = started + timeout
        try:
            wire.write_frame(worker.to_worker, frame)
            self._await_reply(worker, meter, label, deadline, budget)
            reply = wire.read_frame(worker.from_worker, limit, deadline)
        except TimeoutError:
            used = meter.charge(budget)
            self._kill()
            message = backstop_message(label, time.monotonic() - started, used, budget)
            raise errors.StudentTimeout(message) from None
        except errors.StudentTimeout:
            raise
        except wire.FrameTooLarge:
            meter.charge(budget)
            self._kill()  # the rest of the reply is still in the pipe: the worker is out of step
            raise
        except (EOFError, BrokenPipeError):
            meter.charge(budget)
            code = self._kill(grace=2.0)  # the worker is exiting: let the sandbox pass on its exit code
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise errors.WorkerCrashed(
                f"{label}: the process running the submission died ({how}), for example by calling "
                f"os._exit, sys.exit from a thread, or running out of memory."
            ) from None
        except BaseException:
            self._kill()  # pytest-timeout or Ctrl-C while waiting: the worker is mid-call, drop it
            raise
        meter.charge(budget)
        if budget is not None and budget.exhausted:
            # Spent between two readings: the verdict in-process grading gives; the worker is in step.
            raise errors.StudentTimeout(budget.message(label))
        return reply

    def _await_reply(
        self, worker: WorkerProcess, meter: CpuMeter, label: str, deadline: float, budget: CpuBudget | None
    ) -> None:
        """Wait until the reply starts to arrive, reading the worker's CPU time every
        :data:`CPU_POLL_INTERVAL` seconds; stop the worker once the call has spent what is left of
        ``budget``. Raises TimeoutError at ``deadline`` (the wall-clock backstop)."""
        while True:
            wait = min(CPU_POLL_INTERVAL, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([worker.from_worker], [], [], wait)
            if ready:
                return
            if budget is not None and budget.spent + meter.used(full=True) > budget.seconds:
                meter.charge(budget)
                self._kill()
                raise errors.StudentTimeout(budget.message(label) + MSG_STOPPED)

    def abandon(self) -> None:
        self._kill()

    def stop_background(self) -> int:
        """Kill the processes the submission started that are still running between checks (a fork
        bomb, a forgotten child): they would starve the next check of CPU. The worker itself, and
        the objects it holds for later checks, stay."""
        worker = self.worker
        if worker is None or worker.group is None or worker.process.poll() is not None:
            return 0
        return worker.group.stop_others(worker.own)

    def _kill(self, grace: float = 0.0) -> int | None:
        worker = self.worker
        if worker is None:
            return None
        if not worker.ended:
            self.restarts += 1
        code = worker.end(grace)
        self.worker = None  # only once ended: close() ends a worker whose end was interrupted
        return code

    def close(self) -> tuple[str, int]:
        self._kill()
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.end()
        return self.capture.result()


class CpuMeter:
    """The CPU time one call of a worker uses: the worker's count now minus at the call's start.

    The count is, by preference, the worker's cgroup's (every process it ever ran, dead or alive,
    also those that left its session); else the processes of its session in ``/proc`` (each with
    the children it reaped); else psutil's view of the worker and its children (no ``/proc``: macOS);
    else, where none can be read, the wall-clock time of the call (:attr:`measured` is then False).

    Reading ``/proc`` whole costs about a millisecond, too much for each of the thousands of short
    calls of a grading: a call reads only the processes found last time, and the whole of ``/proc``
    from its first poll on (a call longer than :data:`CPU_POLL_INTERVAL`); a process found then is
    charged all its CPU time, as born during the call.
    """

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.started_wall = time.monotonic()
        self.charged = 0.0
        self.scanned = False
        group = worker.group
        # Only a group the worker joined counts its time (a v1 cpuacct group it could not join counts none).
        self.group = group if group is not None and group.counts_cpu_of(worker.process.pid) else None
        self.start: float | dict[int, int] | None
        if self.group is not None:
            self.start = self.group.cpu_seconds()
        elif HAS_PROC:
            self.start = self._ticks(full=not worker.members)
        else:
            self.start = _psutil_cpu_seconds(worker.process.pid)
        self.measured = self.start is not None

    def _ticks(self, full: bool) -> dict[int, int]:
        ticks = session_ticks(self.worker.process.pid, None if full else self.worker.members)
        if full:
            self.worker.members = tuple(ticks)
            self.scanned = True
        return ticks

    def used(self, full: bool = False) -> float:
        """CPU seconds since the call started (wall-clock seconds where CPU time cannot be read);
        ``full``: read all of ``/proc`` (see the class)."""
        if self.measured:
            if isinstance(self.start, dict):
                now = self._ticks(full or self.scanned)
                if now:
                    return sum(max(0, v - self.start.get(pid, 0)) for pid, v in now.items()) / CLOCK_TICK
            else:
                group, pid = self.group, self.worker.process.pid
                value = group.cpu_seconds() if group is not None else _psutil_cpu_seconds(pid)
                if value is not None:
                    return max(0.0, value - self.start)
            self.measured = False  # the worker is gone, or its count is no longer readable
        return time.monotonic() - self.started_wall

    def charge(self, budget: CpuBudget | None) -> float:
        """Charge what the call used and has not been charged yet to ``budget``; return the call's use."""
        used = max(self.used(), self.charged)
        if budget is not None:
            budget.spent += used - self.charged
            budget.measured = budget.measured and self.measured
        self.charged = used
        return used


def own_cpu_seconds() -> float:
    """CPU seconds (user and system) of this process, every thread, and of the children it reaped."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


HAS_PROC = os.path.isdir("/proc/self")
CLOCK_TICK = os.sysconf("SC_CLK_TCK") if HAS_PROC else 100


def session_ticks(session: int, pids: Sequence[int] | None = None) -> dict[int, int]:
    """Clock ticks of CPU time (user and system) of each process of ``session`` (only of ``pids``
    if given), each with the children it has reaped, from ``/proc``.

    The worker is started as the leader of a session of its own (``start_new_session``), so its
    session holds the sandbox's processes, the worker and everything it started but did not move
    out with ``setsid`` (only a cgroup counts those: see :meth:`PidsGroup.cpu_seconds`).
    """
    ticks = {}
    for pid in pids if pids is not None else (int(n) for n in os.listdir("/proc") if n.isdigit()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:  # gone meanwhile
            continue
        # After the command: state, ppid, pgrp, session, ..., utime (14th field), stime, cutime, cstime.
        if len(fields) > 14 and int(fields[3]) == session:
            ticks[pid] = sum(int(v) for v in fields[11:15])
    return ticks


def _psutil_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of the worker and its children where there is no ``/proc``; None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        return total
    except psutil.Error:
        return None


class OutputCapture:
    """What the workers printed, across restarts: the first ``cap`` bytes kept, the rest counted.

    Each worker start gets a pipe whose reading end a thread drains, so a submission that prints
    a gigabyte costs the grader neither memory nor disk, and cannot fill a file-size limit.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.dropped = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def attach(self) -> int:
        """A new pipe for a worker; returns its writing end (the caller closes it once passed on)."""
        read_end, write_end = os.pipe()
        thread = threading.Thread(target=self._drain, args=(read_end,), daemon=True, name="torchgrade-output")
        thread.start()
        self._threads.append(thread)
        return write_end

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            room = max(self.cap - len(self.kept), 0)
            self.kept += chunk[:room]
            self.dropped += max(len(chunk) - room, 0)

    def _drain(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                self.feed(chunk)

    def result(self, wait: float = 2.0) -> tuple[str, int]:
        """The kept text (a character cut at the cap is replaced) and the number of dropped bytes,
        once every worker's pipe is closed or ``wait`` seconds have passed."""
        for thread in self._threads:
            thread.join(wait)
        with self._lock:
            return self.kept.decode("utf-8", errors="replace"), self.dropped
