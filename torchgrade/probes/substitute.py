"""Probes that lend a submission the grader's correct version of one of its units.

One bug costs one deduction: a check that grades one unit (a training loop, a model) but runs through
another unit of the submission (the pair builder it calls, the layer it stacks) swaps in a correct
version of that other unit when the submission's own failed its check, so the first bug is not paid
for twice. Both swaps here are plain data or trusted code:

* :class:`Replay` stands for a function whose correct outputs the grader computed on the inputs it is
  about to send (e.g. the pairs built from its own training data): it answers those inputs with the
  grader's values and passes any other input to the submission's function (counted in ``misses``).
* :func:`swap` makes a name that the submission's code reads as a global (``generate_same_pair``
  inside ``train_model``, ``GraphAttentionLayer`` inside ``GAT``) refer to another object, and returns
  what it referred to, so the grader can put it back.

This module imports only numpy, torch and the standard library.
"""

from __future__ import annotations

import hashlib
import sys
import types
from typing import Any

import numpy as np
import torch

MSG_NO_GLOBALS = "cannot swap {name!r}: {user!r} is not a function, method or class of the submission"


def fingerprint(value: Any) -> str | None:
    """A key of an array argument (numpy array or tensor): its shape and float32 bytes; None otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.dtype == object:
        return None
    data = np.ascontiguousarray(value, dtype=np.float32)
    return f"{data.shape}:{hashlib.sha256(data.tobytes()).hexdigest()}"


class Replay:
    """A callable standing for a submission's function of one array: the grader's answers for the
    arrays it precomputed, the submission's own function for any other call.

    Args:
        known: ``(input, output)`` pairs computed by the grader; an input is matched by
            :func:`fingerprint` of the call's first argument.
        fallback: the submission's function, called (and counted in ``misses``) for inputs the
            grader did not foresee; None raises ``LookupError`` for them instead.

    Attributes:
        hits: calls answered with the grader's values.
        misses: calls passed to ``fallback``.
    """

    def __init__(self, known: list[tuple[Any, Any]], fallback: Any = None) -> None:
        self._known = {fingerprint(given): np.array(result, copy=True) for given, result in known}
        self._fallback = fallback
        self.hits = 0
        self.misses = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else next(iter(kwargs.values()), None)
        key = fingerprint(first)
        if key is not None and key in self._known:
            self.hits += 1
            return self._known[key].copy()  # a caller that edits its result in place edits a copy
        if self._fallback is None:
            raise LookupError("the grader has no answer for this input")
        self.misses += 1
        return self._fallback(*args, **kwargs)

    def counts(self) -> dict[str, int]:
        """``{"hits": ..., "misses": ...}`` as plain data for the grader."""
        return {"hits": self.hits, "misses": self.misses}


def _globals_of(user: Any, name: str) -> dict[str, Any]:
    """The global namespace in which ``user``'s code looks names up."""
    if isinstance(user, types.MethodType):
        user = user.__func__
    if isinstance(user, types.FunctionType):
        return user.__globals__
    if isinstance(user, type):
        module = sys.modules.get(user.__module__)
        if module is not None:
            return vars(module)
    if isinstance(user, torch.nn.Module):
        module = sys.modules.get(type(user).__module__)
        if module is not None:
            return vars(module)
    raise TypeError(MSG_NO_GLOBALS.format(name=name, user=user))


def swap(user: Any, name: str, replacement: Any) -> Any:
    """Make the global ``name`` that ``user``'s code reads refer to ``replacement``.

    Args:
        user: a function, method, class or model of the submission whose code reads ``name``.
        name: the global it reads (``"generate_same_pair"``).
        replacement: what it reads from now on.

    Returns:
        What ``name`` referred to before (None if it was not defined): pass it back to
        :func:`swap` to restore the submission's own.
    """
    namespace = _globals_of(user, name)
    previous = namespace.get(name)
    namespace[name] = replacement
    return previous
