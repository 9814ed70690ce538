"""Probes of ``test_attention.py`` (CSC413 A4 1.3.1): how much memory a submitted attention function
uses, and the feature maps a grader may hand it.

Runs in the worker, next to the submitted function (``Submission.apply``; a probe module, sent there
as source): a callable cannot cross to the worker, so the grader names a feature map of
:data:`FEATURE_MAPS`; :func:`call_attention` records the largest tensor any torch function returned
during the call, which tells an O(n) computation from one that forms the ``n x m`` matrix of
similarities. The grader compares the output with its own float64 attention (``_attention.py``).
Imports only torch and the standard library.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__torchgrade_probes__ = True


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: the default feature map of linear attention (Katharopoulos et al., 2020)."""
    return F.elu(x) + 1


#: Feature maps a grader can name; all positive.
FEATURE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu_plus_one": elu_plus_one,
    "softplus": F.softplus,
    "exp": torch.exp,
}


class _LargestResult(TorchFunctionMode):
    """Records the largest tensor returned by any torch function, with its shape and the function."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.shape: list[int] = []
        self.function = ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.numel() > self.largest:
                self.largest, self.shape = tensor.numel(), list(tensor.shape)
                self.function = getattr(func, "__name__", "")
        return out


def call_attention(fn: Callable, *args: Any, feature_map: str | None = None) -> dict[str, Any]:
    """Call a submitted attention function and record the largest tensor created meanwhile.

    Args:
        fn: the submitted function.
        args: its positional arguments.
        feature_map: the name of a :data:`FEATURE_MAPS` entry to pass as ``feature_map=``, or None.

    Returns:
        ``{"output", "largest": elements of the largest tensor a torch function returned, "shape",
        "function": the function that returned it}``, or ``{"error": message}`` when ``fn`` takes no
        ``feature_map`` argument.
    """
    kwargs = {} if feature_map is None else {"feature_map": FEATURE_MAPS[feature_map]}
    if kwargs:
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as exc:
            return {"error": f"it takes no feature_map argument ({exc}); its signature is {inspect.signature(fn)}"}
        except ValueError:
            pass
    recorder = _LargestResult()
    with recorder:
        output = fn(*args, **kwargs)
    if isinstance(output, torch.Tensor):
        output = output.detach()
    return {"output": output, "largest": recorder.largest, "shape": recorder.shape, "function": recorder.function}
