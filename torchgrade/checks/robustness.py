"""Checks of image corruptions and of the corruption-error metrics (UvA DL1 A2, question 1.2). Grader side.

A deterministic test image, measures of distortion, the grader's own Gaussian blur and
contrast-factor estimate, the standard deviation of clipped Gaussian noise, and the expected CE and
RCE of equations (1) and (2) under both readings of (2). What must run next to a submitted
corruption (the input as the call left it, calls with ``torch.Generator`` objects) lives in
:mod:`torchgrade.probes.robustness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

#: The two readings of equation (2), see :func:`expected_rce`.
RCE_READINGS = {
    "as typeset": "(sum_s E_s - E_clean) / (sum_s E_s^ResNet-18 - E_clean^ResNet-18)",
    "per severity": "sum_s (E_s - E_clean) / sum_s (E_s^ResNet-18 - E_clean^ResNet-18)",
}


# -- grader side: images and distortions ------------------------------------------------------------
def sample_image(seed: int = 12, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    """A CIFAR-sized float32 image in [0, 1] with smooth shading, sharp edges, fine texture and
    saturated pixels (exact 0 and 1), so that every corruption changes it visibly."""
    rng = np.random.default_rng(seed)
    channels, height, width = shape
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.empty(shape)
    for c in range(channels):
        phase = rng.uniform(0, 2 * np.pi, size=2)
        shading = np.sin(2 * np.pi * (1.5 * rows + c * 0.3) + phase[0]) * np.cos(3 * np.pi * cols + phase[1])
        image[c] = 0.5 + 0.3 * shading
    image[:, height // 4 : height // 2, width // 4 : 3 * width // 4] += 0.35  # a bright block with sharp edges
    image += 0.08 * rng.standard_normal(shape)  # texture
    image[:, :3, :3] = 0.0
    image[:, -3:, -3:] = 1.0
    return torch.from_numpy(np.clip(image, 0.0, 1.0).astype(np.float32))


def rms_distortion(corrupted: np.ndarray, clean: np.ndarray) -> float:
    """Root-mean-square difference between two images."""
    return float(np.sqrt(np.mean((np.asarray(corrupted, np.float64) - np.asarray(clean, np.float64)) ** 2)))


def clipped_noise_std(std: float, level: float) -> float:
    """Standard deviation of ``clip(level + N(0, std^2), 0, 1) - level``, in closed form.

    With ``a = 1 - level`` above and ``b = level`` below (both >= 0), the clipped variable
    ``Y = clip(X, -b, a)`` of ``X ~ N(0, std^2)`` has moments that follow from the truncated normal.
    """

    def upper_tail(t: float) -> float:  # P(Z > t) for a standard normal Z
        return 0.5 * math.erfc(t / math.sqrt(2))

    def pdf(t: float) -> float:
        return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    a, b = (1 - level) / std, level / std
    # E[Y] and E[Y^2] in units of std: the middle part of the normal plus point masses at the clips.
    first = pdf(b) - pdf(a) + a * upper_tail(a) - b * upper_tail(b)
    middle = (1 - upper_tail(a) - upper_tail(b)) - a * pdf(a) - b * pdf(b)
    second = middle + a * a * upper_tail(a) + b * b * upper_tail(b)
    return std * math.sqrt(max(second - first * first, 0.0))


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """The normalised 1-D Gaussian of ``size`` taps (odd), as torchvision's GaussianBlur builds it."""
    taps = np.arange(size) - size // 2
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def blur_interior(image: np.ndarray, sigma: float, size: int) -> np.ndarray:
    """Gaussian blur of each channel, valid part only: ``(C, H - size + 1, W - size + 1)``, the pixels
    whose window lies inside the image, where the choice of border padding cannot matter."""
    image = np.asarray(image, dtype=np.float64)
    kernel = gaussian_kernel(sigma, size)
    height, width = image.shape[1] - size + 1, image.shape[2] - size + 1
    rows = sum(kernel[t] * image[:, t : t + height, :] for t in range(size))
    return sum(kernel[t] * rows[:, :, t : t + width] for t in range(size))


def contrast_fit(corrupted: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit ``corrupted[c] = factor[c] clean[c] + offset[c]`` per channel by least squares.

    Returns:
        ``(factor per channel, offset per channel, largest residual)``.
    """
    corrupted, clean = np.asarray(corrupted, np.float64), np.asarray(clean, np.float64)
    factors, offsets, residual = [], [], 0.0
    for out, inp in zip(corrupted, clean, strict=True):
        design = np.stack([inp.ravel(), np.ones(inp.size)], axis=1)
        (factor, offset), *_ = np.linalg.lstsq(design, out.ravel(), rcond=None)
        factors.append(factor)
        offsets.append(offset)
        residual = max(residual, float(np.abs(design @ [factor, offset] - out.ravel()).max()))
    return np.array(factors), np.array(offsets), residual


# -- grader side: the metrics -----------------------------------------------------------------------------
def expected_ce(errors: Sequence[float], resnet18_errors: Sequence[float]) -> float | None:
    """Equation (1): ``sum_s E_s / sum_s E_s^ResNet-18``; None when the denominator is 0."""
    denominator = math.fsum(resnet18_errors)
    return None if denominator == 0 else math.fsum(errors) / denominator


def expected_rce(
    errors: Sequence[float],
    clean_error: float,
    resnet18_errors: Sequence[float],
    resnet18_clean_error: float,
    reading: str,
) -> float | None:
    """Equation (2) under one of :data:`RCE_READINGS`; None when the denominator is 0.

    The handout typesets the numerator as ``sum_{s=1}^5 E_s - E_clean`` (the clean error subtracted
    once); Hendrycks and Dietterich, whom the metric comes from, subtract it at every severity.
    """
    if reading not in RCE_READINGS:
        raise ValueError(f"unknown reading {reading!r}; choose from {', '.join(RCE_READINGS)}")
    times = 1 if reading == "as typeset" else len(errors)
    denominator = math.fsum(resnet18_errors) - times * resnet18_clean_error
    if denominator == 0:
        return None
    return (math.fsum(errors) - times * clean_error) / denominator
