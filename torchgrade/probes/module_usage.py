"""What a model holds and calls: library layers a from-scratch network must not use, torch's fused
recurrent kernels, and how much work the torch functions it calls do.

Runs in the worker, next to the submitted model (``Submission.apply``), because it hooks the model's
calls; it returns names and counts, and the grader decides. Imports only torch, the standard library
and other probes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from torchgrade.probes.recurrent import call_recurrent

#: Library layers a from-scratch network may be told not to use (a grader names the keys). Subclasses
#: count: ``nn.LazyLinear`` is an ``nn.Linear``.
FORBIDDEN_MODULES: dict[str, type[nn.Module]] = {
    "nn.Linear": nn.Linear,
    "nn.LSTM": nn.LSTM,
    "nn.LSTMCell": nn.LSTMCell,
    "nn.GRU": nn.GRU,
    "nn.GRUCell": nn.GRUCell,
    "nn.RNN": nn.RNN,
    "nn.RNNCell": nn.RNNCell,
}
#: torch's fused recurrent kernels (what nn.LSTM and friends call), by the name a TorchFunctionMode sees.
FUSED_RECURRENT_FUNCTIONS = frozenset(
    {
        "lstm",
        "lstm_cell",
        "gru",
        "gru_cell",
        "rnn_tanh",
        "rnn_relu",
        "rnn_tanh_cell",
        "rnn_relu_cell",
        "_thnn_fused_lstm_cell",
        "_thnn_fused_gru_cell",
    }
)


class FunctionRecorder(TorchFunctionMode):
    """Records the names of the torch functions called and the elements of the tensors they return.

    Attributes:
        names: the ``__name__`` of every torch function called.
        elements: the total number of elements of the tensors they returned, a measure of work.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.elements = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.names.add(getattr(func, "__name__", ""))
        self.elements += _numel(out)
        return out


def _numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value)
    return 0


@contextmanager
def _recording() -> Iterator[dict[str, Any]]:
    """Record, while the block runs, every module called (a global forward pre-hook: modules built
    inside ``forward`` count too) and every torch function called."""
    seen: dict[str, Any] = {"modules": []}

    def hook(module, args):
        seen["modules"].append(module)

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    recorder = FunctionRecorder()
    try:
        with recorder:
            yield seen
    finally:
        handle.remove()
        seen["functions"] = recorder.names


def _forbidden_found(modules: Sequence[tuple[str, nn.Module]], forbidden: Sequence[str]) -> list[str]:
    found = []
    for name, module in modules:
        for key in forbidden:
            if isinstance(module, FORBIDDEN_MODULES[key]):
                found.append(f"{name} ({key})" if name else key)
                break
    return list(dict.fromkeys(found))


def module_usage(model: nn.Module, x: torch.Tensor, forbidden: Sequence[str]) -> dict[str, Any]:
    """Which of the ``forbidden`` modules ``model`` holds or calls, and which fused recurrent kernels
    it calls, during ``model(x)`` without autograd (a forward that needs a state gets zeros, as
    :func:`torchgrade.probes.recurrent.call_recurrent` does).

    Args:
        model: the model; not changed.
        x: its input, ``(T, B, ...)``.
        forbidden: keys of :data:`FORBIDDEN_MODULES`.

    Returns:
        ``{"in_tree": ["name (nn.Linear)", ...], "called": ["nn.Linear", ...], "fused": ["lstm", ...]}``.

    Raises:
        ValueError: a name of ``forbidden`` is not a key of :data:`FORBIDDEN_MODULES`.
    """
    unknown = [key for key in forbidden if key not in FORBIDDEN_MODULES]
    if unknown:
        raise ValueError(f"unknown module names {unknown}; choose from {sorted(FORBIDDEN_MODULES)}")
    in_tree = _forbidden_found([(name or type(model).__name__, m) for name, m in model.named_modules()], forbidden)
    with torch.no_grad(), _recording() as seen:
        call_recurrent(model, x)
    called = _forbidden_found([("", m) for m in seen["modules"]], forbidden)
    return {"in_tree": in_tree, "called": called, "fused": sorted(seen["functions"] & FUSED_RECURRENT_FUNCTIONS)}


def holds_instance(model: nn.Module, cls: type) -> bool:
    """Whether ``model`` or one of its submodules is an instance of ``cls``."""
    return any(isinstance(module, cls) for module in model.modules())
