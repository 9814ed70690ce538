"""The wire protocol between the grader and the worker that runs student code.

Everything that crosses the process boundary is encoded here, in both directions, and decoded
without pickle: a frame is a JSON header followed by raw array buffers. Only plain data can be
encoded -- ``None``, bools, ints, floats, complex numbers, strings, lists, tuples and dicts of
them, numeric torch tensors (dense, or sparse, which travel as COO indices and values) and numpy
arrays. Anything else (a model, an optimizer, a generator) stays in the worker and is referred to
by a :class:`Ref` that carries the object's handle and type name.

The in-process mode round-trips every value through the same codec, so graders see the very same
types and copies in both isolation modes (verdicts must not depend on the mode).

This module imports nothing from the rest of torchgrade: the worker side depends on it alone.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch

#: Largest frame accepted from the other side (header plus buffers).
MAX_FRAME_BYTES = 2 * 1024**3
#: Largest JSON header decoded: arrays travel as raw buffers, so only a reply built to cost the grader
#: memory (tens of millions of numbers as a list) needs more; JSON grows about tenfold as Python objects.
MAX_HEADER_BYTES = 16 * 1024**2
#: Deepest nesting of lists/dicts accepted; deeper values are refused rather than recursed into.
MAX_DEPTH = 32

_DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "bool": (np.dtype(np.bool_), torch.bool),
    "uint8": (np.dtype(np.uint8), torch.uint8),
    "int8": (np.dtype(np.int8), torch.int8),
    "int16": (np.dtype(np.int16), torch.int16),
    "int32": (np.dtype(np.int32), torch.int32),
    "int64": (np.dtype(np.int64), torch.int64),
    "float16": (np.dtype(np.float16), torch.float16),
    "float32": (np.dtype(np.float32), torch.float32),
    "float64": (np.dtype(np.float64), torch.float64),
    "complex64": (np.dtype(np.complex64), torch.complex64),
    "complex128": (np.dtype(np.complex128), torch.complex128),
}
_TORCH_TO_NAME = {t: name for name, (_, t) in _DTYPES.items()}
_NUMPY_TO_NAME = {n: name for name, (n, _) in _DTYPES.items()}


class WireError(ValueError):
    """A value could not be encoded, or a frame did not decode as the protocol says."""


class FrameTooLarge(WireError):
    """A frame announced more bytes than the reader accepts; nothing of it was read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes announced; the limit is {limit}")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class Ref:
    """A reference to an object that lives in the worker (a model, a class, a function...).

    Attributes:
        handle: the worker's id for the object.
        type_name: ``type(obj).__qualname__`` in the worker, for messages.
        callable: whether the object can be called.
    """

    handle: int
    type_name: str
    callable: bool = False


class Request(TypedDict, total=False):
    """A grader-to-worker message. ``op`` picks the operation; the other keys are its arguments."""

    op: str  # "load", "lookup", "getattr", "call", "iter", "apply", "seed", "release", "ping"
    target: Any
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    fn: str


class Reply(TypedDict, total=False):
    """A worker-to-grader message: either ``value`` or ``error`` is set."""

    value: Any
    error: dict[str, Any]  # {"kind", "type", "message", "traceback", ...}


def encode(value: Any, make_ref: Callable[[Any], Ref] | None = None) -> bytes:
    """Encode a value tree into one frame.

    Args:
        value: plain data, tensors, arrays and :class:`Ref` objects.
        make_ref: called for any other object, to keep it on this side and send a reference
            instead (the worker passes its object table here); without it such objects are refused.

    Raises:
        WireError: an object that is not plain data and ``make_ref`` is not given.
    """
    buffers: list[bytes] = []
    header = _to_json(value, buffers, make_ref, 0)
    head = json.dumps({"v": header, "b": [len(b) for b in buffers]}).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(buffers)


