"""Reference solution of CSC413 A4 part 1 (``004_...``): gradients through a sigmoid RNN, and
attention seen from three sides.

* 1.2.1 ``sigmoid_rnn_jacobian`` and ``sigmoid_rnn_jacobian_bound``: for ``x_{t+1} = sigmoid(W x_t)``
  the Jacobian ``dx_n/dx_1`` is a product of ``diag(sigmoid'(W x_t)) W``, and since
  ``sigmoid' <= 1/4`` its largest singular value is at most ``(sigma_max(W) / 4)^(n-1)``.
* 1.3.1 ``linear_attention``: with ``sim(q, k) = phi(q) . phi(k)`` the attention output
  ``sum_j sim(Q_i, K_j) V_j / sum_j sim(Q_i, K_j)`` regroups as ``phi(Q_i) (sum_j phi(K_j) V_j^T) /
  phi(Q_i) . (sum_j phi(K_j))``: the sums over ``j`` are computed once, in O(n).
* 1.4 ``relative_attention``, scores ``Q_i . K_j / sqrt(d_k) + P_{i-j}`` with a score per relative
  position; ``conv1d_as_attention`` (1.4.1) and ``max_pool_as_attention`` (1.4.2) are built from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


# -- 1.2.1: the Jacobian of a sigmoid RNN ---------------------------------------------------------------
def sigmoid_rnn_jacobian(W: torch.Tensor, x1: torch.Tensor, n: int) -> torch.Tensor:
    """The Jacobian ``dx_n / dx_1`` of the recurrence ``x_{t+1} = sigmoid(W x_t)``.

    By the chain rule it is the product of the per-step Jacobians
    ``dx_{t+1}/dx_t = diag(sigmoid'(W x_t)) W``, with ``sigmoid' = sigmoid (1 - sigmoid)``, for
    ``t = n-1, ..., 1`` (the identity when ``n = 1``).

    Args:
        W: ``(d, d)``.
        x1: ``(d,)``, the first state.
        n: the index of the last state, ``n >= 1``.

    Returns:
        ``(d, d)``: entry ``[a, b]`` is ``d x_n[a] / d x_1[b]``.
    """
    if n < 1:
        raise ValueError(f"sigmoid_rnn_jacobian: n must be at least 1, got {n}")
    W, x = torch.as_tensor(W), torch.as_tensor(x1)
    jacobian = torch.eye(len(x), dtype=W.dtype)
    for _ in range(n - 1):
        s = torch.sigmoid(W @ x)
        jacobian = (s * (1 - s))[:, None] * W @ jacobian
        x = s
    return jacobian


def sigmoid_rnn_jacobian_bound(sigma_max: float, n: int) -> float:
    """The bound ``(sigma_max(W) / 4)^(n-1)`` on the largest singular value of ``dx_n / dx_1``.

    Each step's Jacobian ``diag(sigmoid'(W x_t)) W`` has largest singular value at most
    ``max sigmoid' * sigma_max(W) = sigma_max(W) / 4``, and the largest singular value of a product
    is at most the product of the factors'. With ``sigma_max(W) = 1/4`` it is ``(1/16)^(n-1)``.

    Args:
        sigma_max: ``sigma_max(W)``.
        n: the index of the last state, ``n >= 1``.
    """
    return (sigma_max / 4) ** (n - 1)


# -- 1.3.1: linear attention ---------------------------------------------------------------------------------
def _elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Kernelised attention in time linear in the sequence length.

    ``out_i = phi(Q_i)^T S / phi(Q_i)^T z`` with ``S = sum_j phi(K_j) V_j^T`` and ``z = sum_j phi(K_j)``,
    which equals ``sum_j sim(Q_i, K_j) V_j / sum_j sim(Q_i, K_j)`` for ``sim(q, k) = phi(q)^T phi(k)``
    without forming the ``n x m`` matrix of similarities.

    Args:
        q: ``(..., n, d_k)``.
        k: ``(..., m, d_k)``.
        v: ``(..., m, d_v)``.
        feature_map: ``phi``, applied to the last dimension; must be positive. Default
            ``elu(x) + 1`` (Katharopoulos et al., 2020).

    Returns:
        ``(..., n, d_v)``.
    """
    phi = feature_map or _elu_plus_one
    q_features, k_features = phi(q), phi(k)  # (..., n, r), (..., m, r)
    summary = k_features.transpose(-2, -1) @ v  # (..., r, d_v): sum_j phi(K_j) V_j^T
    normaliser = k_features.sum(dim=-2)  # (..., r): sum_j phi(K_j)
    numerator = q_features @ summary  # (..., n, d_v)
    denominator = (q_features * normaliser.unsqueeze(-2)).sum(dim=-1, keepdim=True)  # (..., n, 1)
    return numerator / denominator


