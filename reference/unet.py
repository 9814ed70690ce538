"""Reference solution of the UNet assignment: CSC413 A4 part 4 (``004_...``).

A two-level UNet for 11-class segmentation (10 object classes and the background, class 10):
``Down`` blocks halve the resolution and hand their pre-pooling activations to the decoder as skip
connections; ``Up`` blocks double the resolution with a transposed convolution and concatenate the
skip before convolving; ``disable_skip_connections=True`` replaces every skip by zeros (same shapes,
no information), the ablation of the handout. ``mean_iou`` scores a predicted label map.

Tensor conventions shared with the graders:
    images   ``(B, C, H, W)`` float, ``H`` and ``W`` divisible by 4 for ``UNet``
    logits   ``(B, out_channels, H, W)``, one score per class and pixel (no softmax)
    labels   ``(B, H, W)`` int64 class indices in ``[0, num_classes)``
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1 keeps the size), batch norm, ReLU: the handout's block."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


def _check_4d(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{who}: expected a 4-D tensor (B, C, H, W), got shape {list(x.shape)}")


class Down(nn.Module):
    """One encoder level: conv-BN-ReLU at the input's resolution, then 2x2 max pooling.

    The activation before the pooling is the skip connection: it keeps the full resolution that
    the pooling throws away. The convolution runs once and both outputs share it.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out`` of both outputs.

    Shapes:
        x ``(B, C_in, H, W)`` -> down ``(B, C_out, H/2, W/2)``, skip ``(B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = _conv_bn_relu(in_channels, out_channels)
        self.pool = nn.MaxPool2d(kernel_size=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(down, skip)``: the pooled activation and the activation itself."""
        _check_4d(x, "Down")
        skip_connection = self.block(x)
        return self.pool(skip_connection), skip_connection


class Up(nn.Module):
    """One decoder level: a 2x2 transposed convolution with stride 2 doubles the resolution, the
    skip connection is concatenated along the channels, and conv-BN-ReLU mixes the two.

    Concatenation (rather than addition) lets the skip have any number of channels and keeps the
    encoder's detail apart from the upsampled context until the convolution weighs them.

    Args:
        in_channels: ``C_in`` of ``x``.
        skip_channels: ``C_skip`` of the skip connection.
        out_channels: ``C_out``.

    Shapes:
        x ``(B, C_in, H, W)``, skip ``(B, C_skip, 2H, 2W)`` -> ``(B, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
        self.block = _conv_bn_relu(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip_connection: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``, concatenate ``skip_connection``, convolve."""
        _check_4d(x, "Up")
        _check_4d(skip_connection, "Up (skip connection)")
        expected = [2 * s for s in x.shape[2:]]
        if list(skip_connection.shape[2:]) != expected:
            raise ValueError(
                f"Up: the skip connection is {list(skip_connection.shape[2:])} pixels; expected "
                f"twice the input's, {expected}"
            )
        x = self.upsample(x)
        return self.block(torch.cat((x, skip_connection), dim=1))


class UNet(nn.Module):
    """The handout's UNet: two ``Down`` levels (64, 128 channels), a conv-BN-ReLU bottleneck at a
    quarter of the resolution (128 -> 64 channels), two ``Up`` levels (32 channels each) and a 1x1
    convolution to the class scores.

    Args:
        in_channels: channels of the input image.
        out_channels: classes; the output holds one logit per class and pixel.
        disable_skip_connections: replace both skip connections by zeros, so that everything the
            decoder knows passes through the bottleneck (the ablation of the handout). The layers
            and their shapes stay the same, so the two variants differ only in the skips.

    Shapes:
        x ``(B, in_channels, H, W)`` with ``H``, ``W`` divisible by 4 -> ``(B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 11, disable_skip_connections: bool = False):
        super().__init__()
        self.disable_skip_connections = disable_skip_connections
        self.down1 = Down(in_channels, 64)
        self.down2 = Down(64, 128)
        self.bottleneck = _conv_bn_relu(128, 64)
        self.up1 = Up(64, 128, 32)
        self.up2 = Up(32, 64, 32)
        self.head = nn.Conv2d(32, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per class and pixel."""
        _check_4d(x, "UNet")
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"UNet: height and width must be divisible by 4, got {list(x.shape[2:])}")
        x, skip1 = self.down1(x)
        x, skip2 = self.down2(x)
        x = self.bottleneck(x)
        if self.disable_skip_connections:
            skip1, skip2 = torch.zeros_like(skip1), torch.zeros_like(skip2)
        x = self.up1(x, skip2)
        x = self.up2(x, skip1)
        return self.head(x)


def mean_iou(pred, target, num_classes):
    """Mean intersection over union of a predicted label map, averaged over classes.

    ``IoU_c = |pred == c and target == c| / |pred == c or target == c|`` over all pixels of all
    images; the mean runs over the classes that occur in the prediction or the target. A class
    absent from both has no union: its IoU is undefined (0/0), so it is left out of the mean
    rather than counted as 0 (which would punish a perfect prediction of an image without that
    class) or 1. A class in only one of them has IoU 0 and counts.

    Args:
        pred: predicted class indices, any shape, e.g. ``(B, H, W)``; logits ``(B, C, H, W)``
            (one more dimension than ``target``) are turned into indices by argmax over ``C``.
        target: true class indices, the shape of ``pred``'s indices.
        num_classes: classes ``0 .. num_classes - 1``.

    Returns:
        The mean IoU, a float in [0, 1]; NaN when no class occurs at all (empty inputs).
    """
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(f"mean_iou: pred {list(pred.shape)} and target {list(target.shape)} differ in shape")
    ious = []
    for c in range(num_classes):
        in_pred, in_target = pred == c, target == c
        union = int((in_pred | in_target).sum())
        if union:
            ious.append(int((in_pred & in_target).sum()) / union)
    return sum(ious) / len(ious) if ious else float("nan")
