"""Segmentation measures (CSC413 A4 part 4). Grader side.

:func:`class_iou` is the grader's IoU, used both as the exact expectation for a submitted
``mean_iou`` and, through :func:`score_training_run`, to score the label maps that the grader's
training loop (:func:`torchgrade.probes.segmentation.train_segmenter`, run in the worker) predicts
for validation images whose labels stay in the grader process.

IoU convention (the one the handout's per-class report uses): per class ``c``, over all pixels
of all images, ``IoU_c = |pred == c and target == c| / |pred == c or target == c|``; a class absent
from both has no IoU (0/0 is undefined) and is left out of the mean; a class present in only one
of them has IoU 0 and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


# -- intersection over union -------------------------------------------------------------------------
def confusion_matrix(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """``M[t, p]`` = pixels of true class ``t`` predicted as ``p``, over all pixels.

    Args:
        pred, target: integer class indices of one shape (tensors or arrays), values in
            ``[0, num_classes)``.

    Raises:
        ValueError: on different shapes or values outside the classes.
    """
    pred, target = _indices(pred), _indices(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {list(pred.shape)} and target {list(target.shape)} differ in shape")
    for name, values in (("prediction", pred), ("target", target)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"the {name} holds classes outside 0-{num_classes - 1}")
    flat = target.ravel() * num_classes + pred.ravel()
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _indices(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.int64)


def iou_from_confusion(matrix: np.ndarray) -> list[float | None]:
    """Per-class IoU ``M[c, c] / (row c + column c - M[c, c])``; None where the union is empty."""
    intersection = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - intersection
    return [float(i / u) if u else None for i, u in zip(intersection, union, strict=True)]


def class_iou(pred: Any, target: Any, num_classes: int) -> list[float | None]:
    """Per-class IoU of a predicted label map (see the module docstring for absent classes).

    Returns:
        ``num_classes`` entries: the IoU in [0, 1], or None for a class absent from both.
    """
    return iou_from_confusion(confusion_matrix(pred, target, num_classes))


def mean_of_present(ious: Sequence[float | None]) -> float:
    """Mean over the classes that have an IoU; NaN when none has."""
    present = [v for v in ious if v is not None]
    return float(np.mean(present)) if present else float("nan")


# -- scoring a training run ----------------------------------------------------------------------------
def score_training_run(run: dict[str, Any], labels: Any, num_classes: int) -> dict[str, Any]:
    """Score what :func:`torchgrade.probes.segmentation.train_segmenter` returned against the labels.

    Args:
        run: the probe's ``{"losses", "predictions"}``, or its ``{"error"}`` (returned as it is).
        labels: ``(N, H, W)`` true class indices of the validation images.
        num_classes: classes of the labels.

    Returns:
        ``{"losses", "final_loss": mean of the last 10 losses, "per_class_iou", "mean_iou",
        "pixel_accuracy"}``, or ``run`` itself when it holds an ``"error"``.

    Raises:
        ValueError: the run holds no predictions, or predictions of another shape than ``labels``
            or outside the classes.
    """
    if "error" in run:
        return run
    predictions, losses = run.get("predictions"), run.get("losses")
    if not isinstance(predictions, (torch.Tensor, np.ndarray)) or not isinstance(losses, list) or not losses:
        raise ValueError(f"the training run returned {sorted(run)}; expected losses and predictions")
    matrix = confusion_matrix(predictions, labels, num_classes)
    ious = iou_from_confusion(matrix)
    return {
        "losses": losses,
        "final_loss": float(np.mean(losses[-10:])),
        "per_class_iou": ious,
        "mean_iou": mean_of_present(ious),
        "pixel_accuracy": float(np.trace(matrix) / matrix.sum()),
    }
