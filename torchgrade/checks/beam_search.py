"""Beam search on explicit token trees (EECS 182 discussion 8, problem 2), grader side: reading what a
submitted ``beam_search`` returned, the grader's own beam search, exhaustive search, and random trees.

The submitted search runs where the submission runs, with a decoder over the tree
(:mod:`torchgrade.probes.beam_search`); its beams come back as plain lists and are compared here.
A tree is a dict ``{prefix: log-probabilities of the next token}`` with one entry per node.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _tokens(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def read_beam_result(result: Any) -> tuple[list[int] | None, list | None, str]:
    """``(best, beams, problem)`` from what a beam search returned: ``(best, beams)`` as the template
    says, or a bare sequence of tokens (then there are no beams to read)."""
    try:
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (list, tuple))):
            return _tokens(result), None, "beam_search returned one sequence, not the pair (best, beams)"
        best_value, beams_value = result
        best = _tokens(best_value)
        beams = [[(_tokens(tokens), float(score)) for tokens, score in step] for step in beams_value]
        return best, beams, ""
    except (TypeError, ValueError) as exc:
        return None, None, f"could not read (best, beams) from the {type(result).__name__} it returned: {exc}"


def beam_search_reference(
    table: dict[tuple[int, ...], Sequence[float]], beam_width: int, sequence_length: int
) -> tuple[list[int], list[list[tuple[list[int], float]]]]:
    """The grader's beam search on an explicit tree (same contract as the template's)."""
    kept: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    beams = []
    for _ in range(sequence_length):
        candidates = [(tokens + (t,), score + lp) for tokens, score in kept for t, lp in enumerate(table[tokens])]
        candidates.sort(key=lambda c: c[1], reverse=True)
        kept = candidates[:beam_width]
        beams.append([(list(tokens), score) for tokens, score in kept])
    return list(kept[0][0]), beams


def exhaustive_search(table: dict[tuple[int, ...], Sequence[float]], sequence_length: int) -> tuple[list[int], float]:
    """The most likely sequence of ``sequence_length`` tokens, by scoring every one."""
    vocabulary = len(table[()])
    best, best_score = None, -math.inf
    for tokens in itertools.product(range(vocabulary), repeat=sequence_length):
        score = sum(table[tokens[:k]][tokens[k]] for k in range(sequence_length))
        if score > best_score:
            best, best_score = list(tokens), score
    return best, best_score


def random_tree(vocabulary: int, depth: int, rng: np.random.Generator) -> dict[tuple[int, ...], list[float]]:
    """Log-probabilities of a random tree: each node's children drawn from a flat Dirichlet."""
    table = {}
    for level in range(depth):
        for prefix in itertools.product(range(vocabulary), repeat=level):
            table[prefix] = np.log(rng.dirichlet(np.ones(vocabulary))).tolist()
    return table
