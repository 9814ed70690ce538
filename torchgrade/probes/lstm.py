"""Running a submitted LSTM (UvA DL1 A2 Q2.3): its outputs, and its gradients with respect to its input.

Runs in the worker, next to the submitted module (``Submission.apply``): the outputs and gradients
come back as plain tensors, and the grader compares them with the handout's equations computed from
the module's own weights (:mod:`torchgrade.checks.lstm`). Imports only torch, the standard library and
other probes.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import torch
from torch import nn

from torchgrade.probes.training import first_tensor

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
            :data:`HIDDEN_SIZE_ATTRIBUTES` of the module, of its ``args`` (the UvA template's
            ``TextGenerationModel(args)``) or of a submodule.

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


def lstm_probe(
    model: nn.Module, embeds: torch.Tensor, cotangent: torch.Tensor | None = None, hidden: int | None = None
) -> dict[str, Any]:
    """Run a submitted LSTM on ``embeds`` and return what it gives.

    Args:
        model: the LSTM; its parameters are not changed.
        embeds: the input, ``(T, B, E)``.
        cotangent: ``(T, B, H)`` weights of the outputs; when given, the gradient of
            ``sum(outputs * cotangent)`` with respect to ``embeds`` is returned too.
        hidden: ``H``, for a zero state where the forward requires one (:func:`call_recurrent`).

    Returns:
        ``{"output": (T, B, H) tensor, or a description of what came back instead, "grad": (T, B, E)
        or None (no cotangent, or an output of another shape or kind), "adapted": how the call was
        adapted, or None, "tuple": whether it returned a tuple, e.g. ``(outputs, (h, c))``}``.
    """
    x = embeds.detach().clone().requires_grad_(cotangent is not None)
    raw, adapted = call_recurrent(model, x, hidden)
    out = first_tensor(raw)
    result: dict[str, Any] = {"adapted": adapted, "grad": None, "tuple": isinstance(raw, (tuple, list))}
    if not isinstance(out, torch.Tensor):
        result["output"] = f"a {type(out).__name__}"
        return result
    result["output"] = out.detach().clone()
    if cotangent is not None and out.shape == cotangent.shape and out.is_floating_point():
        if out.requires_grad:
            (grad,) = torch.autograd.grad(out, x, cotangent.to(out.dtype), allow_unused=True)
            result["grad"] = torch.zeros_like(x) if grad is None else grad.detach()
        else:
            result["grad"] = torch.zeros_like(x)
    return result


class HandoutLSTM(nn.Module):
    """The grader's LSTM: equations (8)-(13), each parameter uniform in +-1/sqrt(H) and the forget gate's
    bias +1, lent to a character model whose own LSTM failed its check (one bug, one deduction).

    Built with the grader's sizes whatever the submission's code passes it (its argument names and order
    are the submission's own); returns ``(outputs, (h, c))`` or ``outputs`` alone, as the LSTM it stands
    for did.

    Shapes:
        embeds ``(T, B, E)`` -> outputs ``(T, B, H)``; the state ``(h, c)``, each ``(B, H)``.
    """

    hidden_size: int = 0
    embed_size: int = 0
    returns_state: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        hidden, embed = self.hidden_size, self.embed_size
        bound = hidden**-0.5
        self.weight_x = nn.Parameter(torch.empty(4 * hidden, embed).uniform_(-bound, bound))
        self.weight_h = nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(4 * hidden).uniform_(-bound, bound))
        with torch.no_grad():
            self.bias[2 * hidden : 3 * hidden] += 1.0  # gates in the order g, i, f, o

    def forward(self, embeds: torch.Tensor, state: Any = None, *rest: Any) -> Any:
        batch = embeds.shape[1]
        if isinstance(state, (tuple, list)) and len(state) == 2:
            h, c = (s.reshape(batch, -1) for s in state)
        else:
            h = c = embeds.new_zeros(batch, self.hidden_size)
        from_input = embeds @ self.weight_x.T + self.bias
        outputs = []
        for t in range(embeds.shape[0]):
            g, i, f, o = (from_input[t] + h @ self.weight_h.T).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.tanh(c) * torch.sigmoid(o)
            outputs.append(h)
        out = torch.stack(outputs)
        return (out, (h, c)) if self.returns_state else out


def lend_lstm(model_cls: type, lstm_cls: type, hidden: int, embed: int, returns_state: bool) -> list[str]:
    """Make the globals of ``model_cls``'s module that name ``lstm_cls`` refer to a :class:`HandoutLSTM`
    of ``H = hidden``, ``E = embed`` until :func:`return_lstm`: models built meanwhile hold the grader's LSTM.

    Returns:
        The names swapped (empty when the module refers to the LSTM by no global name).
    """
    module = sys.modules.get(model_cls.__module__)
    if module is None:
        return []
    lent = type(
        "HandoutLSTM", (HandoutLSTM,), {"hidden_size": hidden, "embed_size": embed, "returns_state": returns_state}
    )
    names = [name for name, value in vars(module).items() if value is lstm_cls]
    for name in names:
        setattr(module, name, lent)
    return names


def return_lstm(model_cls: type, lstm_cls: type, names: list[str]) -> None:
    """Undo :func:`lend_lstm`."""
    module = sys.modules.get(model_cls.__module__)
    for name in names if module is not None else ():
        setattr(module, name, lstm_cls)
