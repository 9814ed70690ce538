"""Recurrent networks: an independent LSTM, reading a submitted LSTM's weights back, probes of
what a model calls, the grader's language-model training loop, sampling probes and beam search.

Two kinds of functions live here:

* probes that need the submitted objects themselves (autograd, hooks, a copy with known weights)
  and so run where the submission runs (``Submission.apply``): :func:`lstm_probe`,
  :func:`module_usage`, :func:`train_language_model`, :func:`with_known_logits`,
  :func:`scaled_copy`, :func:`sampling_cost`, :func:`recording_language_model` and
  :func:`recorded_inputs`, :func:`tree_decoder` and :func:`decoder_record`, :func:`holds_instance`,
  :func:`construct_with_args`. They take and return plain data (or an object the grader then holds
  a handle on) and import only torch, NumPy and :mod:`torchgrade.checks.training`.
* pure functions of the grader side: :func:`lstm_weight_readings` and :func:`lstm_equations`
  (the handout's equations (8)-(13) in float64), :func:`beam_search_reference` and
  :func:`exhaustive_search` on explicit token trees, :func:`read_beam_result`,
  :func:`sequence_cross_entropy`, and :func:`make_text_model`, which builds a submission's model
  through its proxy.

Gate names follow the UvA handout: ``g`` (input modulation, tanh), ``i`` (input), ``f`` (forget),
``o`` (output)::

    g = tanh(W_gx x + W_gh h + b_g)      i = sigmoid(W_ix x + W_ih h + b_i)
    f = sigmoid(W_fx x + W_fh h + b_f)   o = sigmoid(W_ox x + W_oh h + b_o)
    c = g * i + c_prev * f               h = tanh(c) * o
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import re
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from torchgrade.probes.training import first_tensor, logits_problem, one_thread

GATES = ("g", "i", "f", "o")
GATE_NAMES = {"g": "input modulation g (tanh)", "i": "input gate i", "f": "forget gate f", "o": "output gate o"}


# -- what a model calls ------------------------------------------------------------------------------
#: Modules a from-scratch LSTM must not use (the handout's list, with their relatives). Subclasses
#: count: ``nn.LazyLinear`` is an ``nn.Linear``.
FORBIDDEN_MODULES: dict[str, type[nn.Module]] = {
    "nn.Linear": nn.Linear,
    "nn.LSTM": nn.LSTM,
    "nn.LSTMCell": nn.LSTMCell,
    "nn.GRU": nn.GRU,
    "nn.GRUCell": nn.GRUCell,
    "nn.RNN": nn.RNN,
    "nn.RNNCell": nn.RNNCell,
}
#: torch's fused recurrent kernels (what nn.LSTM and friends call), by the name a TorchFunctionMode sees.
FUSED_RECURRENT_FUNCTIONS = frozenset(
    {
        "lstm",
        "lstm_cell",
        "gru",
        "gru_cell",
        "rnn_tanh",
        "rnn_relu",
        "rnn_tanh_cell",
        "rnn_relu_cell",
        "_thnn_fused_lstm_cell",
        "_thnn_fused_gru_cell",
    }
)


class _FunctionRecorder(TorchFunctionMode):
    """Records the names of the torch functions called and the elements of the tensors they return."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.elements = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.names.add(getattr(func, "__name__", ""))
        self.elements += _numel(out)
        return out


def _numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value)
    return 0


@contextmanager
def _recording() -> Iterator[dict[str, Any]]:
    """Record, while the block runs, every module called (a global forward pre-hook: modules built
    inside ``forward`` count too) and every torch function called."""
    seen: dict[str, Any] = {"modules": []}

    def hook(module, args):
        seen["modules"].append(module)

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    recorder = _FunctionRecorder()
    try:
        with recorder:
            yield seen
    finally:
        handle.remove()
        seen["functions"] = recorder.names
        seen["elements"] = recorder.elements


def _forbidden_found(modules: Sequence[tuple[str, nn.Module]], forbidden: Sequence[str]) -> list[str]:
    found = []
    for name, module in modules:
        for key in forbidden:
            if isinstance(module, FORBIDDEN_MODULES[key]):
                found.append(f"{name} ({key})" if name else key)
                break
    return list(dict.fromkeys(found))


