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
#: The longest rendering of one value in a message; arrays are summarised, never printed whole (a
#: message holding an array's repr once ran to 74,589 characters).
MAX_VALUE_CHARS = 200
#: How many of an array's first values a summary shows.
FIRST_VALUES = 4
MSG_NOT_CLOSE = (
    "{who}: {count} of {total} values differ from the expected ones; greatest absolute difference "
    "{abs_diff:.3g} at index {where} (got {got:.6g}, expected {expected:.6g}); tolerance atol={atol:g}, "
    "rtol={rtol:g}."
)


def describe_value(value: Any) -> str:
    """What a returned value is, in a few words: ``a list of 3 item(s)``, ``a tensor[2, 3] of float32
    (min ..., first values ...)`` (see :func:`summarise`), ``a str``."""
    proxy = sys.modules.get("torchgrade.engine.proxy")  # loaded wherever a handle on a submitted object can exist
    if proxy is not None and isinstance(value, proxy.Remote):
        return f"a {value._ref.type_name} (an object that is not a number, tensor or array)"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return ("an " if isinstance(value, np.ndarray) else "a ") + summarise(value)
    return f"a {type(value).__name__}" if value is not None else "None"


def summarise(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A rendering of any value for a message, at most ``limit`` characters (and a note of what was
    cut): tensors and arrays as their shape, dtype, range, mean and first values, e.g. ``tensor[2, 3]
    of float32 (min -1, max 2, mean 0.5; first values 0, 1, 2, -1, ...)``; long lists of numbers
    likewise; anything else as its ``repr``, cut.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        tensor = tensor.to(torch.complex128 if tensor.is_complex() else torch.float64)
        text = _summarise_array(tensor.numpy(), "tensor", str(value.dtype).removeprefix("torch."))
    elif isinstance(value, np.ndarray):
        text = _summarise_array(value, "array", str(value.dtype))
    elif isinstance(value, (list, tuple)) and len(value) > FIRST_VALUES and _all_numbers(value):
        text = _summarise_array(np.asarray(value, dtype=np.float64), type(value).__name__, "numbers")
    else:
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001 - a submitted object's __repr__ may raise anything
            text = f"<a {type(value).__name__} whose repr raised {type(exc).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were cut."""
    return text if len(text) <= limit else f"{text[:limit]} [... {len(text) - limit:,} characters cut]"


def _all_numbers(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)


def _summarise_array(array: np.ndarray, kind: str, dtype: str) -> str:
    shape = shape_text(array.shape)
    if array.dtype.kind not in "biuf":  # complex numbers, strings, objects: the first items as they are
        items = array.ravel()[:FIRST_VALUES].tolist()
        shown = [repr(v) if len(repr(v)) <= 20 else repr(v)[:17] + "..." for v in items]
        first = ", ".join(shown) + (", ..." if array.size > FIRST_VALUES else "")
        return f"{kind}{shape} of {dtype} (first values {first})" if array.size else f"{kind}{shape} of {dtype} (empty)"
    numbers = array.astype(np.float64).ravel()
    if numbers.size == 0:
        return f"{kind}{shape} of {dtype} (empty)"
    first = ", ".join(f"{v:.4g}" for v in numbers[:FIRST_VALUES]) + (", ..." if numbers.size > FIRST_VALUES else "")
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return f"{kind}{shape} of {dtype} (no finite value; first values {first})"
    with np.errstate(all="ignore"):  # the mean of huge values overflows to inf: say so, never warn
        stats = f"min {finite.min():.4g}, max {finite.max():.4g}, mean {finite.mean():.4g}"
    if finite.size < numbers.size:
        stats += f", {numbers.size - finite.size} non-finite"
    return f"{kind}{shape} of {dtype} ({stats}; first values {first})"


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
        got = cut(str(sorted(value, key=str))) if isinstance(value, dict) else describe_value(value)
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
