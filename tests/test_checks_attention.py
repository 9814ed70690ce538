"""The graders' _attention.py, their float64 attention and Jacobian, against hand-written loops
and closed forms; _probes_attention.py, the memory probe, on a linear and a quadratic
implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _toys import graders_module

attention = graders_module("_attention")  # the graders' own (CSC413 A4 part 1)
call_attention, elu_plus_one = graders_module("_probes_attention").call_attention, attention.elu_plus_one

pytestmark = pytest.mark.usefixtures("single_thread")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_kernel_attention_is_the_weighted_average_of_its_definition():
    q, k, v = randn(3, 2, seed=1), randn(4, 2, seed=2), randn(4, 5, seed=3)
    phi = elu_plus_one
    expected = torch.stack(
        [
            sum(float(phi(q[i]) @ phi(k[j])) * v[j] for j in range(4))
            / sum(float(phi(q[i]) @ phi(k[j])) for j in range(4))
            for i in range(3)
        ]
    )
    assert torch.allclose(attention.kernel_attention(q, k, v), expected)
    batched = attention.kernel_attention(torch.stack([q, q]), torch.stack([k, k]), torch.stack([v, v]))
    assert torch.allclose(batched, torch.stack([expected, expected]))


def test_relative_attention_reference_with_blocked_offsets_and_hard_attention():
    n = 4
    q, k, v = randn(n, 2, seed=4), randn(n, 2, seed=5), randn(n, 3, seed=6)
    scores = torch.full((2 * n - 1,), -math.inf, dtype=torch.float64)
    scores[n - 1 + 1] = 0.0  # only the offset i - j = 1: each row attends to the key before it...
    scores[n - 1] = -1e9  # ...and row 0, which has none, to itself
    out = attention.relative_attention_reference(q, k, v, scores)
    assert torch.allclose(out[1:], v[:-1]) and torch.allclose(out[0], v[0])
    content = q @ k.T / math.sqrt(2)
    hard = attention.relative_attention_reference(q, k, v, torch.zeros(2 * n - 1), hard=True)
    assert torch.equal(hard, v[content.argmax(dim=1)])


def test_jacobian_reference_is_the_chain_rule_product():
    W, x = randn(4, 4, seed=7), randn(4, seed=8)
    s1 = torch.sigmoid(W @ x)
    s2 = torch.sigmoid(W @ s1)
    expected = torch.diag(s2 * (1 - s2)) @ W @ torch.diag(s1 * (1 - s1)) @ W
    assert torch.allclose(attention.sigmoid_rnn_jacobian_reference(W, x, 3), expected)
    assert torch.equal(attention.sigmoid_rnn_jacobian_reference(W, x, 1), torch.eye(4, dtype=torch.float64))


def linear(q, k, v, feature_map=None):
    phi = feature_map or elu_plus_one
    kv = phi(k).transpose(-2, -1) @ v
    return phi(q) @ kv / (phi(q) @ phi(k).sum(-2, keepdim=True).transpose(-2, -1))


def quadratic(q, k, v):
    return attention.kernel_attention(q, k, v).float()


def test_call_attention_tells_linear_from_quadratic_memory():
    q, k, v = (randn(256, 4, seed=s).float() for s in (1, 2, 3))
    small = call_attention(linear, q, k, v)
    large = call_attention(quadratic, q, k, v)
    assert small["largest"] == 256 * 4 and torch.allclose(small["output"], large["output"], atol=1e-5)
    assert large["largest"] == 256 * 256 and large["shape"] == [256, 256] and large["function"] == "matmul"


def test_call_attention_passes_a_named_feature_map_and_refuses_a_function_without_one():
    q, k, v = randn(5, 3, seed=1), randn(6, 3, seed=2), randn(6, 2, seed=3)
    result = call_attention(linear, q, k, v, feature_map="softplus")
    assert torch.allclose(result["output"], attention.kernel_attention(q, k, v, F.softplus))
    result = call_attention(quadratic, q, k, v, feature_map="softplus")
    assert result["error"].startswith("it takes no feature_map argument")