def module_usage(model: nn.Module, x: torch.Tensor, forbidden: Sequence[str]) -> dict[str, Any]:
    """Which of the ``forbidden`` modules (keys of :data:`FORBIDDEN_MODULES`) ``model`` holds or
    calls, and which fused recurrent kernels it calls, during ``model(x)`` without autograd.

    Returns:
        ``{"in_tree": ["name (nn.Linear)", ...], "called": ["nn.Linear", ...], "fused": ["lstm", ...]}``.
    """
    unknown = [key for key in forbidden if key not in FORBIDDEN_MODULES]
    if unknown:
        raise ValueError(f"unknown module names {unknown}; choose from {sorted(FORBIDDEN_MODULES)}")
    in_tree = _forbidden_found([(name or type(model).__name__, m) for name, m in model.named_modules()], forbidden)
    with torch.no_grad(), _recording() as seen:
        _call_recurrent(model, x)
    called = _forbidden_found([("", m) for m in seen["modules"]], forbidden)
    return {"in_tree": in_tree, "called": called, "fused": sorted(seen["functions"] & FUSED_RECURRENT_FUNCTIONS)}


def _call_recurrent(model: nn.Module, x: torch.Tensor) -> tuple[Any, str | None]:
    """``model(x)``; for a forward that requires a state, ``model(x, (h0, c0))`` or
    ``model(x, h0, c0)`` with zeros ``(B, H)`` (zeros read the same whichever comes first).

    Returns:
        The output and how the call was adapted (None when ``model(x)`` fitted).
    """
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to read: just call
        return model(x), None
    if _binds(signature, x):
        return model(x), None
    hidden = _hidden_size(model)
    if hidden is not None:
        zeros = x.new_zeros(x.shape[1], hidden)
        for args, how in (((x, (zeros, zeros)), "forward(x, (h0, c0))"), ((x, zeros, zeros), "forward(x, h0, c0)")):
            if _binds(signature, *args):
                return model(*args), f"called as {how} with zero states"
    return model(x), None  # raises the signature error the student should see


def _binds(signature: inspect.Signature, *args: Any) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def _hidden_size(model: nn.Module) -> int | None:
    for attribute in ("hidden_dim", "lstm_hidden_dim", "hidden_size", "n_hidden", "num_hidden"):
        value = getattr(model, attribute, None)
        if isinstance(value, int):
            return value
    return None


def lstm_probe(
    model: nn.Module, embeds: torch.Tensor, cotangent: torch.Tensor | None = None, forbidden: Sequence[str] = ()
) -> dict[str, Any]:
    """Run a submitted LSTM on ``embeds (T, B, E)`` and return what it gives.

    Args:
        model: the LSTM; its parameters are not changed.
        embeds: the input.
        cotangent: ``(T, B, H)`` weights of the outputs; when given, the gradient of
            ``sum(outputs * cotangent)`` with respect to ``embeds`` is returned too.
        forbidden: keys of :data:`FORBIDDEN_MODULES` to look for among the modules called.

    Returns:
        ``{"output": (T, B, H) float tensor or a description of what came back, "grad": (T, B, E)
        or None, "adapted": how the call was adapted or None, "called": forbidden modules called,
        "fused": fused recurrent kernels called}``.
    """
    x = embeds.detach().clone().requires_grad_(cotangent is not None)
    with _recording() as seen:
        out, adapted = _call_recurrent(model, x)
    out = first_tensor(out)
    result: dict[str, Any] = {
        "adapted": adapted,
        "called": _forbidden_found([("", m) for m in seen["modules"]], forbidden),
        "fused": sorted(seen["functions"] & FUSED_RECURRENT_FUNCTIONS),
        "grad": None,
    }
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


# -- reading an LSTM's weights back ----------------------------------------------------------------------
@dataclass(frozen=True)
class LSTMWeights:
    """One reading of an LSTM's parameters as the handout's matrices, in float64.

    Attributes:
        w_x, w_h, b: per gate (``"g"``, ``"i"``, ``"f"``, ``"o"``): ``(H, E)``, ``(H, H)`` and ``(H,)``
            arrays such that the gate's pre-activation is ``w_x @ x + w_h @ h + b``.
        sources: per gate, where its weights were read, e.g. ``"W_fx, W_fh, b_f"`` or
            ``"weight_ih rows 10-14, ..."``.
        named: whether the gates were assigned by the parameters' names (``W_fx``, ``b_f``...)
            rather than by trying every order.
    """

    w_x: dict[str, np.ndarray]
    w_h: dict[str, np.ndarray]
    b: dict[str, np.ndarray]
    sources: dict[str, str]
    named: bool

    def describe(self) -> str:
        return "; ".join(f"{GATE_NAMES[g]} from {self.sources[g]}" for g in GATES)


class UnmappableWeights(ValueError):
    """The parameters do not fit any layout the grader reads (its message says which)."""


@dataclass
class _Block:
    """A gate's share of one kind of parameter: an array and where it came from."""

    array: np.ndarray
    source: str
    gate: str | None = None  # from the parameter's name


def _gate_of(name: str) -> str | None:
    """The gate a parameter's name denotes (``W_fx``, ``b_f``, ``W_hf``, ``weight_forget``,
    ``Wc``...), or None when the name does not say."""
    leaf = name.rsplit(".", 1)[-1].lower()
    for word, gate in (("forget", "f"), ("output", "o"), ("candidate", "g"), ("modulation", "g"), ("cell", "g")):
        if word in leaf:
            return gate
    core = re.sub(r"^(weights?|bias(es)?|[wubv])", "", leaf)
    core = re.sub(r"[^a-z]", "", core)
    if len(core) == 1 and core in "gifoc":
        return "g" if core == "c" else core
    if len(core) == 2:
        letters = [c for c in core if c not in "xh"]
        if len(letters) == 1 and letters[0] in "gifoc":
            return "g" if letters[0] == "c" else letters[0]
        if core[0] == "i" and core[1] in "gifoc":  # PyTorch's W_ii, W_if, W_ig, W_io: source i, then the gate
            return "g" if core[1] == "c" else core[1]
    return None


def _squeezed(value: torch.Tensor) -> np.ndarray:
    array = value.detach().double().numpy()
    shape = [s for s in array.shape if s != 1] or [1]
    return array.reshape(shape)


def _layout_error(values: Sequence[tuple[str, torch.Tensor]], hidden: int, embed: int, why: str) -> UnmappableWeights:
    shapes = ", ".join(f"{name} {list(v.shape)}" for name, v in values) or "no parameters"
    return UnmappableWeights(
        f"{why}. Its parameters: {shapes}. The grader reads, for H={hidden} and E={embed}: per gate W_*x [H, E], "
        f"W_*h [H, H] and b_* [H] (12 tensors), or the gates stacked in one tensor per kind ([4H, E], [4H, H], "
        f"[4H]), or x and h weights side by side ([H, E+H] per gate or [4H, E+H]), each possibly transposed, "
        f"with one bias per gate (or two, as nn.LSTM has, which are added)."
    )


def lstm_weight_readings(
    values: Sequence[tuple[str, torch.Tensor]], hidden: int, embed: int
) -> tuple[list[LSTMWeights], LSTMWeights | None]:
    """Every reading of an LSTM's parameters as the handout's per-gate matrices.

    Shapes say what a parameter is (``[H, E]``: an input weight, ``[4H]``: four stacked biases,
    ...; ``H``, ``4H``, ``E`` and ``E + H`` must differ). Which gate a block belongs to comes from
    the parameter's name where every block of its kind is named after a distinct gate
    (``W_gx``, ``W_ix``, ``W_fx``, ``W_ox``), with the unnamed kinds tried in every order (the same
    order for all of them, e.g. the rows of ``[4H, E]`` and ``[4H, H]`` weights); then, names aside,
    every order of the blocks as stored (registration order, then rows), the same for every kind:
    a forward that uses ``W_fx`` as the output gate matches one of those. A square ``[H, H]``
    weight may be used as ``W h`` or as ``h W``: both are tried.

    Args:
        values: ``(name, tensor)`` of every parameter, in registration order.
        hidden, embed: ``H`` and ``E``.

    Returns:
        ``(readings, named)``: all readings (the named ones first), and the one given by the names
        alone (None unless every gate of every kind is named).

    Raises:
        UnmappableWeights: when the parameters fit no layout.
    """
    sizes = {hidden, 4 * hidden, embed, embed + hidden}
    if len(sizes) != 4:
        raise ValueError(f"choose H and E so that H, 4H, E and E + H differ (got H={hidden}, E={embed})")
    x_blocks: list[list[_Block]] = []  # each entry: 4 blocks (stack) or 1 block (separate)
    h_blocks: list[list[_Block]] = []
    both_blocks: list[list[_Block]] = []  # [H, E+H] per gate, x and h side by side
    biases: list[list[_Block]] = []
    for name, value in values:
        array = _squeezed(value)
        kind = _classify(array, hidden, embed)
        if kind is None:
            raise _layout_error(
                values,
                hidden,
                embed,
                f"the parameter {name} {list(value.shape)} fits no part of an LSTM with H={hidden}, E={embed}",
            )
        role, stacked, rows_out = kind
        blocks = _split(array, hidden, stacked, rows_out, name)
        if not stacked:
            blocks[0].gate = _gate_of(name)
        {"x": x_blocks, "h": h_blocks, "xh": both_blocks, "b": biases}[role].append(blocks)
    x_set, h_set = _four(x_blocks), _four(h_blocks)
    both = _four(both_blocks)
    if both is not None and x_set is None and h_set is None:
        variants = [
            (_columns(both, 0, embed, "x"), _columns(both, embed, embed + hidden, "h")),
            (_columns(both, hidden, embed + hidden, "x"), _columns(both, 0, hidden, "h")),
        ]
    elif x_set is not None and h_set is not None and not both_blocks:
        variants = [(x_set, h_set)]
    else:
        raise _layout_error(
            values, hidden, embed, "the grader found no four input weights and four recurrent weights (one per gate)"
        )
    bias_sets = _bias_sets(biases)
    if bias_sets is None:
        raise _layout_error(values, hidden, embed, "the biases are not one vector per gate (or two)")
    readings = []
    named = None
    for xs, hs in variants:
        square_orientations = (False, True) if not _stacked_h(h_blocks) else (False,)
        for transpose_h in square_orientations:
            hs_used = [_Block(b.array.T, b.source + " (transposed)", b.gate) for b in hs] if transpose_h else hs
            sets = [xs, hs_used] + bias_sets
            fixed = [_named_order(s) for s in sets]
            all_named = all(f is not None for f in fixed)
            if any(f is not None for f in fixed):  # the names' gates, the unnamed kinds in every order
                for order in itertools.permutations(range(4)):
                    assignment = [f if f is not None else order for f in fixed]
                    readings.append(_reading(sets, assignment, hidden, embed, named=all_named))
                    if named is None and all_named:
                        named = readings[-1]
                    if all_named:
                        break
            for order in itertools.permutations(range(4)):  # names aside: every order, the same for every kind
                readings.append(_reading(sets, [order] * len(sets), hidden, embed, named=False))
    return readings, named


