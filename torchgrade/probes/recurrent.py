"""Calling a recurrent module the way its forward allows: ``model(x)``, or with a zero initial state
when its forward requires one.

Runs in the worker, next to the submitted module (``Submission.apply``), inside other probes (what a
model calls, a training loop). Imports only torch and the standard library.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

#: Attributes a recurrent module commonly keeps its hidden size in, to build a zero state.
HIDDEN_SIZE_ATTRIBUTES = ("hidden_dim", "lstm_hidden_dim", "hidden_size", "n_hidden", "num_hidden", "lstm_num_hidden")


def call_recurrent(model: nn.Module, x: torch.Tensor, hidden: int | None = None) -> tuple[Any, str | None]:
    """``model(x)``; for a forward that requires a state (``forward(x, prev_state)`` with no
    default), ``model(x, (h0, c0))`` or ``model(x, h0, c0)`` with zeros ``(B, H)`` (zeros read the
    same whichever comes first), else (no hidden size known, or the zeros refused) ``model(x, None)``.

    Args:
        model: the recurrent module (an LSTM, or a character model whose LSTM is inside it).
        x: ``(T, B, ...)``, time first: embeddings, or character indices (the zeros are floats).
        hidden: ``H`` as the grader built the module; else read from one of
            :data:`HIDDEN_SIZE_ATTRIBUTES` of the module, of its ``args`` (a model built from a
            training script's arguments) or of a submodule.

    Returns:
        The output and how the call was adapted (None when ``model(x)`` fitted).
    """
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to read: just call
        return model(x), None
    if _binds(signature, x):
        return model(x), None
    hidden = hidden or _hidden_size(model)
    refused: Exception | None = None
    if hidden is not None and x.dim() >= 2:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        zeros = torch.zeros(x.shape[1], hidden, dtype=dtype, device=x.device)
        for args, how in (((x, (zeros, zeros)), "forward(x, (h0, c0))"), ((x, zeros, zeros), "forward(x, h0, c0)")):
            if _binds(signature, *args):
                try:
                    return model(*args), f"called as {how} with zero states"
                except Exception as exc:  # a state of another layout: None may still do
                    refused = exc
                break
    if _binds(signature, x, None):
        try:
            return model(x, None), "called as forward(x, None): no initial state"
        except Exception:
            if refused is None:
                raise
    if refused is not None:
        raise refused
    return model(x), None  # raises the signature error the student should see


def _binds(signature: inspect.Signature, *args: Any) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def _hidden_size(model: nn.Module) -> int | None:
    holders = [model, getattr(model, "args", None), *(m for m in model.modules() if m is not model)]
    for holder in holders:
        for attribute in HIDDEN_SIZE_ATTRIBUTES:
            value = getattr(holder, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
