"""A character-level language model (UvA DL1 A2 Q2.4a): building it, training it with the grader's
loop, and a model with known logits that records what a submitted loss function feeds it.

Runs in the worker, next to the submitted model (``Submission.apply``): training needs autograd on
the student's model. What comes back is plain data (losses, recorded inputs); the grader holds the
threshold and decides. Imports only torch, NumPy, the standard library and other probes.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.probes.training import first_tensor, logits_problem, one_thread


def sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (17): the cross-entropy averaged over every time step and sequence.

    Shapes:
        logits ``(T, B, V)``, targets ``(T, B)`` -> a scalar.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


@one_thread()
def train_language_model(
    model: nn.Module,
    train: torch.Tensor,
    val: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    seq_length: int,
    lr: float,
    clip: float,
    seed: int,
) -> dict[str, Any]:
    """Train a character model with teacher forcing for a fixed number of Adam steps, then score it.

    Each step draws ``batch_size`` windows of ``seq_length + 1`` characters at random offsets of
    ``train``; the model reads the first ``seq_length`` (``(T, B)``, time first) and the loss is
    :func:`sequence_cross_entropy` of its output against the last ``seq_length``. Gradients are
    clipped to norm ``clip`` (the handout's training script clips too). The score is the same loss
    on consecutive non-overlapping windows of ``val``, in eval mode, without autograd.

    Args:
        model: ``model(x (T, B)) -> (T, B, V)`` logits; trained in place.
        train, val: 1-D int64 character streams.
        steps, batch_size, seq_length, lr, clip: the budget.
        seed: seeds the window offsets and torch's global generator.

    Returns:
        ``{"losses": per step, "final_loss": mean of the last 10 steps, "val_loss"}``, or
        ``{"error": message}`` when the output has the wrong type or shape or the loss is not finite.
    """
    torch.manual_seed(seed)
    offsets = torch.Generator().manual_seed(seed)
    train, val = torch.as_tensor(train).long(), torch.as_tensor(val).long()
    vocabulary = int(max(train.max(), val.max())) + 1
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    window = torch.arange(seq_length + 1)
    losses = []
    for step in range(1, steps + 1):
        starts = torch.randint(len(train) - seq_length - 1, (batch_size,), generator=offsets)
        batch = train[starts[:, None] + window].T  # (T + 1, B)
        model.train()
        optimizer.zero_grad()
        out = first_tensor(model(batch[:-1]))
        problem = logits_problem(out, (seq_length, batch_size, vocabulary))
        if problem:
            return {"error": problem}
        loss = sequence_cross_entropy(out, batch[1:])
        if not torch.isfinite(loss):
            return {"error": f"the training loss became {loss.item()} at step {step}"}
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(round(loss.item(), 5))
    count = (len(val) - 1) // (seq_length + 1)
    windows = val[: count * (seq_length + 1)].reshape(count, seq_length + 1).T
    model.eval()
    with torch.no_grad():
        out = first_tensor(model(windows[:-1]))
        problem = logits_problem(out, (seq_length, count, vocabulary))
        if problem:
            return {"error": f"in eval mode, {problem}"}
        val_loss = sequence_cross_entropy(out, windows[1:]).item()
    return {"losses": losses, "final_loss": float(np.mean(losses[-10:])), "val_loss": val_loss}


def construct_with_args(cls: type, values: dict[str, Any]) -> Any:
    """``cls(args)`` with ``args.<key> = value`` (and ``args.device = "cpu"``): the UvA template's
    ``TextGenerationModel(args)``."""
    return cls(types.SimpleNamespace(device="cpu", **values))


class RecordingLanguageModel(nn.Module):
    """A character model whose logits depend only on the current character (a fixed table), and
    which records every input it is given, so a grader can tell what a loss function fed it.

    Shapes:
        x ``(...)`` character indices -> ``(..., V)`` logits ``table[x]``.
    """

    def __init__(self, vocabulary_size: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocabulary_size, vocabulary_size, generator=generator))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        self.inputs.append(x.detach().clone())
        return self.table[x.long()]


def recording_language_model(vocabulary_size: int, seed: int) -> RecordingLanguageModel:
    """A :class:`RecordingLanguageModel`, for a grader to hand to a submitted loss function."""
    return RecordingLanguageModel(vocabulary_size, seed)


def recorded_inputs(model: RecordingLanguageModel) -> list[torch.Tensor]:
    """The inputs ``model`` was called with, in order."""
    return list(model.inputs)