def decode(frame: bytes, resolve_ref: Callable[[Ref], Any] | None = None, *, max_header: int = MAX_HEADER_BYTES) -> Any:
    """Decode a frame made by :func:`encode`; tensors and arrays come back as fresh copies.

    Args:
        frame: the bytes of one frame.
        resolve_ref: turns a :class:`Ref` into the object it names (the worker's object table);
            without it references stay :class:`Ref` objects.
        max_header: the largest JSON header decoded.

    Raises:
        WireError: a malformed frame, an unknown dtype, or a size that does not add up.
        FrameTooLarge: a header over ``max_header`` bytes (not decoded).
    """
    if len(frame) < 8 or len(frame) > MAX_FRAME_BYTES:
        raise WireError(f"frame of {len(frame)} bytes is out of bounds")
    (head_len,) = struct.unpack("<Q", frame[:8])
    if 8 + head_len > len(frame):
        raise WireError(f"frame header of {head_len} bytes announced in a frame of {len(frame)}")
    if head_len > max_header:
        raise FrameTooLarge(head_len, max_header)
    try:
        head = json.loads(frame[8 : 8 + head_len])
    except (ValueError, RecursionError) as exc:
        raise WireError(f"frame header is not JSON: {exc}") from None
    if not isinstance(head, dict) or "v" not in head or not isinstance(head.get("b", []), list):
        raise WireError("frame header must be an object with a value 'v' and buffer sizes 'b'")
    offsets, pos = [], 8 + head_len
    for size in head.get("b", []):
        if not isinstance(size, int) or size < 0:
            raise WireError(f"bad buffer size {size!r}")
        offsets.append((pos, pos + size))
        pos += size
    if pos != len(frame):
        raise WireError("frame buffers do not add up to the frame length")
    views = [memoryview(frame)[a:b] for a, b in offsets]
    try:
        return _from_json(head["v"], views, resolve_ref, 0)
    except WireError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, RecursionError) as exc:
        # A hostile or broken peer can send any JSON: every malformation is a WireError.
        raise WireError(f"malformed value in frame: {type(exc).__name__}: {exc}") from None


def _check_room(buffers: list[bytes], size: int) -> None:
    """Refuse a buffer that would take the frame over MAX_FRAME_BYTES before it is copied (a 2.5 GiB
    tensor is refused at once, not after filling the worker's memory with copies)."""
    total = sum(len(b) for b in buffers) + size
    if total > MAX_FRAME_BYTES:
        raise WireError(
            f"the value holds {total / 2**30:.1f} GiB of arrays; at most {MAX_FRAME_BYTES / 2**30:g} GiB can be graded"
        )


def _plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A tensor subclass (a ``Parameter``, or a submission's tensor whose comparisons or ``shape``
    lie) as a plain tensor over the same memory: none of the subclass's code runs while it is sent."""
    with torch._C.DisableTorchFunctionSubclass():
        return torch.Tensor.as_subclass(value, torch.Tensor)


def _to_json(value: Any, buffers: list[bytes], make_ref, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.dtype in _NUMPY_TO_NAME:  # before float: np.float64 is a float
        return {"scalar": _NUMPY_TO_NAME[value.dtype], "value": _to_json(value.item(), buffers, make_ref, depth + 1)}
    if isinstance(value, int):
        return {"int": str(value)} if abs(value) >= 2**53 else value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"float": repr(value)}
    if isinstance(value, complex):
        return {
            "complex": [
                _to_json(value.real, buffers, make_ref, depth + 1),
                _to_json(value.imag, buffers, make_ref, depth + 1),
            ]
        }
    if isinstance(value, torch.Tensor) and type(value) is not torch.Tensor:
        value = _plain_tensor(value)
    if isinstance(value, torch.Tensor) and value.layout == torch.strided and value.dtype in _TORCH_TO_NAME:
        data = value.detach().to("cpu").contiguous()
        _check_room(buffers, data.numel() * data.element_size())
        buffers.append(data.numpy().tobytes())
        return {
            "tensor": _TORCH_TO_NAME[data.dtype],
            "shape": list(data.shape),
            "buf": len(buffers) - 1,
            "requires_grad": bool(value.requires_grad),
        }
    if isinstance(value, torch.Tensor) and value.layout != torch.strided and value.dtype in _TORCH_TO_NAME:
        # Graph adjacencies: sparse tensors of any layout travel as coalesced COO indices and values.
        coo = value.detach().to("cpu").to_sparse_coo().coalesce()
        return {
            "sparse": _TORCH_TO_NAME[coo.dtype],
            "shape": list(coo.shape),
            "indices": _to_json(coo.indices(), buffers, make_ref, depth + 1),
            "values": _to_json(coo.values(), buffers, make_ref, depth + 1),
        }
    if isinstance(value, np.ndarray) and value.dtype in _NUMPY_TO_NAME:
        _check_room(buffers, value.nbytes)
        buffers.append(np.ascontiguousarray(value).tobytes())
        return {"ndarray": _NUMPY_TO_NAME[value.dtype], "shape": list(value.shape), "buf": len(buffers) - 1}
    if isinstance(value, Ref):
        return {"ref": value.handle, "type": value.type_name, "callable": value.callable}
    if type(value) in (list, tuple):
        items = [_to_json(v, buffers, make_ref, depth + 1) for v in value]
        return items if type(value) is list else {"tuple": items}
    if type(value) is dict:
        if all(type(k) is str for k in value):
            return {"dict": {k: _to_json(v, buffers, make_ref, depth + 1) for k, v in value.items()}}
        return {
            "items": [
                [_to_json(k, buffers, make_ref, depth + 1), _to_json(v, buffers, make_ref, depth + 1)]
                for k, v in value.items()
            ]
        }
    if make_ref is None:
        raise WireError(f"cannot send a {type(value).__qualname__} across the process boundary")
    return _to_json(make_ref(value), buffers, make_ref, depth + 1)


