"""Graders of the hand computations answered as functions in ``answers.py``: the shoe assignment's
Q2a, Q2b, Q2d, Q3d, Q3f and Q6a-c (ASSIGNMENTS.md section A) and the EECS 182 midterm review's
basics 1-4 (section C: the sigmoid's derivative, the gradients of a one-hidden-layer network, ridge
regression, batch norm and its mean-only variant; the review's message passing is graded in
``test_gnn.py``).

Each is checked on the handout's own numbers and on seeded random inputs against an independent
implementation here (torch autograd for gradients, ``numpy.linalg.lstsq`` for ridge regression).
Parameter counts and receptive fields are also compared with the submitted models themselves.
Where a review's printed solution is wrong (the gradient of mean-only batch norm), the grader
follows autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure, StudentError
from torchgrade.probes import params, receptive_field

ASSIGNMENT = "shoes"

# The handout's Q2 example and its answers (ASSIGNMENTS.md): conv [3, 0, -1, 1, -2], z = 5.
Q2_EXAMPLE = dict(
    x=[1.0, 3.0, 2.0, 1.0, 1.0, 0.0, 1.0],
    kernel=[-1.0, 2.0, -1.0],
    bias=0.0,
    fc_weight=[1.0] * 5,
    fc_bias=1.0,
    target=0.0,
)
# The handout's Q6 example (ASSIGNMENTS.md; the figure's features): h' = [5,2],[5,2],[2,1],[2,1].
Q6_EXAMPLE = dict(
    h=[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]],
    edges=[(1, 2), (2, 3), (2, 4), (3, 4)],
    W=[[1.0, 2.0], [0.0, 1.0]],
)
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
    edges = sorted({tuple(sorted(rng.choice(nodes, 2, replace=False) + 1)) for _ in range(2 * nodes)})
    return dict(
        h=rng.normal(size=(nodes, dim)).round(3).tolist(),
        edges=[(int(a), int(b)) for a, b in edges],
        W=rng.normal(size=(dim, dim)).round(3).tolist(),
    )


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
        shapes.check_close(
            got,
            conv1d_network(**Q2_EXAMPLE, grad=True)["kernel_grad"],
            "conv1d_kernel_grad(the handout's example)",
            atol=1e-4,
        )
    with parts.part(2, "random inputs, against autograd"):
        rng = np.random.default_rng(23)
        for _ in range(5):
            case = random_conv1d_case(rng)
            shapes.check_close(
                sub.conv1d_kernel_grad(**case),
                conv1d_network(**case, grad=True)["kernel_grad"],
                f"conv1d_kernel_grad(x of {len(case['x'])}, kernel of {len(case['kernel'])})",
                atol=1e-6,
            )


@pytest.mark.points(2, question="Q2d")
def test_receptive_field_1d(sub, parts):
    with parts.part(1, "kernel width 3, as in the handout's figure"):
        for layers in (1, 2, 3, 4):
            shapes.check_close(
                sub.receptive_field_1d(3, layers),
                1 + (layers - 1) * 2,
                f"receptive_field_1d(kernel_size=3, n_layers={layers})",
                atol=0,
            )
    with parts.part(1, "any kernel width and depth"):
        for width, layers in [(2, 5), (5, 1), (5, 3), (7, 4), (4, 10)]:
            shapes.check_close(
                sub.receptive_field_1d(width, layers),
                1 + (layers - 1) * (width - 1),
                f"receptive_field_1d(kernel_size={width}, n_layers={layers})",
                atol=0,
            )


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
            shapes.check_close(
                sub.cnn_param_count(n, k),
                shoe_cnn_params(n, k, 3, 28 * 14),
                f"cnn_param_count(n={n}, kernel_size={k})",
                atol=0,
                rtol=0,
            )
    with parts.part(1, "cnn_channel_param_count(n, k)"):
        for n, k in CNN_SIZES:
            shapes.check_close(
                sub.cnn_channel_param_count(n, k),
                shoe_cnn_params(n, k, 6, 14 * 14),
                f"cnn_channel_param_count(n={n}, kernel_size={k})",
                atol=0,
                rtol=0,
            )
    with parts.part(1, "both formulas equal the submitted models' parameter counts"):
        for n, k in CNN_SIZES[:2]:
            for model_name, formula in (("CNN", "cnn_param_count"), ("CNNChannel", "cnn_channel_param_count")):
                counted = sub.apply(params.count_parameters, sub.lookup(model_name)(n=n, kernel_size=k))
                answered = sub.lookup(formula)(n, k)
                if answered != counted:
                    raise CheckFailure(
                        f"{formula}(n={n}, kernel_size={k}) = {answered}, but the submitted "
                        f"{model_name}(n={n}, kernel_size={k}) has {counted} parameters."
                    )


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
            source[k] = (
                f"the formula for {k}x{k} convolutions and 2x2 max-pooling (your CNNChannel could not be measured)"
            )
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
                    raise CheckFailure(
                        f"cnn_receptive_fields({k})[{layer}] = {got[layer]:g}; expected {want} ({source[k]})."
                    )


# -- Q6: a GNN by hand -------------------------------------------------------------------------------
@pytest.mark.points(2, question="Q6a")
def test_gnn_sum_update(sub, parts):
    with parts.part(1, "the handout's graph"):
        shapes.check_close(
            sub.gnn_sum_update(**Q6_EXAMPLE),
            gnn_network(**Q6_EXAMPLE)["h"],
            "gnn_sum_update(the handout's graph)",
            atol=1e-6,
        )
    with parts.part(1, "random graphs"):
        rng = np.random.default_rng(61)
        for _ in range(4):
            case = random_graph(rng)
            shapes.check_close(
                sub.gnn_sum_update(**case),
                gnn_network(**case)["h"],
                f"gnn_sum_update(h[6, 3], {len(case['edges'])} edges, W[3, 3])",
                atol=1e-6,
            )


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


# -- EECS 182 midterm review, basics: the maths as functions --------------------------------------------
EECS = "eecs182"
HINT_MLP = (
    "Hint: every gradient carries dL/dy_pred = 2 (y_pred - y_true) by the chain rule, e.g. "
    "dL/db_i = 2 (y_pred - y_true) C_i sigma'(z_i) with z = A x + b."
)
HINT_BATCHNORM = (
    "Hint: batch norm divides by the square root of the biased variance, the mean of (x_i - mu)^2 over "
    "the m samples (not m - 1), plus eps; gamma and beta act per feature."
)
HINT_MEAN_ONLY = (
    "Hint: every y_j depends on x_i through the batch mean, so dL/dx_i = sum_j dL/dy_j dy_j/dx_i "
    "collects -gamma/m of every dL/dy_j; the review's printed gamma (1 - 1/m) dL/dy_i keeps only j = i."
)


def param_grad(result, key: str, expected: np.ndarray, who: str) -> np.ndarray:
    """A returned gradient, read in the parameter's shape: a column (k, 1), a row (1, k) and a flat (k,)
    hold the same k numbers, so any of them is accepted for a vector parameter."""
    value = shapes.as_array(field(result, key, who), f"{who}['{key}']", allow_sequences=True)
    if value.size == expected.size and (value.ndim <= 1 or 1 in value.shape):
        value = value.reshape(expected.shape)
    return shapes.check_close(value, expected, f"{who}['{key}']", atol=1e-10, rtol=1e-8)


def mlp_network(x: float, y_true: float, A, b, C, d: float) -> dict[str, np.ndarray]:
    """y = C sigmoid(A x + b) + d, L = (y_true - y)^2, gradients by autograd."""
    params = {
        name: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
        for name, v in (("A", A), ("b", b), ("C", C), ("d", d))
    }
    y_pred = params["C"] @ torch.sigmoid(params["A"] * x + params["b"]) + params["d"]
    ((y_true - y_pred) ** 2).sum().backward()
    return {name: t.grad.numpy() for name, t in params.items()}


@pytest.mark.points(1, question="Basics-1a", assignment=EECS)
def test_sigmoid_derivative(sub):
    z = np.concatenate([np.linspace(-8, 8, 33), [-30.0, -12.5, 12.5, 30.0]])
    t = torch.tensor(z, requires_grad=True)
    torch.sigmoid(t).sum().backward()
    shapes.check_close(
        sub.sigmoid_derivative(z), t.grad.numpy(), f"sigmoid_derivative(array of {len(z)} z)", atol=1e-12, rtol=1e-9
    )
    shapes.check_close(sub.sigmoid_derivative(0.0), 0.25, "sigmoid_derivative(0.0)", atol=1e-12)


@pytest.mark.points(3, question="Basics-1b-e", assignment=EECS)
def test_mlp_gradients(sub, parts):
    rng = np.random.default_rng(182)
    cases = []
    for k in (1, 3, 5):
        cases.append(
            dict(
                x=round(float(rng.normal()), 3),
                y_true=round(float(rng.normal()), 3),
                A=rng.normal(size=(k, 1)),
                b=rng.normal(size=(k, 1)),
                C=rng.normal(size=(1, k)),
                d=round(float(rng.normal()), 3),
            )
        )
    results = []
    for case in cases:
        k = len(case["A"])
        who = f"mlp_gradients(x={case['x']:g}, y_true={case['y_true']:g}, A[{k}, 1], b[{k}, 1], C[1, {k}], d)"
        try:
            results.append((who, sub.mlp_gradients(**case), mlp_network(**case)))
        except CheckFailure as failure:
            results.append((who, failure, None))

    def check(keys: tuple[str, ...]) -> None:
        for who, got, want in results:
            if want is None:
                raise got
            for key in keys:
                try:
                    param_grad(got, key, want[key], who)
                except CheckFailure as failure:
                    raise CheckFailure(f"{failure}\n{HINT_MLP}") from None

    with parts.part(1, "dL/dd and dL/dC, against autograd"):
        check(("d", "C"))
    with parts.part(1, "dL/db, against autograd"):
        check(("b",))
    with parts.part(1, "dL/dA, against autograd"):
        check(("A",))


def augmented_lstsq(A: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Ridge regression as plain least squares: minimise ||[A; sqrt(lam) I] x - [b; 0]||^2."""
    n = A.shape[1]
    stacked = np.vstack([A, np.sqrt(lam) * np.eye(n)])
    return np.linalg.lstsq(stacked, np.concatenate([b, np.zeros(n)]), rcond=None)[0]


