"""Attention as the grader computes it (CSC413 A4 part 1): linear attention's definition, attention
with relative-position scores, and the Jacobian of a sigmoid RNN, each in float64, quadratic time,
straight from the definitions.

Grader side: a submission's functions are compared with these. How much memory a submitted attention
function uses is measured where it runs, by :func:`torchgrade.probes.attention.call_attention`;
:func:`elu_plus_one`, the default feature map, lives there too, so that both sides use one function.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from torchgrade.probes.attention import elu_plus_one

__all__ = ["elu_plus_one", "kernel_attention", "relative_attention_reference", "sigmoid_rnn_jacobian_reference"]


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
