"""Helpers of ``test_circulant.py`` (UvA DL1 A2, Q3.2-Q3.4): the circulant graph, the circulant
matrix of eq. (23) and the DFT matrix of eq. (26), written independently in float64 / complex128,
and a comparison of complex arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure


def cycle_adjacency(n: int) -> np.ndarray:
    """The circular graph of ``n`` nodes: node ``i`` is joined to ``i - 1`` and ``i + 1`` (mod ``n``)."""
    adj = np.zeros((n, n))
    for i in range(n):
        adj[i, (i - 1) % n] = adj[i, (i + 1) % n] = 1
    return adj


def circulant(theta: np.ndarray) -> np.ndarray:
    """``C[i, j] = theta[(j - i) mod n]``: eq. (23), row 0 is ``(w_0, w_1, 0, ..., 0, w_-1)``."""
    n = len(theta)
    return np.array([[theta[(j - i) % n] for j in range(n)] for i in range(n)])


def inverse_dft(n: int) -> np.ndarray:
    """``Phi[u, k] = exp(2 pi i u k / n) / sqrt(n)`` (eq. 26: ``x = Phi x_hat``)."""
    return np.array([[np.exp(2j * np.pi * u * k / n) for k in range(n)] for u in range(n)]) / np.sqrt(n)


def complex_array(value, shape: tuple[int, ...], who: str) -> np.ndarray:
    """A returned numeric array (numpy, tensor or nested lists) of ``shape`` as complex128."""
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    if isinstance(value, list):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
        raise CheckFailure(
            f"{who} returned {shapes.describe_value(value)}; expected a numeric array {shapes.shape_text(shape)}."
        )
    if value.shape != shape:
        raise CheckFailure(
            shapes.MSG_SHAPE.format(who=who, got=shapes.shape_text(value.shape), expected=shapes.shape_text(shape))
        )
    return value.astype(np.complex128)


def check_complex_close(value, expected: np.ndarray, who: str, hint: str = "") -> None:
    """Fail unless ``value`` equals ``expected`` within 1e-6 (absolute and relative), naming the worst entry."""
    got = complex_array(value, expected.shape, who)
    diff = np.abs(got - expected)
    if not np.all(diff <= 1e-6 + 1e-6 * np.abs(expected)):
        where = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise CheckFailure(
            f"{who}: {int((diff > 1e-6).sum())} of {diff.size} values differ; greatest difference "
            f"{diff[where]:.3g} at {list(map(int, where))} (got {got[where]:.4g}, expected "
            f"{expected[where]:.4g}). {hint}".rstrip()
        )