@pytest.mark.points(2, question="Basics-2", assignment=EECS)
def test_ridge_solution(sub, parts):
    rng = np.random.default_rng(2)
    for name, sizes in (
        ("tall and square A, lambda 0 to 3", [(8, 3, 0.0), (8, 3, 0.5), (5, 5, 3.0), (20, 4, 1e-3)]),
        ("wide A (more unknowns than equations), lambda > 0", [(3, 6, 0.7), (2, 5, 2.0)]),
    ):
        with parts.part(1, name):
            for m, n, lam in sizes:
                A, b = rng.normal(size=(m, n)), rng.normal(size=m)
                shapes.check_close(
                    sub.ridge_solution(A, b, lam),
                    augmented_lstsq(A, b, lam),
                    f"ridge_solution(A[{m}, {n}], b[{m}], lam={lam:g})",
                    atol=1e-9,
                    rtol=1e-7,
                )


def with_hint(check, hint: str) -> None:
    """Run a check; a wrong value (not an exception of the submission's) fails with the hint added."""
    try:
        check()
    except CheckFailure as failure:
        if isinstance(failure, StudentError):
            raise
        raise CheckFailure(f"{failure}\n{hint}") from None


@pytest.mark.points(2, question="Basics-3", assignment=EECS)
def test_batchnorm_forward(sub, parts):
    with parts.part(1, "the review's batch {1, 7, 7, 9}"):
        with_hint(
            lambda: shapes.check_close(
                sub.batchnorm_forward([1.0, 7.0, 7.0, 9.0]),
                [-5 / 3, 1 / 3, 1 / 3, 1.0],
                "batchnorm_forward([1, 7, 7, 9])",
                atol=1e-9,
            ),
            HINT_BATCHNORM,
        )
    with parts.part(1, "batches of feature vectors with gamma, beta and eps, against torch's batch_norm"):
        rng = np.random.default_rng(3)
        for m, d, eps in ((4, 1, 1e-5), (6, 3, 1e-3), (2, 5, 0.1)):  # torch refuses eps = 0 in training
            x, gamma, beta = rng.normal(size=(m, d)) * 3 + 1, rng.normal(size=d), rng.normal(size=d)
            expected = F.batch_norm(
                torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta), training=True, eps=eps
            ).numpy()
            who = f"batchnorm_forward(x[{m}, {d}], gamma[{d}], beta[{d}], eps={eps:g})"
            with_hint(
                lambda x=x, gamma=gamma, beta=beta, eps=eps, expected=expected, who=who: shapes.check_close(
                    sub.batchnorm_forward(x, gamma, beta, eps), expected, who, atol=1e-9
                ),
                HINT_BATCHNORM,
            )


