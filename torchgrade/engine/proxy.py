"""Proxies: how graders talk to a submission without holding its objects.

``sub = Submission(...); model = sub.CNN(n=4); out = model(x)`` reads like in-process code, but
``model`` is a :class:`Remote` handle and ``out`` is a plain tensor rebuilt from bytes.

Everything a request means lives here, the same for both isolation modes: encoding and decoding with
:mod:`torchgrade.wire` (graders see the same types and copies in both modes), handles and their
staleness, loading the submission after each (re)start of the worker, the CPU budget of a check and
its wall-clock backstop (:meth:`Submission.set_cpu_budget`), the notes on adaptations made while
grading, and the mapping of the worker's error replies to :class:`~torchgrade.errors.CheckFailure`
subclasses whose messages name the call, e.g.
``CNN(n=4)(tensor[2, 3, 448, 224]) raised RuntimeError: ...``. Carrying the bytes is the business of
a backend of :mod:`torchgrade.isolation.transport`.

Calls of the handout's names (the ``calls`` of the manifest, :mod:`torchgrade.assignments`) are bound to the
submitted signature by parameter name, never by position (:mod:`torchgrade.engine.binding`, see
:class:`Remote`); graders learn how with :meth:`Submission.signature`, :meth:`Submission.plan_call`
and :meth:`Submission.last_binding`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchgrade import errors, wire
from torchgrade.assignments import HandoutParameter, active
from torchgrade.engine import binding
from torchgrade.engine.explain import explained
from torchgrade.isolation.transport import START_TIMEOUT, Backend, CpuBudget, InProcessBackend, ProcessBackend
from torchgrade.submission_files import list_files
from torchgrade.worker.loader import MAX_STAND_INS, NOTE_STOOD_IN
from torchgrade.worker.session import APPLY_ALLOWED_PREFIX, PROBE_FLAG, probe_key

#: Per-call wall-clock limit when the grader sets no budget, in seconds.
DEFAULT_CALL_TIMEOUT = 300.0
#: The wall-clock backstop of a CPU budget of B seconds is BACKSTOP_FACTOR * B + BACKSTOP_SLACK
#: seconds. It stops calls that wait without computing (sleep, a blocked read), which use no CPU
#: time. A budget is several times the reference's CPU time, and training runs on one thread, so
#: the backstop trips only when load slows the worker by more than ~BACKSTOP_FACTOR times that margin
#: (a 55 s budget of a 10 s run: 250 s, a slowdown of 25).
BACKSTOP_FACTOR = 4.0
BACKSTOP_SLACK = 30.0
MSG_BUDGET_SPENT = (
    "{label} was not run: the check's earlier calls used up its CPU budget "
    "({used:.1f} s of CPU time of {budget:.4g} s)."
)
MSG_BACKSTOP_PASSED = "{label} was not run: earlier calls used up the check's wall-clock backstop."
STALE = "{label} is gone: the worker was restarted after an earlier crash or timeout, or the objects were released."
MSG_LOAD_FAILED = "the worker could not load {folder}: {message}"
#: Largest reply a call may send when the check sets no other limit (see Submission.set_reply_limit).
DEFAULT_REPLY_LIMIT = 256 * 1024**2
MSG_TOO_LARGE = (
    "{label} sent back {size:,} bytes; at most {limit:,} are accepted for this call, far more than what it "
    "should return. The worker was stopped."
)
MSG_TOO_MANY_NUMBERS = (
    "{label} sent back a value of {size:,} bytes of plain lists and numbers; at most {limit:,} are read "
    "(tensors and arrays travel apart and are not counted here)."
)
MSG_OUT_OF_STEP = (
    "{label}: the submission's process sent the grader {why}, not the reply to this call; something in the "
    "submission wrote on the grader's channel (a file descriptor it does not own). The worker was stopped and "
    "the call counts as failed."
)
MSG_TAMPERED = "{label} was not run: {message}"
#: The note of a call of a handout name bound to a submission's own signature (Remote.__call__).
MSG_ADAPTED = "{intended} did not fit {signature}; called {called}"
MSG_CANNOT_BIND = "could not call {label}: {reason}. The submitted signature is {signature}."
MSG_NO_HIDDEN = (
    "process isolation needs the paths the worker must not read: pass "
    "hidden=torchgrade.isolation.sandbox.hidden_paths(...)"
)


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


@dataclass(frozen=True)
class SubmissionRecord:
    """What grading one submission leaves for its report (:meth:`Submission.close` returns it).

    Attributes:
        notes: adaptations made while grading, each said once, sorted.
        sandbox: what protected the grader (process isolation): tier, limits, hidden paths.
        output: the first :data:`~torchgrade.isolation.transport.OUTPUT_CAP` bytes the submission
            printed in its worker (empty in-process, where prints go to the terminal).
        dropped_output: how many bytes of output were left out.
        startup_seconds: wall-clock seconds spent starting workers and loading the submission into
            them (0 when nothing was started); :data:`startups` is how many starts that was.
    """

    notes: tuple[str, ...] = ()
    sandbox: tuple[str, ...] = ()
    output: str = ""
    dropped_output: int = 0
    startup_seconds: float = 0.0
    startups: int = 0


class Channel:
    """Requests to one submission over a :class:`~torchgrade.isolation.transport.Backend`.

    Args:
        backend: carries the frames.
        folder: the submission, named when it cannot be loaded.

    Attributes:
        notes: adaptations made while grading (a name found in another module, a call spelled
            differently), keyed so that each is said once; they go into the report.
        left_out: the submission's top-level modules left out of every copy (a link, a pipe), with
            why, told to each worker that loads it.
        generation: bumped at every (re)start of the worker and every release: a :class:`Remote`
            made in another generation is stale.
        startup_seconds: wall-clock seconds spent in (re)starts so far (a worker's spawn, its imports,
            loading the submission): a check's time in the report leaves them out, so that the check
            that happened to start the worker does not look slow (the report states them apart).
        startups: how many (re)starts that was.
        budget: the CPU time the calls may still use (None: no budget), charged by the backend.
        deadline: absolute ``time.monotonic()`` by which calls must end, the wall-clock backstop of
            the budget; None means :data:`DEFAULT_CALL_TIMEOUT` per call. Enforced only by a backend
            that can stop a call.
    """

    def __init__(self, backend: Backend, folder: Path) -> None:
        self.backend = backend
        self.folder = folder
        # Listed once: the submission's folder does not change while it is graded. What was left out
        # (links, pipes, devices) is said in the report, and told to each worker, which sees only its
        # scratch copy, where a module that was a link is simply absent: a check needing it says why.
        listing = list_files(folder)
        self.notes: dict[str, str] = {"files left out": listing.note()} if listing.skipped else {}
        self.left_out = {
            path: why
            for path, why in listing.skipped
            if "/" not in path and path.endswith(".py") and path.isprintable() and path.isascii()
        }
        self.generation = 0
        self.startup_seconds = 0.0
        self.startups = 0
        self.budget: CpuBudget | None = None
        self.deadline: float | None = None
        self.reply_limit = DEFAULT_REPLY_LIMIT
        self._sequence = 0
        # Binding calls by name (Remote.__call__): the submitted parameters of each handout name, with
        # the generation they were read in, and the binding of each name's latest call.
        self.signatures: dict[str, tuple[int, tuple[binding.SubmittedParameter, ...] | None]] = {}
        self.bindings: dict[str, binding.Binding] = {}
        # The keys of the probe modules the running worker was sent (see Submission.apply).
        self.probes_sent: set[str] = set()

    def remaining(self) -> float:
        """Seconds the next call may take."""
        if self.deadline is None:
            return DEFAULT_CALL_TIMEOUT
        return max(0.5, self.deadline - time.monotonic())

    def _ref_of(self, obj: Any) -> wire.Ref:
        if isinstance(obj, Remote):
            if obj._generation != self.generation or not self.backend.running:
                raise errors.CheckFailure(STALE.format(label=obj._label))
            return obj._ref
        raise wire.WireError(f"cannot send a {type(obj).__qualname__} to the submission")

    def request(self, label: str, op: str, **fields: Any) -> Any:
        """Send one request and return its decoded value.

        Raises:
            CheckFailure: the student's code raised, timed out, crashed the worker, or lacked a name.
            TorchgradeError: the request itself was malformed (a harness bug).
        """
        backend = self.backend
        if self.budget is not None and self.budget.exhausted:  # a check that went on after a timeout
            used, budget = self.budget.spent, self.budget.seconds
            raise errors.StudentTimeout(MSG_BUDGET_SPENT.format(label=label, used=used, budget=budget))
        if backend.enforces_timeouts and self.deadline is not None and time.monotonic() >= self.deadline:
            raise errors.StudentTimeout(MSG_BACKSTOP_PASSED.format(label=label))
        if not backend.running:
            started = time.monotonic()
            try:
                self._start()
            finally:
                spent = time.monotonic() - started
                self.startup_seconds += spent
                self.startups += 1
            if self.deadline is not None:  # starting our worker is not the student's time
                self.deadline += spent
        probe = fields.get("probe")
        if probe is not None and probe["key"] in self.probes_sent:  # this worker has it: the key suffices
            fields = {**fields, "probe": {**probe, "source": None}}
        try:
            frame, sequence = self._frame({"op": op, **fields}, make_ref=self._ref_of)
        except wire.WireError as exc:
            raise errors.TorchgradeError(f"grader bug: cannot send the arguments of {label}: {exc}") from None
        reply = self._exchange(frame, sequence, label, self.remaining(), self.reply_limit, self._remote, self.budget)
        if "error" in reply:
            raise _failure(label, reply["error"])
        if probe is not None:
            self.probes_sent.add(probe["key"])
        return reply["value"]

    def _remote(self, ref: wire.Ref) -> Remote:
        return Remote(self, ref, ref.type_name)

    def _frame(self, message: dict[str, Any], make_ref: Callable[[Any], wire.Ref] | None = None) -> tuple[bytes, int]:
        """Encode a request with the next sequence number, which its reply must carry back."""
        self._sequence += 1
        return wire.encode({**message, "seq": self._sequence}, make_ref=make_ref), self._sequence

    def _exchange(
        self,
        frame: bytes,
        sequence: int,
        label: str,
        timeout: float,
        limit: int,
        resolve: Callable | None = None,
        budget: CpuBudget | None = None,
    ) -> dict[str, Any]:
        """Send a request frame and return its reply, checked: everything from the worker is untrusted.

        A reply over ``limit`` bytes, a frame that does not decode, or a reply to another request (a
        student thread writing on the reply pipe) fails the call as the student's, and stops the
        worker: its replies can no longer be matched with the requests.
        """
        try:
            raw = self.backend.exchange(frame, label, timeout, limit, budget)
        except wire.FrameTooLarge as exc:
            raise errors.CheckFailure(MSG_TOO_LARGE.format(label=label, size=exc.size, limit=exc.limit)) from None
        try:
            reply = wire.decode(raw, resolve)
            why = _reply_problem(reply, sequence)
        except wire.FrameTooLarge as exc:  # read whole: the worker is still in step
            raise errors.CheckFailure(
                MSG_TOO_MANY_NUMBERS.format(label=label, size=exc.size, limit=exc.limit)
            ) from None
        except wire.WireError as exc:
            why = f"a malformed reply ({exc})"
        if why:
            self.backend.abandon()
            raise errors.CheckFailure(MSG_OUT_OF_STEP.format(label=label, why=why))
        return reply

    def _start(self) -> None:
        """(Re)start the worker and load the submission: the one place a load request is sent."""
        folder = self.backend.start()
        self.generation += 1  # every handle into an earlier worker is now stale
        self.probes_sent.clear()  # a fresh worker has no probe module yet
        load, sequence = self._frame({"op": "load", "target": str(folder), "left_out": self.left_out})
        reply = self._exchange(load, sequence, "loading the submission", START_TIMEOUT, DEFAULT_REPLY_LIMIT)
        if "error" in reply:
            raise errors.TorchgradeError(MSG_LOAD_FAILED.format(folder=self.folder, message=reply["error"]["message"]))

    def release(self) -> None:
        """Drop every object the submission side holds for the grader; existing handles go stale."""
        self.request("releasing objects", "release")
        self.generation += 1

    def stop_background(self) -> None:
        stopped = self.backend.stop_background()
        if stopped:
            self.notes["background processes"] = (
                "the submission left processes running after its calls returned (at least "
                f"{stopped} once); torchgrade stopped them before the next check."
            )

    def close(self) -> SubmissionRecord:
        output, dropped = self.backend.close()
        return SubmissionRecord(
            tuple(sorted(self.notes.values())),
            self.backend.protections,
            output,
            dropped,
            round(self.startup_seconds, 4),
            self.startups,
        )


def _reply_problem(reply: Any, sequence: int) -> str:
    """What is wrong with a decoded reply to request ``sequence``; empty when nothing is."""
    if not isinstance(reply, dict) or ("value" in reply) == ("error" in reply):
        return "a message that is not a reply"
    if reply.get("seq") != sequence:
        return f"a reply to request {reply.get('seq')!r} while request {sequence} was waiting"
    error = reply.get("error")
    # Every field of an error is text, but a signature error's parameters (validated where read).
    if error is not None and not (
        isinstance(error, dict) and all(isinstance(v, str) for k, v in error.items() if k != "parameters")
    ):
        return "a malformed error reply"
    return ""


def _failure(label: str, error: dict[str, Any]) -> Exception:
    """The exception a worker's error reply to the call ``label`` becomes.

    Every kind is the student's failure: the worker runs student code, which can raise whatever the
    worker itself would (a refusal included), so no reply from it can prove a fault of the grader.
    Requests the grader could get wrong (a function that is not a probe) are refused before sending.
    """
    error = explained(error)  # capped, without escape codes; a known difference of versions named as such
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
        try:
            parameters = binding.parse_parameters(error.get("parameters"))
        except binding.MalformedParameters:
            parameters = None
        return errors.SignatureMismatch(
            f"could not call {label}: {message}. The submitted signature is {error.get('signature')}.", parameters
        )
    if kind == "missing":
        return errors.MissingName(message)
    if kind == "unencodable":
        return errors.CheckFailure(f"{label} returned a value that cannot be graded: {message}")
    if kind == "tampered":
        return errors.CheckFailure(MSG_TAMPERED.format(label=label, message=message))
    return errors.CheckFailure(f"the submission's process refused {label}: {message}")


class Remote:
    """A handle on an object that lives with the submission (a class, a model, a function).

    Attribute access, calls and iteration are forwarded; plain values come back as values and
    other objects as new :class:`Remote` handles. ``_label`` is how messages name the object.

    A handle on a name whose calls the manifest binds by name (``Submission(calls=...)``, from
    :meth:`Submission.lookup`) binds each call by parameter name to the submitted signature, never by
    position (:func:`torchgrade.engine.binding.bind`): ``CNN(n=4, kernel_size=3)`` of a submitted
    ``CNN()`` calls ``CNN()``, ``GraphAttentionLayer(5, 6, 2, alpha=0.2)`` of a layer written
    ``(in_dim, n_heads, out_dim, leaky_relu_negative_slope=0.2)`` calls it with ``in_dim=5, out_dim=6,
    n_heads=2, leaky_relu_negative_slope=0.2``. The returned handle, and every message about it, is
    labelled with the call actually made (``CNN()``); the report's notes say what was called instead
    of what (key ``"call CNN"``); :meth:`Submission.last_binding` tells what was renamed and left out.
    A call that cannot be bound raises :class:`~torchgrade.errors.SignatureMismatch` naming why.
    """

    __slots__ = ("_channel", "_ref", "_label", "_generation", "_handout")

    def __init__(self, channel: Channel, ref: wire.Ref, label: str) -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_generation", channel.generation)
        # (name, the handout's parameters, their aliases), set by Submission.lookup for the names whose
        # calls it binds.
        object.__setattr__(self, "_handout", None)

    def _request(self, label: str, op: str, **fields: Any) -> Any:
        # A stale target (or argument) is refused by Channel._ref_of while the request is encoded.
        value = self._channel.request(label, op, target=self, **fields)
        return _relabel(value, label)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._request(f"{self._label}.{name}", "getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("graders never modify submitted objects")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan = self._plan(args, kwargs)
        if plan is None or plan.as_written:
            return self._call(args, kwargs)
        intended = call_label(self._label, args, kwargs)
        self._channel.notes[f"call {self._label}"] = MSG_ADAPTED.format(
            intended=intended, signature=plan.signature, called=plan.called
        )
        return self._request(plan.called, "call", args=list(plan.args), kwargs=plan.kwargs)

    def _call(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        return self._request(call_label(self._label, args, kwargs), "call", args=list(args), kwargs=kwargs)

    def _plan(self, args: tuple, kwargs: dict[str, Any], record: bool = True) -> binding.Binding | None:
        """How a call of a handout name binds to the submitted signature (recorded for
        :meth:`Submission.last_binding`); None for a handle of no handout name or a call that is not
        made of the handout's parameters, which is sent as written.

        Raises:
            SignatureMismatch: the call cannot be bound; the message says why and shows the
                submitted signature.
        """
        if self._handout is None:
            return None
        name, handout, aliases = self._handout
        if not binding.covers(handout, args, kwargs):
            return None
        parameters = _submitted_parameters(self, name)
        if parameters is None:  # no signature to read (a builtin): the call goes as written
            plan = binding.unchanged(name, args, kwargs)
        else:
            try:
                plan = binding.bind(name, handout, parameters, args, kwargs, aliases)
            except binding.CannotBind as exc:
                label = call_label(self._label, args, kwargs)
                signature = binding.render_signature(self._label, parameters)
                message = MSG_CANNOT_BIND.format(label=label, reason=exc, signature=signature)
                if record:
                    self._channel.bindings.pop(name, None)
                raise errors.SignatureMismatch(message, parameters) from None
        plan = replace(plan, called=call_label(self._label, plan.args, plan.kwargs))
        if record:
            self._channel.bindings[name] = plan
        return plan

    def __iter__(self):
        return iter(self._request(f"list({self._label})", "iter"))

    def __repr__(self) -> str:
        return f"<{self._ref.type_name} {self._label}>"


def _submitted_parameters(remote: Remote, name: str) -> tuple[binding.SubmittedParameter, ...] | None:
    """The parameters of the submitted callable behind ``remote`` (the handout name ``name``), read
    once per worker generation; None when it has no signature to read or the worker's description
    of it is malformed (then calls go as written and the worker's own binding check answers)."""
    channel = remote._channel
    cached = channel.signatures.get(name)
    if cached is not None and cached[0] == channel.generation:
        return cached[1]
    described = remote._request(f"the signature of {remote._label}", "signature")
    try:
        parameters = None if described is None else binding.parse_parameters(described)
    except binding.MalformedParameters:
        parameters = None
    channel.signatures[name] = (channel.generation, parameters)
    return parameters


_PROBE_SOURCES: dict[str, str] = {}


def _probe_source(module: Any) -> str:
    """The source text of a probe module, read once from its file."""
    path = getattr(module, "__file__", None)
    if path not in _PROBE_SOURCES:
        if not path or not Path(path).is_file():
            raise errors.TorchgradeError(f"grader bug: the probe module {module.__name__} has no source file to send")
        _PROBE_SOURCES[path] = Path(path).read_text()
    return _PROBE_SOURCES[path]


def _relabel(value: Any, label: str) -> Any:
    if isinstance(value, Remote):
        object.__setattr__(value, "_label", label)
    return value


class Submission:
    """The grader's view of one submission: names of the interface become :class:`Remote` handles.

    The worker is started, and the submission loaded, by the first request (with process
    isolation, again by the first request after a crash or a timeout).

    Args:
        folder: the submission directory.
        isolation: ``"none"`` (in-process) or ``"process"`` (a worker process).
        interface: public name -> the module the handout puts it in (``{"CNN": "shoes"}``).
        calls: name -> the handout's parameters, for the names whose calls are bound by parameter
            name (:meth:`torchgrade.assignments.Repository.calls`); default: the active repository's.
        aliases: name -> {handout parameter -> other names submissions give it}
            (:meth:`torchgrade.assignments.Repository.call_aliases`); default: the active repository's.
        hidden: with process isolation (required there), the paths the worker must not read, from
            :func:`torchgrade.isolation.sandbox.hidden_paths`.
        explain_missing: rewrites the message of a name the submission lacks, given the name and
            the message (a notebook's submission names the cell that defined it).
    """

    def __init__(
        self,
        folder: str | Path,
        isolation: str,
        interface: dict[str, str],
        *,
        hidden: Sequence[Path] | None = None,
        explain_missing: Callable[[str, str], str] | None = None,
        calls: Mapping[str, Sequence[HandoutParameter]] | None = None,
        aliases: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.isolation = isolation
        self.interface = interface
        if calls is None or aliases is None:
            repository = active()
            calls = repository.calls() if calls is None else calls
            aliases = repository.call_aliases() if aliases is None else aliases
        self.calls = dict(calls)
        self.aliases = dict(aliases)
        self.explain_missing = explain_missing
        started = time.monotonic()
        if isolation == "none":
            backend: Backend = InProcessBackend(self.folder)
        elif isolation == "process":
            if hidden is None:
                raise errors.TorchgradeError(MSG_NO_HIDDEN)
            backend = ProcessBackend(self.folder, hidden)
        else:
            raise errors.TorchgradeError(f"unknown isolation {isolation!r}; choose from 'none', 'process'")
        self.channel = Channel(backend, self.folder)
        self.channel.startup_seconds = time.monotonic() - started  # choosing the sandbox is start-up too
        self._record: SubmissionRecord | None = None

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
        try:
            found = self.channel.request(name, "lookup", name=name, target=preferred)
        except errors.MissingName as exc:
            if self.explain_missing is None:
                raise
            raise errors.MissingName(self.explain_missing(name, str(exc))) from None
        if preferred and found["module"] != preferred:
            self.notes[name] = f"`{name}` was found in {found['module']}.py instead of {preferred}.py"
        for package in found.get("stood_in", ())[:MAX_STAND_INS]:  # the worker's word: names only, checked
            if isinstance(package, str) and package.replace(".", "_").isidentifier() and len(package) <= 100:
                self.notes[f"stood in for {package}"] = NOTE_STOOD_IN.format(package=package)
        remote = _relabel(found["object"], name)
        if isinstance(remote, Remote) and name in self.calls:
            object.__setattr__(remote, "_handout", (name, tuple(self.calls[name]), self.aliases.get(name, {})))
        return remote

    def signature(self, name: str) -> tuple[binding.SubmittedParameter, ...] | None:
        """The parameters of the submitted ``name`` (a class: its constructor, without ``self``), as
        :class:`~torchgrade.engine.binding.SubmittedParameter` records (name, kind, has_default,
        default when plain); None when it has no signature to read.

        Raises:
            MissingName: the submission does not define ``name``.
        """
        remote = self.lookup(name)
        return _submitted_parameters(remote, name) if isinstance(remote, Remote) else None

    def plan_call(self, name: str, /, *args: Any, **kwargs: Any) -> binding.Binding:
        """How ``getattr(self, name)(*args, **kwargs)`` would be bound to the submitted signature, without
        calling it: a grader adjusts its call first (``train_model``: an iteration budget the
        submission cannot receive becomes an epoch budget, ``binding.received("max_iters")``).

        Returns:
            The :class:`~torchgrade.engine.binding.Binding` (``as_written``, ``args``, ``kwargs``,
            ``targets``, ``dropped``, ``renamed``, ``called``, ...); for a name without handout
            parameters, or a call not made of them, the call as written.

        Raises:
            MissingName: the submission does not define ``name``.
            SignatureMismatch: the call cannot be bound; the message says why.
        """
        remote = self.lookup(name)
        plan = remote._plan(args, kwargs, record=False) if isinstance(remote, Remote) else None
        if plan is None:
            plan = replace(binding.unchanged(name, args, kwargs), called=call_label(name, args, kwargs))
        return plan

    def last_binding(self, name: str) -> binding.Binding | None:
        """How the latest call of the handout name ``name`` was bound (see :meth:`plan_call`): what
        reached the submission under which name (``targets``, ``renamed``, ``through_kwargs``), what
        was left out (``dropped``), and the call made (``called``); None before any such call, or
        when the latest one could not be bound."""
        return self.channel.bindings.get(name)

    @property
    def notes(self) -> dict[str, str]:
        """Adaptations made while grading, for the report (see :attr:`Channel.notes`)."""
        return self.channel.notes

    def apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a trusted probe next to the submission's objects: a function of ``torchgrade.probes``, or
        one of an assignment's probe module, a module of its graders that declares
        ``__torchgrade_probes__ = True`` and imports only what the worker has (torch, NumPy, the
        standard library, ``torchgrade.probes``). A probe module holds no expected value or threshold:
        the worker runs next to the student's code, and in process isolation the module's source is
        sent there (once per worker, keyed by its hash) since the worker cannot read the graders.

        Use it where a check needs the objects themselves, not their outputs: autograd through a
        submitted model, a recording model handed to the student's training loop.
        """
        module = sys.modules.get(fn.__module__)
        probe = None
        if not fn.__module__.startswith(APPLY_ALLOWED_PREFIX):
            if module is None or getattr(module, PROBE_FLAG, False) is not True:
                raise errors.TorchgradeError(
                    f"grader bug: {fn.__module__}.{fn.__qualname__} is not a torchgrade probe (a function of "
                    f"torchgrade.probes or of a probe module, which sets {PROBE_FLAG} = True)"
                )
            source = _probe_source(module)
            probe = {"key": probe_key(source), "name": module.__name__, "source": source}
        name = f"{fn.__module__}:{fn.__qualname__}"
        return self.channel.request(
            call_label(fn.__qualname__, args, kwargs), "apply", fn=name, probe=probe, args=list(args), kwargs=kwargs
        )

    def set_cpu_budget(self, seconds: float | None, *, backstop: float | None = None) -> None:
        """Let the calls from now on use ``seconds`` of CPU time in total (None: no budget, each call
        gets :data:`DEFAULT_CALL_TIMEOUT` seconds of wall-clock time).

        CPU time (user and system, every thread, and the worker's children), because a budget
        must measure the submission's work, not the machine's load: beside other work a call takes
        longer in wall-clock time but not in CPU time. A worker process is stopped as soon as
        the budget is spent (read every :data:`~torchgrade.isolation.transport.CPU_POLL_INTERVAL`
        seconds). In-process (``--isolation none``) a call cannot be stopped: its CPU time is
        measured in this process, and a call that overran fails the check once it returns, the same
        verdict; pytest-timeout stops a hung check there.

        ``backstop`` seconds of wall-clock time (default ``BACKSTOP_FACTOR * seconds + BACKSTOP_SLACK``)
        still stop a call that waits without computing (``sleep``, a blocked read). The time to
        (re)start the worker and load the submission is never charged to either.
        """
        if seconds is None:
            self.channel.budget = self.channel.deadline = None
            return
        wall = BACKSTOP_FACTOR * seconds + BACKSTOP_SLACK if backstop is None else backstop
        self.channel.budget = CpuBudget(float(seconds))
        self.channel.deadline = time.monotonic() + wall

    def set_reply_limit(self, size: int | None) -> None:
        """Accept replies of at most ``size`` bytes from now on (None: DEFAULT_REPLY_LIMIT). A check
        whose calls return little sets a low one: a reply far larger than the call justifies fails it
        before the grader reads (and pays memory for) it."""
        self.channel.reply_limit = DEFAULT_REPLY_LIMIT if size is None else int(size)

    def stop_background(self) -> None:
        """Kill the processes the submission left running (process isolation with a pids cgroup)."""
        self.channel.stop_background()

    def seed(self, seed: int) -> None:
        """Seed the global generators (Python, NumPy, torch) where the submission runs."""
        self.channel.request("seeding", "seed", target=int(seed))

    def release(self) -> None:
        """Drop every object the submission side holds for the grader; existing handles go stale."""
        self.channel.release()

    @property
    def startup_seconds(self) -> float:
        """Wall-clock seconds spent so far starting workers and loading the submission into them."""
        return self.channel.startup_seconds

    def close(self) -> SubmissionRecord:
        """Stop the worker and return what the report needs of this submission (again on later calls)."""
        if self._record is None:
            self._record = self.channel.close()
        return self._record
