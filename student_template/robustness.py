"""UvA DL1 assignment 2, question 1.2: image corruptions and the corruption errors CE and RCE.

The four corruptions are those of the handout's corruption file, with its severity tables. Images
are float tensors ``(C, H, W)`` in [0, 1], as ``torchvision.transforms.ToTensor`` makes them; a
corruption returns a new image and leaves its input as it was. ``corruption_error`` and
``relative_corruption_error`` are equations (1) and (2) of the handout, normalised by ResNet-18.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gaussian_noise(image: torch.Tensor, severity: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise to an image and clip the result to [0, 1].

    Severities 1-5 use the standard deviations 0.04, 0.07, 0.10, 0.15 and 0.25.

    Shapes:
        image: (C, H, W), float values in [0, 1]; returns the same shape.

    Args:
        image: The clean image; it is not modified.
        severity: 1 (mildest) to 5.
        generator: Where the noise comes from; None means torch's global generator. The same
            generator state must give the same noise.

    Returns:
        A new float tensor in [0, 1].
    """
    raise NotImplementedError("Q1.2: write gaussian_noise(image, severity, generator)")


def gaussian_blur(image: torch.Tensor, severity: int = 1) -> torch.Tensor:
    """Blur each channel of an image with a Gaussian kernel.

    The kernel has 11 x 11 taps (as ``torchvision.transforms.GaussianBlur(kernel_size=11, sigma)``);
    severities 1-5 use sigma 0.4, 0.6, 0.8, 1.1 and 1.5. Borders are padded by reflection.

    Shapes:
        image: (C, H, W), float values in [0, 1], H and W at least 6; returns the same shape.

    Args:
        image: The clean image; it is not modified.
        severity: 1 (mildest) to 5.

    Returns:
        A new float tensor in [0, 1].
    """
    raise NotImplementedError("Q1.2: write gaussian_blur(image, severity)")


def contrast(image: torch.Tensor, severity: int = 1) -> torch.Tensor:
    """Reduce the contrast of an image: blend it with its mean grey level.

    As ``torchvision.transforms.functional.adjust_contrast(image, c)``: the mean is taken over the
    greyscale version of the image (luma weights 0.2989, 0.587, 0.114 for RGB; the plain mean for
    one channel). Severities 1-5 keep the factors c = 0.75, 0.6, 0.5, 0.4 and 0.3 of the contrast.

    Shapes:
        image: (C, H, W) with C = 1 or 3, float values in [0, 1]; returns the same shape.

    Args:
        image: The clean image; it is not modified.
        severity: 1 (mildest) to 5.

    Returns:
        A new float tensor in [0, 1].
    """
    raise NotImplementedError("Q1.2: write contrast(image, severity)")


def jpeg(image: torch.Tensor, severity: int = 1) -> torch.Tensor:
    """Compress an image with JPEG and decode it again.

    The image is rounded to 8 bits, encoded at quality 90, 70, 50, 30 or 10 for severities 1-5,
    decoded, and scaled back to [0, 1].

    Shapes:
        image: (C, H, W) with C = 1 or 3, float values in [0, 1]; returns the same shape.

    Args:
        image: The clean image; it is not modified.
        severity: 1 (mildest) to 5.

    Returns:
        A new float tensor in [0, 1].
    """
    raise NotImplementedError("Q1.2: write jpeg(image, severity)")


def corruption_error(errors: Sequence[float], resnet18_errors: Sequence[float]) -> float:
    """Corruption error CE of a model for one corruption, equation (1) of the handout.

    Args:
        errors: The model's top-1 error rates at severities 1-5 (five numbers).
        resnet18_errors: ResNet-18's error rates at severities 1-5 for the same corruption.

    Returns:
        CE as a float.

    Raises:
        ValueError: an argument does not hold five finite error rates, or ResNet-18's errors add
            up to zero (CE is then undefined).
    """
    raise NotImplementedError("Q1.2: write corruption_error(errors, resnet18_errors)")


def relative_corruption_error(errors: Sequence[float], clean_error: float, resnet18_errors: Sequence[float],
                              resnet18_clean_error: float) -> float:
    """Relative corruption error RCE of a model for one corruption, equation (2) of the handout.

    Args:
        errors: The model's top-1 error rates at severities 1-5 (five numbers).
        clean_error: The model's error rate on the clean test set.
        resnet18_errors: ResNet-18's error rates at severities 1-5 for the same corruption.
        resnet18_clean_error: ResNet-18's error rate on the clean test set.

    Returns:
        RCE as a float.

    Raises:
        ValueError: an argument does not hold finite error rates (five per corruption), or
            ResNet-18's denominator is zero (RCE is then undefined).
    """
    raise NotImplementedError("Q1.2: write relative_corruption_error(errors, clean_error, resnet18_errors, "
                              "resnet18_clean_error)")
