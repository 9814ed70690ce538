"""Probes of ``test_beam_search.py`` (EECS 182 discussion 8): a decoder given as an explicit token tree,
to hand to a submitted beam search.

Runs in the worker (``Submission.apply``; a probe module, sent there as source): the submitted
``beam_search`` calls the decoder there, and the decoder records every call; the grader reads the
record (:func:`decoder_record`) and compares the returned beams with its own beam search
(``_beam_search.py``). Imports only torch and the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__torchgrade_probes__ = True


class TreeDecoder:
    """A decoder given as an explicit tree: ``table[prefix]`` holds the log-probabilities of the next
    token after ``prefix``. It returns the prefix as its state, and records every call and whether
    the state it was handed belongs to the tokens it was handed.

    Shapes:
        ``decoder(tokens (t,), state)`` -> ``(log_probs (V,) float64, state)``.
    """

    def __init__(self, table: dict[tuple[int, ...], list[float]]) -> None:
        self.table = table
        self.calls: list[tuple[int, ...]] = []
        self.state_mismatches: list[tuple[tuple[int, ...], Any]] = []

    def __call__(self, tokens: Any, state: Any = None) -> tuple[torch.Tensor, tuple[int, ...]]:
        prefix = tuple(int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens))
        self.calls.append(prefix)
        expected_state = prefix[:-1] if prefix else None
        if prefix and state != expected_state and len(self.state_mismatches) < 5:
            self.state_mismatches.append((prefix, state))
        if prefix not in self.table:
            raise KeyError(
                f"the decoder was asked about {list(prefix)}, which is not a hypothesis of this tree "
                f"(every prefix has {len(self.table[()])} children and the tree "
                f"{max(len(p) for p in self.table) + 1} levels)"
            )
        return torch.tensor(self.table[prefix], dtype=torch.float64), prefix


def tree_decoder(table: Sequence[tuple[Sequence[int], Sequence[float]]]) -> TreeDecoder:
    """A :class:`TreeDecoder` over ``(prefix, log_probs)`` pairs, one per node of the tree, for a
    grader to hand to a submitted ``beam_search``."""
    return TreeDecoder({tuple(int(t) for t in prefix): list(map(float, lp)) for prefix, lp in table})


def decoder_record(decoder: TreeDecoder) -> dict[str, Any]:
    """What a :class:`TreeDecoder` saw: ``{"calls": the prefixes it was asked about,
    "state_mismatches": up to 5 ``[prefix, repr(state)]`` whose state was not the one it returned
    for the prefix's parent}``."""
    return {
        "calls": [list(c) for c in decoder.calls],
        "state_mismatches": [[list(p), repr(s)] for p, s in decoder.state_mismatches],
    }
