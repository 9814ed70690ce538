"""Grader-side helpers of the graph assignments: what the grader sends to the graph probes, and
the scores of what comes back.

Runs on the grader side. The training loops themselves run next to the submitted model
(:mod:`torchgrade.probes.graphs`); this module packs the grader's data for them, keeping held-out
labels and targets here, and scores the returned outputs against them. Molecules travel as
one collated set per split: all atoms, bonds and targets concatenated, with ``node_ptr``/``edge_ptr``
offsets per molecule, the layout of a PyG batch, which :func:`torchgrade.probes.graphs.molecule_batch`
slices back into batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def collate(molecules: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenate molecules (dicts of ``x``, ``edge_index``, ``edge_attr``, ``y`` arrays) into
    one set with per-molecule offsets ``node_ptr`` and ``edge_ptr`` (length ``M + 1``); each
    molecule's ``edge_index`` keeps numbering its own atoms from 0."""
    node_counts = [len(m["x"]) for m in molecules]
    edge_counts = [np.asarray(m["edge_index"]).shape[1] for m in molecules]
    node_ptr = np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
    return {
        "x": np.concatenate([np.asarray(m["x"], np.float32) for m in molecules]),
        "edge_index": np.concatenate([np.asarray(m["edge_index"], np.int64) for m in molecules], axis=1),
        "edge_attr": np.concatenate([np.asarray(m["edge_attr"], np.float32) for m in molecules]),
        "y": np.concatenate([np.asarray(m["y"], np.float32).reshape(1) for m in molecules]),
        "node_ptr": node_ptr,
        "edge_ptr": edge_ptr,
    }


def without_targets(molecules: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A collated set as sent to the worker for prediction: everything but the targets ``y``."""
    return {k: v for k, v in molecules.items() if k != "y"}


def received_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` from the worker as a float64 array of ``shape``; ValueError for anything else.

    What the worker returns is untrusted: a wrong type or shape is the submission's failure.
    """
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise ValueError(f"the training run returned {type(value).__name__} as its {what}; expected an array")
    array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
    if array.shape != shape:
        raise ValueError(f"the training run returned {what} of shape {list(array.shape)}; expected {list(shape)}")
    return array


def received_losses(value: Any) -> list[float]:
    """The training losses a run reported (shown in the report, never graded) as a list of floats."""
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
        raise ValueError("the training run returned no list of training losses")
    return [float(v) for v in value]


def score_node_classifier(
    run: dict[str, Any], y: np.ndarray, train_mask: np.ndarray, test_mask: np.ndarray
) -> dict[str, Any]:
    """Accuracies of what :func:`torchgrade.probes.graphs.train_node_classifier` returned.

    Args:
        run: the probe's ``{"logits", "losses", "note"}``, or its ``{"error"}`` (returned as it is).
        y: ``(N,)`` every node's label, held out from the worker but for the training nodes.
        train_mask, test_mask: ``(N,)`` booleans.

    Returns:
        ``{"test_accuracy", "train_accuracy", "losses", "note"}``: the argmax of each node's
        outputs against its label; a node whose outputs are not all finite counts as wrong.

    Raises:
        ValueError: the run holds no logits of shape ``(N, C)``.
    """
    if "error" in run:
        return run
    y = np.asarray(y)
    logits = received_array(run.get("logits"), (len(y), int(y.max()) + 1), "logits")
    finite = np.isfinite(logits).all(axis=1)
    correct = (np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=1) == y) & finite
    note = run.get("note")
    return {
        "test_accuracy": float(correct[np.asarray(test_mask, bool)].mean()),
        "train_accuracy": float(correct[np.asarray(train_mask, bool)].mean()),
        "losses": received_losses(run.get("losses")),
        "note": note if isinstance(note, str) else "",
    }


def mse(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The mean squared error; infinite where a prediction is not finite."""
    if not np.isfinite(predictions).all():
        return float("inf")
    return float(np.mean((predictions - np.asarray(targets, np.float64)) ** 2))


def score_molecule_run(run: dict[str, Any], val_y: np.ndarray, test_y: np.ndarray) -> dict[str, Any]:
    """Losses of what :func:`torchgrade.probes.graphs.train_molecule_regressor` returned.

    Args:
        run: the probe's predictions, or its ``{"error"}`` (returned as it is).
        val_y, test_y: the targets of the validation and test molecules, held out from the worker.

    Returns:
        ``{"val_losses": per epoch, "test_loss", "permuted_test_loss", "test_predictions",
        "permuted_predictions"}`` (the predictions as float64 arrays).

    Raises:
        ValueError: the run holds no predictions of the right shapes.
    """
    if "error" in run:
        return run
    val_runs = run.get("val_predictions")
    if not isinstance(val_runs, list) or not val_runs:
        raise ValueError("the training run returned no validation predictions")
    val_losses = [round(mse(received_array(p, (len(val_y),), "validation predictions"), val_y), 5) for p in val_runs]
    test = received_array(run.get("test_predictions"), (len(test_y),), "test predictions")
    permuted = received_array(run.get("permuted_predictions"), (len(test_y),), "permuted test predictions")
    return {
        "val_losses": val_losses,
        "test_loss": mse(test, test_y),
        "permuted_test_loss": mse(permuted, test_y),
        "test_predictions": test,
        "permuted_predictions": permuted,
    }
