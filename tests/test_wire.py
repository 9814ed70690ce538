"""Tests of torchgrade.wire: the codec between the grader and the worker (no pickle, strict decoding)."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import warnings

import numpy as np
import pytest
import torch

from torchgrade import wire
from torchgrade.wire import MAX_DEPTH, MAX_FRAME_BYTES, Ref, WireError

ALLOWED_DTYPES = [
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


def roundtrip(value, **kwargs):
    return wire.decode(wire.encode(value), **kwargs)


def raw_frame(header, buffers: bytes = b"") -> bytes:
    """A frame built by hand, as a misbehaving peer could send it."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + buffers


def nested_lists(depth: int) -> list:
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


def sample_array(name: str) -> np.ndarray:
    dtype = np.dtype(name)
    if dtype == np.bool_:
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind == "f":
        return np.array([[0.5, -1.25, np.inf], [-np.inf, 3.0, 1e-3]], dtype=dtype)
    if dtype.kind == "c":  # the DFT matrices of the graph maths
        return np.array([[0.5 + 1j, -1.25j, np.inf], [1 - 2j, 3.0, 1e-3 + 2e-3j]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)


# -- plain values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**53 - 1,
        2**53,
        -(2**53),
        2**64 + 3,
        -(10**30),
        10**400,
        0.0,
        -0.0,
        1.5,
        -2.25e-300,
        1.7976931348623157e308,
        complex(1.5, -2.0),
        "",
        'héllo\n"quoted"\x00',
        [],
        [1, [2, [3, "x"]]],
        (),
        (1, (2.5, None)),
        {},
        {"a": 1, "b": [1, 2], "c": {"d": (3,)}},
        {1: "one", 2.5: "float", None: "none", (1, 2): "tuple", False: "bool"},
        {"mixed": {3: [{"x": ()}]}},
    ],
    ids=lambda v: repr(v)[:30],
)
def test_plain_values_roundtrip_with_their_types(value) -> None:
    decoded = roundtrip(value)
    assert decoded == value
    assert repr(decoded) == repr(value)  # same types all the way down: tuples stay tuples, -0.0 stays -0.0


def test_big_ints_are_exact_not_floats() -> None:
    value = 2**53 + 1  # not representable as a float64
    decoded = roundtrip(value)
    assert type(decoded) is int and decoded == value
    assert roundtrip([-(2**70) - 1]) == [-(2**70) - 1]


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinities_roundtrip(value: float) -> None:
    assert roundtrip(value) == value
    assert roundtrip({"x": [value]}) == {"x": [value]}


def test_nan_roundtrips() -> None:
    decoded = roundtrip([math.nan, {"k": math.nan}])
    assert math.isnan(decoded[0]) and math.isnan(decoded[1]["k"])


def test_frames_are_strict_json() -> None:
    # nan/inf are encoded as tagged strings, never as the NaN/Infinity extensions of Python's json.
    frame = wire.encode([math.nan, math.inf, 2**60])
    (head_len,) = struct.unpack("<Q", frame[:8])
    json.loads(frame[8 : 8 + head_len], parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))


# -- numpy scalars, arrays and tensors --------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in ALLOWED_DTYPES if n != "float64"])
def test_numpy_scalars_keep_their_dtype(name: str) -> None:
    value = np.dtype(name).type(1)
    decoded = roundtrip(value)
    assert type(decoded) is type(value) and decoded == value


def test_numpy_scalar_values_are_exact() -> None:
    assert roundtrip(np.int64(2**62 + 1)) == 2**62 + 1
    assert np.isnan(roundtrip(np.float32("nan")))
    assert roundtrip(np.float16("-inf")) == -np.inf
    assert roundtrip(np.float64(0.1)) == 0.1


def test_numpy_float64_scalar_keeps_its_type() -> None:
    assert type(roundtrip(np.float64(1.5))) is np.float64


@pytest.mark.parametrize("name", ALLOWED_DTYPES)
def test_numpy_arrays_roundtrip(name: str) -> None:
    array = sample_array(name)
    decoded = roundtrip(array)
    assert type(decoded) is np.ndarray
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable and decoded.flags.owndata  # a fresh, writable copy
    decoded[0, 0] = decoded[1, 1]


