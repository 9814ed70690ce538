"""Receptive fields measured on a model itself, with autograd.

A student's hand-computed receptive fields are checked against the model they submitted, not
against a fixed architecture: the check finds every downsampling operation the model's forward
pass performs and measures, for a unit near the centre of the feature map right after each one,
which input pixels can change that unit.

Why the measurement is set up as it is:

* **A positive copy of the model.** The model is deep-copied (the checked object is never
  touched), switched to eval mode (no dropout holes, BatchNorm uses its running statistics, reset
  to mean 0 and variance 1), and every parameter is set to a positive constant: weights
  ``1 / fan_in``, biases 0.01, other 1-D parameters (norm scales) 1. With an all-ones input every
  activation is then positive, so no ReLU is dead and no positive and negative paths cancel: an
  input pixel has a non-zero gradient exactly when it lies in the unit's receptive field.
* **Average pooling in place of max pooling.** The gradient of a max-pool reaches one pixel per
  window (the arg-max), and ties in an all-ones input make that pixel arbitrary, so the measured
  region would shrink. An average pool with the same kernel, stride, padding, dilation and ceil
  mode has the same output shape and the same receptive field, and passes gradient to every pixel
  of its window. The swap happens inside a ``TorchFunctionMode``, so it also covers pooling
  called through ``nn.MaxPool2d`` (which calls ``F.max_pool2d``), a single pooling module reused
  several times, and ``torch.max_pool2d``.
* **What counts as downsampling.** Calls of ``F.max_pool2d`` / ``F.max_pool2d_with_indices`` /
  ``torch.max_pool2d``, ``F.avg_pool2d``, ``F.lp_pool2d`` and ``F.conv2d`` (hence ``nn.Conv2d``)
  whose stride exceeds 1 along either axis, in the order the forward pass makes them. Adaptive
  (global) pooling has no fixed stride and is not counted. A downsampling whose output is cut
  from the graph (``torch.no_grad``, ``.detach()``) is listed with extent 0: no gradient reaches
  the input.
* **Extent.** For the unit at channel 0 of batch item 0, the input gradient is computed with
  ``torch.autograd.grad``; the extent along an axis is ``last - first + 1`` over the input rows
  (columns) where the gradient is non-zero in any channel. The int API returns
  ``max(rows, cols)`` (the side of the square field for square kernels);
  :func:`measure_receptive_fields` returns both.
* **Which unit.** The unit starts at the centre of the feature map and is moved, by the known
  stride of the downsamplings so far, until its field lies strictly inside the measured region of
  the input (so image borders and the region's edges do not truncate it), or until it cannot get
  any closer. This matters with ``half`` (one of :data:`HALVES`): a model that sees two
  images stacked on the height axis has its centre unit on the border between them, while one
  that slices the input into halves and stacks them on channels has a centre unit
  whose field appears once in each half; only the part inside the chosen half is measured.

Only torch and the standard library are imported: this module may run inside the worker
process next to untrusted student code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode

HALVES = ("top", "bottom", "left", "right")
"""Valid values of ``half`` besides ``None`` (the whole input): halves along H, then along W."""

_BIAS_VALUE = 0.01
# A few steps suffice in practice (one or two); the cap only guards against oscillation.
_MAX_UNIT_MOVES = 8


def no_downsampling_message(model_name: str, input_shape: Sequence[int]) -> str:
    """Message of the ``ValueError`` raised when a forward pass performs no downsampling."""
    return (
        f"{model_name} on input {list(input_shape)}: the forward pass performed no downsampling "
        f"operation (max, average or power-average pooling, or conv2d, with a stride above 1). "
        f"Hint: each 2x2 downsampling should be a pooling layer with stride 2 or a convolution "
        f"with stride 2."
    )


def invalid_half_message(half: object) -> str:
    """Message of the ``ValueError`` raised for an unknown ``half``."""
    return f"half must be None or one of {', '.join(repr(h) for h in HALVES)}; got {half!r}"


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one unit right after one downsampling operation.

    Attributes:
        op: The downsampling call, e.g. ``"max_pool2d(kernel_size=(2, 2), stride=(2, 2))"``.
        output_shape: Shape of that operation's output, e.g. ``(1, 4, 112, 112)``.
        unit: ``(row, col)`` of the measured unit in that output (channel 0, batch item 0).
        rows: Number of input rows spanned by the pixels that affect the unit, within the
            measured region.
        cols: Number of input columns spanned likewise.
    """

    op: str
    output_shape: tuple[int, ...]
    unit: tuple[int, int]
    rows: int
    cols: int

    @property
    def extent(self) -> int:
        """``max(rows, cols)``: the side of the field for a square kernel."""
        return max(self.rows, self.cols)