# -- 1.4: attention with relative-position scores ----------------------------------------------------------
def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_scores: torch.Tensor,
                       hard: bool = False) -> torch.Tensor:
    """Self-attention whose scores add a learned score per relative position.

    ``alpha_ij = Q_i . K_j / sqrt(d_k) + P_{i-j}``; each output row is ``sum_j softmax_j(alpha_i)_j V_j``,
    or with ``hard=True`` the row ``V_j`` of the largest ``alpha_ij`` (hard attention: the softmax
    replaced by a one-hot argmax; the first such ``j`` on ties).

    Args:
        q, k: ``(n, d_k)``.
        v: ``(n, d_v)``.
        position_scores: ``(2n - 1,)``: ``position_scores[(i - j) + n - 1] = P_{i-j}``, for offsets
            ``i - j`` from ``-(n-1)`` to ``n-1``; ``-inf`` excludes an offset.
        hard: argmax instead of softmax.

    Returns:
        ``(n, d_v)``.
    """
    n, d_k = q.shape
    offsets = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # (n, n): i - j
    scores = q @ k.T / math.sqrt(d_k) + position_scores[offsets + n - 1]
    if hard:
        return v[scores.argmax(dim=1)]
    return torch.softmax(scores, dim=1) @ v


def conv1d_as_attention(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv1d(x, weight, padding=K // 2)`` (stride 1, zero padding, no bias) as multi-head attention.

    One head per kernel tap ``m`` in ``-K//2 .. K//2``: its position scores are 0 at the offset
    ``j - i = m`` and ``-inf`` elsewhere, so it attends to ``x_{i+m}`` alone (the content scores are
    zero: ``W_Q = 0``); its value map is the tap's weights ``W[:, :, m + K//2]``, and the heads' outputs
    add up. The sequence is padded with zeros so that every query has its key.

    Args:
        x: ``(B, C_in, n)``.
        weight: ``(C_out, C_in, K)``, ``K`` odd.

    Returns:
        ``(B, C_out, n)``.
    """
    batch, _, n = x.shape
    out_channels, _, size = weight.shape
    if size % 2 == 0:
        raise ValueError(f"conv1d_as_attention: the kernel size must be odd, got {size}")
    pad = size // 2
    length = n + 2 * pad
    out = x.new_zeros(batch, out_channels, n)
    zeros = x.new_zeros(length, 1)
    for b in range(batch):
        values = F.pad(x[b], (pad, pad)).T  # (n + 2 pad, C_in)
        for tap in range(size):
            scores = torch.full((2 * length - 1,), -math.inf, dtype=x.dtype)
            scores[-(tap - pad) + length - 1] = 0.0  # the offset i - j = -(tap - pad)
            attended = relative_attention(zeros, zeros, values, scores)[pad:pad + n]  # (n, C_in): x_{i + m}
            out[b] += (attended @ weight[:, :, tap].T).T
    return out


def max_pool_as_attention(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool1d(x, kernel_size, stride=1, padding=kernel_size // 2)`` as hard attention.

    Per channel, ``Q = 1`` and ``K = V = x`` (``d_k = 1``), so the content score of key ``j`` is ``x_j``;
    the position scores are 0 within ``|i - j| <= kernel_size // 2`` and ``-inf`` outside. The argmax of
    the scores is then the largest ``x_j`` of the window, and hard attention returns it.

    Args:
        x: ``(B, C, n)``.
        kernel_size: odd.

    Returns:
        ``(B, C, n)``.
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"max_pool_as_attention: the kernel size must be odd, got {kernel_size}")
    batch, channels, n = x.shape
    reach = kernel_size // 2
    offsets = torch.arange(-(n - 1), n)
    scores = torch.where(offsets.abs() <= reach, 0.0, -math.inf).to(x.dtype)
    ones = x.new_ones(n, 1)
    out = torch.empty_like(x)
    for b in range(batch):
        for c in range(channels):
            column = x[b, c][:, None]  # (n, 1)
            out[b, c] = relative_attention(ones, column, column, scores, hard=True)[:, 0]
    return out