def mean_only_grad(grad_y: np.ndarray, x: np.ndarray, gamma, beta) -> np.ndarray:
    x_t = torch.tensor(x, requires_grad=True)
    gamma_t, beta_t = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (gamma, beta))
    y = gamma_t * (x_t - x_t.mean(dim=0)) + beta_t
    y.backward(torch.from_numpy(grad_y))
    return x_t.grad.numpy()


@pytest.mark.points(2, question="Basics-4", assignment=EECS)
def test_mean_only_batchnorm_backward(sub, parts):
    rng = np.random.default_rng(4)
    numbers = [(rng.normal(size=4), rng.normal(size=4), 1.0, 0.0), (rng.normal(size=7), rng.normal(size=7), -0.6, 2.0)]
    vectors = [(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=3))]
    for name, cases in (
        ("a batch of numbers (the review's setting), against autograd", numbers),
        ("batches of feature vectors with a gamma per feature, against autograd", vectors),
    ):
        with parts.part(1, name):
            for grad_y, x, gamma, beta in cases:
                shown = f"gamma{list(np.shape(gamma))}" if np.ndim(gamma) else f"gamma={gamma:g}"
                who = f"mean_only_batchnorm_backward(grad_y{list(x.shape)}, x{list(x.shape)}, {shown}, ...)"
                expected = mean_only_grad(grad_y, x, gamma, beta)
                with_hint(
                    lambda grad_y=grad_y, x=x, gamma=gamma, beta=beta, expected=expected, who=who: shapes.check_close(
                        sub.mean_only_batchnorm_backward(grad_y, x, gamma, beta), expected, who, atol=1e-10, rtol=1e-8
                    ),
                    HINT_MEAN_ONLY,
                )
