"""Graders of the shoe assignment's hand computations and formulas (ASSIGNMENTS.md section A):
Q2a, Q2b, Q2d, Q3d, Q3f and Q6a-c, answered as functions in ``answers.py``.

Each is checked on the handout's own numbers and on seeded random inputs against an independent
implementation here (torch autograd for gradients). Parameter counts and receptive fields are also
compared with the submitted models themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchgrade.checks import params, receptive_field, shapes
from torchgrade.errors import CheckFailure

ASSIGNMENT = "shoes"

# The handout's Q2 example and its answers (ASSIGNMENTS.md): conv [3, 0, -1, 1, -2], z = 5.
Q2_EXAMPLE = dict(x=[1.0, 3.0, 2.0, 1.0, 1.0, 0.0, 1.0], kernel=[-1.0, 2.0, -1.0], bias=0.0,
                  fc_weight=[1.0] * 5, fc_bias=1.0, target=0.0)
# The handout's Q6 example (ASSIGNMENTS.md; the figure's features): h' = [5,2],[5,2],[2,1],[2,1].
Q6_EXAMPLE = dict(h=[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], edges=[(1, 2), (2, 3), (2, 4), (3, 4)],
                  W=[[1.0, 2.0], [0.0, 1.0]])
Q6_Q = [1.0, 1.0]


# -- independent implementations -------------------------------------------------------------------
def conv1d_network(x, kernel, bias, fc_weight, fc_bias, target, *, grad: bool = False) -> dict:
    """The Q2 network in torch: valid 1-D cross-correlation, ReLU, one output unit, BCE."""
    k = torch.tensor(kernel, dtype=torch.float64, requires_grad=grad)
    conv = F.conv1d(torch.tensor(x, dtype=torch.float64)[None, None], k[None, None]).flatten() + bias
    relu = torch.relu(conv)  # ReLU'(0) = 0, as the handout's answer assumes
    weight = torch.as_tensor(fc_weight, dtype=torch.float64).expand_as(relu)
    z = weight @ relu + fc_bias
    loss = F.binary_cross_entropy_with_logits(z, torch.tensor(float(target), dtype=torch.float64))
    out = {"conv": conv.detach().numpy(), "relu": relu.detach().numpy(), "z": float(z.detach()),
           "loss": float(loss.detach())}
    if grad:
        loss.backward()
        out["kernel_grad"] = k.grad.numpy()
    return out


def gnn_network(h, edges, W, q=None, target=None) -> dict:
    """The Q6 GNN in torch: h_v' = ReLU(sum over N(v) and v of W h_u); y = sigmoid(q . sum_v h_v')."""
    H = torch.tensor(h, dtype=torch.float64)
    adjacency = torch.eye(len(H), dtype=torch.float64)
    for a, b in edges:
        adjacency[a - 1, b - 1] = adjacency[b - 1, a - 1] = 1.0
    weight = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    updated = torch.relu(adjacency @ H @ weight.T)
    out = {"h": updated.detach().numpy()}
    if q is not None:
        qv = torch.tensor(q, dtype=torch.float64, requires_grad=True)
        z = qv @ updated.sum(dim=0)
        out.update(z=float(z.detach()), y=float(torch.sigmoid(z.detach())))
        if target is not None:
            F.binary_cross_entropy_with_logits(z, torch.tensor(float(target), dtype=torch.float64)).backward()
            out.update(W_grad=weight.grad.numpy(), q_grad=qv.grad.numpy())
    return out


def random_conv1d_case(rng: np.random.Generator) -> dict:
    length, width = int(rng.integers(6, 12)), int(rng.choice([2, 3, 5]))
    return dict(x=rng.normal(size=length).round(3).tolist(), kernel=rng.normal(size=width).round(3).tolist(),
                bias=round(float(rng.normal()), 3), fc_weight=rng.normal(size=length - width + 1).round(3).tolist(),
                fc_bias=round(float(rng.normal()), 3), target=float(rng.integers(0, 2)))


def random_graph(rng: np.random.Generator, nodes: int = 6, dim: int = 3) -> dict:
    edges = sorted({tuple(sorted(rng.choice(nodes, 2, replace=False) + 1)) for _ in range(2 * nodes)})
    return dict(h=rng.normal(size=(nodes, dim)).round(3).tolist(), edges=[(int(a), int(b)) for a, b in edges],
                W=rng.normal(size=(dim, dim)).round(3).tolist())


def field(result, key: str, who: str):
    if not isinstance(result, dict) or key not in result:
        keys = sorted(result) if isinstance(result, dict) else shapes.describe_value(result)
        raise CheckFailure(f"{who} returned {keys}; expected a dict with the key '{key}'.")
    return result[key]


# -- Q2: 1-D convolution by hand -------------------------------------------------------------------
@pytest.mark.points(2, question="Q2a")
def test_conv1d_forward(sub, parts):
    with parts.part(1, "the handout's example"):
        who = "conv1d_forward(x=[1, 3, 2, 1, 1, 0, 1], kernel=[-1, 2, -1], ...)"
        got = sub.conv1d_forward(**Q2_EXAMPLE)
        want = conv1d_network(**Q2_EXAMPLE)
        for key in ("conv", "relu", "z", "loss"):
            shapes.check_close(field(got, key, who), want[key], f"{who}['{key}']", atol=1e-4)
    with parts.part(1, "random inputs, against torch"):
        rng = np.random.default_rng(22)
        for _ in range(5):
            case = random_conv1d_case(rng)
            who = f"conv1d_forward(x of {len(case['x'])}, kernel of {len(case['kernel'])}, target={case['target']:g})"
            got, want = sub.conv1d_forward(**case), conv1d_network(**case)
            for key in ("conv", "relu", "z", "loss"):
                shapes.check_close(field(got, key, who), want[key], f"{who}['{key}']", atol=1e-6)


@pytest.mark.points(3, question="Q2b")
def test_conv1d_kernel_grad(sub, parts):
    with parts.part(1, "the handout's example"):
        got = sub.conv1d_kernel_grad(**Q2_EXAMPLE)
        shapes.check_close(got, conv1d_network(**Q2_EXAMPLE, grad=True)["kernel_grad"],
                           "conv1d_kernel_grad(the handout's example)", atol=1e-4)
    with parts.part(2, "random inputs, against autograd"):
        rng = np.random.default_rng(23)
        for _ in range(5):
            case = random_conv1d_case(rng)
            shapes.check_close(sub.conv1d_kernel_grad(**case), conv1d_network(**case, grad=True)["kernel_grad"],
                               f"conv1d_kernel_grad(x of {len(case['x'])}, kernel of {len(case['kernel'])})", atol=1e-6)


@pytest.mark.points(2, question="Q2d")
def test_receptive_field_1d(sub, parts):
    with parts.part(1, "kernel width 3, as in the handout's figure"):
        for layers in (1, 2, 3, 4):
            shapes.check_close(sub.receptive_field_1d(3, layers), 1 + (layers - 1) * 2,
                               f"receptive_field_1d(kernel_size=3, n_layers={layers})", atol=0)
    with parts.part(1, "any kernel width and depth"):
        for width, layers in [(2, 5), (5, 1), (5, 3), (7, 4), (4, 10)]:
            shapes.check_close(sub.receptive_field_1d(width, layers), 1 + (layers - 1) * (width - 1),
                               f"receptive_field_1d(kernel_size={width}, n_layers={layers})", atol=0)


# -- Q3d, Q3f: parameter counts and receptive fields of the models ----------------------------------
def shoe_cnn_params(n: int, k: int, in_channels: int, fc_features: int) -> int:
    channels = [in_channels, n, 2 * n, 4 * n, 8 * n]
    convs = sum(c_in * c_out * k * k + c_out for c_in, c_out in zip(channels, channels[1:], strict=False))
    return convs + (8 * n * fc_features * 100 + 100) + (100 * 2 + 2)


CNN_SIZES = [(4, 3), (2, 5), (8, 3), (3, 5)]


@pytest.mark.points(3, question="Q3d")
def test_param_counts(sub, parts):
    with parts.part(1, "cnn_param_count(n, k)"):
        for n, k in CNN_SIZES:
            shapes.check_close(sub.cnn_param_count(n, k), shoe_cnn_params(n, k, 3, 28 * 14),
                               f"cnn_param_count(n={n}, kernel_size={k})", atol=0, rtol=0)
    with parts.part(1, "cnn_channel_param_count(n, k)"):
        for n, k in CNN_SIZES:
            shapes.check_close(sub.cnn_channel_param_count(n, k), shoe_cnn_params(n, k, 6, 14 * 14),
                               f"cnn_channel_param_count(n={n}, kernel_size={k})", atol=0, rtol=0)
    with parts.part(1, "both formulas equal the submitted models' parameter counts"):
        for n, k in CNN_SIZES[:2]:
            for model_name, formula in (("CNN", "cnn_param_count"), ("CNNChannel", "cnn_channel_param_count")):
                counted = sub.apply(params.count_parameters, sub.lookup(model_name)(n=n, kernel_size=k))
                answered = sub.lookup(formula)(n, k)
                if answered != counted:
                    raise CheckFailure(f"{formula}(n={n}, kernel_size={k}) = {answered}, but the submitted "
                                       f"{model_name}(n={n}, kernel_size={k}) has {counted} parameters.")


def receptive_fields_formula(k: int) -> list[int]:
    """conv k (stride 1, same padding) then 2x2 max-pool, four times: r += (k - 1) j; r += j; j *= 2."""
    fields, size, jump = [], 1, 1
    for _ in range(4):
        size += (k - 1) * jump
        size += jump
        jump *= 2
        fields.append(size)
    return fields


@pytest.mark.points(4, question="Q3f")
def test_cnn_receptive_fields(sub, parts):
    expected, source = {}, {}
    for k in (3, 5):
        try:
            model = sub.CNNChannel(n=4, kernel_size=k)
            expected[k] = sub.apply(receptive_field.downsampling_receptive_fields, model, (1, 3, 448, 224), half="top")
            source[k] = f"measured with autograd on your CNNChannel(n=4, kernel_size={k})"
        except CheckFailure:
            expected[k] = receptive_fields_formula(k)
            source[k] = (f"the formula for {k}x{k} convolutions and 2x2 max-pooling "
                         f"(your CNNChannel could not be measured)")
    answers = {}
    for k in (3, 5):
        try:
            answers[k] = sub.cnn_receptive_fields(k)
        except CheckFailure as exc:
            answers[k] = exc
    for layer in range(4):
        with parts.part(1, f"after downsampling {layer + 1}"):
            for k in (3, 5):
                if isinstance(answers[k], Exception):
                    raise answers[k]
                got = shapes.check_shape(answers[k], (4,), f"cnn_receptive_fields({k})", allow_sequences=True)
                want = expected[k][layer] if len(expected[k]) > layer else receptive_fields_formula(k)[layer]
                if got[layer] != want:
                    raise CheckFailure(f"cnn_receptive_fields({k})[{layer}] = {got[layer]:g}; expected {want} "
                                       f"({source[k]}).")


# -- Q6: a GNN by hand -------------------------------------------------------------------------------
@pytest.mark.points(2, question="Q6a")
def test_gnn_sum_update(sub, parts):
    with parts.part(1, "the handout's graph"):
        shapes.check_close(sub.gnn_sum_update(**Q6_EXAMPLE), gnn_network(**Q6_EXAMPLE)["h"],
                           "gnn_sum_update(the handout's graph)", atol=1e-6)
    with parts.part(1, "random graphs"):
        rng = np.random.default_rng(61)
        for _ in range(4):
            case = random_graph(rng)
            shapes.check_close(sub.gnn_sum_update(**case), gnn_network(**case)["h"],
                               f"gnn_sum_update(h[6, 3], {len(case['edges'])} edges, W[3, 3])", atol=1e-6)


@pytest.mark.points(2, question="Q6b")
def test_gnn_graph_output(sub, parts):
    with parts.part(1, "the handout's graph"):
        who = "gnn_graph_output(the handout's graph, q=[1, 1])"
        got, want = sub.gnn_graph_output(**Q6_EXAMPLE, q=Q6_Q), gnn_network(**Q6_EXAMPLE, q=Q6_Q)
        shapes.check_close(field(got, "z", who), want["z"], f"{who}['z']", atol=1e-6)
        shapes.check_close(field(got, "y", who), want["y"], f"{who}['y']", atol=1e-9, rtol=0)
    with parts.part(1, "random graphs"):
        rng = np.random.default_rng(62)
        for _ in range(4):
            case, q = random_graph(rng), rng.normal(size=3).round(3).tolist()
            who = f"gnn_graph_output(h[6, 3], {len(case['edges'])} edges, W[3, 3], q[3])"
            got, want = sub.gnn_graph_output(**case, q=q), gnn_network(**case, q=q)
            for key in ("z", "y"):
                shapes.check_close(field(got, key, who), want[key], f"{who}['{key}']", atol=1e-6)


@pytest.mark.points(4, question="Q6c")
def test_gnn_param_grads(sub, parts):
    with parts.part(2, "the handout's graph, target 0"):
        who = "gnn_param_grads(the handout's graph, q=[1, 1], target=0)"
        got, want = sub.gnn_param_grads(**Q6_EXAMPLE, q=Q6_Q, target=0.0), gnn_network(**Q6_EXAMPLE, q=Q6_Q, target=0.0)
        shapes.check_close(field(got, "W", who), want["W_grad"], f"{who}['W']", atol=1e-6)
        shapes.check_close(field(got, "q", who), want["q_grad"], f"{who}['q']", atol=1e-6)
    with parts.part(2, "random graphs, against autograd"):
        rng = np.random.default_rng(63)
        for _ in range(4):
            case, q, target = random_graph(rng), rng.normal(size=3).round(3).tolist(), float(rng.integers(0, 2))
            who = f"gnn_param_grads(h[6, 3], {len(case['edges'])} edges, W[3, 3], q[3], target={target:g})"
            got, want = sub.gnn_param_grads(**case, q=q, target=target), gnn_network(**case, q=q, target=target)
            shapes.check_close(field(got, "W", who), want["W_grad"], f"{who}['W']", atol=1e-6)
            shapes.check_close(field(got, "q", who), want["q_grad"], f"{who}['q']", atol=1e-6)
