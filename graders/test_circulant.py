"""Graders of UvA Deep Learning 1, assignment 2, part 3 (graph neural networks), sections 3.2-3.3:
the circulant graph (Q3.2), the convolution theorem (Q3.4a), and the questions graded by hand.

Expected values come from independent implementations of eq. (23) and eq. (26) (``_circulant.py``
beside this file), compared on seeded random filters.
"""

from __future__ import annotations

import numpy as np
import pytest
from _circulant import check_complex_close, circulant, complex_array, cycle_adjacency, inverse_dft

from torchgrade.checks import shapes

ASSIGNMENT = "uva-a2"
MANUAL = {
    "Q3.3": (6, "phi of the circulant layer, the operation it performs, the action of the shift filter"),
    "Q3.4b": (3, "commuting circulant matrices and what that means for shifts"),
    "Q3.5": (3, "the attention equation for the graph layer"),
}


@pytest.mark.points(2, question="Q3.2")
def test_circulant_adjacency(sub):
    """Writes the adjacency matrix of the circular graph with n nodes (node i joined to i - 1 and i + 1 mod n)."""
    for n in (3, 4, 6, 9):
        shapes.check_close(sub.circulant_adjacency(n), cycle_adjacency(n), f"circulant_adjacency({n})", atol=0)


@pytest.mark.points(3, question="Q3.4a")
def test_convolution_theorem(sub, parts):
    """C(theta) of eq. (23) and Phi of eq. (26) satisfy the convolution theorem C(theta) x = Phi (x_hat * theta_hat)."""
    rng = np.random.default_rng(34)
    thetas = [rng.normal(size=n) for n in (5, 8)]
    with parts.part(1, "C(theta) of eq. (23)"):
        for theta in thetas:
            shapes.check_close(
                sub.circulant_matrix(theta), circulant(theta), f"circulant_matrix(theta of {len(theta)})", atol=1e-12
            )
    with parts.part(1, "the DFT matrix Phi of eq. (26)"):
        for n in (4, 7):
            check_complex_close(
                sub.dft_matrix(n),
                inverse_dft(n),
                f"dft_matrix({n})",
                "Hint: Phi[u, k] = exp(2 pi i u k / n) / sqrt(n), so that x = Phi x_hat.",
            )
    with parts.part(1, "eigenvalues: C(theta) Phi = Phi diag(lambda), hence C(theta) x = Phi (lambda * x_hat)"):
        for theta in thetas:
            n = len(theta)
            who = f"circulant_eigenvalues(theta of {n})"
            lam = complex_array(sub.circulant_eigenvalues(theta), (n,), who)
            phi = inverse_dft(n)
            x = rng.normal(size=n)
            check_complex_close(
                phi @ (lam * (phi.conj().T @ x)),
                circulant(theta) @ x,
                f"Phi (lambda * Phi^* x) with lambda = {who}",
                "Hint: C(theta) Phi[:, k] = lambda_k Phi[:, k]; compare with the unitary DFT of "
                "theta (a factor sqrt(n), and a complex conjugate from eq. (23)).",
            )
