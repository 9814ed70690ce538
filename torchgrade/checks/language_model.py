"""The character-level language model of UvA DL1 A2 Q2.4a, grader side: building a submission's
``TextGenerationModel`` through its proxy, the held-out windows a trained model is scored on and
their loss, the expected loss of the grader's recording model, samples returned as text read back as
indices, and a loss read from its gradient with respect to the logits (targets and weights).

The model is trained where the submission runs (:mod:`torchgrade.probes.language_model`); what comes
back is its logits for the character after each held-out window, a character that never leaves the
grader: neither a model that reads ahead in its input nor code that replaces the loss function can
know it. :func:`sequence_cross_entropy` is the probes' pure function, imported
here so that the grader computes eq. (17) exactly as the training loop does.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchgrade.errors import CheckFailure, SignatureMismatch
from torchgrade.probes.language_model import construct_with_args, sequence_cross_entropy

__all__ = [
    "held_out_windows",
    "loss_gradient_reading",
    "make_text_model",
    "read_text_samples",
    "score_language_run",
    "sequence_cross_entropy",
    "table_logits",
    "vocabulary_characters",
]


def held_out_windows(stream: torch.Tensor, seq_length: int) -> tuple[torch.Tensor, np.ndarray]:
    """Consecutive non-overlapping windows of ``seq_length + 1`` characters of ``stream``: the first
    ``seq_length`` of each, time first, go to the worker; the last stays here as the target.

    Returns:
        ``(inputs (seq_length, W) int64, targets (W,) int64)``.
    """
    stream = torch.as_tensor(stream).long()
    count = len(stream) // (seq_length + 1)
    windows = stream[: count * (seq_length + 1)].reshape(count, seq_length + 1)
    return windows[:, :-1].T.contiguous(), windows[:, -1].numpy().copy()


def score_language_run(run: dict[str, Any], targets: np.ndarray, vocabulary: int) -> dict[str, Any]:
    """Score what :func:`torchgrade.probes.language_model.train_language_model` returned.

    Args:
        run: the probe's ``{"losses", "next_logits"}``, or its ``{"error"}`` (returned as it is).
        targets: ``(W,)`` the character after each held-out window.
        vocabulary: ``V``.

    Returns:
        ``{"losses", "final_loss": mean of the last 10, "val_loss": cross-entropy of the next
        character after each held-out window, in nats}``; the loss is infinite where logits are not.

    Raises:
        ValueError: the run holds no ``(W, V)`` logits or no list of losses.
    """
    if "error" in run:
        return run
    logits, losses = run.get("next_logits"), run.get("losses")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(targets), vocabulary):
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the training run returned next-character logits {got}; expected [{len(targets)}, {vocabulary}]"
        )
    if not isinstance(losses, list) or not losses or not all(isinstance(v, (int, float)) for v in losses):
        raise ValueError("the training run returned no list of training losses")
    z = logits.detach().double()
    finite = bool(torch.isfinite(z).all())
    val_loss = float(F.cross_entropy(z, torch.as_tensor(targets))) if finite else float("inf")
    return {"losses": losses, "final_loss": float(np.mean(losses[-10:])), "val_loss": val_loss}


def vocabulary_characters(vocabulary: int) -> str:
    """``V`` distinct printable characters, index ``i`` -> the ``i``-th: what the grader's ``args.dataset``
    maps indices to, and how a sample returned as text is read back."""
    pool = string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,;:!?'-"
    if vocabulary > len(pool):
        pool += "".join(chr(0x100 + i) for i in range(vocabulary - len(pool)))
    return pool[:vocabulary]


def make_text_model(
    submission: Any,
    vocabulary: int,
    embed: int,
    hidden: int,
    *,
    characters: str | None = None,
    batch_size: int = 128,
    seq_length: int = 30,
) -> Any:
    """``TextGenerationModel(vocabulary_size=V, embedding_size=E, lstm_hidden_dim=H)`` of a submission
    proxy, or, for the UvA template's ``TextGenerationModel(args)``, an ``args`` object with every
    argument of the template's ``train.py``, these sizes, ``args.dataset`` with the index maps of
    ``characters`` and the batches the grader will feed
    (:func:`torchgrade.probes.language_model.template_arguments`); the adaptation goes into the
    report's notes.

    Args:
        characters: ``V`` distinct characters, index ``i`` -> ``characters[i]``; by default
            :func:`vocabulary_characters`.
        batch_size, seq_length: ``args.batch_size`` and ``args.input_seq_length``.

    Raises:
        SignatureMismatch: neither call fits the submitted class; the message names both attempts.
    """
    values = {"vocabulary_size": vocabulary, "embedding_size": embed, "lstm_hidden_dim": hidden}
    characters = vocabulary_characters(vocabulary) if characters is None else characters
    cls = submission.TextGenerationModel
    try:
        return cls(**values)
    except SignatureMismatch as mismatch:
        try:
            model = submission.apply(construct_with_args, cls, values, characters, batch_size, seq_length)
        except CheckFailure as also:
            first = str(also).splitlines()[0]
            raise SignatureMismatch(
                f"{mismatch} Also tried TextGenerationModel(args) with args as the template's train.py makes it "
                f"(args.vocabulary_size, args.embedding_size, args.lstm_hidden_dim, args.dataset, args.device...): "
                f"{first}"
            ) from None
        submission.notes["call TextGenerationModel(args)"] = (
            "TextGenerationModel(vocabulary_size=..., embedding_size=..., lstm_hidden_dim=...) did not fit the "
            "submitted signature; graded as TextGenerationModel(args), args holding every argument of the "
            "template's train.py with those sizes, device cpu, and args.dataset with the grader's index maps"
        )
        return model


def table_logits(table: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """What :class:`torchgrade.probes.language_model.RecordingLanguageModel` with ``table`` returns for
    ``inputs``.

    Shapes:
        table ``(V, V)``, inputs ``(...)`` -> ``(..., V)``.
    """
    return table[inputs.long()]


def read_text_samples(value: Any, characters: str) -> tuple[Any, bool]:
    """A sample returned as text (a string, or one string per sequence) read back as character
    indices with the vocabulary the grader gave (``characters[i]`` is index ``i``).

    Returns:
        ``(indices, True)``: a list of index lists, one per string (a lone string is one sequence);
        ``(value, False)`` unchanged when it holds no text or a character outside ``characters``.
    """
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)) or not texts:
        return value, False
    if all(isinstance(t, (list, tuple)) and t and all(isinstance(c, str) for c in t) for t in texts):
        texts = ["".join(t) for t in texts]  # lists of characters
    if not all(isinstance(t, str) for t in texts):
        return value, False
    index = {char: i for i, char in enumerate(characters)}
    if any(char not in index for t in texts for char in t):
        return value, False
    return [[index[char] for char in t] for t in texts], True


def loss_gradient_reading(calls: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Read a loss from its gradient with respect to a model's logits: for a cross-entropy, each
    position's gradient is ``w (softmax(z) - onehot(y))``, with ``y`` the position's target (the one
    negative entry) and ``w`` its weight in the loss (``1/N`` for eq. (17) averaged over ``N``).

    Args:
        calls: what :func:`torchgrade.probes.language_model.inline_loss_gradient` recorded, each with
            ``"logits"`` and ``"grad"`` of one shape ``(..., V)`` (calls without a gradient left out).

    Returns:
        ``(targets (P,), weights (P,), departure)``: over all ``P`` positions in the calls' order,
        and the largest departure of the gradient from that form, relative to its largest entry (0
        for a cross-entropy of the logits, up to rounding).
    """
    z = torch.cat([c["logits"].double().reshape(-1, c["logits"].shape[-1]) for c in calls])
    g = torch.cat([c["grad"].double().reshape(-1, c["grad"].shape[-1]) for c in calls])
    s = torch.softmax(z, dim=-1)
    y = g.argmin(dim=-1)
    s_y = s.gather(1, y[:, None])[:, 0]
    w = -g.gather(1, y[:, None])[:, 0] / (1 - s_y)
    onehot = F.one_hot(y, z.shape[-1]).double()
    departure = float((g - w[:, None] * (s - onehot)).abs().max() / max(float(g.abs().max()), 1e-30))
    return y, w, departure
