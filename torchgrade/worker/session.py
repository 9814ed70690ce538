"""The worker session: executes the grader's requests next to the submission's objects.

:mod:`torchgrade.worker.__main__` serves it over two pipes in a worker process (``--isolation
process``); :class:`torchgrade.isolation.transport.InProcessBackend` calls it in the grader's own
process (``--isolation none``). Both modes execute exactly the same code and return the same plain
values.

Objects that are not plain data (a model, a class, a generator) stay here in an object table and
travel as :class:`torchgrade.wire.Ref` handles. Trusted probes from ``torchgrade.probes`` (for
example the receptive-field probe, which needs autograd on the student's model) can be applied to
those objects with the ``apply`` request, and so can the probes of an assignment's own probe module
(a module of its graders that declares ``__torchgrade_probes__ = True``, see :data:`PROBE_FLAG`):
the worker cannot read the assignment's folder, so the grader side sends that module's source once
per worker, keyed by its hash, and the worker executes it as a module of its own under a private
name (:data:`PROBE_MODULE_PREFIX`); in-process the grader's own module is called directly. Nothing
else can be imported or executed on the grader's behalf, and replies stay plain data.

This module imports nothing from the grader side: only :mod:`torchgrade.wire`, the worker's own
modules (:mod:`~torchgrade.worker.loader`, :mod:`~torchgrade.worker.tracebacks`) and, when an
``apply`` request names one, a module of :mod:`torchgrade.probes` or a probe module sent with it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import itertools
import random
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchgrade import wire
from torchgrade.worker.loader import LoadedSubmission
from torchgrade.worker.seal import Seal
from torchgrade.worker.tracebacks import exception_message, format_student_exception

#: Only functions and classes in these modules may be run through an ``apply`` request.
APPLY_ALLOWED_PREFIX = "torchgrade.probes."
#: What an assignment's probe module sets to True at its top level: only such a module of the graders
#: may be sent to the worker for ``apply`` (:meth:`torchgrade.engine.proxy.Submission.apply`).
PROBE_FLAG = "__torchgrade_probes__"
#: The name under which the worker registers a probe module it was sent (followed by its key).
PROBE_MODULE_PREFIX = "_torchgrade_probe_"


def probe_key(source: str) -> str:
    """The key of a probe module's source: the worker keeps each source it executed under it."""
    return hashlib.sha256(source.encode()).hexdigest()[:24]


