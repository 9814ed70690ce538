"""Tests of reference/answers.py: the handouts' numbers, autograd, measured models, the template.

The reference is loaded by file path (graders never import it; neither does the harness).
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.importfile import import_file
from torchgrade.probes.params import count_parameters
from torchgrade.probes.receptive_field import downsampling_receptive_fields

ROOT = Path(__file__).resolve().parents[1]


ref = import_file(ROOT / "reference/answers.py", "_torchgrade_reference_answers")

# Handout values (shared/ASSIGNMENTS.md, section A).
Q2_X = [1, 3, 2, 1, 1, 0, 1]
Q2_KERNEL = [-1, 2, -1]
Q6_H = [[1, 1], [0, 1], [1, 0], [-1, 0]]
Q6_EDGES = [(1, 2), (2, 3), (2, 4), (3, 4)]
Q6_W = [[1, 2], [0, 1]]
Q6_Q = [1, 1]
SIGMOID_5 = 1 / (1 + math.exp(-5))
SIGMOID_20 = 1 / (1 + math.exp(-20))


pytestmark = pytest.mark.usefixtures("single_thread")


# --- the handout's numbers ---------------------------------------------------------------------


def test_q2a_forward_pass() -> None:
    out = ref.conv1d_forward(Q2_X, Q2_KERNEL, 0, [1] * 5, 1, 0)
    assert out["conv"] == [3, 0, -1, 1, -2]
    assert out["relu"] == [3, 0, 0, 1, 0]
    assert out["z"] == 5
    assert out["y"] == pytest.approx(SIGMOID_5)
    assert out["loss"] == pytest.approx(-math.log(1 - SIGMOID_5))
    assert out["loss"] == pytest.approx(5.00672, abs=1e-5)
    assert ref.conv1d_forward(Q2_X, Q2_KERNEL, 0, 1, 1, 0) == out  # scalar weight broadcasts


def test_q2b_kernel_gradient() -> None:
    grad = ref.conv1d_kernel_grad(Q2_X, Q2_KERNEL, 0, [1] * 5, 1, 0)
    assert grad == pytest.approx([SIGMOID_5 * v for v in (2, 4, 2)])
    assert grad == pytest.approx([1.98661, 3.97323, 1.98661], abs=1e-5)


def test_q2d_receptive_field_1d() -> None:
    assert [ref.receptive_field_1d(3, n) for n in (1, 2, 3, 4)] == [1, 3, 5, 7]
    assert ref.receptive_field_1d(5, 3) == 9
    with pytest.raises(ValueError, match="n_layers must be a positive int"):
        ref.receptive_field_1d(3, 0)


def test_q3d_param_counts() -> None:
    assert ref.cnn_param_count(4, 3) == 1_260_918
    assert ref.cnn_channel_param_count(4, 3) == 633_826


def test_q3f_receptive_fields() -> None:
    assert ref.cnn_receptive_fields(3) == [4, 10, 22, 46]
    assert ref.cnn_receptive_fields(5) == [6, 16, 36, 76]


def test_q6_handout_example() -> None:
    h1 = ref.gnn_sum_update(Q6_H, Q6_EDGES, Q6_W)
    np.testing.assert_array_equal(h1, [[5, 2], [5, 2], [2, 1], [2, 1]])
    np.testing.assert_array_equal(h1.sum(axis=0), [14, 6])
    out = ref.gnn_graph_output(Q6_H, Q6_EDGES, Q6_W, Q6_Q)
    assert out == {"z": 20.0, "y": pytest.approx(SIGMOID_20)}
    grads = ref.gnn_param_grads(Q6_H, Q6_EDGES, Q6_W, Q6_Q, 0)
    np.testing.assert_allclose(grads["q"], SIGMOID_20 * np.array([14, 6]))
    np.testing.assert_allclose(grads["W"], SIGMOID_20 * np.array([[2, 6], [2, 6]]))


def test_q6_with_h2_and_h3_swapped_gives_the_known_wrong_answer() -> None:
    # The handout's text swaps h2 and h3 relative to its figure; the submission in 001 used the
    # text's values. The reference follows the figure, so the two must differ exactly here.
    swapped = [Q6_H[0], Q6_H[2], Q6_H[1], Q6_H[3]]
    h1 = ref.gnn_sum_update(swapped, Q6_EDGES, Q6_W)
    np.testing.assert_array_equal(h1, [[4, 1], [5, 2], [2, 1], [2, 1]])
    assert ref.gnn_graph_output(swapped, Q6_EDGES, Q6_W, Q6_Q)["z"] == 18


def test_gnn_edges_are_one_based_and_undirected() -> None:
    one_way = ref.gnn_sum_update(Q6_H, [(2, 1), (3, 2), (4, 2), (4, 3)], Q6_W)
    np.testing.assert_array_equal(one_way, ref.gnn_sum_update(Q6_H, Q6_EDGES, Q6_W))
    with pytest.raises(ValueError, match=r"outside 1\.\.4"):
        ref.gnn_sum_update(Q6_H, [(0, 1)], Q6_W)


# --- against torch autograd on random inputs ---------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_conv1d_forward_and_gradient_match_autograd(seed: int) -> None:
    rng = np.random.default_rng(seed)
    length = int(rng.integers(3, 12))
    width = int(rng.integers(1, length + 1))
    x, kernel = rng.normal(size=length), rng.normal(size=width)
    bias, fc_bias = float(rng.normal()), float(rng.normal())
    fc_weight = rng.normal(size=length - width + 1)
    target = float(rng.choice([0.0, 1.0, rng.uniform()]))

    k = torch.tensor(kernel, dtype=torch.float64, requires_grad=True)
    conv = F.conv1d(torch.tensor(x).view(1, 1, -1), k.view(1, 1, -1)).flatten() + bias
    z = torch.relu(conv) @ torch.tensor(fc_weight) + fc_bias
    loss = F.binary_cross_entropy_with_logits(z, torch.tensor(target, dtype=torch.float64))
    loss.backward()

    out = ref.conv1d_forward(x, kernel, bias, fc_weight, fc_bias, target)
    np.testing.assert_allclose(out["conv"], conv.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert out["z"] == pytest.approx(z.item(), rel=1e-12, abs=1e-12)
    assert out["loss"] == pytest.approx(loss.item(), rel=1e-12, abs=1e-12)
    grad = ref.conv1d_kernel_grad(x, kernel, bias, fc_weight, fc_bias, target)
    np.testing.assert_allclose(grad, k.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_gnn_matches_autograd(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_nodes, d_in, d_out = (int(v) for v in rng.integers(2, 7, size=3))
    pairs = [(u, v) for u in range(1, n_nodes + 1) for v in range(u + 1, n_nodes + 1)]
    edges = [pairs[i] for i in rng.permutation(len(pairs))[: int(rng.integers(0, len(pairs) + 1))]]
    h, w, q = rng.normal(size=(n_nodes, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    target = float(rng.choice([0.0, 1.0, rng.uniform()]))

    adjacency = torch.eye(n_nodes, dtype=torch.float64)
    for u, v in edges:
        adjacency[u - 1, v - 1] = adjacency[v - 1, u - 1] = 1.0
    w_t = torch.tensor(w, requires_grad=True)
    q_t = torch.tensor(q, requires_grad=True)
    h1 = torch.relu(adjacency @ torch.tensor(h) @ w_t.T)
    z = q_t @ h1.sum(dim=0)
    F.binary_cross_entropy_with_logits(z, torch.tensor(target, dtype=torch.float64)).backward()

    np.testing.assert_allclose(ref.gnn_sum_update(h, edges, w), h1.detach().numpy(), atol=1e-12)
    out = ref.gnn_graph_output(h, edges, w, q)
    assert out["z"] == pytest.approx(z.item(), abs=1e-12)
    assert out["y"] == pytest.approx(torch.sigmoid(z).item(), abs=1e-12)
    grads = ref.gnn_param_grads(h, edges, w, q, target)
    np.testing.assert_allclose(grads["W"], w_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["q"], q_t.grad.numpy(), rtol=1e-10, atol=1e-12)


# --- against measured models ---------------------------------------------------------------------


class _ChannelStages(nn.Module):
    """CNNChannel's four conv + max-pool stages (no head): halves stacked on channels."""

    def __init__(self, k: int):
        super().__init__()
        widths = [6, 2, 4, 8, 16]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, padding=(k - 1) // 2) for a, b in pairwise(widths))
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[2] // 2
        x = torch.cat([x[:, :, :half], x[:, :, half:]], dim=1)
        for conv in self.convs:
            x = self.pool(F.relu(conv(x)))
        return x


