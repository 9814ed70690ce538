"""Type, shape, finiteness and closeness checks with messages a student can act on (grader side).

Each function raises :class:`~torchgrade.errors.CheckFailure` naming the subject (``who``), what
was expected and what was observed, and returns the value as a float64 numpy array on success so
the caller can go on comparing. Order matters: type, then shape, then finiteness, then closeness
(``allclose`` broadcasts silently and is False on NaN, which would hide the real problem).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchgrade.errors import CheckFailure

MSG_MISSING_KEY = "{who} returned {got}; expected a dict with the key '{key}'."
MSG_NOT_ARRAY = "{who} returned {got}; expected a tensor or array{shape_hint}."
MSG_SHAPE = "{who} returned shape {got}; expected {expected}."
MSG_NOT_FINITE = "{who} returned {count} non-finite value(s) (NaN or inf), first at index {where}."
MSG_NOT_CLOSE = (
    "{who}: {count} of {total} values differ from the expected ones; greatest absolute difference "
    "{abs_diff:.3g} at index {where} (got {got:.6g}, expected {expected:.6g}); tolerance atol={atol:g}, "
    "rtol={rtol:g}."
)


def describe_value(value: Any) -> str:
    proxy = sys.modules.get("torchgrade.engine.proxy")  # loaded wherever a handle on a submitted object can exist
    if proxy is not None and isinstance(value, proxy.Remote):
        return f"a {value._ref.type_name} (an object that is not a number, tensor or array)"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return f"a {type(value).__name__}" if value is not None else "None"


def as_array(value: Any, who: str, *, shape_hint: str = "", allow_sequences: bool = False) -> np.ndarray:
    """Convert a returned tensor/array (or, if allowed, a list of numbers) to float64 numpy.

    Raises:
        CheckFailure: for any other type.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64).numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.astype(np.float64)
    if allow_sequences and isinstance(value, (list, tuple, int, float, np.number)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            pass
        else:
            return array
    hint = f" of shape {shape_hint}" if shape_hint else ""
    raise CheckFailure(MSG_NOT_ARRAY.format(who=who, got=describe_value(value), shape_hint=hint))


def check_key(value: Any, key: str, who: str) -> Any:
    """The item ``key`` of a returned dict (e.g. ``{"z": ..., "loss": ...}`` of a hand computation).

    Raises:
        CheckFailure: when ``value`` is not a dict or lacks ``key``; the message lists the keys it has.
    """
    if not isinstance(value, dict) or key not in value:
        got = sorted(value, key=str) if isinstance(value, dict) else describe_value(value)
        raise CheckFailure(MSG_MISSING_KEY.format(who=who, got=got, key=key))
    return value[key]


def shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_shape(value: Any, expected: Sequence[int | None], who: str, *, allow_sequences: bool = False) -> np.ndarray:
    """Check the type and shape of a returned value (``None`` in ``expected`` matches any size).

    Returns:
        The value as a float64 numpy array.
    """
    array = as_array(value, who, shape_hint=shape_text(expected), allow_sequences=allow_sequences)
    got = array.shape
    if len(got) != len(expected) or any(e is not None and g != e for g, e in zip(got, expected, strict=False)):
        raise CheckFailure(
            MSG_SHAPE.format(
                who=who, got=shape_text(got), expected=shape_text(["*" if e is None else e for e in expected])
            )
        )
    return array


def check_finite(array: np.ndarray, who: str) -> np.ndarray:
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CheckFailure(MSG_NOT_FINITE.format(who=who, count=int(bad.sum()), where=list(where)))
    return array


def check_close(
    value: Any, expected: Any, who: str, *, atol: float = 1e-6, rtol: float = 1e-5, allow_sequences: bool = True
) -> np.ndarray:
    """Check a returned value against the expected one: type, shape, finiteness, then closeness.

    The message follows ``torch.testing.assert_close``: how many values differ, the greatest
    absolute difference, where, and the tolerances.
    """
    expected_array = np.asarray(expected, dtype=np.float64)
    array = check_shape(value, expected_array.shape, who, allow_sequences=allow_sequences)
    check_finite(array, who)
    diff = np.abs(array - expected_array)
    bad = diff > atol + rtol * np.abs(expected_array)
    if bad.any():
        index = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape) if diff.ndim else ()
        raise CheckFailure(
            MSG_NOT_CLOSE.format(
                who=who,
                count=int(bad.sum()),
                total=int(bad.size),
                abs_diff=float(diff[index]),
                where=[int(i) for i in index],
                got=float(array[index]),
                expected=float(expected_array[index]),
                atol=atol,
                rtol=rtol,
            )
        )
    return array