def downsampling_receptive_fields(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    half: str | None = None,
    max_downsamplings: int | None = None,
) -> list[int]:
    """Receptive field, in input pixels, of a central unit right after each downsampling.

    See the module docstring for the method. ``model`` is never modified.

    Shapes:
        input_shape: ``(N, C, H, W)``, the shape ``model`` expects (e.g. ``(1, 3, 448, 224)``).

    Args:
        model: The module to measure.
        input_shape: Shape of the all-ones input fed to a positive copy of ``model``.
        half: ``None`` to measure over the whole input; ``"top"`` (rows ``0 .. H//2 - 1``),
            ``"bottom"`` (rows ``H//2 .. H - 1``), ``"left"`` or ``"right"`` (columns, likewise)
            to measure only within that half, e.g. the left image of a ``[N, 3, 448, 224]`` pair
            image (``"top"``), for models that stack the halves on channels. ``"left"`` serves
            models fed the handout's ``transpose(1, 3)`` layout ``[N, 3, 224, 448]``.
        max_downsamplings: Stop the forward pass after this many downsamplings (saves the
            fully connected layers); ``None`` runs it to the end.

    Returns:
        One int per downsampling, in forward order: ``max(rows, cols)`` of the field.

    Raises:
        ValueError: If the forward pass performs no downsampling, ``half`` or ``input_shape``
            is invalid, or the model cannot be deep-copied.
    """
    measured = measure_receptive_fields(model, input_shape, half=half, max_downsamplings=max_downsamplings)
    return [field.extent for field in measured]