def _classify(array: np.ndarray, hidden: int, embed: int) -> tuple[str, bool, bool] | None:
    """``(role, stacked, rows_are_outputs)`` of a parameter from its shape, or None."""
    if array.ndim == 1:
        if array.shape[0] == hidden:
            return "b", False, True
        if array.shape[0] == 4 * hidden:
            return "b", True, True
        return None
    if array.ndim != 2:
        return None
    rows, cols = array.shape
    for role, inputs in (("x", embed), ("h", hidden), ("xh", embed + hidden)):
        if (rows, cols) == (hidden, inputs):
            return role, False, True
        if (rows, cols) == (inputs, hidden):
            return role, False, False
        if (rows, cols) == (4 * hidden, inputs):
            return role, True, True
        if (rows, cols) == (inputs, 4 * hidden):
            return role, True, False
    return None


def _split(array: np.ndarray, hidden: int, stacked: bool, rows_out: bool, name: str) -> list[_Block]:
    """A parameter as blocks whose rows are the gate's outputs (``(H, inputs)`` or ``(H,)``)."""
    if array.ndim == 1:
        if not stacked:
            return [_Block(array, name)]
        return [
            _Block(array[k * hidden : (k + 1) * hidden], f"{name}[{k * hidden}:{(k + 1) * hidden}]") for k in range(4)
        ]
    matrix = array if rows_out else array.T
    where = "rows" if rows_out else "columns"
    if not stacked:
        return [_Block(matrix, name if rows_out else f"{name} (transposed)")]
    return [
        _Block(matrix[k * hidden : (k + 1) * hidden], f"{name} {where} {k * hidden}-{(k + 1) * hidden - 1}")
        for k in range(4)
    ]


def _four(groups: list[list[_Block]]) -> list[_Block] | None:
    """Four gate blocks of one kind: one stacked parameter or four separate ones; else None."""
    blocks = [b for group in groups for b in group]
    return blocks if len(blocks) == 4 else None


def _stacked_h(groups: list[list[_Block]]) -> bool:
    return any(len(group) == 4 for group in groups)


def _columns(blocks: list[_Block], start: int, stop: int, part: str) -> list[_Block]:
    return [_Block(b.array[:, start:stop], f"{b.source} columns {start}-{stop - 1} ({part})", b.gate) for b in blocks]