class WorkerSession:
    """Executes grader requests against one submission and keeps its objects alive.

    Args:
        isolated: this is a worker process of its own. A ``KeyboardInterrupt`` can then only come
            from student code (the grader's Ctrl-C never reaches a worker, which runs in a session
            of its own) and is the student's error like any other; in-process it must reach pytest.
    """

    def __init__(self, isolated: bool = False) -> None:
        self.isolated = isolated
        self.submission: LoadedSubmission | None = None
        self.seal: Seal | None = None
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}
        self._handles = itertools.count(1)  # never reused, even after a release
        self.probe_modules: dict[str, types.ModuleType] = {}  # key -> module (see op_apply)

    # -- the object table ------------------------------------------------------------------
    def make_ref(self, obj: Any) -> wire.Ref:
        handle = self._ids.get(id(obj))
        if handle is None or self.objects.get(handle) is not obj:
            handle = next(self._handles)
            self.objects[handle] = obj
            self._ids[id(obj)] = handle
        return wire.Ref(handle, type(obj).__qualname__, callable(obj))

    def resolve(self, ref: wire.Ref) -> Any:
        if ref.handle not in self.objects:
            raise LookupError(f"unknown handle {ref.handle} ({ref.type_name})")
        return self.objects[ref.handle]

    # -- the request loop --------------------------------------------------------------------
    def handle(self, frame: bytes) -> bytes:
        """Decode one request, execute it, and encode the reply, which carries the request's sequence
        number back (never raises)."""
        sequence = None
        try:
            request = wire.decode(frame, self.resolve)
            sequence = request.get("seq")
            # Warnings in student code are theirs, not errors: the grader's own warning filters
            # (pytest's -W error, in-process) must not change a verdict between isolation modes.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reply: wire.Reply = {"value": getattr(self, "op_" + request["op"])(request)}
        except _Refused as exc:
            reply = {"error": exc.error}
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, SystemExit too
            if not self.isolated and (isinstance(exc, KeyboardInterrupt) or type(exc).__module__.startswith("_pytest")):
                raise  # in-process mode: a Ctrl-C or pytest-timeout's failure must reach pytest
            reply = {"error": self._student_error(exc)}
        try:
            return wire.encode({**reply, "seq": sequence}, self.make_ref)
        except wire.WireError as exc:
            error = {"kind": "unencodable", "type": "WireError", "message": str(exc)}
            return wire.encode({"error": error, "seq": sequence})

    def _student_error(self, exc: BaseException) -> dict[str, Any]:
        folder = self.submission.folder if self.submission else Path(".")
        return {
            "kind": "exception",
            "type": type(exc).__name__,
            "message": _exc_message(exc),
            "traceback": format_student_exception(exc, folder),
        }

    # -- operations ----------------------------------------------------------------------------
    def op_ping(self, request: wire.Request) -> str:
        return "pong"

    def op_load(self, request: wire.Request) -> dict[str, Any]:
        if self.seal is None:  # before any of the submission's code runs
            self.seal = Seal()
        self.submission = LoadedSubmission(request["target"], left_out=request.get("left_out") or None)
        return {"folder": str(self.submission.folder), "modules": self.submission.module_names}

    def op_lookup(self, request: wire.Request) -> dict[str, Any]:
        if self.submission is None:
            raise _Refused("harness", "no submission loaded")
        try:
            obj, module = self.submission.find(request["name"], request.get("target"))
        except LookupError as exc:
            raise _Refused("missing", str(exc)) from None
        # plain values (constants) come back as values; stood_in: missing packages the loader stood in for
        return {"object": obj, "module": module, "stood_in": self.submission.stood_in}

    def op_getattr(self, request: wire.Request) -> Any:
        return getattr(request["target"], request["name"])

    def op_call(self, request: wire.Request) -> Any:
        target, args, kwargs = request["target"], request.get("args", []), request.get("kwargs", {})
        _check_signature(target, args, kwargs)
        return target(*args, **kwargs)

    def op_signature(self, request: wire.Request) -> list[dict[str, Any]] | None:
        """The target's parameters as plain data (see :func:`describe_parameters`)."""
        return describe_parameters(request["target"])

    def op_iter(self, request: wire.Request) -> list[Any]:
        return list(request["target"])

    def op_apply(self, request: wire.Request) -> Any:
        module_name, _, attr = request["fn"].partition(":")
        if request.get("probe") is not None:
            module = self._probe_module(request["probe"])
        elif module_name.startswith(APPLY_ALLOWED_PREFIX):
            module = importlib.import_module(module_name)
        else:
            raise _Refused("harness", f"{request['fn']} is not a torchgrade probe")
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part)
        self._verify_seal(request["fn"])
        value = fn(*request.get("args", []), **request.get("kwargs", {}))
        self._verify_seal(request["fn"])  # what the probe measured is void if the submission patched it meanwhile
        return value

    def _probe_module(self, probe: dict[str, Any]) -> types.ModuleType:
        """The probe module an ``apply`` request names: ``probe = {"key", "name", "source"}``, the
        source (None once this worker has it) and its key, and the grader's name for it. In-process
        the grader's own module is used as it is, if it declares :data:`PROBE_FLAG`."""
        key, name, source = str(probe["key"]), str(probe["name"]), probe.get("source")
        module = self.probe_modules.get(key)
        if module is None and not self.isolated:
            shared = sys.modules.get(name)
            if shared is not None and getattr(shared, PROBE_FLAG, False) is True:
                module = shared
        if module is None:
            if not isinstance(source, str):
                raise _Refused("harness", f"the probe module {name} was never sent to this worker")
            if probe_key(source) != key:
                raise _Refused("harness", f"the source of the probe module {name} does not match its key")
            module = types.ModuleType(PROBE_MODULE_PREFIX + key)
            module.__file__ = f"<probe module {name}>"
            sys.modules[module.__name__] = module  # classes, dataclasses and pickling find their module
            try:
                exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the grader's probes
            except Exception as exc:  # a grader bug (an import the worker lacks), not the student's
                del sys.modules[module.__name__]
                raise _Refused("harness", f"the probe module {name} failed to load: {_exc_message(exc)}") from None
            if getattr(module, PROBE_FLAG, False) is not True:
                del sys.modules[module.__name__]
                raise _Refused("harness", f"{name} does not declare {PROBE_FLAG} = True: it is no probe module")
        if key not in self.probe_modules and self.seal is not None and module.__name__.startswith(PROBE_MODULE_PREFIX):
            self.seal.add_probe_module(name, module)
        self.probe_modules[key] = module
        return module

    def _verify_seal(self, probe: str) -> None:
        broken = self.seal.broken(probe) if self.seal is not None else []
        if broken:
            shown = ", ".join(broken[:5]) + (f" and {len(broken) - 5} more" if len(broken) > 5 else "")
            raise _Refused(
                "tampered",
                f"the submission replaced {shown}, which the grader's measurement relies on; nothing it "
                f"measures can be trusted next to that code. Remove the code that assigns to these names.",
            )

    def op_seed(self, request: wire.Request) -> None:
        seed_everything(int(request["target"]))

    def op_release(self, request: wire.Request) -> None:
        self.objects.clear()
        self._ids.clear()


