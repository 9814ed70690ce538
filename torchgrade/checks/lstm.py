"""Reading a submitted LSTM's weights back as the handout's matrices, and the handout's equations
(8)-(13) computed from them in float64 (UvA DL1 A2 Q2.3).

Grader side: the LSTM's outputs come from :func:`torchgrade.probes.lstm.lstm_probe` and its parameters
from :func:`torchgrade.probes.params.parameter_values`, both plain tensors; these functions read the
parameters as per-gate matrices (by shape and name, in every order the shapes allow) and compute what
the equations give under each reading, for the grader to compare.

Gate names follow the UvA handout: ``g`` (input modulation, tanh), ``i`` (input), ``f`` (forget),
``o`` (output)::

    g = tanh(W_gx x + W_gh h + b_g)      i = sigmoid(W_ix x + W_ih h + b_i)
    f = sigmoid(W_fx x + W_fh h + b_f)   o = sigmoid(W_ox x + W_oh h + b_o)
    c = g * i + c_prev * f               h = tanh(c) * o
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

GATES = ("g", "i", "f", "o")
GATE_NAMES = {"g": "input modulation g (tanh)", "i": "input gate i", "f": "forget gate f", "o": "output gate o"}


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

    def gates(self) -> dict[str, str]:
        """Which parameters compute each gate, whatever their orientation: ``W_fx`` stored ``[E, H]``
        and applied as ``x @ W_fx`` computes the same gate as ``W_fx`` stored ``[H, E]`` and applied as
        ``W_fx @ x`` (two readings of one parameter, not two assignments of gates)."""
        return {g: self.sources[g].replace(_TRANSPOSED, "") for g in GATES}


_TRANSPOSED = " (transposed)"


def same_gates(first: LSTMWeights, second: LSTMWeights) -> bool:
    """Whether two readings give every gate the same parameters (their orientation aside)."""
    return first.gates() == second.gates()


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
    a forward that uses ``W_fx`` as the output gate matches one of those. A weight stored
    ``[inputs, H]`` (applied as ``x @ W``, as many students write it) is read transposed; a square
    ``[H, H]`` weight may be used as ``W h`` or as ``h W``: both are tried, and both readings of
    the names are marked ``named`` (an orientation is not an assignment of gates).

    Args:
        values: ``(name, tensor)`` of every parameter, in registration order.
        hidden, embed: ``H`` and ``E``.

    Returns:
        ``(readings, named)``: all readings (those that follow the names first), and the first one
        given by the names alone (None unless every gate of every kind is named).

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
    readings.sort(key=lambda reading: not reading.named)  # stable: the names' readings first, in every orientation
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
    """The biases as one or two sets of four blocks. Eight separate biases named after their gates
    in any order (``b_xi, b_hi, b_xf, ...``) are two sets by name: each gate's first and second;
    otherwise the first four registered and the last four (nn.LSTM's ``bias_ih``, ``bias_hh``)."""
    blocks = [b for group in groups for b in group]
    if not blocks:
        return []
    if len(blocks) not in (4, 8):
        return None
    if len(blocks) == 4:
        return [blocks]
    gates = [b.gate for b in blocks]
    if all(len(group) == 1 for group in groups) and all(gates.count(g) == 2 for g in GATES):
        first = [next(b for b in blocks if b.gate == g) for g in GATES]
        return [first, [b for b in blocks if all(b is not f for f in first)]]
    return [blocks[:4], blocks[4:]]


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
