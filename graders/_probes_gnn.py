"""Probes of ``test_gnn.py`` (CSC413 A4 part 3), a probe module run in the worker (``Submission.apply``;
sent there as source in process isolation).

One bug, one deduction: where a submission's ``GraphAttentionLayer`` failed its own check (3.4), the
GAT check (3.5) trains the submission's ``GAT`` built with :class:`CorrectAttentionLayer`, the grader's
layer, in its place (:func:`build_with_lent_layer`): it accepts the constructor call the submission's
GAT makes, bound by the submission's own layer's signature, and the forward call, bound by that
layer's ``forward``. The training loop itself is torchgrade's
(:func:`torchgrade.probes.graphs.train_node_classifier`). Imports only torch, the standard library
and ``torchgrade.probes``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchgrade.probes.substitute import swap

__torchgrade_probes__ = True


# -- the grader's attention layer, lent to a submission's GAT ------------------------------------------
#: The handout's GraphAttentionLayer parameters with their defaults (None: required).
LAYER_PARAMETERS = (
    ("in_features", None),
    ("out_features", None),
    ("n_heads", None),
    ("is_concat", True),
    ("dropout", 0.6),
    ("alpha", 0.2),
)
#: Names of a layer's flag meaning the opposite of ``is_concat``.
AVERAGE_ALIASES = ("average", "is_average", "average_heads", "mean_heads", "avg")
#: Names of the forward's node features and adjacency, by which a keyword call is read.
FORWARD_ALIASES = {
    "h": ("h", "x", "input", "inputs", "features", "feats", "node_features", "nodes", "feature"),
    "adj_mat": ("adj_mat", "adj", "adjacency", "adj_matrix", "adjacency_matrix", "a", "mask", "edge_index", "graph"),
}


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def handout_name(name: str, aliases: dict[str, tuple[str, ...]]) -> str | None:
    """The handout's name of a submitted parameter ``name``, or None."""
    for exact in (True, False):
        for handout, others in aliases.items():
            for candidate in (handout, *others):
                if (candidate == name) if exact else (_squash(candidate) == _squash(name)):
                    return handout
    return None


def _parameters(fn: Callable) -> list[inspect.Parameter]:
    """``fn``'s parameters without ``self`` and without ``*args``/``**kwargs``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p
        for i, p in enumerate(signature.parameters.values())
        if not (i == 0 and p.name == "self") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def bind_layer_call(
    signature_of: Callable, args: tuple, kwargs: dict, names: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The handout's arguments ``{in_features, ..., alpha}`` of a constructor call written for the
    submitted layer: bound by that layer's signature, each parameter renamed to the handout's name
    it stands for (``names``, else its own name where it is the handout's); required handout
    parameters left unnamed take the submitted integer parameters no name matched, in their order,
    and a layer with no parameter for the heads has one. Returns the arguments and what was not
    understood.

    Args:
        signature_of: the submitted layer's ``__init__``.
        args, kwargs: the call the submission's GAT makes.
        names: the submitted parameter -> the handout's parameter it receives, as the grader's
            binding by name found them (aliases included); the worker has no binding of its own.

    Raises:
        TypeError: the call does not bind to the submitted signature, or a size is missing.
    """
    names = names or {}
    handout_names = {handout for handout, _ in LAYER_PARAMETERS}
    params = _parameters(signature_of)
    bound = inspect.Signature(params).bind(*args, **kwargs)
    bound.apply_defaults()
    values: dict[str, Any] = {}
    unmatched = []
    for name, value in bound.arguments.items():
        handout = names.get(name, name if name in handout_names else None)
        if handout is None and name.lower() in AVERAGE_ALIASES and isinstance(value, bool):
            handout, value = "is_concat", not value
        if handout not in handout_names or handout in values:
            unmatched.append((name, value))
        else:
            values[handout] = value
    for handout, default in LAYER_PARAMETERS:
        if handout in values:
            continue
        if default is None:
            sizes = [(n, v) for n, v in unmatched if isinstance(v, int) and not isinstance(v, bool)]
            if not sizes and handout == "n_heads":  # a single-head layer (pyGAT's): the GAT stacks them
                sizes = [("", 1)]
                unmatched.append(sizes[0])
            if not sizes:
                raise TypeError(f"the call {_call_text(args, kwargs)} gives no {handout}")
            name, value = sizes[0]
            unmatched.remove((name, value))
            values[handout] = value
        else:
            values[handout] = default
    ignored = [f"{n}={repr(v)[:80]}" for n, v in unmatched]
    return values, ignored


