"""Helpers of ``test_message_passing.py`` (EECS 182 review, GNN-2): the discussion's example graph and
an independent implementation of its node update rule.
"""

from __future__ import annotations

import numpy as np

# The discussion's example: the update function f_v and the node features v_A, v_B, v_C, v_D.
F_V = [[3, 5], [4, 1]]
V_ABCD = [[1, 2], [-1, 2], [2, 2], [-3, 2]]


def message_passing_expected(h: np.ndarray, edges, w: np.ndarray, steps: int, neighbours: bool) -> np.ndarray:
    """``steps`` updates ``v_i <- f_v(v_i) + sum_{j in N(i)} f_v(v_j)`` with ``f_v(v) = W v`` (without the
    sum when ``neighbours`` is False), for node features ``h`` ``(N, D)`` and undirected ``edges``."""
    adj = np.eye(len(h))
    if neighbours:
        for i, j in edges:
            adj[i, j] = adj[j, i] = 1
    for _ in range(steps):
        h = adj @ h @ w.T
    return h