class _Refused(Exception):
    """A request the worker refuses for a reason that is not an exception in student code."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.error = {"kind": kind, "type": kind, "message": message, **extra}


def _check_signature(target: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse a call whose arguments do not bind to the target's signature, before running it.

    A ``TypeError`` raised by the call itself could come from deep inside student code; binding
    first tells a wrong signature apart from a bug in the body.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(target, "__qualname__", type(target).__qualname__)
        raise _Refused(
            "signature", str(exc), signature=f"{name}{signature}", parameters=describe_parameters(target)
        ) from None


#: inspect's parameter kinds as the grader side names them (torchgrade.engine.binding.KINDS).
_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
#: At most this many parameters are described, and defaults that are strings up to this length.
_MAX_PARAMETERS, _MAX_DEFAULT_TEXT = 256, 200


def describe_parameters(target: Any) -> list[dict[str, Any]] | None:
    """The parameters of a callable (a class: its constructor, without ``self``) as plain data, for
    the grader to bind its calls by name: per parameter ``name``, ``kind`` (``positional_only``,
    ``positional_or_keyword``, ``var_positional``, ``keyword_only``, ``var_keyword``),
    ``has_default`` and, when the default is a plain value (None, a bool, an int, a finite float, a
    short string), ``default``. None when there is no signature to read (a builtin, a signature that
    raises) or it has more than 256 parameters.
    """
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except Exception:  # noqa: BLE001 - a submission's __signature__ or __init__ attribute may raise anything
        return None
    if len(parameters) > _MAX_PARAMETERS:
        return None
    described = []
    for p in parameters:
        item: dict[str, Any] = {"name": p.name, "kind": _KINDS[p.kind], "has_default": p.default is not p.empty}
        default = p.default
        if item["has_default"] and (
            default is None
            or type(default) in (bool, int)
            or (type(default) is float and np.isfinite(default))
            or (type(default) is str and len(default) <= _MAX_DEFAULT_TEXT)
        ):
            item["default"] = default
        described.append(item)
    return described


#: The seeding functions as they were before any submission loaded: a submission that replaces
#: ``torch.manual_seed`` or ``random.seed`` does not stop the grader from seeding.
_SEEDERS = (random.seed, np.random.seed, torch.manual_seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    python_seed, numpy_seed, torch_seed = _SEEDERS
    python_seed(seed)
    numpy_seed(seed % 2**32)
    torch_seed(seed)


def _exc_message(exc: BaseException) -> str:
    """The student exception's text for the grader: no escape codes, at most 2,000 characters."""
    return exception_message(exc)