def measure_receptive_fields(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    half: str | None = None,
    max_downsamplings: int | None = None,
) -> list[ReceptiveField]:
    """Like :func:`downsampling_receptive_fields`, with rows, columns, operation and unit.

    Args:
        model: The module to measure; it is not modified.
        input_shape: ``(N, C, H, W)``.
        half: ``None`` or one of :data:`HALVES`: the part of the input to measure within.
        max_downsamplings: Stop the forward pass after this many downsamplings.

    Returns:
        One :class:`ReceptiveField` per downsampling, in forward order.

    Raises:
        ValueError: As :func:`downsampling_receptive_fields`.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch.nn.Module; got {type(model).__name__}")
    shape = _checked_shape(input_shape)
    if max_downsamplings is not None and max_downsamplings < 1:
        raise ValueError(f"max_downsamplings must be None or at least 1; got {max_downsamplings}")
    region = _region(half, shape[2], shape[3])

    probe, dtype, device = _positive_copy(model, shape)
    x = torch.ones(shape, dtype=dtype, device=device, requires_grad=True)
    recorder = _DownsamplingRecorder(max_downsamplings)
    with torch.enable_grad():
        try:
            with recorder:
                probe(x)
        except _StopForward:
            pass
    if not recorder.records:
        raise ValueError(no_downsampling_message(type(model).__name__, shape))

    fields = []
    total_stride = (1, 1)
    with torch.enable_grad():
        for record in recorder.records:
            total_stride = (total_stride[0] * record.stride[0], total_stride[1] * record.stride[1])
            fields.append(_measure_record(x, record, region, total_stride))
    return fields


# --- the positive copy ------------------------------------------------------------------------


def _positive_copy(model: nn.Module, shape: tuple[int, ...]) -> tuple[nn.Module, torch.dtype, torch.device]:
    try:
        probe = copy.deepcopy(model)
    except Exception as exc:  # any failure of student-defined __deepcopy__/__reduce__
        raise ValueError(
            f"{type(model).__name__} could not be deep-copied for the receptive-field "
            f"measurement: {type(exc).__name__}: {exc}"
        ) from exc
    probe.eval()
    dtype, device = torch.float32, torch.device("cpu")
    for p in probe.parameters():
        if not is_lazy(p) and p.is_floating_point():
            dtype, device = p.dtype, p.device
            break
    with torch.no_grad():
        if any(is_lazy(p) for p in probe.parameters()):
            probe(torch.zeros(shape, dtype=dtype, device=device))  # materialise lazy shapes
        for name, p in probe.named_parameters():
            p.requires_grad_(False)  # only the input gradient is needed
            if not p.is_floating_point():
                continue
            if p.dim() >= 2:
                p.fill_(1.0 / max(p[0].numel(), 1))
            elif name.rsplit(".", 1)[-1].startswith("bias"):
                p.fill_(_BIAS_VALUE)
            else:
                p.fill_(1.0)
        for name, buffer in probe.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_mean":
                buffer.zero_()
            elif leaf == "running_var":
                buffer.fill_(1.0)
    return probe, dtype, device


# --- recording downsamplings ------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    op: str
    output: torch.Tensor
    stride: tuple[int, int]


class _StopForward(BaseException):
    """Ends the forward pass once enough downsamplings are recorded.

    A ``BaseException`` so that a student's ``except Exception`` does not swallow it.
    """


_Handler = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], tuple[Any, "_Record | None"]]


class _DownsamplingRecorder(TorchFunctionMode):
    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.records: list[_Record] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is None:
            return func(*args, **kwargs)
        # The mode is switched off while this runs, so the calls below are not intercepted.
        result, record = handler(func, args, kwargs)
        if record is not None:
            self.records.append(record)
            if self.limit is not None and len(self.records) >= self.limit:
                raise _StopForward
        return result


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    items = [int(v) for v in value]
    return (items[0], items[0]) if len(items) == 1 else (items[0], items[1])


def _stride_or_kernel(stride: Any, kernel: tuple[int, int]) -> tuple[int, int]:
    # Pooling's stride defaults to the kernel size (None in F.*, [] in torch.max_pool2d).
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return kernel
    return _pair(stride)


def _record(op: str, output: torch.Tensor, stride: tuple[int, int]) -> _Record | None:
    return _Record(op, output, stride) if max(stride) > 1 else None


def _max_pool(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, _Record | None]:
    x = _arg(args, kwargs, 0, "input", None)
    kernel = _pair(_arg(args, kwargs, 1, "kernel_size", None))
    stride = _stride_or_kernel(_arg(args, kwargs, 2, "stride", None), kernel)
    padding = _pair(_arg(args, kwargs, 3, "padding", 0))
    dilation = _pair(_arg(args, kwargs, 4, "dilation", 1))
    ceil_mode = bool(_arg(args, kwargs, 5, "ceil_mode", False))
    with_indices = func is F.max_pool2d_with_indices or bool(_arg(args, kwargs, 6, "return_indices", False))
    out = _average_pool_like_max(x, kernel, stride, padding, dilation, ceil_mode)
    record = _record(f"max_pool2d(kernel_size={kernel}, stride={stride})", out, stride)
    if with_indices:
        with torch.no_grad():
            _, indices = F.max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode)
        return (out, indices), record
    return out, record


def _average_pool_like_max(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
) -> torch.Tensor:
    if dilation == (1, 1):
        return F.avg_pool2d(x, kernel, stride, padding, ceil_mode, True)
    # avg_pool2d has no dilation: average with a depthwise convolution of ones instead, padded
    # (right/bottom) to reach the output shape of the max-pool it replaces under ceil_mode.
    with torch.no_grad():
        target = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode).shape[-2:]
    extra = [
        max(0, (t - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
        for t, s, d, k, n, p in zip(target, stride, dilation, kernel, x.shape[-2:], padding, strict=True)
    ]
    channels = x.shape[-3]
    weight = x.new_full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]))
    padded = F.pad(x, (padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]))
    out = F.conv2d(padded, weight, None, stride, 0, dilation, channels)
    return out[..., : target[0], : target[1]]


def _avg_pool(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, _Record | None]:
    out = func(*args, **kwargs)
    kernel = _pair(_arg(args, kwargs, 1, "kernel_size", None))
    stride = _stride_or_kernel(_arg(args, kwargs, 2, "stride", None), kernel)
    return out, _record(f"avg_pool2d(kernel_size={kernel}, stride={stride})", out, stride)


def _lp_pool(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, _Record | None]:
    out = func(*args, **kwargs)
    kernel = _pair(_arg(args, kwargs, 2, "kernel_size", None))
    stride = _stride_or_kernel(_arg(args, kwargs, 3, "stride", None), kernel)
    return out, _record(f"lp_pool2d(kernel_size={kernel}, stride={stride})", out, stride)


def _conv(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, _Record | None]:
    out = func(*args, **kwargs)
    weight = _arg(args, kwargs, 1, "weight", None)
    stride = _pair(_arg(args, kwargs, 3, "stride", 1))
    kernel = tuple(weight.shape[-2:])
    return out, _record(f"conv2d(kernel_size={kernel}, stride={stride})", out, stride)


_HANDLERS: dict[Callable[..., Any], _Handler] = {
    F.max_pool2d: _max_pool,  # also nn.MaxPool2d, which calls it
    F.max_pool2d_with_indices: _max_pool,  # F.max_pool2d(..., return_indices=True) lands here
    torch.max_pool2d: _max_pool,
    F.avg_pool2d: _avg_pool,
    F.lp_pool2d: _lp_pool,
    F.conv2d: _conv,  # torch.conv2d is the same function; nn.Conv2d calls it
}


# --- measuring one unit -----------------------------------------------------------------------


def _checked_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes; got {input_shape!r}")
    return shape


def _region(half: str | None, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((first_row, stop_row), (first_col, stop_col))`` of the part of the input to measure."""
    rows, cols = (0, height), (0, width)
    regions = {
        None: (rows, cols),
        "top": ((0, height // 2), cols),
        "bottom": ((height // 2, height), cols),
        "left": (rows, (0, width // 2)),
        "right": (rows, (width // 2, width)),
    }
    if not (half is None or isinstance(half, str)) or half not in regions:
        raise ValueError(invalid_half_message(half))
    return regions[half]


def _measure_record(
    x: torch.Tensor,
    record: _Record,
    region: tuple[tuple[int, int], tuple[int, int]],
    total_stride: tuple[int, int],
) -> ReceptiveField:
    out = record.output
    out_h, out_w = out.shape[-2:]
    in_h, in_w = x.shape[-2:]
    (r0, r1), (c0, c1) = region
    lead = (0,) * (out.dim() - 2)  # batch item 0, channel 0

    def support(i: int, j: int) -> torch.Tensor:
        """Input pixels (H, W) whose gradient for unit (i, j) is non-zero in any channel."""
        if not out.requires_grad:
            return torch.zeros(in_h, in_w, dtype=torch.bool)
        (grad,) = torch.autograd.grad(out[lead + (i, j)], x, retain_graph=True, allow_unused=True)
        if grad is None:
            return torch.zeros(in_h, in_w, dtype=torch.bool)
        return (grad[0] != 0).any(dim=0).cpu()

    unit = (out_h // 2, out_w // 2)
    visited = set()
    while True:
        visited.add(unit)
        mask = support(*unit)
        inside = mask[r0:r1, c0:c1]
        field = ReceptiveField(
            op=record.op,
            output_shape=tuple(out.shape),
            unit=unit,
            rows=_span(inside.any(dim=1)),
            cols=_span(inside.any(dim=0)),
        )
        # Locate the field along one axis within the other axis's range of the region, so that
        # the copy of the field in the other half (CNNChannel) does not mislead.
        in_cols, in_rows = mask[:, c0:c1], mask[r0:r1]
        row_profile = (in_cols if bool(in_cols.any()) else mask).any(dim=1)
        col_profile = (in_rows if bool(in_rows.any()) else mask).any(dim=0)
        move_i = _move_towards_centre(row_profile, r0, r1, total_stride[0])
        move_j = _move_towards_centre(col_profile, c0, c1, total_stride[1])
        nxt = (
            min(max(unit[0] + move_i, 0), out_h - 1),
            min(max(unit[1] + move_j, 0), out_w - 1),
        )
        if nxt in visited or len(visited) >= _MAX_UNIT_MOVES:
            return field
        unit = nxt


def _span(profile: torch.Tensor) -> int:
    hits = profile.nonzero().flatten()
    return 0 if hits.numel() == 0 else int(hits[-1] - hits[0]) + 1


def _runs(profile: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` of True in a 1-D bool tensor."""
    runs: list[tuple[int, int]] = []
    for index in profile.nonzero().flatten().tolist():
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _move_towards_centre(profile: torch.Tensor, lo: int, hi: int, stride: int) -> int:
    """Units to move so that the field's run nearest the region ``[lo, hi)`` is centred in it.

    0 when the run already lies strictly inside the region (nothing truncates it). With
    ``CNNChannel`` a unit's field shows up once per half; the run that overlaps the region most
    is the one that matters.
    """
    runs = _runs(profile)
    if not runs:
        return 0
    target = (lo + hi - 1) / 2

    def rank(run: tuple[int, int]) -> tuple[int, float]:
        overlap = max(0, min(run[1], hi - 1) - max(run[0], lo) + 1)
        return (overlap, -abs((run[0] + run[1]) / 2 - target))

    first, last = max(runs, key=rank)
    if first > lo and last < hi - 1:
        return 0
    return round((target - (first + last) / 2) / max(stride, 1))
