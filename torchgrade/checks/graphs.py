"""Grader-side data helpers of the graph assignments: what the grader sends to the graph probes.

Runs on the grader side. The training loops themselves run next to the submitted model
(:mod:`torchgrade.probes.graphs`); this module packs the grader's data for them. Molecules travel as
one collated set per split: all atoms, bonds and targets concatenated, with ``node_ptr``/``edge_ptr``
offsets per molecule, the layout of a PyG batch, which :func:`torchgrade.probes.graphs.molecule_batch`
slices back into batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def collate(molecules: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenate molecules (dicts of ``x``, ``edge_index``, ``edge_attr``, ``y`` arrays) into
    one set with per-molecule offsets ``node_ptr`` and ``edge_ptr`` (length ``M + 1``); each
    molecule's ``edge_index`` keeps numbering its own atoms from 0."""
    node_counts = [len(m["x"]) for m in molecules]
    edge_counts = [np.asarray(m["edge_index"]).shape[1] for m in molecules]
    node_ptr = np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
    return {
        "x": np.concatenate([np.asarray(m["x"], np.float32) for m in molecules]),
        "edge_index": np.concatenate([np.asarray(m["edge_index"], np.int64) for m in molecules], axis=1),
        "edge_attr": np.concatenate([np.asarray(m["edge_attr"], np.float32) for m in molecules]),
        "y": np.concatenate([np.asarray(m["y"], np.float32).reshape(1) for m in molecules]),
        "node_ptr": node_ptr,
        "edge_ptr": edge_ptr,
    }
