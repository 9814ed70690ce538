"""The character-level language model of UvA DL1 A2 Q2.4a, grader side: building a submission's
``TextGenerationModel`` through its proxy, and the expected loss of the grader's recording model.

The model is trained where the submission runs (:mod:`torchgrade.probes.language_model`); this module
decides nothing from there. :func:`sequence_cross_entropy` is the probes' pure function, imported
here so that the grader computes eq. (17) exactly as the training loop does.
"""

from __future__ import annotations

from typing import Any

import torch

from torchgrade.errors import CheckFailure, SignatureMismatch
from torchgrade.probes.language_model import construct_with_args, sequence_cross_entropy

__all__ = ["make_text_model", "sequence_cross_entropy", "table_logits"]


def make_text_model(submission: Any, vocabulary: int, embed: int, hidden: int) -> Any:
    """``TextGenerationModel(vocabulary_size=V, embedding_size=E, lstm_hidden_dim=H)`` of a submission
    proxy, or, for the UvA template's ``TextGenerationModel(args)``, the same values as attributes of
    one ``args`` object (the adaptation goes into the report's notes).

    Raises:
        SignatureMismatch: neither call fits the submitted class; the message names both attempts.
    """
    values = {"vocabulary_size": vocabulary, "embedding_size": embed, "lstm_hidden_dim": hidden}
    cls = submission.TextGenerationModel
    try:
        return cls(**values)
    except SignatureMismatch as mismatch:
        try:
            model = submission.apply(construct_with_args, cls, values)
        except CheckFailure as also:
            first = str(also).splitlines()[0]
            raise SignatureMismatch(
                f"{mismatch} Also tried TextGenerationModel(args) with args.vocabulary_size, "
                f"args.embedding_size, args.lstm_hidden_dim: {first}"
            ) from None
        submission.notes["call TextGenerationModel(args)"] = (
            "TextGenerationModel(vocabulary_size=..., embedding_size=..., lstm_hidden_dim=...) did not fit the "
            "submitted signature; graded as TextGenerationModel(args) with those values as attributes of args"
        )
        return model


def table_logits(table: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """What :class:`torchgrade.probes.language_model.RecordingLanguageModel` with ``table`` returns for
    ``inputs``.

    Shapes:
        table ``(V, V)``, inputs ``(...)`` -> ``(..., V)``.
    """
    return table[inputs.long()]