def leaky_slopes(model: nn.Module) -> list[float]:
    """The ``negative_slope`` of every ``nn.LeakyReLU`` in ``model``, in order (a layer that fixes
    its alpha inside)."""
    return [float(m.negative_slope) for m in model.modules() if isinstance(m, nn.LeakyReLU)]


def _call_text(args: tuple, kwargs: dict) -> str:
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(shown)[:200] + ")"


class CorrectAttentionLayer(nn.Module):
    """The grader's graph attention layer (the handout's layer, as the solution writes it): ``W``
    projects the nodes into ``n_heads`` heads, ``e_ij = LeakyReLU_alpha(a_left . s_i + a_right . s_j)``
    (the handout's ``a . [s_i || s_j]`` with ``a`` shared by the heads, without building the pairs),
    scores of non-edges set to -inf, softmax over the neighbours j, dropout on the attention weights,
    heads concatenated or averaged.

    Built by :class:`LentAttentionLayer` from a call written for the submission's layer; its forward
    takes the arguments in the submission's layer's ``forward`` order or names (``forward_of``).
    A dense ``(N, N)`` 0/1 adjacency with self-loops is the handout's; a sparse one is made dense,
    and a ``(2, E)`` ``edge_index`` (PyG's convention) becomes the mask of its edges and self-loops.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_heads: int,
        is_concat: bool = True,
        dropout: float = 0.6,
        alpha: float = 0.2,
        forward_of: Callable | None = None,
    ) -> None:
        super().__init__()
        in_features, out_features, n_heads = int(in_features), int(out_features), int(n_heads)
        if is_concat and out_features % n_heads:
            raise ValueError(f"out_features={out_features} is not divisible by n_heads={n_heads}")
        self.in_features, self.out_features, self.n_heads = in_features, out_features, n_heads
        self.is_concat, self.dropout, self.alpha = bool(is_concat), float(dropout), float(alpha)
        self.n_hidden = out_features // n_heads if is_concat else out_features
        self.W = nn.Linear(in_features, n_heads * self.n_hidden, bias=False)
        self.attention = nn.Linear(2 * self.n_hidden, 1, bias=False)
        self.activation = nn.LeakyReLU(negative_slope=self.alpha)
        self.dropout_layer = nn.Dropout(self.dropout)
        self._forward_parameters = [p.name for p in _parameters(forward_of)] if forward_of is not None else []

    def _inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, adj_mat)`` from a call in the submitted forward's order or names."""
        names = self._forward_parameters or ["h", "adj_mat"]
        given = dict(zip(names, args, strict=False))
        given.update(kwargs)
        found: dict[str, Any] = {}
        for name, value in given.items():
            handout = handout_name(name, FORWARD_ALIASES)
            if handout is not None and handout not in found and isinstance(value, torch.Tensor):
                found[handout] = value
        tensors = [v for v in given.values() if isinstance(v, torch.Tensor)]
        if len(found) < 2 and len(tensors) >= 2:  # names the grader does not know: the first two tensors
            found = {"h": tensors[0], "adj_mat": tensors[1]}
        if len(found) < 2:
            raise TypeError(f"the grader's attention layer needs node features and an adjacency, got {list(given)}")
        return found["h"], found["adj_mat"]

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        h, adj_mat = self._inputs(args, kwargs)
        count = len(h)
        projected = self.W(h).reshape(count, self.n_heads, self.n_hidden)  # (N, heads, F')
        vector = self.attention.weight[0]
        source, target = projected @ vector[: self.n_hidden], projected @ vector[self.n_hidden :]  # (N, heads)
        scores = self.activation(source.unsqueeze(1) + target.unsqueeze(0))  # (N, N, heads): e_ij
        linked = _dense_mask(adj_mat, count).reshape(count, count, 1) != 0
        scores = scores.masked_fill(~linked, float("-inf"))
        weights = self.dropout_layer(scores.softmax(dim=1))  # alpha_ij over the neighbours j of i
        mixed = torch.einsum("nmh,mhf->nhf", weights, projected)
        return mixed.flatten(1) if self.is_concat else mixed.mean(dim=1)

    def describe(self) -> str:
        return (
            f"GraphAttentionLayer(in_features={self.in_features}, out_features={self.out_features}, "
            f"n_heads={self.n_heads}, is_concat={self.is_concat}, dropout={self.dropout:g}, alpha={self.alpha:g})"
        )


