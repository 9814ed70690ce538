"""Helpers of ``test_beam_search.py`` (EECS 182 discussion 8, problem 2): the discussion's tree, how the
grader runs the submitted ``beam_search`` on a tree (with the decoder of ``_probes_beam_search.py``,
which runs next to it), how it reads and compares the beams, and the grader's own beam search.

Nothing here is graded by itself: the check in ``test_beam_search.py`` calls these functions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from _probes_beam_search import decoder_record, tree_decoder

from torchgrade.checks.shapes import cut
from torchgrade.errors import CheckFailure

WORDS = ("neural", "network")
# The discussion's Figure 1 (log-probabilities of the next word after each prefix; 0 = "neural").
# Its text fixes every number below except the children of "network network", which step 2 prunes,
# and which of "neural neural"'s children has -0.01 (the best sequence overall, -1.46).
DISCUSSION_TREE = {
    (): [-0.65, -0.73],
    (0,): [-0.8, -0.6],
    (1,): [-0.6, -0.8],
    (0, 0): [-4.6, -0.01],
    (0, 1): [-0.8, -0.6],
    (1, 0): [-0.8, -0.6],
    (1, 1): [-0.7, -0.69],
}


def words(tokens) -> str:
    """The discussion's words of ``tokens`` (``"neural network"``), else the tokens; cut to a
    message's length (a submission may return any number of tokens)."""
    if all(t in (0, 1) for t in tokens):
        return cut('"' + " ".join(WORDS[t] for t in tokens) + '"')
    return tokens_text(tokens)


def tokens_text(tokens) -> str:
    """``[0, 2, 1]``, cut to a message's length."""
    return cut(str(list(tokens)))


def run_tree(submission, tree: dict, beam_width: int, length: int) -> dict:
    """Run the submitted ``beam_search`` with a decoder over ``tree`` (next-token log-probabilities per
    prefix); returns ``{"best", "beams", "problem"}`` and what the decoder saw (``"calls"``,
    ``"state_mismatches"``)."""
    decoder = submission.apply(tree_decoder, [(list(prefix), lp) for prefix, lp in tree.items()])
    best, beams, problem = read_beam_result(submission.beam_search(decoder, beam_width, length))
    return {"best": best, "beams": beams, "problem": problem, **submission.apply(decoder_record, decoder)}


def compare_beams(got: list, expected: list, call: str, render=words) -> None:
    for t, (got_step, expected_step) in enumerate(zip(got, expected, strict=False)):
        got_set = sorted((tuple(tokens), round(score, 6)) for tokens, score in got_step)
        expected_set = sorted((tuple(tokens), round(score, 6)) for tokens, score in expected_step)
        if got_set != expected_set:
            held = cut(", ".join(f"{render(k)} ({s:.3g})" for k, s in got_set[:20]))
            raise CheckFailure(
                f"{call}: after step {t + 1} the beam holds {held}; "
                f"expected {', '.join(f'{render(k)} ({s:.3g})' for k, s in expected_set)} (the k most likely of all "
                f"extensions of the previous beam, scored by their summed log-probabilities)."
            )
    if len(got) != len(expected):
        raise CheckFailure(f"{call} returned beams for {len(got)} steps; expected {len(expected)}, one per token.")


# -- the grader's own beam search, on explicit token trees (was torchgrade.checks.beam_search) -----
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
