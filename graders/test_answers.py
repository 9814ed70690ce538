"""Graders of the shoe-pairs assignment's hand computations, answered as functions in ``answers.py``:
Q2a-b (a 1-D convolution's forward and backward pass), Q2d (the receptive field of 1-D convolutions),
Q3d (the CNNs' parameter counts), Q3f (CNNChannel's receptive fields) and Q6a-c (a GNN by hand).
The rest of the assignment is graded in ``test_shoes.py``.

Each is checked on the handout's own numbers and on seeded random inputs against the grader's own
implementations in ``_answers.py`` (torch autograd for gradients). Parameter counts are also compared
with the submitted models themselves; receptive fields only with the handout's architecture.
"""

from __future__ import annotations

import numpy as np
import pytest
from _answers import (
    CNN_SIZES,
    Q2_EXAMPLE,
    Q6_EXAMPLE,
    Q6_Q,
    conv1d_network,
    gnn_network,
    random_conv1d_case,
    random_graph,
    receptive_fields_formula,
    receptive_fields_strided,
    shoe_cnn_params,
)
from _shoes import build_model, conv_and_fc_shapes, read_n_and_k

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure
from torchgrade.probes import params

ASSIGNMENT = "shoes"


# -- Q2: 1-D convolution by hand -------------------------------------------------------------------
@pytest.mark.points(2, question="Q2a")
def test_conv1d_forward(sub, parts):
    """The forward pass of the 1-D convolution network: convolution, ReLU, output z, cross-entropy loss."""
    with parts.part(1, "the handout's example"):
        who = "conv1d_forward(x=[1, 3, 2, 1, 1, 0, 1], kernel=[-1, 2, -1], ...)"
        got = sub.conv1d_forward(**Q2_EXAMPLE)
        want = conv1d_network(**Q2_EXAMPLE)
        for key in ("conv", "relu", "z", "loss"):
            shapes.check_close(shapes.check_key(got, key, who), want[key], f"{who}['{key}']", atol=1e-4)
    with parts.part(1, "random inputs, against torch"):
        rng = np.random.default_rng(22)
        for _ in range(5):
            case = random_conv1d_case(rng)
            who = f"conv1d_forward(x of {len(case['x'])}, kernel of {len(case['kernel'])}, target={case['target']:g})"
            got, want = sub.conv1d_forward(**case), conv1d_network(**case)
            for key in ("conv", "relu", "z", "loss"):
                shapes.check_close(shapes.check_key(got, key, who), want[key], f"{who}['{key}']", atol=1e-6)


@pytest.mark.points(3, question="Q2b")
def test_conv1d_kernel_grad(sub, parts):
    """The error signal of the 1-D convolution kernel, by backpropagation through the same network."""
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
    """The effective receptive field of a unit in the N-th layer of 1-D convolutions of kernel width K."""
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
@pytest.mark.points(3, question="Q3d")
def test_param_counts(sub, parts):
    """The number of parameters of CNN and CNNChannel, as a function of n and the kernel size k."""
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
        # Evaluated at the n and k the built model has (read from its first convolution: a CNN() with both
        # fixed inside is graded on its own). A model whose layers differ from the handout's lost its points
        # in Q3a/Q3b already: there the formula may also give the handout architecture's count.
        for n, k in CNN_SIZES[:2]:
            for model_name, formula, in_channels, fc_features in (
                ("CNN", "cnn_param_count", 3, 28 * 14),
                ("CNNChannel", "cnn_channel_param_count", 6, 14 * 14),
            ):
                built = build_model(sub, model_name, n=n, kernel_size=k)
                counted = sub.apply(params.count_parameters, built.model)
                convs, _ = conv_and_fc_shapes(sub, built.model)
                try:
                    n_read, k_read = read_n_and_k(convs, in_channels, built.label)
                except CheckFailure:
                    n_read, k_read = n, k
                handout = shoe_cnn_params(n_read, k_read, in_channels, fc_features)
                answered = sub.lookup(formula)(n_read, k_read)
                if answered not in (counted, handout):
                    raise CheckFailure(
                        f"{formula}(n={n_read}, kernel_size={k_read}) = {answered}, but the submitted "
                        f"{built.label} (n = {n_read}, {k_read}x{k_read} kernels) has {counted} parameters "
                        f"(the handout's architecture: {handout})."
                    )