@pytest.mark.parametrize("name", ALLOWED_DTYPES)
def test_tensors_roundtrip(name: str) -> None:
    tensor = torch.from_numpy(sample_array(name))
    decoded = roundtrip(tensor)
    assert type(decoded) is torch.Tensor
    assert decoded.dtype == tensor.dtype and decoded.shape == tensor.shape
    assert torch.equal(decoded, tensor)
    assert not decoded.requires_grad
    decoded[0, 0] = decoded[1, 1]  # writable
    assert torch.equal(tensor, torch.from_numpy(sample_array(name)))  # and not a view of the original


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1, 1, 1, 1, 5)])
def test_odd_shapes_roundtrip(shape: tuple[int, ...]) -> None:
    tensor = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    decoded = roundtrip({"t": tensor, "a": tensor.numpy()})
    assert decoded["t"].shape == shape and torch.equal(decoded["t"], tensor)
    assert decoded["a"].shape == shape


def test_non_contiguous_tensor_and_array_roundtrip() -> None:
    tensor = torch.arange(12.0).reshape(3, 4).t()
    assert torch.equal(roundtrip(tensor), tensor)
    array = np.arange(24, dtype=np.int16).reshape(4, 6)[::2, ::-3]
    np.testing.assert_array_equal(roundtrip(array), array)


def test_requires_grad_is_kept_and_decoded_tensors_are_leaves() -> None:
    weight = torch.nn.Parameter(torch.randn(2, 3))
    out = weight * 2
    decoded_weight, decoded_out, decoded_plain = roundtrip([weight, out, torch.ones(2)])
    assert type(decoded_weight) is torch.Tensor  # a Parameter comes back as a plain tensor
    assert decoded_weight.requires_grad and decoded_weight.is_leaf
    assert decoded_out.requires_grad and decoded_out.is_leaf and decoded_out.grad_fn is None
    assert not decoded_plain.requires_grad
    torch.testing.assert_close(decoded_out, out.detach())


def test_containers_of_tensors_keep_their_buffers_apart() -> None:
    value = {"x": [torch.zeros(2), torch.ones(3, dtype=torch.int64)], "y": (np.full(4, 7, np.uint8),)}
    decoded = roundtrip(value)
    assert torch.equal(decoded["x"][0], torch.zeros(2))
    assert torch.equal(decoded["x"][1], torch.ones(3, dtype=torch.int64))
    np.testing.assert_array_equal(decoded["y"][0], np.full(4, 7, np.uint8))


