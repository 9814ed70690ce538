"""Your solution of the shoe-pair assignment (CSC421 A2: Questions 1, 3, 4 and 5).

Fill in every function and class below; each one now raises ``NotImplementedError``. Keep the
names and signatures: the graders call them exactly like this (``pytest graders`` shows what
each check expects). You may add helper functions, classes and imports.

* Q1b ``load_shoes``, Q1c ``generate_same_pair``, Q1d ``generate_different_pair``: read the
  photos into a ``(S, 3, 2, 224, 224, 3)`` array in [-0.5, 0.5] and build the positive and
  negative pair images ``(S * 3, 448, 224, 3)``, left shoe on top.
* Q3a ``CNN`` and Q3b ``CNNChannel``: models mapping ``(B, 3, 448, 224)`` to logits
  ``(B, 2)``, where index 1 means "same pair".
* Q4a ``train_model`` and Q5a ``get_accuracy``: the training loop and evaluation.

Tensor conventions:
    shoe data     ``(S, 3, 2, 224, 224, 3)`` float32 in [-0.5, 0.5]: student, pair,
                  side (0 left, 1 right), height, width, RGB
    pair images   ``(M, 448, 224, 3)``: left shoe in rows 0..223, right shoe in rows 224..447
    model input   ``(B, 3, 448, 224)`` (NCHW), output logits ``(B, 2)``
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (you will need these)
import torch  # noqa: F401
from torch import nn


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
    raise NotImplementedError("Q1b: load the photos of a folder as (S, 3, 2, 224, 224, 3)")


def generate_same_pair(data):
    """Stack the two shoes of every pair: left shoe on top of its own right shoe.

    Args:
        data: Shoe data of shape ``(S, 3, 2, H, W, C)``.

    Returns:
        Array of shape ``(S * 3, 2 * H, W, C)`` with the dtype of ``data``; row ``3 * s + p``
        is pair ``p`` of student ``s`` (student-major, pair-minor).
    """
    raise NotImplementedError("Q1c: stack each left shoe on top of its own right shoe")


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
    raise NotImplementedError("Q1d: stack left shoes on top of right shoes of other pairs")


class CNN(nn.Module):
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

    def __init__(self, n=4, kernel_size=3):
        super().__init__()
        raise NotImplementedError("Q3a: build the layers of CNN")

    def forward(self, x):
        """Return logits ``(B, 2)`` for pair images ``(B, 3, 448, 224)``."""
        raise NotImplementedError("Q3a: compute the logits of CNN")


class CNNChannel(nn.Module):
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

    def __init__(self, n=4, kernel_size=3):
        super().__init__()
        raise NotImplementedError("Q3b: build the layers of CNNChannel")

    def forward(self, x):
        """Return logits ``(B, 2)`` for pair images ``(B, 3, 448, 224)``."""
        raise NotImplementedError("Q3b: stack the shoes on the channels, then compute the logits")


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
    raise NotImplementedError("Q5a: return (pos_acc, neg_acc) of the model on data")


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
    raise NotImplementedError("Q4a: write the training loop")
