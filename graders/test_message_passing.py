"""Graders of the EECS 182 review's graph neural network problem (GNN-2): message passing over nodes.

Expected values are the discussion's own worked example and, on seeded random graphs, an independent
implementation of the update rule (``_message_passing.py`` beside this file).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _message_passing import F_V, V_ABCD, message_passing_expected

from torchgrade.checks import shapes

ASSIGNMENT = "eecs182"


@pytest.mark.points(2, question="GNN-2")
def test_message_passing(sub, parts):
    """Updates each node as v_i <- f_v(v_i) + sum over its neighbours of f_v(v_j), step after step."""
    with parts.part(1, "the discussion's example: v_A -> [13, 6] -> [69, 58] alone, [20, 4] with neighbour B"):
        alone = shapes.as_array(
            sub.message_passing(V_ABCD, [(0, 1)], F_V, steps=2, neighbours=False),
            "message_passing(v, edges, f_v, steps=2, neighbours=False)",
        )
        shapes.check_close(alone[:1], [[69, 58]], "message_passing(..., steps=2, neighbours=False)[A]", atol=1e-9)
        with_b = shapes.as_array(
            sub.message_passing(V_ABCD, [(0, 1)], F_V, steps=1, neighbours=True),
            "message_passing(v, [(A, B)], f_v, steps=1)",
        )
        shapes.check_close(with_b[:1], [[20, 4]], "message_passing(v, [(A, B)], f_v, steps=1)[A]", atol=1e-9)
    with parts.part(1, "random graphs, one to three steps"):
        rng = np.random.default_rng(182)
        for steps in (1, 3):
            h, w = rng.normal(size=(6, 3)), rng.normal(size=(3, 3))
            edges = [tuple(int(v) for v in e) for e in itertools.combinations(range(6), 2) if rng.random() < 0.4]
            for neighbours in (True, False):
                shapes.check_close(
                    sub.message_passing(h.tolist(), edges, w.tolist(), steps=steps, neighbours=neighbours),
                    message_passing_expected(h, edges, w, steps, neighbours),
                    f"message_passing(h[6, 3], {len(edges)} edges, W, steps={steps}, neighbours={neighbours})",
                    atol=1e-9,
                    rtol=1e-9,
                )