# -- references and non-plain objects -----------------------------------------------------------------
@pytest.mark.parametrize("layout", ["coo", "uncoalesced", "csr"])
def test_sparse_tensors_roundtrip_as_coalesced_coo(layout: str) -> None:
    dense = torch.tensor([[0.0, 0.5, 0.0], [0.25, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    if layout == "uncoalesced":  # duplicate entries add up, as in torch
        value = torch.sparse_coo_tensor(
            [[0, 0, 1, 2], [1, 1, 0, 2]], [0.25, 0.25, 0.25, 1.0], (4, 3), check_invariants=True
        )
    elif layout == "csr":
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            value = dense.to_sparse_csr()
    else:
        value = dense.to_sparse_coo()
    got = roundtrip({"adj": value})["adj"]
    assert got.layout == torch.sparse_coo and got.is_coalesced() and got.dtype == torch.float32
    assert torch.equal(got.to_dense(), dense)


def test_empty_sparse_tensor_roundtrips() -> None:
    got = roundtrip(
        torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0), (5, 5), check_invariants=True)
    )
    assert got.shape == (5, 5) and got._nnz() == 0


def _sparse_node(indices: list[list[int]], values: list[float], shape: list[int]) -> bytes:
    index_bytes = np.array(indices, dtype=np.int64).tobytes()
    value_bytes = np.array(values, dtype=np.float32).tobytes()
    node = {
        "sparse": "float32",
        "shape": shape,
        "indices": {"tensor": "int64", "shape": list(np.array(indices).shape), "buf": 0},
        "values": {"tensor": "float32", "shape": [len(values)], "buf": 1},
    }
    return raw_frame({"v": node, "b": [len(index_bytes), len(value_bytes)]}, index_bytes + value_bytes)


@pytest.mark.parametrize(
    ("indices", "values", "shape", "message"),
    [
        ([[0, 5], [1, 1]], [1.0, 2.0], [3, 3], "indices out of bounds"),
        ([[0, -1], [1, 1]], [1.0, 2.0], [3, 3], "indices out of bounds"),
        ([[0, 1], [1, 1]], [1.0], [3, 3], "do not fit"),
        ([[0, 1]], [1.0, 2.0], [3, 3], "do not fit"),
    ],
)
def test_malformed_sparse_tensors_are_refused(indices, values, shape, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode(_sparse_node(indices, values, shape))


def test_ref_roundtrips() -> None:
    ref = Ref(7, "CNN", True)
    assert roundtrip(ref) == ref
    assert roundtrip({"m": [Ref(1, "Box")]}) == {"m": [Ref(1, "Box", False)]}


def test_resolve_ref_turns_refs_into_objects() -> None:
    table = {3: object()}
    decoded = wire.decode(wire.encode([Ref(3, "object")]), resolve_ref=lambda ref: table[ref.handle])
    assert decoded[0] is table[3]


class Box:
    def __init__(self, value: int) -> None:
        self.value = value


@pytest.mark.parametrize(
    "value",
    [
        Box(1),
        torch.nn.Linear(2, 2),
        {1, 2},
        b"bytes",
        object(),
        len,
        iter([1]),
        torch.zeros(2, dtype=torch.bfloat16),
        np.array([1, "a"], dtype=object),
    ],
    ids=lambda v: type(v).__qualname__ + (f"[{v.dtype}]" if hasattr(v, "dtype") else ""),
)
def test_non_plain_objects_are_refused_without_make_ref(value) -> None:
    with pytest.raises(WireError, match=f"cannot send a {type(value).__qualname__} across the process boundary"):
        wire.encode({"nested": [value]})


def test_non_plain_objects_become_refs_with_make_ref() -> None:
    table: dict[int, object] = {}

    def make_ref(obj: object) -> Ref:
        table[len(table) + 1] = obj
        return Ref(len(table), type(obj).__qualname__, callable(obj))

    box, model = Box(1), torch.nn.Linear(2, 2)
    decoded = wire.decode(wire.encode({"box": box, "model": [model], "n": 3}, make_ref=make_ref))
    assert decoded == {"box": Ref(1, "Box", False), "model": [Ref(2, "Linear", True)], "n": 3}
    assert table == {1: box, 2: model}


# -- malformed frames -------------------------------------------------------------------------------
def test_truncated_frames_are_refused() -> None:
    frame = wire.encode({"x": torch.arange(10), "s": "text"})
    with pytest.raises(WireError, match="out of bounds"):
        wire.decode(frame[:5])
    with pytest.raises(WireError, match="out of bounds"):
        wire.decode(b"")
    with pytest.raises(WireError, match="do not add up to the frame length"):
        wire.decode(frame[:-1])
    with pytest.raises(WireError, match="do not add up to the frame length"):
        wire.decode(frame + b"\x00")
    (head_len,) = struct.unpack("<Q", frame[:8])
    with pytest.raises(WireError, match=f"frame header of {head_len} bytes announced in a frame of {head_len + 5}"):
        wire.decode(frame[: 8 + head_len - 3])


@pytest.mark.parametrize("head", [b"{not json", b"\xff\xfe", b"", b'{"v": NaN, "b": []}' + b"}"])
def test_bad_json_header_is_refused(head: bytes) -> None:
    with pytest.raises(WireError, match="frame header is not JSON"):
        wire.decode(raw_frame(head))


@pytest.mark.parametrize("kind", ["tensor", "ndarray"])
def test_buffer_size_must_match_the_shape(kind: str) -> None:
    frame = raw_frame({"v": {kind: "float32", "shape": [2, 3], "buf": 0}, "b": [20]}, b"\x00" * 20)
    with pytest.raises(WireError, match=rf"{kind} of shape \[2, 3\] does not match its 20-byte buffer"):
        wire.decode(frame)


@pytest.mark.parametrize("dtype", ["complex32", "object", "bfloat16", "float128", "<f4"])
@pytest.mark.parametrize("kind", ["tensor", "ndarray", "scalar"])
def test_unknown_dtypes_are_refused(kind: str, dtype: str) -> None:
    node = {kind: dtype, "value": 1} if kind == "scalar" else {kind: dtype, "shape": [1], "buf": 0}
    frame = raw_frame({"v": node, "b": [] if kind == "scalar" else [8]}, b"" if kind == "scalar" else b"\x00" * 8)
    with pytest.raises(WireError, match=f"dtype '{dtype}' is not allowed; allowed: "):
        wire.decode(frame)


@pytest.mark.parametrize("node", [{"what": 1}, {}, {"tensor_": "float32"}])
def test_unknown_node_kinds_are_refused(node) -> None:
    with pytest.raises(WireError, match="unknown node kind|unexpected node"):
        wire.decode(raw_frame({"v": node, "b": []}))


def test_nesting_up_to_max_depth_is_fine() -> None:
    value = nested_lists(MAX_DEPTH)
    assert roundtrip(value) == value


def test_encoding_nesting_deeper_than_max_depth_is_refused() -> None:
    with pytest.raises(WireError, match=f"value nested deeper than {MAX_DEPTH} levels"):
        wire.encode(nested_lists(MAX_DEPTH + 1))
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(WireError, match="nested deeper"):
        wire.encode(cyclic)
    deep_dict: dict = {}
    node = deep_dict
    for _ in range(MAX_DEPTH + 1):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(WireError, match="nested deeper"):
        wire.encode(deep_dict)


def test_decoding_nesting_deeper_than_max_depth_is_refused() -> None:
    header = 1
    for _ in range(MAX_DEPTH + 1):
        header = [header]
    with pytest.raises(WireError, match=f"value nested deeper than {MAX_DEPTH} levels"):
        wire.decode(raw_frame({"v": header, "b": []}))


# Malformed frames that a crashed or hostile worker could send: each must be a WireError, never
# another exception type escaping the codec (see the report of the engine's tests).
MALFORMED_HEADERS = {
    "header is a list": [1],
    "header without v": {"b": []},
    "buffer index out of range": {"v": {"ndarray": "int8", "shape": [1], "buf": 3}, "b": []},
    "unhashable dict key": {"v": {"items": [[[1], 2]]}, "b": []},
    "tuple of a non-list": {"v": {"tuple": 5}, "b": []},
    "very deep JSON": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED_HEADERS))
def test_structurally_malformed_frames_raise_wire_error(name: str) -> None:
    with pytest.raises(WireError):
        wire.decode(raw_frame(MALFORMED_HEADERS[name]))


# -- frames over a pipe -------------------------------------------------------------------------------
@pytest.fixture
def pipe():
    read_fd, write_fd = os.pipe()
    fds = {"r": read_fd, "w": write_fd}
    yield fds
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass


def test_frames_over_a_pipe(pipe) -> None:
    big = torch.arange(300_000, dtype=torch.float64)  # 2.4 MB: more than a pipe buffer holds
    frames = [wire.encode({"op": "ping"}), wire.encode({"value": big}), wire.encode(None)]
    writer = threading.Thread(target=lambda: [wire.write_frame(pipe["w"], f) for f in frames])
    writer.start()
    received = [wire.read_frame(pipe["r"]) for _ in frames]
    writer.join()
    assert received == frames
    assert torch.equal(wire.decode(received[1])["value"], big)


def test_read_frame_at_eof_raises_eoferror(pipe) -> None:
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError):
        wire.read_frame(pipe["r"])


def test_read_frame_of_a_truncated_frame_raises_eoferror(pipe) -> None:
    frame = wire.encode("some text")
    os.write(pipe["w"], struct.pack("<Q", len(frame)) + frame[:-2])
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError):
        wire.read_frame(pipe["r"])


def test_read_frame_refuses_an_oversized_announcement(pipe) -> None:
    os.write(pipe["w"], struct.pack("<Q", MAX_FRAME_BYTES + 1))
    with pytest.raises(WireError, match=f"frame of {MAX_FRAME_BYTES + 1} bytes announced; the limit is"):
        wire.read_frame(pipe["r"])
