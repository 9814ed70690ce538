"""Your solution of the UNet assignment (CSC413 A4 part 4).

Fill in every function and class below; each one now raises ``NotImplementedError``. Keep the
names and signatures: the graders call them exactly like this (``pytest graders/test_unet.py``
shows what each check expects). You may add helper functions, classes and imports.

* ``Down`` and ``Up``, the encoder and decoder blocks;
* ``UNet``, built from them, with ``disable_skip_connections`` for the ablation of the handout;
* ``mean_iou``, the mean intersection over union of a predicted label map.

The graders train your ``UNet`` with and without skip connections on synthetic line drawings
(``fixtures/segmentation.py``: 10 shapes drawn 1 pixel wide, class 10 is the background) and
expect the skips to raise the mean IoU.

Tensor conventions:
    images   ``(B, C, H, W)`` float, ``H`` and ``W`` divisible by 4 for ``UNet``
    logits   ``(B, out_channels, H, W)``, one score per class and pixel (no softmax)
    labels   ``(B, H, W)`` int64 class indices in ``[0, num_classes)``
"""

from __future__ import annotations

import torch
from torch import nn


class Down(nn.Module):
    """One encoder level: a 3x3 convolution (padding 1), batch norm and ReLU at the input's
    resolution, then 2x2 max pooling.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out`` of both outputs.

    Shapes:
        x ``(B, C_in, H, W)`` -> down ``(B, C_out, H/2, W/2)``, skip ``(B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        raise NotImplementedError("4: build the convolution, batch norm, ReLU and pooling of Down")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(down, skip)``: ``skip`` goes through the convolution layers but skips the max
        pooling; ``down`` is ``skip`` after the max pooling."""
        raise NotImplementedError("4: return the pooled activation and the skip connection")


class Up(nn.Module):
    """One decoder level: double the resolution of ``x`` with a 2x2 transposed convolution of
    stride 2, concatenate the skip connection along the channels, then a 3x3 convolution
    (padding 1), batch norm and ReLU.

    Args:
        in_channels: ``C_in`` of ``x``.
        skip_channels: ``C_skip`` of the skip connection.
        out_channels: ``C_out``.

    Shapes:
        x ``(B, C_in, H, W)``, skip ``(B, C_skip, 2H, 2W)`` -> ``(B, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        raise NotImplementedError("4: build the transposed convolution and the convolution block of Up")

    def forward(self, x: torch.Tensor, skip_connection: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``, concatenate ``skip_connection``, convolve."""
        raise NotImplementedError("4: upsample x, concatenate the skip connection and convolve")


class UNet(nn.Module):
    """The handout's UNet: ``Down(in_channels, 64)``, ``Down(64, 128)``, a convolution block
    128 -> 64 channels at a quarter of the resolution (the bottleneck), ``Up(64, 128, 32)``,
    ``Up(32, 64, 32)`` and a 1x1 convolution to ``out_channels`` class scores.

    Args:
        in_channels: channels of the input image.
        out_channels: classes; the output holds one logit per class and pixel.
        disable_skip_connections: set all the skip connections to zero (same shapes, no
            information), so that the decoder sees only the bottleneck.

    Shapes:
        x ``(B, in_channels, H, W)`` with ``H``, ``W`` divisible by 4 -> ``(B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 11, disable_skip_connections: bool = False):
        super().__init__()
        raise NotImplementedError("4: build the layers of UNet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per class and pixel."""
        raise NotImplementedError("4: compute the logits of UNet, without the skips if they are disabled")


def mean_iou(pred, target, num_classes):
    """Mean intersection over union of a predicted label map, averaged over classes.

    ``IoU_c = |pred == c and target == c| / |pred == c or target == c|``, counted over all pixels
    of all images. Average over the classes that occur in ``pred`` or ``target``: a class absent
    from both has no IoU (0/0) and is left out; a class in only one of them has IoU 0 and counts.

    Args:
        pred: predicted class indices, e.g. ``(B, H, W)`` (the argmax of the logits over classes).
        target: true class indices, the same shape.
        num_classes: classes ``0 .. num_classes - 1``.

    Returns:
        The mean IoU, a float in [0, 1].
    """
    raise NotImplementedError("4: compute the IoU of every class and average over the classes that occur")
