"""Helpers of ``test_attention.py`` (CSC413 A4 part 1): seeded inputs, the tolerances, and the
grader's comparisons and hints, and the expected values, computed here (float64, straight from the
definitions: the last section) and by torch's ``conv1d`` and ``max_pool1d``. How much memory a
submitted attention function uses is measured next to it by ``_probes_attention.py``, where
:func:`elu_plus_one`, the default feature map, lives too, so that both sides use one function.

Nothing here is graded by itself: the checks in ``test_attention.py`` call these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from _probes_attention import elu_plus_one

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure

ATOL = 1e-5  # float32 computations against float64 expectations of order 1


def tensor(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy((np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32))


# -- 1.2.1: the Jacobian of x_{t+1} = sigmoid(W x_t) and its bound ---------------------------------------------------
def largest_singular_value(matrix: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(matrix.double(), ord=2))


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return torch.from_numpy(q)


def as_number(value, who: str) -> float:
    array = shapes.as_array(value, who, shape_hint="[] (a number)", allow_sequences=True)
    if array.size != 1:
        raise CheckFailure(
            shapes.MSG_SHAPE.format(who=who, got=shapes.shape_text(array.shape), expected="[] (a number)")
        )
    return float(array.reshape(()))


# -- 1.3.1: linear attention -----------------------------------------------------------------------------------------
MEMORY_LENGTH, MEMORY_DIM = 1024, 4
#: A computation in O(n) creates tensors of n * d elements (4,096 here); the quadratic one creates the
#: n x m similarities (1,048,576). Anything from an eighth of that is taken for the n x m matrix.
QUADRATIC_SHARE = 1 / 8


def check_attention_close(value, expected: torch.Tensor, who: str) -> None:
    shapes.check_close(value, expected, who, atol=ATOL, rtol=1e-4)


# -- 1.4.1 and 1.4.2: attention with relative-position scores --------------------------------------------------------
def position_scores(n: int, seed: int, blocked: float = 0.3) -> torch.Tensor:
    """Random ``P_{i-j}`` with some offsets set to -inf (never offset 0, so every row keeps a key)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=2 * n - 1).astype(np.float32)
    scores[(rng.random(2 * n - 1) < blocked) & (np.arange(2 * n - 1) != n - 1)] = -np.inf
    return torch.from_numpy(scores)


def check_relative_attention(submission, hard: bool) -> None:
    for n, d_k, d_v, seed in ((6, 3, 2, 1), (9, 2, 4, 2)):
        q, k, v = tensor((n, d_k), seed), tensor((n, d_k), seed + 1), tensor((n, d_v), seed + 2)
        scores = position_scores(n, seed + 3)
        who = (
            f"relative_attention(q[{n}, {d_k}], k[{n}, {d_k}], v[{n}, {d_v}], position_scores[{2 * n - 1}], "
            f"hard={hard})"
        )
        expected = relative_attention_reference(q, k, v, scores, hard=hard)
        try:
            check_attention_close(submission.relative_attention(q, k, v, scores, hard=hard), expected, who)
        except CheckFailure as failure:
            then = "the row V_j of the largest alpha_ij" if hard else "the softmax over j"
            raise CheckFailure(
                f"{failure} Hint: alpha_ij = Q_i . K_j / sqrt(d_k) + P_{{i-j}} with P_{{i-j}} = "
                f"position_scores[i - j + n - 1]; then {then}."
            ) from None


def product_score_pooling(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """What hard attention with scores ``x_i x_j`` (Q = K = x) returns: the argmax of ``x_i x_j`` over the
    window is the smallest ``x_j`` where ``x_i < 0`` (the completed handout's construction)."""
    reach = kernel_size // 2
    out = torch.empty_like(x, dtype=torch.float64)
    for index in np.ndindex(*x.shape[:-1]):
        row = x[index].double()
        for i in range(len(row)):
            window = row[max(0, i - reach) : i + reach + 1]
            out[index + (i,)] = window[int((row[i] * window).argmax())]
    return out


# -- the grader's attention, float64 from the definitions (was torchgrade.checks.attention) --------


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
