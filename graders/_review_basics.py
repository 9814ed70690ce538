"""Helpers of ``test_review_basics.py``: the grader's own implementations of the review's maths (torch
autograd for the gradients, ``numpy.linalg.lstsq`` for ridge regression) and the hints of its messages.

Runs on the grader side, on plain numbers and arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure, StudentError

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
    value = shapes.as_array(shapes.check_key(result, key, who), f"{who}['{key}']", allow_sequences=True)
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


def augmented_lstsq(A: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Ridge regression as plain least squares: minimise ||[A; sqrt(lam) I] x - [b; 0]||^2."""
    n = A.shape[1]
    stacked = np.vstack([A, np.sqrt(lam) * np.eye(n)])
    return np.linalg.lstsq(stacked, np.concatenate([b, np.zeros(n)]), rcond=None)[0]


def with_hint(check, hint: str) -> None:
    """Run a check; a wrong value (not an exception of the submission's) fails with the hint added."""
    try:
        check()
    except CheckFailure as failure:
        if isinstance(failure, StudentError):
            raise
        raise CheckFailure(f"{failure}\n{hint}") from None


def mean_only_grad(grad_y: np.ndarray, x: np.ndarray, gamma, beta) -> np.ndarray:
    """dL/dx of y = gamma (x - mean over the batch of x) + beta, given dL/dy, by autograd."""
    x_t = torch.tensor(x, requires_grad=True)
    gamma_t, beta_t = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (gamma, beta))
    y = gamma_t * (x_t - x_t.mean(dim=0)) + beta_t
    y.backward(torch.from_numpy(grad_y))
    return x_t.grad.numpy()