def _from_json(node: Any, views: list[memoryview], resolve_ref, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_from_json(v, views, resolve_ref, depth + 1) for v in node]
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError(f"unexpected node {node!r:.80}")
    if "tuple" in node:
        return tuple(_from_json(v, views, resolve_ref, depth + 1) for v in node["tuple"])
    if "dict" in node:
        return {k: _from_json(v, views, resolve_ref, depth + 1) for k, v in node["dict"].items()}
    if "items" in node:
        return {
            _from_json(k, views, resolve_ref, depth + 1): _from_json(v, views, resolve_ref, depth + 1)
            for k, v in node["items"]
        }
    if "int" in node:
        return int(node["int"])
    if "float" in node:
        return float(node["float"])
    if "complex" in node:
        real, imag = (_from_json(v, views, resolve_ref, depth + 1) for v in node["complex"])
        if not isinstance(real, float) or not isinstance(imag, float):
            raise WireError("a complex number needs a real and an imaginary float")
        return complex(real, imag)
    if "scalar" in node:
        np_dtype = _dtype(node["scalar"])[0]
        return np_dtype.type(_from_json(node["value"], views, resolve_ref, depth + 1))
    if "tensor" in node or "ndarray" in node:
        kind = "tensor" if "tensor" in node else "ndarray"
        np_dtype = _dtype(node[kind])[0]
        shape = tuple(int(s) for s in node["shape"])
        buf = views[int(node["buf"])]
        if buf.nbytes != int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize:
            raise WireError(f"{kind} of shape {list(shape)} does not match its {buf.nbytes}-byte buffer")
        array = np.frombuffer(buf, dtype=np_dtype).reshape(shape).copy()
        if kind == "ndarray":
            return array
        tensor = torch.from_numpy(array)
        return tensor.requires_grad_(True) if node.get("requires_grad") and tensor.is_floating_point() else tensor
    if "sparse" in node:
        return _sparse_from_json(node, views, resolve_ref, depth)
    if "ref" in node:
        ref = Ref(int(node["ref"]), str(node["type"]), bool(node["callable"]))
        return resolve_ref(ref) if resolve_ref is not None else ref
    raise WireError(f"unknown node kind {sorted(node)}")


def _sparse_from_json(node: dict, views: list[memoryview], resolve_ref, depth: int) -> torch.Tensor:
    shape = [int(s) for s in node["shape"]]
    indices = _from_json(node["indices"], views, resolve_ref, depth + 1)
    values = _from_json(node["values"], views, resolve_ref, depth + 1)
    if not (isinstance(indices, torch.Tensor) and isinstance(values, torch.Tensor)):
        raise WireError("sparse tensor without index and value tensors")
    if (
        indices.dtype != torch.int64
        or indices.dim() != 2
        or indices.shape[0] != len(shape)
        or values.dtype != _dtype(node["sparse"])[1]
        or values.shape != (indices.shape[1],)
    ):
        raise WireError(
            f"sparse tensor of shape {shape}: indices {list(indices.shape)} and values {list(values.shape)} do not fit"
        )
    if indices.numel() and (
        bool((indices < 0).any()) or bool((indices >= torch.tensor(shape, dtype=torch.int64)[:, None]).any())
    ):
        raise WireError(f"sparse tensor of shape {shape} has indices out of bounds")
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()


def _dtype(name: str) -> tuple[np.dtype, torch.dtype]:
    try:
        return _DTYPES[name]
    except KeyError:
        raise WireError(f"dtype {name!r} is not allowed; allowed: {sorted(_DTYPES)}") from None


def write_frame(fd: int, frame: bytes) -> None:
    """Write one length-prefixed frame to a file descriptor."""

    data = memoryview(struct.pack("<Q", len(frame)) + frame)
    while data:
        data = data[os.write(fd, data) :]


def read_frame(fd: int, limit: int = MAX_FRAME_BYTES, deadline: float | None = None) -> bytes:
    """Read one length-prefixed frame from a file descriptor.

    Args:
        fd: a pipe's reading end.
        limit: the largest frame accepted.
        deadline: ``time.monotonic()`` by which the whole frame must have arrived (None: wait).

    Raises:
        EOFError: the other side closed the pipe (for the grader: the worker died).
        FrameTooLarge: the announced length is over ``limit``; none of the frame was read.
        TimeoutError: the deadline passed before the whole frame arrived.
    """
    (size,) = struct.unpack("<Q", _read_exact(fd, 8, deadline))
    if size > limit:
        raise FrameTooLarge(size, limit)
    return _read_exact(fd, size, deadline)


def _read_exact(fd: int, size: int, deadline: float | None = None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"{size - remaining} of {size} bytes arrived in time")
        chunk = os.read(fd, min(remaining, 1 << 24))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
