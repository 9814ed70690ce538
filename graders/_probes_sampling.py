"""Probes of ``test_lstm.py``'s sampling (UvA DL1 A2 Q2.4b-c): copies of the submitted model whose
predictions the grader controls, and how much work its ``sample`` does.

Runs in the worker, next to the submitted model (``Submission.apply``; a probe module, sent there as
source): the copies stay there (the
grader holds handles on them) and the work is measured by hooking torch's functions. The grader
judges the sampled characters itself. Imports only torch, the standard library and other probes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from torchgrade.probes.module_usage import FunctionRecorder

__torchgrade_probes__ = True


def with_known_logits(model: nn.Module, logits: torch.Tensor) -> nn.Module | str:
    """A copy of a character model whose next-character logits are ``logits (V,)`` after any input.

    Every parameter of the copy is set to zero except the one 1-D parameter of ``V`` values, the
    output layer's bias ``b_p`` (eq. 14), which is set to ``logits``: with the output weights
    ``W_ph`` at zero, ``p = W_ph h + b_p = b_p`` whatever the LSTM's state.

    Returns:
        The copy in eval mode, or a message saying why it cannot be made (no or several such parameters).
    """
    vocabulary = logits.numel()
    copied = copy.deepcopy(model)
    named = list(copied.named_parameters())
    biases = [name for name, p in named if p.numel() == vocabulary and max(p.shape) == vocabulary]
    if len(biases) != 1:
        shapes = ", ".join(f"{name} {list(p.shape)}" for name, p in named)
        return (
            f"the grader needs exactly one parameter of shape [{vocabulary}] (the output layer's bias b_p) and "
            f"found {len(biases)} among: {shapes}"
        )
    with torch.no_grad():
        for name, p in named:
            p.copy_(logits.to(p.dtype).reshape(p.shape) if name == biases[0] else torch.zeros_like(p))
    return copied.eval()


def scaled_copy(model: nn.Module, factor: float) -> nn.Module:
    """A copy of ``model`` in eval mode with every parameter multiplied by ``factor``: an untrained
    model's small weights make its predictions barely depend on the past; scaled up, they do."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for p in copied.parameters():
            p.mul_(factor)
    return copied.eval()


def sampling_cost(
    model: nn.Module, batch_size: int, lengths: Sequence[int], temperature: float, positional: bool = False
) -> dict[str, Any]:
    """How much work ``model.sample`` does for each length: the total number of elements of the
    tensors returned by the torch functions it calls (matrix products, gates, embeddings...).

    Carrying the state makes the work grow linearly with the length; re-running the model over
    the whole prefix for every new character makes it grow quadratically.

    Args:
        model: the character model; sampled without autograd.
        batch_size, lengths, temperature: the arguments of ``sample``, one call per length.
        positional: call ``sample(batch_size, length, temperature)`` instead of with keywords.

    Returns:
        ``{"elements": [per length]}``.
    """
    elements = []
    for length in lengths:
        recorder = FunctionRecorder()
        with recorder, torch.no_grad():
            if positional:
                model.sample(batch_size, length, temperature)
            else:
                model.sample(batch_size=batch_size, sample_length=length, temperature=temperature)
        elements.append(recorder.elements)
    return {"elements": elements}
