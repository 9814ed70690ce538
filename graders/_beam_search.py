"""Helpers of ``test_beam_search.py`` (EECS 182 discussion 8, problem 2): the discussion's tree, how the
grader runs the submitted ``beam_search`` on a tree, and how it compares the beams.

Nothing here is graded by itself: the check in ``test_beam_search.py`` calls these functions.
"""

from __future__ import annotations

from torchgrade.checks.beam_search import read_beam_result
from torchgrade.checks.shapes import cut
from torchgrade.errors import CheckFailure
from torchgrade.probes.beam_search import decoder_record, tree_decoder

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
