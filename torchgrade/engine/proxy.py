"""Proxies: how graders talk to a submission without holding its objects.

``sub = Submission(...); model = sub.CNN(n=4); out = model(x)`` reads like in-process code, but
``model`` is a :class:`Remote` handle and ``out`` is a plain tensor rebuilt from bytes. Two
backends carry the requests:

* :class:`InProcessBackend` (``--isolation none``) hands each encoded request to a
  :class:`~torchgrade.worker.session.WorkerSession` in this process: fast, debuggable, not isolated.
* :class:`ProcessBackend` (``--isolation process``) sends it to ``python -m torchgrade.worker``,
  enforces a wall-clock limit per call by killing the worker's process group, and starts a fresh
  worker for the next call after a crash or a timeout.

Both encode and decode every value with :mod:`torchgrade.wire`, so graders see the same types and
copies in both modes. Errors come back as :class:`~torchgrade.errors.CheckFailure` subclasses whose
messages name the call, e.g. ``CNN(n=4)(tensor[2, 3, 448, 224]) raised RuntimeError: ...``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchgrade import errors, wire
from torchgrade.interface import HANDOUT_PARAMETERS
from torchgrade.isolation import sandbox
from torchgrade.isolation.cgroup import PidsGroup

#: How much of the submission's stdout/stderr the report keeps, in bytes.
OUTPUT_CAP = 64 * 1024
#: Per-call wall-clock limit when the grader sets none, in seconds.
DEFAULT_CALL_TIMEOUT = 300.0
STALE = "{label} is gone: the worker was restarted after an earlier crash or timeout, or the objects were released."


def describe(value: Any) -> str:
    """A short, student-readable rendering of an argument for messages: ``tensor[2, 3, 448, 224]``."""
    if isinstance(value, Remote):
        return value._label
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, dict) and any(isinstance(v, (torch.Tensor, np.ndarray, dict, list)) for v in value.values()):
        return f"dict[{', '.join(map(str, value))}]" if len(value) <= 6 else f"dict of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def call_label(label: str, args: tuple, kwargs: dict) -> str:
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{label}({', '.join(parts)})"


class Backend:
    """Carries encoded requests to a :class:`~torchgrade.worker.session.WorkerSession` and back.

    Attributes:
        notes: adaptations made while grading (a name found in another module, a call spelled
            differently), keyed so that each is said once; they go into the report.
    """

    def __init__(self) -> None:
        self.notes: dict[str, str] = {}

    #: Bumped whenever the worker's object table is lost (a restart), so stale handles are caught.
    generation = 0
    #: Absolute ``time.monotonic()`` by which calls must end; None means DEFAULT_CALL_TIMEOUT per call.
    deadline: float | None = None

    def remaining(self) -> float:
        """Seconds the next call may take."""
        if self.deadline is None:
            return DEFAULT_CALL_TIMEOUT
        return max(0.5, self.deadline - time.monotonic())

    def roundtrip(self, frame: bytes, label: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def stop_background(self) -> None:
        """Stop what the submission left running between checks (only a worker process can)."""

    def close(self) -> None:
        """Release the backend's resources."""

    def _ref_of(self, obj: Any) -> wire.Ref:
        if isinstance(obj, Remote):
            if obj._generation != self.generation:
                raise errors.CheckFailure(STALE.format(label=obj._label))
            return obj._ref
        raise wire.WireError(f"cannot send a {type(obj).__qualname__} to the submission")

    def request(self, label: str, op: str, **fields: Any) -> Any:
        """Send one request and return its decoded value.

        Raises:
            CheckFailure: the student's code raised, timed out, crashed the worker, or lacked a name.
            TorchgradeError: the request itself was malformed (a harness bug).
        """
        message = {"op": op, **fields}
        try:
            frame = wire.encode(message, make_ref=self._ref_of)
        except wire.WireError as exc:
            raise errors.TorchgradeError(f"grader bug: cannot send the arguments of {label}: {exc}") from None
        reply = wire.decode(self.roundtrip(frame, label), lambda ref: Remote(self, ref, ref.type_name))
        if "error" in reply:
            raise _failure(label, reply["error"])
        return reply["value"]


