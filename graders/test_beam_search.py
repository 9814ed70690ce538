"""Grader of EECS 182 discussion 8, problem 2: beam search. ``beam_search(decoder, beam_width,
sequence_length)`` keeps, at each step, the k most likely extensions of the sequences it kept, and
returns the most likely sequence of the final beam with the beams of every step.

How the check knows the answers (helpers in ``_beam_search.py``): the decoder is an explicit tree of
next-token log-probabilities, the discussion's Figure 1 or a random one, so the grader's own beam
search and, where the beam covers the tree, exhaustive search give the expected beams and sequence.
"""

from __future__ import annotations

import numpy as np
import pytest
from _beam_search import (
    DISCUSSION_TREE,
    beam_search_reference,
    compare_beams,
    exhaustive_search,
    random_tree,
    run_tree,
    tokens_text,
    words,
)

from torchgrade.checks.shapes import cut
from torchgrade.errors import CheckFailure

ASSIGNMENT = "eecs182"


@pytest.mark.points(4, question="Beam-2")
def test_beam_search(sub, parts):
    """Beam search keeps the k most likely sequences at each step, and returns the most likely of the last beam."""
    call = "beam_search(decoder of the discussion's Figure 1, beam_width=2, sequence_length=3)"
    expected_best, expected_beams = beam_search_reference(DISCUSSION_TREE, 2, 3)
    with parts.part(
        2,
        'the discussion\'s beams: "neural", "network"; then "neural network", "network neural"; then '
        '"neural network network", "network neural network"',
    ):
        result = run_tree(sub, DISCUSSION_TREE, 2, 3)
        if result["beams"] is None:
            raise CheckFailure(
                f"{call}: {result['problem']}; return (best, beams) with beams[t] the (tokens, "
                f"log_prob) pairs kept after step t + 1."
            )
        compare_beams(result["beams"], expected_beams, call)
    with parts.part(1, 'returns "neural network network" (not the most likely sequence, "neural neural network")'):
        result = run_tree(sub, DISCUSSION_TREE, 2, 3)
        if result["best"] != expected_best:
            got = words(result["best"]) if result["best"] is not None else result["problem"]
            raise CheckFailure(
                f"{call} returned {got}; expected {words(expected_best)}, the most likely of the final "
                f"beam (log-probability -1.85)."
            )
    with parts.part(1, "random trees: the grader's beam search for k = 1-3, exhaustive search when k covers the tree"):
        rng = np.random.default_rng(182)
        for vocabulary, depth, beam_width in ((3, 3, 2), (2, 4, 3), (3, 4, 1), (3, 3, 9), (2, 4, 8)):
            tree = random_tree(vocabulary, depth, rng)
            call = (
                f"beam_search(a random tree of {vocabulary} tokens, beam_width={beam_width}, sequence_length={depth})"
            )
            result = run_tree(sub, tree, beam_width, depth)
            best, beams = beam_search_reference(tree, beam_width, depth)
            if result["beams"] is None:
                raise CheckFailure(f"{call}: {result['problem']}.")
            compare_beams(result["beams"], beams, call, render=tokens_text)
            if result["best"] != best:
                raise CheckFailure(
                    f"{call} returned {tokens_text(result['best'])}; expected {best}, the most likely of the "
                    f"final beam."
                )
            if beam_width >= vocabulary ** (depth - 1):
                exhaustive, _ = exhaustive_search(tree, depth)
                if result["best"] != exhaustive:
                    raise CheckFailure(
                        f"{call}: with a beam as wide as the tree it must find the most likely "
                        f"sequence, {exhaustive}; it returned {tokens_text(result['best'])}."
                    )
            if result["state_mismatches"]:
                prefix, state = result["state_mismatches"][0]
                raise CheckFailure(
                    f"{call}: the decoder was asked about {tokens_text(prefix)} with the state {cut(state)}, not the "
                    f"one it returned when {tokens_text(prefix[:-1])} was extended. Hint: store each hypothesis's "
                    f"state with it (the discussion's part f), so that the model never re-reads a prefix."
                )
