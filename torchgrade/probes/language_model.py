"""A character-level language model (UvA DL1 A2 Q2.4a): building it, training it with the grader's
loop, and a model with known logits that records what a submitted loss function feeds it.

Runs in the worker, next to the submitted model (``Submission.apply``): training needs autograd on
the student's model. What comes back is plain data (the model's outputs, recorded inputs), never a
score: the held-out characters the model is scored on stay with the grader, which computes the loss
(:func:`torchgrade.checks.language_model.score_language_run`) and decides. Imports only torch, the
standard library and other probes.
"""

from __future__ import annotations

import types
from typing import Any

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
    held_out_inputs: torch.Tensor,
    *,
    vocabulary: int,
    steps: int,
    batch_size: int,
    seq_length: int,
    lr: float,
    clip: float,
    seed: int,
) -> dict[str, Any]:
    """Train a character model with teacher forcing for a fixed number of Adam steps, then return its
    predictions of the character after each held-out window.

    Each step draws ``batch_size`` windows of ``seq_length + 1`` characters at random offsets of
    ``train``; the model reads the first ``seq_length`` (``(T, B)``, time first) and the loss is
    :func:`sequence_cross_entropy` of its output against the last ``seq_length``. Gradients are
    clipped to norm ``clip`` (the handout's training script clips too). Then, in eval mode without
    autograd, the model reads ``held_out_inputs`` and its logits at the last step are returned: the
    character they predict was never sent here.

    Args:
        model: ``model(x (T, B)) -> (T, B, V)`` logits; trained in place.
        train: 1-D int64 character stream.
        held_out_inputs: ``(T, W)`` int64, W held-out windows.
        vocabulary: ``V``.
        steps, batch_size, seq_length, lr, clip: the budget.
        seed: seeds the window offsets and torch's global generator.

    Returns:
        ``{"losses": training loss per step, "next_logits": (W, V) float32}``, or ``{"error": message}``
        when the output has the wrong type or shape or the loss is not finite.
    """
    torch.manual_seed(seed)
    offsets = torch.Generator().manual_seed(seed)
    train, held_out_inputs = torch.as_tensor(train).long(), torch.as_tensor(held_out_inputs).long()
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
    model.eval()
    with torch.no_grad():
        out = first_tensor(model(held_out_inputs))
        problem = logits_problem(out, (*held_out_inputs.shape, vocabulary))
        if problem:
            return {"error": f"in eval mode, {problem}"}
    return {"losses": losses, "next_logits": out[-1].detach().float()}


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
