"""Helpers of ``test_answers.py``: the handout's examples and the grader's own implementations of the
hand computations (torch autograd for gradients, formulas for parameter counts and receptive fields).

Runs on the grader side: a submission's objects are reached only through the ``sub`` proxy, and
what must run next to them comes from :mod:`torchgrade.probes`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Q2's example and its answers: conv [3, 0, -1, 1, -2], ReLU [3, 0, 0, 1, 0], z = 5.
Q2_EXAMPLE = dict(
    x=[1.0, 3.0, 2.0, 1.0, 1.0, 0.0, 1.0],
    kernel=[-1.0, 2.0, -1.0],
    bias=0.0,
    fc_weight=[1.0] * 5,
    fc_bias=1.0,
    target=0.0,
)
# Q6's graph and the features of its figure: h' = [5, 2], [5, 2], [2, 1], [2, 1].
Q6_EXAMPLE = dict(
    h=[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]],
    edges=[(1, 2), (2, 3), (2, 4), (3, 4)],
    W=[[1.0, 2.0], [0.0, 1.0]],
)
Q6_Q = [1.0, 1.0]


# -- Q2, Q6: the networks in torch ------------------------------------------------------------------
def conv1d_network(x, kernel, bias, fc_weight, fc_bias, target, *, grad: bool = False) -> dict:
    """The Q2 network in torch: valid 1-D cross-correlation, ReLU, one output unit, BCE."""
    k = torch.tensor(kernel, dtype=torch.float64, requires_grad=grad)
    conv = F.conv1d(torch.tensor(x, dtype=torch.float64)[None, None], k[None, None]).flatten() + bias
    relu = torch.relu(conv)  # ReLU'(0) = 0, as the handout's answer assumes
    weight = torch.as_tensor(fc_weight, dtype=torch.float64).expand_as(relu)
    z = weight @ relu + fc_bias
    loss = F.binary_cross_entropy_with_logits(z, torch.tensor(float(target), dtype=torch.float64))
    out = {
        "conv": conv.detach().numpy(),
        "relu": relu.detach().numpy(),
        "z": float(z.detach()),
        "loss": float(loss.detach()),
    }
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
    """Arguments of the Q2 network with random x, kernel, weights and target (seeded by ``rng``)."""
    length, width = int(rng.integers(6, 12)), int(rng.choice([2, 3, 5]))
    return dict(
        x=rng.normal(size=length).round(3).tolist(),
        kernel=rng.normal(size=width).round(3).tolist(),
        bias=round(float(rng.normal()), 3),
        fc_weight=rng.normal(size=length - width + 1).round(3).tolist(),
        fc_bias=round(float(rng.normal()), 3),
        target=float(rng.integers(0, 2)),
    )


def random_graph(rng: np.random.Generator, nodes: int = 6, dim: int = 3) -> dict:
    """Arguments of the Q6 GNN on a random undirected graph (nodes numbered from 1, as in the handout)."""
    edges = sorted({tuple(sorted(rng.choice(nodes, 2, replace=False) + 1)) for _ in range(2 * nodes)})
    return dict(
        h=rng.normal(size=(nodes, dim)).round(3).tolist(),
        edges=[(int(a), int(b)) for a, b in edges],
        W=rng.normal(size=(dim, dim)).round(3).tolist(),
    )


# -- Q3d, Q3f: the shoe CNNs' parameter counts and receptive fields -----------------------------------
def shoe_cnn_params(n: int, k: int, in_channels: int, fc_features: int) -> int:
    """Parameters of four k x k convolutions in_channels -> n -> 2n -> 4n -> 8n, FC 8n * fc_features -> 100 -> 2."""
    channels = [in_channels, n, 2 * n, 4 * n, 8 * n]
    convs = sum(c_in * c_out * k * k + c_out for c_in, c_out in zip(channels, channels[1:], strict=False))
    return convs + (8 * n * fc_features * 100 + 100) + (100 * 2 + 2)


#: (n, kernel_size) pairs the parameter counts are checked at.
CNN_SIZES = [(4, 3), (2, 5), (8, 3), (3, 5)]


def receptive_fields_formula(k: int) -> list[int]:
    """conv k (stride 1, same padding) then 2x2 max-pool, four times: r += (k - 1) j; r += j; j *= 2."""
    fields, size, jump = [], 1, 1
    for _ in range(4):
        size += (k - 1) * jump
        size += jump
        jump *= 2
        fields.append(size)
    return fields


def receptive_fields_strided(k: int) -> list[int]:
    """The handout's other downsampling: each k x k convolution has stride 2 (no pooling): r += (k - 1) j; j *= 2."""
    fields, size, jump = [], 1, 1
    for _ in range(4):
        size += (k - 1) * jump
        jump *= 2
        fields.append(size)
    return fields