def _bias_sets(groups: list[list[_Block]]) -> list[list[_Block]] | None:
    blocks = [b for group in groups for b in group]
    if not blocks:
        return []
    if len(blocks) not in (4, 8):
        return None
    return [blocks[:4], blocks[4:]] if len(blocks) == 8 else [blocks]


def _named_order(blocks: list[_Block]) -> tuple[int, ...] | None:
    """The gate order given by the blocks' names (``order[k]``: the block of gate ``GATES[k]``)."""
    gates = [b.gate for b in blocks]
    if None in gates or sorted(gates) != sorted(GATES):
        return None
    return tuple(gates.index(g) for g in GATES)


def _reading(
    sets: list[list[_Block]], assignment: list[tuple[int, ...]], hidden: int, embed: int, named: bool
) -> LSTMWeights:
    xs, hs, bias_sets = sets[0], sets[1], sets[2:]
    w_x, w_h, b, sources = {}, {}, {}, {}
    for k, gate in enumerate(GATES):
        x_block, h_block = xs[assignment[0][k]], hs[assignment[1][k]]
        bias_blocks = [s[assignment[2 + n][k]] for n, s in enumerate(bias_sets)]
        w_x[gate], w_h[gate] = x_block.array, h_block.array
        b[gate] = sum((blk.array for blk in bias_blocks), np.zeros(hidden))
        parts = [x_block.source, h_block.source] + [blk.source for blk in bias_blocks]
        sources[gate] = ", ".join(parts) + ("" if bias_blocks else " (no bias)")
    return LSTMWeights(w_x, w_h, b, sources, named)


def lstm_equations(embeds: torch.Tensor, weights: LSTMWeights) -> torch.Tensor:
    """The handout's equations (8)-(13) in float64, from a zero state.

    Args:
        embeds: ``(T, B, E)``; differentiable if it requires grad.
        weights: a reading of the LSTM's parameters (:func:`lstm_weight_readings`).

    Returns:
        ``(T, B, H)`` float64: ``h`` after every step.
    """
    x = embeds.double()
    w_x = {g: torch.from_numpy(weights.w_x[g]) for g in GATES}
    w_h = {g: torch.from_numpy(weights.w_h[g]) for g in GATES}
    b = {g: torch.from_numpy(weights.b[g]) for g in GATES}
    hidden = w_h["g"].shape[0]
    h = x.new_zeros(x.shape[1], hidden)
    c = x.new_zeros(x.shape[1], hidden)
    outputs = []
    for t in range(x.shape[0]):
        pre = {gate: x[t] @ w_x[gate].T + h @ w_h[gate].T + b[gate] for gate in GATES}
        g, i, f, o = torch.tanh(pre["g"]), torch.sigmoid(pre["i"]), torch.sigmoid(pre["f"]), torch.sigmoid(pre["o"])
        c = g * i + c * f
        h = torch.tanh(c) * o
        outputs.append(h)
    return torch.stack(outputs)