def _dense_mask(adj: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """A dense ``(N, N)`` mask of ``adj``: dense or sparse adjacency, or a ``(2, E)`` edge_index."""
    if adj.layout != torch.strided:
        adj = adj.to_dense()
    if adj.dim() == 2 and adj.shape[0] == 2 and adj.shape[1] != 2 and not adj.is_floating_point():
        mask = torch.eye(n_nodes, dtype=torch.float32)
        mask[adj[0].long(), adj[1].long()] = 1.0
        return mask
    return adj


class LentAttentionLayer:
    """Stands for a submission's ``GraphAttentionLayer`` class while its ``GAT`` is built: every call
    builds a :class:`CorrectAttentionLayer` from the arguments the GAT passes, bound by the
    submitted layer's own signature and the grader's names for its parameters (:func:`bind_layer_call`).

    Attributes:
        built: what each call became, in the handout's terms (plain strings for the report).
        ignored: arguments of those calls the grader's layer has no use for.
    """

    def __init__(self, submitted: Any, names: dict[str, str] | None = None) -> None:
        self.submitted = submitted
        self.names = names or {}
        self.built: list[str] = []
        self.ignored: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> CorrectAttentionLayer:
        values, ignored = bind_layer_call(self.submitted.__init__, args, kwargs, self.names)
        layer = CorrectAttentionLayer(**values, forward_of=getattr(self.submitted, "forward", None))
        self.built.append(layer.describe())
        self.ignored += ignored
        return layer


def build_with_lent_layer(
    model_class: Any, args: list, kwargs: dict, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """Build ``model_class(*args, **kwargs)`` (the submission's ``GAT``) while the global name
    ``GraphAttentionLayer`` that its code reads is the grader's :class:`LentAttentionLayer`, then put
    the submission's class back. ``names``: the submitted layer's parameter -> the handout's
    parameter, from the grader's binding by name (``graders/_gnn.py``: ``layer_names``).

    Returns:
        ``{"model": the model, "built": [layers built, in the handout's terms], "ignored": [...]}``;
        ``{"error": why}`` where the GAT's module defines no ``GraphAttentionLayer`` or the GAT built
        none of its layers through that name. Exceptions of the constructor propagate.
    """
    module = sys.modules.get(getattr(model_class, "__module__", None) or "")
    submitted = getattr(module, "GraphAttentionLayer", None)
    if not isinstance(model_class, type) or not isinstance(submitted, type):
        return {"error": "the GAT's module defines no class GraphAttentionLayer for the grader to stand in for"}
    lent = LentAttentionLayer(submitted, names)
    swap(model_class, "GraphAttentionLayer", lent)
    try:
        model = model_class(*args, **kwargs)
    finally:
        swap(model_class, "GraphAttentionLayer", submitted)
    if not lent.built:
        return {"error": "the GAT built no layer through the name GraphAttentionLayer"}
    return {"model": model, "built": lent.built, "ignored": lent.ignored}
