"""Backends: how encoded requests reach a worker session, and how a worker process is supervised.

A backend only moves bytes: it takes an encoded request frame and returns the reply frame, starts a
worker (and says where that worker sees the submission), stops what the submission left running,
and closes. What the frames mean (requests, handles, the check's deadline, notes, failures) is the
business of the proxies (:mod:`torchgrade.engine.proxy`), the same for every backend; so is loading
the submission after each (re)start.

* :class:`InProcessBackend` (``--isolation none``) hands each frame to a
  :class:`~torchgrade.worker.session.WorkerSession` in this process: fast, debuggable, not isolated.
* :class:`ProcessBackend` (``--isolation process``) writes it to ``python -m torchgrade.worker``,
  enforces a wall-clock limit per call by killing the worker's process group, and starts a fresh
  worker when asked after a crash or a timeout.

Both live here so that this module is the grader side's one link to the code of the worker side.
"""

from __future__ import annotations

import os
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


class Backend:
    """Moves encoded frames to a :class:`~torchgrade.worker.session.WorkerSession` and back.

    Attributes:
        enforces_timeouts: :meth:`exchange` stops a call at its timeout. An in-process call cannot
            be interrupted: pytest-timeout stops a hung check instead.
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
        self, frame: bytes, label: str, timeout: float, limit: int = wire.MAX_FRAME_BYTES
    ) -> bytes:  # pragma: no cover - interface
        """Send one request frame to the running worker and return its reply frame.

        Raises:
            StudentTimeout: no whole reply within ``timeout`` seconds; the worker was stopped.
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

    def exchange(self, frame: bytes, label: str, timeout: float, limit: int = wire.MAX_FRAME_BYTES) -> bytes:
        reply = self.session.handle(frame)
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

    def exchange(self, frame: bytes, label: str, timeout: float, limit: int = wire.MAX_FRAME_BYTES) -> bytes:
        worker = self.worker
        if worker is None:
            raise errors.TorchgradeError(f"grader bug: {label} was sent before a worker was started")
        try:
            wire.write_frame(worker.to_worker, frame)
            return wire.read_frame(worker.from_worker, limit, time.monotonic() + timeout)
        except TimeoutError:
            self._kill()
            raise errors.StudentTimeout(f"{label} timed out after {timeout:.0f} s; the worker was stopped.") from None
        except wire.FrameTooLarge:
            self._kill()  # the rest of the reply is still in the pipe: the worker is out of step
            raise
        except (EOFError, BrokenPipeError):
            code = self._kill(grace=2.0)  # the worker is exiting: let the sandbox pass on its exit code
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise errors.WorkerCrashed(
                f"{label}: the process running the submission died ({how}), for example by calling "
                f"os._exit, sys.exit from a thread, or running out of memory."
            ) from None
        except BaseException:
            self._kill()  # pytest-timeout or Ctrl-C while waiting: the worker is mid-call, drop it
            raise

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