@pytest.mark.points(4, question="Q3f")
def test_cnn_receptive_fields(sub, parts):
    """The receptive field of a central CNNChannel unit after each of the four downsampling operations.

    The question is about the handout's architecture, so the answers are compared with it (the grader's
    formula, checked against autograd on a grader-built network in the tests), never with the submitted
    CNNChannel: a bug in the model is graded in Q3b only. The handout downsamples with 2x2 max-pooling
    or with a stride-2 convolution; answers that follow either design throughout keep their points."""
    answers = {}
    for k in (3, 5):
        try:
            answers[k] = sub.cnn_receptive_fields(k)
        except CheckFailure as exc:
            answers[k] = exc
    designs = {"pooling": receptive_fields_formula, "strided": receptive_fields_strided}
    got: dict[int, np.ndarray] = {}
    for k in (3, 5):
        if not isinstance(answers[k], Exception):
            try:
                got[k] = shapes.check_shape(answers[k], (4,), f"cnn_receptive_fields({k})", allow_sequences=True)
            except CheckFailure as exc:
                answers[k] = exc
    # The design the answers follow: the one they match most often (max-pooling on a tie).
    design = max(designs, key=lambda d: sum(int(got[k][i] == designs[d](k)[i]) for k in got for i in range(4)))
    for layer in range(4):
        with parts.part(1, f"after downsampling {layer + 1}"):
            for k in (3, 5):
                if isinstance(answers[k], Exception):
                    raise answers[k]
                want = designs[design](k)[layer]
                if got[k][layer] != want:
                    raise CheckFailure(
                        f"cnn_receptive_fields({k})[{layer}] = {got[k][layer]:g}; expected {want} for the "
                        f"handout's CNNChannel with {k}x{k} convolutions and "
                        + ("2x2 max-pooling" if design == "pooling" else "stride-2 convolutions")
                        + f" (with {'stride-2 convolutions' if design == 'pooling' else '2x2 max-pooling'} "
                        f"instead: {designs['strided' if design == 'pooling' else 'pooling'](k)[layer]})."
                    )


# -- Q6: a GNN by hand -------------------------------------------------------------------------------
@pytest.mark.points(2, question="Q6a")
def test_gnn_sum_update(sub, parts):
    """One convolutional update step in the graph: the updated representation of every node."""
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
    """The graph-level output y = sigmoid(q^T sum_v h_v) of the updated representations."""
    with parts.part(1, "the handout's graph"):
        who = "gnn_graph_output(the handout's graph, q=[1, 1])"
        got, want = sub.gnn_graph_output(**Q6_EXAMPLE, q=Q6_Q), gnn_network(**Q6_EXAMPLE, q=Q6_Q)
        shapes.check_close(shapes.check_key(got, "z", who), want["z"], f"{who}['z']", atol=1e-6)
        shapes.check_close(shapes.check_key(got, "y", who), want["y"], f"{who}['y']", atol=1e-9, rtol=0)
    with parts.part(1, "random graphs"):
        rng = np.random.default_rng(62)
        for _ in range(4):
            case, q = random_graph(rng), rng.normal(size=3).round(3).tolist()
            who = f"gnn_graph_output(h[6, 3], {len(case['edges'])} edges, W[3, 3], q[3])"
            got, want = sub.gnn_graph_output(**case, q=q), gnn_network(**case, q=q)
            for key in ("z", "y"):
                shapes.check_close(shapes.check_key(got, key, who), want[key], f"{who}['{key}']", atol=1e-6)


@pytest.mark.points(4, question="Q6c")
def test_gnn_param_grads(sub, parts):
    """The gradient of the cross-entropy loss (target 0) with respect to the GNN's parameters W and q."""
    with parts.part(2, "the handout's graph, target 0"):
        who = "gnn_param_grads(the handout's graph, q=[1, 1], target=0)"
        got, want = sub.gnn_param_grads(**Q6_EXAMPLE, q=Q6_Q, target=0.0), gnn_network(**Q6_EXAMPLE, q=Q6_Q, target=0.0)
        shapes.check_close(shapes.check_key(got, "W", who), want["W_grad"], f"{who}['W']", atol=1e-6)
        shapes.check_close(shapes.check_key(got, "q", who), want["q_grad"], f"{who}['q']", atol=1e-6)
    with parts.part(2, "random graphs, against autograd"):
        rng = np.random.default_rng(63)
        for _ in range(4):
            case, q, target = random_graph(rng), rng.normal(size=3).round(3).tolist(), float(rng.integers(0, 2))
            who = f"gnn_param_grads(h[6, 3], {len(case['edges'])} edges, W[3, 3], q[3], target={target:g})"
            got, want = sub.gnn_param_grads(**case, q=q, target=target), gnn_network(**case, q=q, target=target)
            shapes.check_close(shapes.check_key(got, "W", who), want["W_grad"], f"{who}['W']", atol=1e-6)
            shapes.check_close(shapes.check_key(got, "q", who), want["q_grad"], f"{who}['q']", atol=1e-6)
