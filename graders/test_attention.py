"""Graders of CSC413 A4 part 1 (``004_...``): the Jacobian of a sigmoid RNN and its norm bound
(1.2.1), linear attention (1.3.1), and convolution and max pooling written as attention with
relative-position scores (1.4.1, 1.4.2).

Expected values come from :mod:`torchgrade.checks.attention` (the definitions computed in float64,
quadratically, with autograd for the Jacobian) and from torch's own ``conv1d`` and ``max_pool1d``;
the bound is tested on the Jacobians themselves, for being valid and for being tight; the linear
attention's memory is watched while it runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchgrade.checks import attention, shapes
from torchgrade.errors import CheckFailure

ASSIGNMENT = "csc413-a4"
ATOL = 1e-5  # float32 computations against float64 expectations of order 1


def tensor(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy((np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32))


# -- 1.2.1: the Jacobian of x_{t+1} = sigmoid(W x_t) and its bound ---------------------------------------------
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


@pytest.mark.points(3, question="1.2.1")
def test_sigmoid_rnn_jacobian_and_bound(sub, parts):
    with parts.part(1, "sigmoid_rnn_jacobian equals autograd's dx_n/dx_1"):
        for d, n, seed in ((3, 1, 1), (4, 2, 2), (5, 4, 3), (4, 7, 4)):
            W, x1 = tensor((d, d), seed, scale=1.5), tensor((d,), seed + 10)
            expected = attention.sigmoid_rnn_jacobian_reference(W, x1, n)
            who = f"sigmoid_rnn_jacobian(W[{d}, {d}], x1[{d}], n={n})"
            shapes.check_close(
                sub.sigmoid_rnn_jacobian(W, x1, n), expected, who, atol=1e-6 * float(expected.abs().max()), rtol=1e-4
            )
    with parts.part(1, "the bound holds: sigma_max(dx_n/dx_1) <= bound for random W and x_1"):
        rng = np.random.default_rng(121)
        for trial in range(24):
            d, n = int(rng.integers(2, 7)), int(rng.integers(1, 7))
            sigma = float(rng.choice([0.25, 1.0, 3.0, 10.0]))
            spectrum = torch.diag(torch.from_numpy(rng.uniform(0.2, 1.0, d)))
            W = orthogonal(d, trial) @ spectrum @ orthogonal(d, trial + 99)
            W = W * sigma / largest_singular_value(W)
            x1 = torch.from_numpy(rng.normal(scale=2.0, size=d))
            actual = largest_singular_value(attention.sigmoid_rnn_jacobian_reference(W, x1, n))
            who = f"sigmoid_rnn_jacobian_bound({sigma:g}, {n})"
            bound = as_number(sub.sigmoid_rnn_jacobian_bound(sigma, n), who)
            if not actual <= bound * (1 + 1e-6):
                raise CheckFailure(
                    f"{who} returned {bound:.6g}, but for a W with sigma_max(W) = {sigma:g} (d = {d}) and a random x_1 "
                    f"the largest singular value of dx_{n}/dx_1 is {actual:.6g}, above the bound. Hint: each step's "
                    f"Jacobian is diag(sigmoid'(W x_t)) W, and sigmoid' <= 1/4."
                )
    with parts.part(1, "the bound is tight: (1/16)^(n-1) for sigma_max(W) = 1/4, nearly reached at x_1 = 0"):
        for n in (2, 3, 4, 6):
            W = orthogonal(6, n) / 4  # sigma_max(W) = 1/4, every singular value 1/4
            actual = largest_singular_value(attention.sigmoid_rnn_jacobian_reference(W, torch.zeros(6), n))
            who = f"sigmoid_rnn_jacobian_bound(0.25, {n})"
            bound = as_number(sub.sigmoid_rnn_jacobian_bound(0.25, n), who)
            if not bound <= 2 * actual:
                raise CheckFailure(
                    f"{who} returned {bound:.6g}; for W = Q / 4 (Q orthogonal) and x_1 = 0 the largest singular value "
                    f"of dx_{n}/dx_1 is {actual:.6g}, so the bound is more than twice too loose; the handout's "
                    f"argument gives (sigma_max(W) / 4)^(n-1) = {(1 / 16) ** (n - 1):.6g}. Hint: sigma_max of a "
                    f"product is at most the product of the sigma_max, and sigma_max(diag(sigmoid')) <= 1/4."
                )


# -- 1.3.1: linear attention ------------------------------------------------------------------------------------------
MEMORY_LENGTH, MEMORY_DIM = 1024, 4
#: A computation in O(n) creates tensors of n * d elements (4,096 here); the quadratic one creates the
#: n x m similarities (1,048,576). Anything from an eighth of that is taken for the n x m matrix.
QUADRATIC_SHARE = 1 / 8


def check_attention_close(value, expected: torch.Tensor, who: str) -> None:
    shapes.check_close(value, expected, who, atol=ATOL, rtol=1e-4)


@pytest.mark.points(3, question="1.3.1")
def test_linear_attention(sub, parts):
    cases = (((7, 4), (9, 4), (9, 3), 1), ((2, 5, 6), (2, 8, 6), (2, 8, 2), 2))
    with parts.part(1, "equals the quadratic computation with phi(x) = elu(x) + 1 (default), unbatched and batched"):
        for q_shape, k_shape, v_shape, seed in cases:
            q, k, v = tensor(q_shape, seed), tensor(k_shape, seed + 1), tensor(v_shape, seed + 2)
            who = f"linear_attention(q{list(q_shape)}, k{list(k_shape)}, v{list(v_shape)})"
            check_attention_close(sub.linear_attention(q, k, v), attention.kernel_attention(q, k, v), who)
    with parts.part(1, "uses the feature map it is given"):
        q_shape, k_shape, v_shape, seed = cases[0]
        q, k, v = tensor(q_shape, seed), tensor(k_shape, seed + 1), tensor(v_shape, seed + 2)
        who = f"linear_attention(q{list(q_shape)}, k{list(k_shape)}, v{list(v_shape)}, feature_map=F.softplus)"
        result = sub.apply(attention.call_attention, sub.linear_attention, q, k, v, feature_map="softplus")
        if "error" in result:
            raise CheckFailure(
                f"linear_attention: {result['error']}; the handout's phi is a parameter: "
                f"linear_attention(q, k, v, feature_map=None)."
            )
        check_attention_close(result["output"], attention.kernel_attention(q, k, v, F.softplus), who)
    with parts.part(1, "O(n): never forms the n x m matrix of similarities"):
        n, d = MEMORY_LENGTH, MEMORY_DIM
        q, k, v = tensor((n, d), 5), tensor((n, d), 6), tensor((n, d), 7)
        who = f"linear_attention(q[{n}, {d}], k[{n}, {d}], v[{n}, {d}])"
        result = sub.apply(attention.call_attention, sub.linear_attention, q, k, v)
        if result["largest"] >= QUADRATIC_SHARE * n * n:
            raise CheckFailure(
                f"{who} created a tensor of shape {shapes.shape_text(result['shape'])} ({result['largest']} elements, "
                f"returned by torch's {result['function'] or 'an operation'}); computing in O(n) needs nothing larger "
                f"than n x d. Hint: phi(Q_i) (sum_j phi(K_j) V_j^T) / (phi(Q_i) . sum_j phi(K_j)): form the two sums "
                f"over j first (a d x d_v matrix and a d-vector), then one product per query."
            )
        check_attention_close(result["output"], attention.kernel_attention(q, k, v), who)


# -- 1.4.1 and 1.4.2: attention with relative-position scores -------------------------------------------------------
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
        expected = attention.relative_attention_reference(q, k, v, scores, hard=hard)
        try:
            check_attention_close(submission.relative_attention(q, k, v, scores, hard=hard), expected, who)
        except CheckFailure as failure:
            then = "the row V_j of the largest alpha_ij" if hard else "the softmax over j"
            raise CheckFailure(
                f"{failure} Hint: alpha_ij = Q_i . K_j / sqrt(d_k) + P_{{i-j}} with P_{{i-j}} = "
                f"position_scores[i - j + n - 1]; then {then}."
            ) from None


@pytest.mark.points(3, question="1.4.1")
def test_conv1d_as_attention(sub, parts):
    with parts.part(1, "relative_attention: softmax_j(Q_i . K_j / sqrt(d_k) + P_{i-j}) V"):
        check_relative_attention(sub, hard=False)
    with parts.part(2, "conv1d_as_attention equals torch.conv1d (stride 1, zero padding K // 2, no bias)"):
        for batch, c_in, n, c_out, size, seed in ((2, 3, 11, 4, 3, 1), (1, 2, 8, 3, 5, 2), (2, 1, 6, 1, 1, 3)):
            x, weight = tensor((batch, c_in, n), seed), tensor((c_out, c_in, size), seed + 1)
            who = f"conv1d_as_attention(x[{batch}, {c_in}, {n}], weight[{c_out}, {c_in}, {size}])"
            check_attention_close(
                sub.conv1d_as_attention(x, weight), F.conv1d(x.double(), weight.double(), padding=size // 2), who
            )


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


@pytest.mark.points(2, question="1.4.2")
def test_max_pool_as_attention(sub, parts):
    with parts.part(1, "relative_attention(hard=True): the row V_j of the largest score"):
        check_relative_attention(sub, hard=True)
    with parts.part(1, "max_pool_as_attention equals max_pool1d (stride 1, padding K // 2), negative inputs too"):
        for batch, channels, n, size, seed in ((2, 3, 10, 3, 1), (1, 2, 9, 5, 2)):
            x = tensor((batch, channels, n), seed)
            who = f"max_pool_as_attention(x[{batch}, {channels}, {n}], kernel_size={size})"
            got = sub.max_pool_as_attention(x, size)
            try:
                shapes.check_close(got, F.max_pool1d(x.double(), size, stride=1, padding=size // 2), who, atol=1e-6)
            except CheckFailure as failure:
                hint = ""
                if (
                    isinstance(got, torch.Tensor)
                    and got.shape == x.shape
                    and torch.allclose(got.double(), product_score_pooling(x, size), atol=1e-6)
                ):
                    hint = (
                        " With Q = K = x the score x_i x_j picks the smallest x_j wherever x_i < 0; a constant "
                        "query (Q = 1, K = x) scores each key by x_j alone."
                    )
                raise CheckFailure(
                    f"{failure}{hint} Hint: scores x_j + P_{{i-j}}, P = 0 within the window and -inf "
                    f"outside, and hard attention (the argmax) over them."
                ) from None