# -- the grader's training loop ------------------------------------------------------------------------
def sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (17): cross-entropy averaged over every time step and sequence, ``logits (T, B, V)``."""
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


def holds_instance(model: nn.Module, cls: type) -> bool:
    """Whether ``model`` or one of its submodules is an instance of ``cls``."""
    return any(isinstance(module, cls) for module in model.modules())


def make_text_model(submission: Any, vocabulary: int, embed: int, hidden: int) -> Any:
    """Grader side: ``TextGenerationModel(vocabulary_size=V, embedding_size=E, lstm_hidden_dim=H)`` of
    a submission proxy, or, for the UvA template's ``TextGenerationModel(args)``, the same values as
    attributes of one ``args`` object (the adaptation goes into the report's notes)."""
    from torchgrade.errors import CheckFailure, SignatureMismatch

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


def construct_with_args(cls: type, values: dict[str, Any]) -> Any:
    """``cls(args)`` with ``args.<key> = value`` (and ``args.device = "cpu"``): the UvA template's
    ``TextGenerationModel(args)``."""
    return cls(types.SimpleNamespace(device="cpu", **values))


# -- the loss: a model whose logits the grader knows -------------------------------------------------
class RecordingLanguageModel(nn.Module):
    """A character model whose logits depend only on the current character (a fixed table), and
    which records every input it is given, so a grader can tell what a loss function fed it."""

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
    return RecordingLanguageModel(vocabulary_size, seed)


def recorded_inputs(model: RecordingLanguageModel) -> list[torch.Tensor]:
    return list(model.inputs)


def table_logits(table: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """What :class:`RecordingLanguageModel` with ``table`` returns for ``inputs``."""
    return table[inputs.long()]


# -- sampling ----------------------------------------------------------------------------------------
def with_known_logits(model: nn.Module, logits: torch.Tensor) -> nn.Module | str:
    """A copy of a character model whose next-character logits are ``logits (V,)`` after any input.

    Every parameter of the copy is set to zero except the one 1-D parameter of ``V`` values, the
    output layer's bias ``b_p`` (eq. 14), which is set to ``logits``: with the output weights
    ``W_ph`` at zero, ``p = W_ph h + b_p = b_p`` whatever the LSTM's state.

    Returns:
        The copy, or a message saying why it cannot be made (no or several such parameters).
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


def sampling_cost(
    model: nn.Module, batch_size: int, lengths: Sequence[int], temperature: float, positional: bool = False
) -> dict[str, Any]:
    """How much work ``model.sample`` does for each length: the total number of elements of the
    tensors returned by the torch functions it calls (matrix products, gates, embeddings...).

    Carrying the state makes the work grow linearly with the length; re-running the model over
    the whole prefix for every new character makes it grow quadratically.

    Args:
        positional: call ``sample(batch_size, length, temperature)`` instead of with keywords.

    Returns:
        ``{"elements": [per length]}``.
    """
    elements = []
    for length in lengths:
        recorder = _FunctionRecorder()
        with recorder, torch.no_grad():
            if positional:
                model.sample(batch_size, length, temperature)
            else:
                model.sample(batch_size=batch_size, sample_length=length, temperature=temperature)
        elements.append(recorder.elements)
    return {"elements": elements}


def scaled_copy(model: nn.Module, factor: float) -> nn.Module:
    """A copy of ``model`` in eval mode with every parameter multiplied by ``factor``: an untrained
    model's small weights make its predictions barely depend on the past; scaled up, they do."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for p in copied.parameters():
            p.mul_(factor)
    return copied.eval()


# -- beam search ------------------------------------------------------------------------------------------
class TreeDecoder:
    """A decoder given as an explicit tree: ``table[prefix]`` holds the log-probabilities of the next
    token after ``prefix``. It returns the prefix as its state, and records every call and whether
    the state it was handed belongs to the tokens it was handed."""

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


def _tokens(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def read_beam_result(result: Any) -> tuple[list[int] | None, list | None, str]:
    """``(best, beams, problem)`` from what a beam search returned: ``(best, beams)`` as the template
    says, or a bare sequence of tokens (then there are no beams to read)."""
    try:
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (list, tuple))):
            return _tokens(result), None, "beam_search returned one sequence, not the pair (best, beams)"
        best_value, beams_value = result
        best = _tokens(best_value)
        beams = [[(_tokens(tokens), float(score)) for tokens, score in step] for step in beams_value]
        return best, beams, ""
    except (TypeError, ValueError) as exc:
        return None, None, f"could not read (best, beams) from the {type(result).__name__} it returned: {exc}"


def beam_search_reference(
    table: dict[tuple[int, ...], Sequence[float]], beam_width: int, sequence_length: int
) -> tuple[list[int], list[list[tuple[list[int], float]]]]:
    """The grader's beam search on an explicit tree (same contract as the template's)."""
    kept: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    beams = []
    for _ in range(sequence_length):
        candidates = [(tokens + (t,), score + lp) for tokens, score in kept for t, lp in enumerate(table[tokens])]
        candidates.sort(key=lambda c: c[1], reverse=True)
        kept = candidates[:beam_width]
        beams.append([(list(tokens), score) for tokens, score in kept])
    return list(kept[0][0]), beams


def exhaustive_search(table: dict[tuple[int, ...], Sequence[float]], sequence_length: int) -> tuple[list[int], float]:
    """The most likely sequence of ``sequence_length`` tokens, by scoring every one."""
    vocabulary = len(table[()])
    best, best_score = None, -math.inf
    for tokens in itertools.product(range(vocabulary), repeat=sequence_length):
        score = sum(table[tokens[:k]][tokens[k]] for k in range(sequence_length))
        if score > best_score:
            best, best_score = list(tokens), score
    return best, best_score


def random_tree(vocabulary: int, depth: int, rng: np.random.Generator) -> dict[tuple[int, ...], list[float]]:
    """Log-probabilities of a random tree: each node's children drawn from a flat Dirichlet."""
    table = {}
    for level in range(depth):
        for prefix in itertools.product(range(vocabulary), repeat=level):
            table[prefix] = np.log(rng.dirichlet(np.ones(vocabulary))).tolist()
    return table
