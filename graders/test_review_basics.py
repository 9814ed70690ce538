"""Graders of the EECS 182 midterm review, Basics 1-4, answered as functions in ``answers.py``: the
sigmoid's derivative (1a), the gradients of a one-hidden-layer network (1b-e), ridge regression (2),
batch norm (3) and the gradient of its mean-only variant (4).

Each is checked on the review's own numbers where it gives them and on seeded random inputs against
the grader's own implementations in ``_review_basics.py`` (torch autograd for gradients,
``numpy.linalg.lstsq`` for ridge regression). Where the review's printed solution is wrong (the
gradient of mean-only batch norm, 4), the grader follows autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _review_basics import (
    HINT_BATCHNORM,
    HINT_MEAN_ONLY,
    HINT_MLP,
    augmented_lstsq,
    mean_only_grad,
    mlp_network,
    param_grad,
    with_hint,
)

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure

ASSIGNMENT = "eecs182"


@pytest.mark.points(1, question="Basics-1a")
def test_sigmoid_derivative(sub):
    """The derivative of the sigmoid, sigma'(z) = sigma(z) (1 - sigma(z))."""
    z = np.concatenate([np.linspace(-8, 8, 33), [-30.0, -12.5, 12.5, 30.0]])
    t = torch.tensor(z, requires_grad=True)
    torch.sigmoid(t).sum().backward()
    shapes.check_close(
        sub.sigmoid_derivative(z), t.grad.numpy(), f"sigmoid_derivative(array of {len(z)} z)", atol=1e-12, rtol=1e-9
    )
    shapes.check_close(sub.sigmoid_derivative(0.0), 0.25, "sigmoid_derivative(0.0)", atol=1e-12)


@pytest.mark.points(3, question="Basics-1b-e")
def test_mlp_gradients(sub, parts):
    """dL/dd, dL/dC, dL/db and dL/dA of y = C sigma(A x + b) + d under the L2 loss (y_true - y)^2."""
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


@pytest.mark.points(2, question="Basics-2")
def test_ridge_solution(sub, parts):
    """The closed-form minimiser of ||A x - b||^2 + lambda ||x||^2: x = (A^T A + lambda I)^-1 A^T b."""
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


@pytest.mark.points(2, question="Basics-3")
def test_batchnorm_forward(sub, parts):
    """Batch normalisation of a batch: (x - mean) / sqrt(biased variance + eps), scaled by gamma, shifted by beta."""
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


@pytest.mark.points(2, question="Basics-4")
def test_mean_only_batchnorm_backward(sub, parts):
    """dL/dx of mean-only batch norm y = gamma (x - mean) + beta: every y_j depends on every x_i."""
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