def _failure(label: str, error: dict[str, Any]) -> Exception:
    kind, message = error.get("kind"), error.get("message", "")
    if kind == "exception":
        if error.get("type") == "NotImplementedError":
            said = f": {message}" if message else ""
            return errors.NotImplementedYet(
                f"{label} is not implemented yet (it raises NotImplementedError{said}).", "NotImplementedError"
            )
        return errors.StudentError(
            f"{label} raised {error['type']}: {message}\n{error.get('traceback', '')}".rstrip(), error["type"]
        )
    if kind == "signature":
        return errors.SignatureMismatch(
            f"could not call {label}: {message}. The submitted signature is {error.get('signature')}."
        )
    if kind == "missing":
        return errors.MissingName(message)
    if kind == "unencodable":
        return errors.CheckFailure(f"{label} returned a value that cannot be graded: {message}")
    return errors.TorchgradeError(f"worker refused {label}: {message}")


class InProcessBackend(Backend):
    """Runs the worker session in this process (``--isolation none``)."""

    def __init__(self) -> None:
        from torchgrade.worker.session import WorkerSession

        super().__init__()
        self.session = WorkerSession()

    def roundtrip(self, frame: bytes, label: str) -> bytes:
        return self.session.handle(frame)

    def close(self) -> None:
        if self.session.submission is not None:
            self.session.submission.unload()


