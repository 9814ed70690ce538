"""Reference solution of the shoe-pair assignment (CSC421 A2: Questions 1, 3 and 4).

A model looks at one image made of two shoe photos stacked vertically (left shoe on top of a
right shoe) and says whether the two shoes belong to the same pair (class 1) or not (class 0).

Tensor conventions (see DESIGN.md):
    shoe data     ``(S, 3, 2, 224, 224, 3)`` float32 in [-0.5, 0.5]: student, pair,
                  side (0 left, 1 right), height, width, RGB
    pair images   ``(M, 448, 224, 3)``: left shoe in rows 0..223, right shoe in rows 224..447
    model input   ``(B, 3, 448, 224)`` (NCHW), output logits ``(B, 2)``

Randomness: ``train_model`` shuffles with NumPy's global generator (``np.random.permutation``)
and initialises nothing itself; seed ``np.random`` and ``torch`` to make a run repeatable.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

_log = logging.getLogger(__name__)

IMAGE_SIZE = 224
PAIRS_PER_STUDENT = 3
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_shoes(folder):
    """Load one folder of shoe photos (``train/``, ``test_w/`` or ``test_m/``).

    The folder holds six photos per student. Sorted by file name they must come student by
    student, pair by pair, left shoe before right shoe (``s003_2_left.png``,
    ``s003_2_right.png``, ...). An alpha channel is dropped; pixel values are scaled to
    ``x / 255 - 0.5``.

    Args:
        folder: Path of the folder (``str`` or ``pathlib.Path``); ``*.png`` and ``*.jpg``
            files are read, anything else is ignored.

    Returns:
        float32 array of shape ``(S, 3, 2, 224, 224, 3)`` with values in [-0.5, 0.5]:
        ``data[s, p, 0]`` is the left and ``data[s, p, 1]`` the right shoe of pair ``p`` of
        student ``s``.

    Raises:
        ValueError: If the number of photos is not a multiple of 6 or a photo is not 224x224.
    """
    paths = sorted(
        (p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    per_student = PAIRS_PER_STUDENT * 2
    if len(paths) % per_student:
        raise ValueError(f"{folder}: found {len(paths)} images; expected 6 per student (3 pairs x left/right)")
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            # RGBA -> RGB discards alpha without blending; palette and grey images expand.
            pixels = np.asarray(image.convert("RGB"))
        if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
            height, width = pixels.shape[:2]
            raise ValueError(f"{path}: image is {width}x{height}; expected 224x224")
        images[i] = pixels
    images /= 255.0
    images -= 0.5
    return images.reshape(-1, PAIRS_PER_STUDENT, 2, IMAGE_SIZE, IMAGE_SIZE, 3)


def generate_same_pair(data):
    """Stack the two shoes of every pair: left shoe on top of its own right shoe.

    Args:
        data: Shoe data of shape ``(S, 3, 2, H, W, C)``.

    Returns:
        Array of shape ``(S * 3, 2 * H, W, C)`` with the dtype of ``data``; row ``3 * s + p``
        is pair ``p`` of student ``s`` (student-major, pair-minor).
    """
    data = np.asarray(data)
    stacked = np.concatenate([data[:, :, 0], data[:, :, 1]], axis=2)  # (S, 3, 2H, W, C)
    return stacked.reshape(-1, *stacked.shape[2:])


def generate_different_pair(data):
    """Stack mismatched shoes: a left shoe on top of a right shoe of another pair of the same
    student.

    Three of the six possible mismatches are used per student, so there are as many negatives
    as ``generate_same_pair`` gives positives.

    Args:
        data: Shoe data of shape ``(S, 3, 2, H, W, C)``.

    Returns:
        Array of shape ``(S * 3, 2 * H, W, C)`` with the dtype of ``data``; rows ``3 * s`` to
        ``3 * s + 2`` come from student ``s``.
    """
    # Left shoe of pair p over the right shoe of pair (p + 1) mod 3: every photo is used in
    # exactly one positive and one negative, so neither half alone predicts the label.
    data = np.asarray(data)
    right_of_next_pair = np.roll(data[:, :, 1], -1, axis=1)
    stacked = np.concatenate([data[:, :, 0], right_of_next_pair], axis=2)
    return stacked.reshape(-1, *stacked.shape[2:])


def _check_kernel_size(kernel_size):
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd and positive (3 or 5 in the handout), got {kernel_size}; "
            "padding (kernel_size - 1) // 2 keeps the feature maps' size only for odd kernels"
        )


class _FourConvs(nn.Module):
    """Four convolutions ``c -> n -> 2n -> 4n -> 8n``, each followed by ReLU and 2x2 max-pool."""

    def __init__(self, in_channels, n, kernel_size):
        super().__init__()
        _check_kernel_size(kernel_size)
        padding = (kernel_size - 1) // 2
        self.conv1 = nn.Conv2d(in_channels, n, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(n, 2 * n, kernel_size, padding=padding)
        self.conv3 = nn.Conv2d(2 * n, 4 * n, kernel_size, padding=padding)
        self.conv4 = nn.Conv2d(4 * n, 8 * n, kernel_size, padding=padding)

    def features(self, x):
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return x


class CNN(_FourConvs):
    """Convolutional network that sees the two shoes as one tall image.

    Layers: four ``kernel_size`` convolutions ``3 -> n -> 2n -> 4n -> 8n`` with padding
    ``(kernel_size - 1) // 2``, each followed by ReLU and 2x2 max-pooling
    (448x224 -> 28x14), then ``Linear(8n * 28 * 14, 100)``, ReLU, ``Linear(100, 2)``.

    Args:
        n: Channels of the first convolution.
        kernel_size: Odd kernel size of every convolution (3 or 5 in the handout).

    Shapes:
        input ``(B, 3, 448, 224)`` (left shoe in the top half) -> logits ``(B, 2)``,
        index 1 = same pair.
    """

    # Parameters: k^2 (3n + 42n^2) + 15n in the convolutions, (3136n + 1) 100 + 202 in the
    # fully connected layers; 1,260,918 for n=4, k=3. The shoes first meet in fc1.

    def __init__(self, n=4, kernel_size=3):
        super().__init__(3, n, kernel_size)
        self.fc1 = nn.Linear(8 * n * 28 * 14, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x):
        """Return logits ``(B, 2)`` for pair images ``(B, 3, 448, 224)``."""
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


class CNNChannel(_FourConvs):
    """Convolutional network that sees the two shoes stacked along the channels.

    ``forward`` cuts the input into its top half (left shoe) and bottom half (right shoe) and
    concatenates them along the channels, ``(B, 6, 224, 224)``, before the first convolution.
    Layers as in :class:`CNN` but with 6 input channels and ``Linear(8n * 14 * 14, 100)``.

    Args:
        n: Channels of the first convolution.
        kernel_size: Odd kernel size of every convolution (3 or 5 in the handout).

    Shapes:
        input ``(B, 3, 448, 224)`` -> logits ``(B, 2)``, index 1 = same pair.
    """

    # Parameters: k^2 (6n + 42n^2) + 15n + (1568n + 1) 100 + 202; 633,826 for n=4, k=3.
    # conv1 sees both shoes at every pixel, so comparing them is a local feature.

    def __init__(self, n=4, kernel_size=3):
        super().__init__(6, n, kernel_size)
        self.fc1 = nn.Linear(8 * n * 14 * 14, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x):
        """Return logits ``(B, 2)`` for pair images ``(B, 3, 448, 224)``."""
        height = x.shape[2] // 2
        x = torch.cat([x[:, :, :height], x[:, :, height:]], dim=1)  # (B, 6, 224, 224)
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


def _device_of(model):
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _to_nchw(images, device):
    """``(B, H, W, C)`` NumPy images -> float32 tensor ``(B, C, H, W)`` on ``device``."""
    tensor = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    return tensor.permute(0, 3, 1, 2).to(device)


def _count_predicted(model, images, label, batch_size, device):
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(_to_nchw(images[start : start + batch_size], device))
        correct += int((logits.argmax(dim=1) == label).sum())
    return correct


def get_accuracy(model, data, batch_size=50):
    """Accuracy on the positive and on the negative pairs of a data set, separately.

    The model is evaluated in eval mode without gradients; its previous train/eval mode is
    restored afterwards.

    Args:
        model: Module mapping ``(B, 3, 448, 224)`` to logits ``(B, 2)``.
        data: Shoe data ``(S, 3, 2, 224, 224, 3)``.
        batch_size: Images per forward pass.

    Returns:
        ``(pos_acc, neg_acc)``: fractions (floats in [0, 1]) of the ``S * 3`` same-pair images
        classified 1 and of the ``S * 3`` different-pair images classified 0.
    """
    positives = generate_same_pair(data)
    negatives = generate_different_pair(data)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            pos_correct = _count_predicted(model, positives, 1, batch_size, device)
            neg_correct = _count_predicted(model, negatives, 0, batch_size, device)
    finally:
        model.train(was_training)
    return pos_correct / len(positives), neg_correct / len(negatives)


def train_model(
    model,
    train_data,
    valid_data,
    batch_size=32,
    learning_rate=0.001,
    weight_decay=0.0,
    max_iters=1000,
    max_epoch=30,
    checkpoint_path=None,
):
    """Train a pair classifier with Adam and cross-entropy on balanced minibatches.

    Every epoch shuffles the positives (``generate_same_pair``) and the negatives
    (``generate_different_pair``) separately with ``np.random.permutation``; iteration ``i``
    takes the next ``batch_size // 2`` of each, labelled 1 and 0 (the last batch of an epoch
    may be smaller). Inputs go to the model as ``(B, 3, 448, 224)``. Training stops after
    ``max_iters`` iterations or ``max_epoch`` epochs, whichever comes first.

    After every epoch (and after a last, partial one cut short by ``max_iters``) the mean of
    ``get_accuracy``'s positive and negative accuracy is recorded on both data sets and, if
    ``checkpoint_path`` is given, ``model.state_dict()`` is saved to
    ``checkpoint_path.format(epoch)``, with ``epoch`` counted from 0 so that it indexes
    ``train_acc`` and ``valid_acc``.

    Args:
        model: Module mapping ``(B, 3, 448, 224)`` to logits ``(B, 2)``; trained in place.
        train_data: Shoe data ``(S, 3, 2, 224, 224, 3)`` to train on.
        valid_data: Shoe data ``(S', 3, 2, 224, 224, 3)`` to validate on.
        batch_size: Images per iteration, half positive and half negative (>= 2).
        learning_rate: Adam's learning rate.
        weight_decay: Adam's weight decay (L2 penalty).
        max_iters: Largest number of iterations (optimizer steps).
        max_epoch: Largest number of passes over the training pairs.
        checkpoint_path: Format string with one ``{}`` field for the epoch, e.g.
            ``"ckpt/cnn-{}.pt"``, or ``None`` to save nothing.

    Returns:
        Curves as a dict of lists: ``"iters"`` (1, 2, ... one per iteration) and ``"loss"``
        (that iteration's mean cross-entropy); ``"epoch_iters"`` (iterations done at the end
        of each epoch), ``"train_acc"`` and ``"valid_acc"`` (one per epoch).

    Raises:
        ValueError: If ``batch_size`` is smaller than 2.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (half positives, half negatives), got {batch_size}")
    half = batch_size // 2
    positives = generate_same_pair(train_data)
    negatives = generate_different_pair(train_data)
    device = _device_of(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    criterion = nn.CrossEntropyLoss()
    curves = {"iters": [], "loss": [], "epoch_iters": [], "train_acc": [], "valid_acc": []}
    n_iter = 0
    for epoch in range(max_epoch):
        if n_iter >= max_iters:
            break
        pos_order = np.random.permutation(len(positives))
        neg_order = np.random.permutation(len(negatives))
        for start in range(0, len(pos_order), half):
            if n_iter >= max_iters:
                break
            pos_batch = positives[pos_order[start : start + half]]
            neg_batch = negatives[neg_order[start : start + half]]
            xs = _to_nchw(np.concatenate([pos_batch, neg_batch]), device)
            labels = np.concatenate([np.ones(len(pos_batch)), np.zeros(len(neg_batch))])
            ts = torch.as_tensor(labels, dtype=torch.long, device=device)
            model.train()  # get_accuracy leaves the model in the mode it found it in, but be sure
            optimizer.zero_grad()
            loss = criterion(model(xs), ts)
            loss.backward()
            optimizer.step()
            n_iter += 1
            curves["iters"].append(n_iter)
            curves["loss"].append(loss.detach().item())
        train_acc = float(np.mean(get_accuracy(model, train_data)))
        valid_acc = float(np.mean(get_accuracy(model, valid_data)))
        curves["epoch_iters"].append(n_iter)
        curves["train_acc"].append(train_acc)
        curves["valid_acc"].append(valid_acc)
        _log.info(
            "epoch %d, iteration %d: loss %.4f, train acc %.3f, valid acc %.3f",
            epoch,
            n_iter,
            curves["loss"][-1],
            train_acc,
            valid_acc,
        )
        if checkpoint_path is not None:
            path = pathlib.Path(checkpoint_path.format(epoch))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
    return curves
