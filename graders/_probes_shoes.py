"""Probes of ``test_shoes.py``'s Q4b, a classifier of two images: the grader's own model and training
loop, lent to a check that grades the other one of the two.

Runs on the worker side (through ``Submission.apply``; a probe module, sent there as source in
process isolation): training needs autograd through the model, so it
runs where the model lives. A check that trains a submitted model with a submitted training loop pays
for a bug in either; where one of them failed its own check, the grader lends its correct version:

* :class:`PairClassifier` stands for a submitted model of two images stacked on the channels: four
  convolutions ``6 -> n -> 2n -> 4n -> 8n`` (each followed by ReLU and 2x2 max-pooling), then
  ``100`` hidden units and 2 logits. It takes the pair as one tall image, either NCHW
  ``[B, 3, 2H, W]`` (first image on top) or that batch with height and width swapped,
  ``[B, 3, W, 2H]`` (the NHWC batch transposed on dims 1 and 3, as some loops feed it).
* :func:`train_pair_classifier` stands for a submitted training loop: Adam, cross-entropy on the two
  logits, each step ``batch_size / 2`` matching pairs (class 1) and ``batch_size / 2`` mismatched ones
  (class 0), both sets shuffled again each time they are used up.

They take and return plain data (arrays, numbers, dicts); what the trained model scores is measured
by the grader. This module imports only torch, numpy and the standard library.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__torchgrade_probes__ = True

#: Layouts a training batch may take: NCHW ``[B, 3, 2H, W]``, or its height and width swapped.
NCHW, TRANSPOSED = "NCHW", "transposed"


class PairClassifier(nn.Module):
    """Two images stacked on the channels, four convolution stages, two fully connected layers.

    Args:
        n: output channels of the first convolution (the others have 2n, 4n and 8n).
        kernel_size: odd size of every square kernel, padded to keep the image size.
        side: height (and width) of one image, 224 for the grader's photos.
    """

    def __init__(self, n: int = 4, kernel_size: int = 3, side: int = 224) -> None:
        super().__init__()
        n, kernel_size = int(n), int(kernel_size)
        widths = [6] + [n * 2**stage for stage in range(4)]
        # Modules are registered as the handout's model registers them (convolutions, then the two
        # fully connected layers), so that one seed gives both the same initial weights.
        self.stages = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        reduced = side // 16
        self.hidden = nn.Linear(widths[-1] * reduced * reduced, 100)
        self.logits = nn.Linear(100, 2)

    @staticmethod
    def upright(batch: torch.Tensor) -> torch.Tensor:
        """The batch as ``[B, 3, 2H, W]``: a wide batch (height and width swapped) is turned back."""
        if batch.dim() != 4:
            raise ValueError(f"expected a batch of 4 dimensions, got shape {list(batch.shape)}")
        return batch.transpose(2, 3) if batch.shape[3] > batch.shape[2] else batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tall = self.upright(x)
        half = tall.shape[2] // 2
        top, bottom = tall.narrow(2, 0, half), tall.narrow(2, half, half)
        h = torch.cat((top, bottom), dim=1)
        for conv in self.stages:
            h = F.max_pool2d(torch.relu(conv(h)), kernel_size=2)
        return self.logits(torch.relu(self.hidden(torch.flatten(h, start_dim=1))))


def to_batch(images: np.ndarray, layout: str) -> torch.Tensor:
    """NHWC pair images ``[B, 2H, W, 3]`` as a float32 model input in ``layout`` (contiguous)."""
    x = torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
    moved = x.permute(0, 3, 1, 2) if layout == NCHW else x.transpose(1, 3)
    return moved.contiguous()


def _first(out: Any) -> torch.Tensor:
    """The logits of a model's output: a model returning ``(logits, extra)`` is trained on the logits."""
    return out[0] if isinstance(out, (tuple, list)) else out


def train_pair_classifier(
    model: nn.Module,
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    layout: str,
    batch_size: int,
    learning_rate: float,
    iterations: int,
    seed: int,
) -> dict[str, Any]:
    """Train ``model`` for ``iterations`` steps on matching (class 1) and mismatched (class 0) pairs.

    Each step takes the next ``batch_size // 2`` of the positives and of the negatives (both NHWC
    ``[N, 2H, W, 3]``), in an order drawn afresh from ``seed`` each time a set is used up; the model
    is in train mode, and Adam follows the mean cross-entropy of its two logits.

    Returns:
        ``steps`` made, the ``first_loss`` and ``last_loss`` (floats).
    """
    half = max(1, int(batch_size) // 2)
    order = np.random.default_rng(int(seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=float(learning_rate))
    targets = torch.tensor([1] * half + [0] * half, dtype=torch.long)
    queue_pos: list[int] = []
    queue_neg: list[int] = []
    losses: list[float] = []
    model.train()
    for _ in range(int(iterations)):
        if len(queue_pos) < half or len(queue_neg) < half:  # a new epoch: every pair once more, reshuffled
            queue_pos = order.permutation(len(positives)).tolist()
            queue_neg = order.permutation(len(negatives)).tolist()
        chosen_pos, queue_pos = queue_pos[:half], queue_pos[half:]
        chosen_neg, queue_neg = queue_neg[:half], queue_neg[half:]
        inputs = to_batch(np.concatenate([positives[chosen_pos], negatives[chosen_neg]]), layout)
        loss = F.cross_entropy(_first(model(inputs)).float(), targets[: len(chosen_pos) + len(chosen_neg)])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return {
        "steps": len(losses),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }
