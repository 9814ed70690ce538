"""Attention as computed by the grader, and a probe of how much memory an attention function uses.

* :func:`kernel_attention`, :func:`relative_attention_reference` and :func:`sigmoid_rnn_jacobian_reference`
  are the grader's own float64 implementations of CSC413 A4 part 1 (quadratic, straight from the
  definitions), against which a submission's functions are compared.
* :func:`call_attention` runs where the submission runs (``Submission.apply``): it calls a
  submitted attention function, optionally with one of the grader's feature maps (a callable
  cannot cross to the worker, a name can), and records the largest tensor any torch function
  returned during the call, which tells an O(n) computation from one that forms the ``n x m``
  matrix of similarities.

It imports only torch and the standard library.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: the default feature map of linear attention (Katharopoulos et al., 2020)."""
    return F.elu(x) + 1


#: Feature maps a grader can name; all positive.
FEATURE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu_plus_one": elu_plus_one,
    "softplus": F.softplus,
    "exp": torch.exp,
}


def kernel_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    feature_map: Callable[[torch.Tensor], torch.Tensor] = elu_plus_one,
) -> torch.Tensor:
    """``out_i = sum_j sim(Q_i, K_j) V_j / sum_j sim(Q_i, K_j)``, ``sim(q, k) = phi(q) . phi(k)``, in
    float64 and quadratic time: the ``n x m`` similarities are formed explicitly.

    Shapes:
        q ``(..., n, d_k)``, k ``(..., m, d_k)``, v ``(..., m, d_v)`` -> ``(..., n, d_v)``.
    """
    q, k, v = q.double(), k.double(), v.double()
    similarities = feature_map(q) @ feature_map(k).transpose(-2, -1)  # (..., n, m)
    return similarities / similarities.sum(dim=-1, keepdim=True) @ v


def relative_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_scores: torch.Tensor, hard: bool = False
) -> torch.Tensor:
    """``alpha_ij = Q_i . K_j / sqrt(d_k) + P_{i-j}`` with ``P_{i-j} = position_scores[i - j + n - 1]``;
    softmax over ``j`` (or, ``hard``, the row ``V_j`` of the largest score), in float64, with loops.

    Shapes:
        q, k ``(n, d_k)``, v ``(n, d_v)``, position_scores ``(2n - 1,)`` -> ``(n, d_v)``.
    """
    q, k, v, scores_p = q.double(), k.double(), v.double(), position_scores.double()
    n, d_k = q.shape
    out = torch.zeros(n, v.shape[1], dtype=torch.float64)
    for i in range(n):
        scores = torch.stack([q[i] @ k[j] / math.sqrt(d_k) + scores_p[i - j + n - 1] for j in range(n)])
        if hard:
            out[i] = v[int(scores.argmax())]
        else:
            out[i] = torch.softmax(scores, dim=0) @ v
    return out


def sigmoid_rnn_jacobian_reference(W: torch.Tensor, x1: torch.Tensor, n: int) -> torch.Tensor:
    """``dx_n / dx_1`` of ``x_{t+1} = sigmoid(W x_t)`` by autograd, in float64."""
    W = W.double()

    def unroll(x: torch.Tensor) -> torch.Tensor:
        for _ in range(n - 1):
            x = torch.sigmoid(W @ x)
        return x

    return torch.autograd.functional.jacobian(unroll, x1.double())


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