@dataclass
class _Worker:
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
    sandbox tier of :func:`torchgrade.isolation.sandbox.choose` (bubblewrap, unshare, or resource limits only),
    in a pids cgroup of its own where the machine allows one. The worker's stdout and stderr (the
    student's prints) go through a pipe into an :class:`OutputCapture`, never onto disk.

    After the first restart (a crash or a timeout: a submission that may well do it again), a spare
    worker is started ahead of need; it imports torch while the checks run, so the next restart
    only sends it the submission (milliseconds, not the 2 s of a cold start). A submission that
    never crashes never pays for a spare.

    Args:
        submission: the folder the worker loads after every (re)start.
        hidden: paths the worker must not read (default: :func:`torchgrade.isolation.sandbox.hidden_paths`
            with the current folder as the assignment).
    """

    def __init__(self, submission: Path, hidden: list[Path] | None = None) -> None:
        super().__init__()
        self.submission = Path(submission)
        self.sandbox = sandbox.choose()
        self.hidden = sandbox.hidden_paths(self.submission, Path.cwd(), None) if hidden is None else hidden
        self.capture = OutputCapture(OUTPUT_CAP)
        self.worker: _Worker | None = None
        self.spare: _Worker | None = None
        self.generation = 0
        self.restarts = 0
        self.output: tuple[str, int] = ("", 0)  # (kept text, dropped bytes), read at close

    @property
    def process(self) -> subprocess.Popen | None:
        """The running worker's process (None before the first call and after a kill)."""
        return self.worker.process if self.worker is not None else None

    def _spawn(self) -> _Worker:
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
        return _Worker(process, request_w, reply_r, scratch, group)

    def _start(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None and spare.process.poll() is not None:
            spare.end()
            spare = None
        self.worker = spare or self._spawn()
        self.generation += 1
        if self.worker.group is not None:  # the worker is up and idle: what is in its group is ours
            self._exchange(wire.encode({"op": "ping"}), "starting the worker", 120.0)
            self.worker.own = frozenset(self.worker.group.members())
        load = wire.encode({"op": "load", "target": str(self.worker.scratch.submission)})
        reply = wire.decode(self._exchange(load, "loading the submission", 120.0))
        if "error" in reply:
            raise errors.TorchgradeError(f"the worker could not load {self.submission}: {reply['error']['message']}")
        if self.restarts:
            self.spare = self._spawn()

    def roundtrip(self, frame: bytes, label: str) -> bytes:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise errors.StudentTimeout(f"{label} was not run: earlier calls used up the check's time limit.")
        if self.worker is None or self.worker.process.poll() is not None:
            started = time.monotonic()
            self._kill()  # a worker that died between calls: clear what it left
            self._start()
            if self.deadline is not None:  # starting our worker is not the student's time
                self.deadline += time.monotonic() - started
        return self._exchange(frame, label, self.remaining())

    def _exchange(self, frame: bytes, label: str, timeout: float) -> bytes:
        worker = self.worker
        try:
            wire.write_frame(worker.to_worker, frame)
            ready, _, _ = select.select([worker.from_worker], [], [], timeout)
            if not ready:
                self._kill()
                raise errors.StudentTimeout(f"{label} timed out after {timeout:.0f} s; the worker was stopped.")
            return wire.read_frame(worker.from_worker)
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

    def stop_background(self) -> None:
        """Kill the processes the submission started that are still running between checks (a fork
        bomb, a forgotten child): they would starve the next check of CPU. The worker itself, and
        the objects it holds for later checks, stay."""
        worker = self.worker
        if worker is None or worker.group is None or worker.process.poll() is not None:
            return
        stopped = worker.group.stop_others(worker.own)
        if stopped:
            self.notes["background processes"] = (
                "the submission left processes running after its calls returned (at least "
                f"{stopped} once); torchgrade stopped them before the next check."
            )

    def _kill(self, grace: float = 0.0) -> int | None:
        worker = self.worker
        if worker is None:
            return None
        if not worker.ended:
            self.restarts += 1
            self.generation += 1  # every handle into the dead worker is now stale
        code = worker.end(grace)
        self.worker = None  # only once ended: close() ends a worker whose end was interrupted
        return code

    def close(self) -> None:
        self._kill()
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.end()
        self.output = self.capture.result()


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


class Remote:
    """A handle on an object that lives with the submission (a class, a model, a function).

    Attribute access, calls and iteration are forwarded; plain values come back as values and
    other objects as new :class:`Remote` handles. ``_label`` is how messages name the object.
    """

    __slots__ = ("_backend", "_ref", "_label", "_generation", "_handout")

    def __init__(self, backend: Backend, ref: wire.Ref, label: str) -> None:
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_generation", backend.generation)
        # The handout's (keyword, default) pairs, set by Submission.lookup for names it adapts calls of.
        object.__setattr__(self, "_handout", ())

    def _request(self, label: str, op: str, **fields: Any) -> Any:
        # A stale target (or argument) is refused by Backend._ref_of while the request is encoded.
        value = self._backend.request(label, op, target=self, **fields)
        return _relabel(value, label)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._request(f"{self._label}.{name}", "getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("graders never modify submitted objects")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._call(args, kwargs)
        except errors.SignatureMismatch as mismatch:
            if not self._handout or args or not set(kwargs) <= {name for name, _ in self._handout}:
                raise  # only the handout's own keywords are ever re-spelled
            return self._call_adapted(kwargs, mismatch)

    def _call(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        return self._request(call_label(self._label, args, kwargs), "call", args=list(args), kwargs=kwargs)

    def _call_adapted(self, kwargs: dict[str, Any], mismatch: errors.SignatureMismatch) -> Any:
        """Retry a call of the handout's keywords in the spellings whose meaning is unambiguous:
        the same values positionally, then without trailing arguments equal to the handout's
        defaults (``CNN(n=4)`` for a submitted ``CNN()``). Only calls that fail to bind are retried
        (the worker binds before running), so no attempt runs student code twice."""
        order = [name for name, _ in self._handout]
        defaults = dict(self._handout)

        def positional(keywords: dict[str, Any]) -> list[tuple[tuple, dict]]:
            # Only a leading run of the handout's parameters has an unambiguous position.
            names = order[: len(keywords)]
            return [(tuple(keywords[k] for k in names), {})] if set(names) == set(keywords) else []

        kept = dict(kwargs)
        attempts = positional(kept)
        for name in reversed(order):
            if name in kept and kept[name] == defaults[name]:
                del kept[name]
                attempts += [((), dict(kept))] + positional(kept)
        tried = [call_label(self._label, (), kwargs)]
        for args, keywords in attempts:
            label = call_label(self._label, args, keywords)
            if label in tried:
                continue
            tried.append(label)
            try:
                result = self._call(args, keywords)
            except errors.SignatureMismatch:
                continue
            self._backend.notes[f"call {self._label}"] = (
                f"{tried[0]} did not fit the submitted signature; graded as {label} instead"
            )
            return result
        raise errors.SignatureMismatch(f"{mismatch} Also tried: {', '.join(tried[1:])}.") from None

    def __iter__(self):
        return iter(self._request(f"list({self._label})", "iter"))

    def __repr__(self) -> str:
        return f"<{self._ref.type_name} {self._label}>"


def _relabel(value: Any, label: str) -> Any:
    if isinstance(value, Remote):
        object.__setattr__(value, "_label", label)
    return value


class Submission:
    """The grader's view of one submission: names of the interface become :class:`Remote` handles.

    Args:
        folder: the submission directory.
        isolation: ``"none"`` (in-process) or ``"process"`` (a worker process).
        interface: public name -> the module the handout puts it in (``{"CNN": "shoes"}``).
        hidden: with process isolation, paths the worker must not read (see :class:`ProcessBackend`).
    """

    def __init__(
        self, folder: str | Path, isolation: str, interface: dict[str, str], hidden: list[Path] | None = None
    ) -> None:
        self.folder = Path(folder).resolve()
        self.isolation = isolation
        self.interface = interface
        if isolation == "none":
            self.backend: Backend = InProcessBackend()
            self.backend.request("loading the submission", "load", target=str(self.folder))
        elif isolation == "process":
            self.backend = ProcessBackend(self.folder, hidden)
        else:
            raise errors.TorchgradeError(f"unknown isolation {isolation!r}; choose from 'none', 'process'")

    def __getattr__(self, name: str) -> Remote:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.lookup(name)

    def lookup(self, name: str) -> Remote:
        """Return a handle on the submitted object called ``name``.

        Raises:
            MissingName: no module of the submission defines it.
        """
        preferred = self.interface.get(name)
        found = self.backend.request(name, "lookup", name=name, target=preferred)
        if preferred and found["module"] != preferred:
            self.notes[name] = f"`{name}` was found in {found['module']}.py instead of {preferred}.py"
        remote = _relabel(found["object"], name)
        if isinstance(remote, Remote) and name in HANDOUT_PARAMETERS:
            object.__setattr__(remote, "_handout", HANDOUT_PARAMETERS[name])
        return remote

    @property
    def notes(self) -> dict[str, str]:
        """Adaptations made while grading, for the report (see :attr:`Backend.notes`)."""
        return self.backend.notes

    def apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a trusted function of ``torchgrade.checks`` next to the submission's objects.

        Use it where a check needs the objects themselves, not their outputs: autograd through a
        submitted model, a recording model handed to the student's training loop.
        """
        name = f"{fn.__module__}:{fn.__qualname__}"
        return self.backend.request(
            call_label(fn.__qualname__, args, kwargs), "apply", fn=name, args=list(args), kwargs=kwargs
        )

    def set_time_limit(self, seconds: float | None) -> None:
        """Limit the wall-clock time of every call from now on to ``seconds`` in total (None: no
        overall limit, each call gets DEFAULT_CALL_TIMEOUT). Enforced only with process isolation;
        in-process, pytest-timeout stops a hung check."""
        self.backend.deadline = None if seconds is None else time.monotonic() + seconds

    def stop_background(self) -> None:
        """Kill the processes the submission left running (process isolation with a pids cgroup)."""
        self.backend.stop_background()

    def seed(self, seed: int) -> None:
        """Seed the global generators (Python, NumPy, torch) where the submission runs."""
        self.backend.request("seeding", "seed", target=int(seed))

    def release(self) -> None:
        """Drop every object the submission side holds for the grader; existing handles go stale."""
        self.backend.request("releasing objects", "release")
        self.backend.generation += 1

    def close(self) -> None:
        self.backend.close()
