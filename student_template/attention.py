"""Your solution of CSC413 A4 part 1: gradients through a sigmoid RNN (1.2.1), linear attention
(1.3.1), and convolution and max pooling written as attention with relative-position scores (1.4).

Fill in every function below; each one now raises ``NotImplementedError``. Keep the names and
signatures: the graders call them exactly like this (``pytest graders/test_attention.py`` shows
what each check expects). You may add helper functions and imports.

The graders compare ``linear_attention`` with the quadratic computation and watch the sizes of the
tensors it creates (no ``n x m`` matrix), ``conv1d_as_attention`` with ``torch.conv1d`` and
``max_pool_as_attention`` with ``torch.nn.functional.max_pool1d``, on inputs with negative values.
"""

from __future__ import annotations

import math  # noqa: F401  (you will need these)
from collections.abc import Callable

import torch
import torch.nn.functional as F


# -- 1.2.1: the Jacobian of a sigmoid RNN ---------------------------------------------------------------
def sigmoid_rnn_jacobian(W: torch.Tensor, x1: torch.Tensor, n: int) -> torch.Tensor:
    """The Jacobian ``dx_n / dx_1`` of the recurrence ``x_{t+1} = sigmoid(W x_t)``, computed with the
    chain rule (a product of per-step Jacobians; the identity when ``n = 1``).

    Args:
        W: ``(d, d)``.
        x1: ``(d,)``, the first state.
        n: the index of the last state, ``n >= 1``.

    Returns:
        ``(d, d)``: entry ``[a, b]`` is ``d x_n[a] / d x_1[b]``.
    """
    raise NotImplementedError("1.2.1: multiply the per-step Jacobians of x_{t+1} = sigmoid(W x_t)")


def sigmoid_rnn_jacobian_bound(sigma_max: float, n: int) -> float:
    """Your upper bound on the largest singular value of ``dx_n / dx_1``, as a function of
    ``sigma_max(W)`` and ``n``: it must hold for every ``W`` and ``x_1``, and be as tight as the
    handout's argument allows.

    Args:
        sigma_max: ``sigma_max(W)``.
        n: the index of the last state, ``n >= 1``.
    """
    raise NotImplementedError("1.2.1: bound the largest singular value of the Jacobian")


# -- 1.3.1: linear attention ---------------------------------------------------------------------------------
def _elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """Given: the default feature map ``phi(x) = elu(x) + 1`` of linear attention (Katharopoulos et al.,
    2020), positive everywhere; use it when ``feature_map`` is None."""
    return F.elu(x) + 1


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Kernelised attention ``out_i = sum_j sim(Q_i, K_j) V_j / sum_j sim(Q_i, K_j)`` with
    ``sim(q, k) = phi(q)^T phi(k)``, in time linear in the sequence length: never form the ``n x m``
    matrix of similarities.

    Args:
        q: ``(..., n, d_k)``.
        k: ``(..., m, d_k)``.
        v: ``(..., m, d_v)``.
        feature_map: ``phi``, applied to the last dimension (positive values). Default
            ``elu(x) + 1``.

    Returns:
        ``(..., n, d_v)``.
    """
    raise NotImplementedError("1.3.1: compute the sums over j once, then one product per query")


# -- 1.4: attention with relative-position scores ----------------------------------------------------------
def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_scores: torch.Tensor,
                       hard: bool = False) -> torch.Tensor:
    """Self-attention with scores ``alpha_ij = Q_i . K_j / sqrt(d_k) + P_{i-j}``; each output row is
    ``sum_j softmax_j(alpha_i)_j V_j``, or with ``hard=True`` the row ``V_j`` of the largest
    ``alpha_ij`` (hard attention).

    Args:
        q, k: ``(n, d_k)``.
        v: ``(n, d_v)``.
        position_scores: ``(2n - 1,)``: ``position_scores[(i - j) + n - 1] = P_{i-j}`` for offsets
            ``i - j`` from ``-(n-1)`` to ``n-1``; ``-inf`` excludes an offset.
        hard: argmax instead of softmax.

    Returns:
        ``(n, d_v)``.
    """
    raise NotImplementedError("1.4: add the relative-position scores to the content scores and attend")


def conv1d_as_attention(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv1d(x, weight, padding=K // 2)`` (stride 1, zero padding, no bias), computed with
    ``relative_attention``: one head per kernel tap, each attending to one relative position.

    Args:
        x: ``(B, C_in, n)``.
        weight: ``(C_out, C_in, K)``, ``K`` odd.

    Returns:
        ``(B, C_out, n)``.
    """
    raise NotImplementedError("1.4.1: write the convolution as attention with relative-position scores")


def max_pool_as_attention(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool1d(x, kernel_size, stride=1, padding=kernel_size // 2)``, computed with
    ``relative_attention(..., hard=True)``.

    Args:
        x: ``(B, C, n)``, any real values (negative too).
        kernel_size: odd.

    Returns:
        ``(B, C, n)``.
    """
    raise NotImplementedError("1.4.2: write max pooling as hard attention")