@pytest.mark.parametrize("k", [3, 5])
def test_cnn_receptive_fields_match_a_measured_model(k: int) -> None:
    measured = downsampling_receptive_fields(_ChannelStages(k), (1, 3, 256, 128), half="top")
    assert ref.cnn_receptive_fields(k) == measured


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("n_layers", [1, 2, 5])
def test_receptive_field_1d_matches_autograd(k: int, n_layers: int) -> None:
    # Layer 1 is the input, so a unit of layer N sits behind N - 1 convolutions.
    x = torch.ones(1, 1, 64, requires_grad=True)
    y = x
    for _ in range(n_layers - 1):
        y = F.conv1d(y, torch.ones(1, 1, k))
    y[0, 0, y.shape[-1] // 2].backward()
    assert ref.receptive_field_1d(k, n_layers) == int((x.grad != 0).sum())


def _shoe_cnn(n: int, k: int, channel: bool) -> nn.Module:
    widths = [6 if channel else 3, n, 2 * n, 4 * n, 8 * n]
    layers: list[nn.Module] = []
    for a, b in pairwise(widths):
        layers += [nn.Conv2d(a, b, k, padding=(k - 1) // 2), nn.ReLU(), nn.MaxPool2d(2)]
    side = 14 if channel else 28
    layers += [nn.Flatten(), nn.Linear(8 * n * side * 14, 100), nn.ReLU(), nn.Linear(100, 2)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_param_counts_match_built_models(n: int, k: int) -> None:
    assert ref.cnn_param_count(n, k) == count_parameters(_shoe_cnn(n, k, channel=False))
    assert ref.cnn_channel_param_count(n, k) == count_parameters(_shoe_cnn(n, k, channel=True))


@pytest.mark.parametrize(("hidden", "inputs", "outputs"), [(1, 1, 1), (128, 92, 92), (7, 3, 5)])
def test_lstm_param_count(hidden: int, inputs: int, outputs: int) -> None:
    # nn.LSTM keeps two bias vectors per gate (b_ih and b_hh); the handout's equations one.
    built = count_parameters(nn.LSTM(inputs, hidden)) + count_parameters(nn.Linear(hidden, outputs))
    assert ref.lstm_param_count(hidden, inputs, outputs) == built - 4 * hidden


# --- EECS 182 midterm review: basics -------------------------------------------------------------


def test_sigmoid_derivative_matches_autograd() -> None:
    z = torch.linspace(-40, 40, 161, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(z).sum().backward()
    np.testing.assert_allclose(ref.sigmoid_derivative(z.detach().numpy()), z.grad.numpy(), rtol=1e-12, atol=1e-300)
    assert ref.sigmoid_derivative(0) == 0.25
    assert ref.sigmoid_derivative(-1000.0) == 0.0  # no overflow warning (warnings are errors here)


@pytest.mark.parametrize("seed", range(10))
def test_mlp_gradients_match_autograd(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    x, y_true, d = (float(v) for v in rng.normal(size=3))
    A, b, C = rng.normal(size=(k, 1)), rng.normal(size=(k, 1)), rng.normal(size=(1, k))
    params = {
        name: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for name, v in (("A", A), ("b", b), ("C", C), ("d", d))
    }
    y_pred = params["C"] @ torch.sigmoid(params["A"] * x + params["b"]) + params["d"]
    loss = ((y_true - y_pred) ** 2).sum()
    loss.backward()
    out = ref.mlp_gradients(x, y_true, A.tolist(), b.tolist(), C.tolist(), d)
    assert out["y_pred"] == pytest.approx(y_pred.item(), abs=1e-12)
    assert out["loss"] == pytest.approx(loss.item(), abs=1e-12)
    for name, tensor in params.items():
        np.testing.assert_allclose(out[name], tensor.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert np.shape(out[name]) == tuple(tensor.shape)


@pytest.mark.parametrize(("m", "n", "lam"), [(8, 3, 0.0), (8, 3, 0.5), (5, 5, 3.0), (3, 6, 0.7)])
def test_ridge_solution_is_least_squares_on_the_augmented_system(m: int, n: int, lam: float) -> None:
    rng = np.random.default_rng(m * n)
    A, b = rng.normal(size=(m, n)), rng.normal(size=m)
    augmented = np.linalg.lstsq(np.vstack([A, np.sqrt(lam) * np.eye(n)]), np.concatenate([b, np.zeros(n)]), rcond=None)[
        0
    ]
    np.testing.assert_allclose(ref.ridge_solution(A, b, lam), augmented, atol=1e-10)


def test_batchnorm_forward_review_example_and_torch() -> None:
    np.testing.assert_allclose(ref.batchnorm_forward([1, 7, 7, 9]), [-5 / 3, 1 / 3, 1 / 3, 1], atol=1e-15)
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=3)
    expected = F.batch_norm(
        torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta), training=True, eps=1e-5
    )
    np.testing.assert_allclose(ref.batchnorm_forward(x, gamma, beta, 1e-5), expected.numpy(), atol=1e-12)


@pytest.mark.parametrize("shape", [(4,), (7,), (5, 3)])
def test_mean_only_batchnorm_backward_matches_autograd_and_not_the_printed_answer(shape) -> None:
    rng = np.random.default_rng(len(shape))
    x, grad_y = rng.normal(size=shape), rng.normal(size=shape)
    gamma, beta = rng.normal(size=shape[1:]), rng.normal(size=shape[1:])
    xt = torch.tensor(x, requires_grad=True)
    (torch.from_numpy(gamma) * (xt - xt.mean(dim=0)) + torch.from_numpy(beta)).backward(torch.from_numpy(grad_y))
    got = ref.mean_only_batchnorm_backward(grad_y, x, gamma, beta)
    np.testing.assert_allclose(got, xt.grad.numpy(), atol=1e-14)
    printed = gamma * (1 - 1 / shape[0]) * grad_y  # the review's solution: right only if other dL/dy_j vanish
    assert not np.allclose(got, printed)
    only_first = np.zeros(shape)
    only_first[0] = grad_y[0]
    np.testing.assert_allclose(
        ref.mean_only_batchnorm_backward(only_first, x, gamma, beta)[0],
        (gamma * (1 - 1 / shape[0]) * only_first)[0],
        atol=1e-14,
    )
