"""Graders of CSC413 assignment 4, part 1 (attention and recurrence): the Jacobian of a sigmoid RNN
and its norm bound (1.2.1), linear attention (1.3.1), and convolution and max pooling written as
attention with relative-position scores (1.4.1, 1.4.2).

How the checks know the answers (helpers in ``_attention.py``): the definitions computed in float64,
quadratically, with autograd for the Jacobian (``_attention.py``), and torch's own
``conv1d`` and ``max_pool1d``; the bound is tested on the Jacobians themselves, for being valid and for
being tight; the linear attention's memory is watched while it runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _attention import (
    MEMORY_DIM,
    MEMORY_LENGTH,
    QUADRATIC_SHARE,
    as_number,
    check_attention_close,
    check_relative_attention,
    kernel_attention,
    largest_singular_value,
    orthogonal,
    product_score_pooling,
    sigmoid_rnn_jacobian_reference,
    tensor,
)
from _probes_attention import call_attention

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure

ASSIGNMENT = "csc413-a4"


# -- 1.2.1: the Jacobian of x_{t+1} = sigmoid(W x_t) and its bound ---------------------------------------------------
@pytest.mark.points(3, question="1.2.1")
def test_sigmoid_rnn_jacobian_and_bound(sub, parts):
    """dx_n/dx_1 of x_{t+1} = sigmoid(W x_t), and a bound on its largest singular value that holds and is tight."""
    with parts.part(1, "sigmoid_rnn_jacobian equals autograd's dx_n/dx_1"):
        for d, n, seed in ((3, 1, 1), (4, 2, 2), (5, 4, 3), (4, 7, 4)):
            W, x1 = tensor((d, d), seed, scale=1.5), tensor((d,), seed + 10)
            expected = sigmoid_rnn_jacobian_reference(W, x1, n)
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
            actual = largest_singular_value(sigmoid_rnn_jacobian_reference(W, x1, n))
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
            actual = largest_singular_value(sigmoid_rnn_jacobian_reference(W, torch.zeros(6), n))
            who = f"sigmoid_rnn_jacobian_bound(0.25, {n})"
            bound = as_number(sub.sigmoid_rnn_jacobian_bound(0.25, n), who)
            if not bound <= 2 * actual:
                raise CheckFailure(
                    f"{who} returned {bound:.6g}; for W = Q / 4 (Q orthogonal) and x_1 = 0 the largest singular value "
                    f"of dx_{n}/dx_1 is {actual:.6g}, so the bound is more than twice too loose; the handout's "
                    f"argument gives (sigma_max(W) / 4)^(n-1) = {(1 / 16) ** (n - 1):.6g}. Hint: sigma_max of a "
                    f"product is at most the product of the sigma_max, and sigma_max(diag(sigmoid')) <= 1/4."
                )


# -- 1.3.1: linear attention -----------------------------------------------------------------------------------------
@pytest.mark.points(3, question="1.3.1")
def test_linear_attention(sub, parts):
    """Linear attention with a kernel feature map equals the quadratic form, computed in O(n)."""
    cases = (((7, 4), (9, 4), (9, 3), 1), ((2, 5, 6), (2, 8, 6), (2, 8, 2), 2))
    with parts.part(1, "equals the quadratic computation with phi(x) = elu(x) + 1 (default), unbatched and batched"):
        for q_shape, k_shape, v_shape, seed in cases:
            q, k, v = tensor(q_shape, seed), tensor(k_shape, seed + 1), tensor(v_shape, seed + 2)
            who = f"linear_attention(q{list(q_shape)}, k{list(k_shape)}, v{list(v_shape)})"
            check_attention_close(sub.linear_attention(q, k, v), kernel_attention(q, k, v), who)
    with parts.part(1, "uses the feature map it is given"):
        q_shape, k_shape, v_shape, seed = cases[0]
        q, k, v = tensor(q_shape, seed), tensor(k_shape, seed + 1), tensor(v_shape, seed + 2)
        who = f"linear_attention(q{list(q_shape)}, k{list(k_shape)}, v{list(v_shape)}, feature_map=F.softplus)"
        result = sub.apply(call_attention, sub.linear_attention, q, k, v, feature_map="softplus")
        if "error" in result:
            raise CheckFailure(
                f"linear_attention: {result['error']}; the handout's phi is a parameter: "
                f"linear_attention(q, k, v, feature_map=None)."
            )
        check_attention_close(result["output"], kernel_attention(q, k, v, F.softplus), who)
    with parts.part(1, "O(n): never forms the n x m matrix of similarities"):
        n, d = MEMORY_LENGTH, MEMORY_DIM
        q, k, v = tensor((n, d), 5), tensor((n, d), 6), tensor((n, d), 7)
        who = f"linear_attention(q[{n}, {d}], k[{n}, {d}], v[{n}, {d}])"
        result = sub.apply(call_attention, sub.linear_attention, q, k, v)
        if result["largest"] >= QUADRATIC_SHARE * n * n:
            raise CheckFailure(
                f"{who} created a tensor of shape {shapes.shape_text(result['shape'])} ({result['largest']} elements, "
                f"returned by torch's {result['function'] or 'an operation'}); computing in O(n) needs nothing larger "
                f"than n x d. Hint: phi(Q_i) (sum_j phi(K_j) V_j^T) / (phi(Q_i) . sum_j phi(K_j)): form the two sums "
                f"over j first (a d x d_v matrix and a d-vector), then one product per query."
            )
        check_attention_close(result["output"], kernel_attention(q, k, v), who)


# -- 1.4.1 and 1.4.2: attention with relative-position scores --------------------------------------------------------
@pytest.mark.points(3, question="1.4.1")
def test_conv1d_as_attention(sub, parts):
    """Relative-position attention, and a 1-D convolution written as that attention."""
    with parts.part(1, "relative_attention: softmax_j(Q_i . K_j / sqrt(d_k) + P_{i-j}) V"):
        check_relative_attention(sub, hard=False)
    with parts.part(2, "conv1d_as_attention equals torch.conv1d (stride 1, zero padding K // 2, no bias)"):
        for batch, c_in, n, c_out, size, seed in ((2, 3, 11, 4, 3, 1), (1, 2, 8, 3, 5, 2), (2, 1, 6, 1, 1, 3)):
            x, weight = tensor((batch, c_in, n), seed), tensor((c_out, c_in, size), seed + 1)
            who = f"conv1d_as_attention(x[{batch}, {c_in}, {n}], weight[{c_out}, {c_in}, {size}])"
            check_attention_close(
                sub.conv1d_as_attention(x, weight), F.conv1d(x.double(), weight.double(), padding=size // 2), who
            )


@pytest.mark.points(2, question="1.4.2")
def test_max_pool_as_attention(sub, parts):
    """Max pooling written as hard attention with relative-position scores."""
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
