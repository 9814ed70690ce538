"""Probes of the graph assignments: training loops that run next to a submitted graph model.

Runs on the worker side (through ``Submission.apply``): a training loop needs autograd through the
submitted model, so with process isolation it runs inside the worker, where the model lives. These
are the grader's own functions; they take and return plain data (tensors, numbers, lists, dicts)
and import only torch, numpy and other probes, so they also run where torch_geometric is absent.

They never see a held-out label or target and return no score: only the training labels cross to
the worker, and what comes back is the trained model's outputs on nodes or molecules the grader
chose. Accuracies and losses are computed in the grader process
(:func:`torchgrade.checks.graphs.score_node_classifier`, :func:`~torchgrade.checks.graphs.score_molecule_run`),
so neither a model that walks up the stack nor code that replaces these functions can reach a
label it was not trained on.

Molecules arrive as one collated set per split (built on the grader side by
:func:`torchgrade.checks.graphs.collate`): all atoms, bonds and targets concatenated, with
``node_ptr``/``edge_ptr`` offsets per molecule (length ``M + 1``), the layout of a PyG batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.probes.training import first_tensor, logits_problem, one_thread


# -- node classification -------------------------------------------------------------------------
@one_thread()
def train_node_classifier(
    model: nn.Module,
    x: torch.Tensor,
    adj: torch.Tensor,
    train_index: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    n_classes: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> dict[str, Any]:
    """Full-batch training with Adam and cross-entropy on the model's outputs, as in the handout.

    The model's output is taken as logits (``F.cross_entropy`` applies the softmax). After the last
    epoch the model's outputs on every node, in eval mode without autograd, are returned for the
    grader to score.

    Args:
        model: ``model(x, adj) -> (N, C)``; trained in place.
        x: ``(N, F)`` node features.
        adj: ``(N, N)`` adjacency, in the form the model takes (sparse or dense).
        train_index: ``(K,)`` the training nodes.
        train_labels: ``(K,)`` their labels: the only labels the worker sees.
        n_classes: ``C``.
        epochs, lr, weight_decay: the budget.
        seed: seeds torch's generator for dropout.

    Returns:
        ``{"logits": (N, C) float32, "losses", "note"}``; ``{"error": message}`` when the output has
        the wrong shape, the loss stops being finite or the model runs out of memory.
    """
    try:
        return _train_node_classifier(
            model,
            x,
            adj,
            torch.as_tensor(train_index).long(),
            torch.as_tensor(train_labels).long(),
            n_classes=n_classes,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
        )
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        n = x.shape[0]
        # A GAT that materialises [Wh_i || Wh_j] for all pairs needs N * N * 2F' floats per head.
        return {
            "error": f"the model ran out of memory on a graph of {n} nodes ({type(exc).__name__}: "
            f"{str(exc)[:200]}). A layer that builds all {n}x{n} node pairs explicitly needs "
            f"memory growing with N^2 times the feature width; scores a_left.Wh_i + a_right.Wh_j "
            f"broadcast to N x N need only N^2 numbers per head."
        }


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (MemoryError, or torch's allocator refusing)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def _train_node_classifier(
    model: nn.Module,
    x: torch.Tensor,
    adj: torch.Tensor,
    train_index: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    n_classes: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses, note = [], ""
    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad()
        try:
            out = first_tensor(model(x, adj))
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            if epoch > 1 or adj.layout == torch.strided:
                raise
            adj = adj.to_dense()  # a model that only takes a dense adjacency still gets trained
            note = f"the model could not take a sparse adjacency ({type(exc).__name__}); trained with a dense one"
            out = first_tensor(model(x, adj))
        problem = logits_problem(out, (x.shape[0], n_classes))
        if problem:
            return {"error": problem}
        loss = F.cross_entropy(out[train_index], train_labels)
        if not torch.isfinite(loss):
            return {"error": f"the training loss became {loss.item()} at epoch {epoch}"}
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 5))
    model.eval()
    with torch.no_grad():
        out = first_tensor(model(x, adj))
    problem = logits_problem(out, (x.shape[0], n_classes))
    if problem:
        return {"error": f"in eval mode, {problem}"}
    return {"logits": out.detach().float(), "losses": losses, "note": note}


# -- molecules -----------------------------------------------------------------------------------
def molecule_batch(molecules: dict[str, Any], indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """``(x, edge_index, edge_attr, batch, y)`` of the molecules ``indices`` of a collated set, with
    atoms renumbered from 0 in the batch: the tensors of a PyG ``Batch``. ``y`` is None for a set
    sent without its targets (every set but the training one)."""
    node_ptr, edge_ptr = molecules["node_ptr"], molecules["edge_ptr"]
    xs, edges, attrs, batch, offset = [], [], [], [], 0
    for position, i in enumerate(indices):
        start, stop = int(node_ptr[i]), int(node_ptr[i + 1])
        xs.append(molecules["x"][start:stop])
        edges.append(molecules["edge_index"][:, int(edge_ptr[i]) : int(edge_ptr[i + 1])] + offset)
        attrs.append(molecules["edge_attr"][int(edge_ptr[i]) : int(edge_ptr[i + 1])])
        batch.append(torch.full((stop - start,), position, dtype=torch.int64))
        offset += stop - start
    y = molecules["y"][torch.as_tensor(list(indices), dtype=torch.int64)] if "y" in molecules else None
    return torch.cat(xs), torch.cat(edges, dim=1), torch.cat(attrs), torch.cat(batch), y


def _as_tensors(molecules: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)) for k, v in molecules.items()}


def predict_molecules(model: nn.Module, molecules: dict[str, Any], *, batch_size: int = 256) -> torch.Tensor:
    """Predictions ``(M,)`` of ``model(x, edge_index, edge_attr, batch)`` in eval mode."""
    molecules = _as_tensors(molecules)
    n = len(molecules["node_ptr"]) - 1
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x, edge_index, edge_attr, batch, _ = molecule_batch(molecules, range(start, min(n, start + batch_size)))
            out.append(_predictions(model(x, edge_index, edge_attr, batch), int(batch.max()) + 1))
    return torch.cat(out).float()


def _predictions(out: Any, n_molecules: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.numel() != n_molecules or not out.is_floating_point():
        got = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ValueError(
            f"the model returned {got} for a batch of {n_molecules} molecules; expected one "
            f"prediction per molecule, shape [{n_molecules}] or [{n_molecules}, 1]"
        )
    return out.reshape(n_molecules)


@one_thread()
def train_molecule_regressor(
    model: nn.Module,
    train: dict[str, Any],
    val: dict[str, Any],
    test: dict[str, Any],
    permuted_test: dict[str, Any],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Train ``model`` on z-scored targets with Adam and the mean squared error, in shuffled
    mini-batches; predict the validation molecules after every epoch and the test molecules, as
    given and with atoms renumbered, after the last.

    Args:
        model: ``model(x, edge_index, edge_attr, batch) -> (B,)``; trained in place.
        train: the collated training set (:func:`torchgrade.checks.graphs.collate`), with targets.
        val, test, permuted_test: collated sets without their targets (``y``); ``permuted_test``
            holds the molecules of ``test`` with their atoms numbered differently.
        epochs, lr, batch_size: the budget.
        seed: seeds the shuffling and torch's generator.

    Returns:
        ``{"val_predictions": one (M_val,) tensor per epoch, "test_predictions",
        "permuted_predictions", "losses": mean training loss per epoch}``, or ``{"error": message}``
        when the loss stops being finite.
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    train_t = _as_tensors(train)
    n = len(train_t["y"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    val_predictions, losses = [], []
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_losses = []
        for chunk in torch.randperm(n, generator=shuffle).split(batch_size):
            x, edge_index, edge_attr, batch, y = molecule_batch(train_t, chunk.tolist())
            optimizer.zero_grad()
            loss = F.mse_loss(_predictions(model(x, edge_index, edge_attr, batch), len(chunk)), y)
            if not torch.isfinite(loss):
                return {"error": f"the training loss became {loss.item()} in epoch {epoch}"}
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        schedule.step()
        losses.append(round(float(np.mean(epoch_losses)), 5))
        val_predictions.append(predict_molecules(model, val))
    return {
        "val_predictions": val_predictions,
        "test_predictions": predict_molecules(model, test),
        "permuted_predictions": predict_molecules(model, permuted_test),
        "losses": losses,
    }
