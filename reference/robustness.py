"""Reference solution of UvA DL1 assignment 2, question 1.2: image corruptions and the CE / RCE metrics.

The four corruptions are those of the handout's corruption file, with its severity tables:
Gaussian noise of standard deviation 0.04-0.25, Gaussian blur with an 11-tap kernel of sigma
0.4-1.5, contrast reduced to 75%-30%, and JPEG compression at quality 90-10. Images are float
tensors ``(C, H, W)`` in [0, 1], as ``torchvision.transforms.ToTensor`` makes them. The metrics are
equations (1) and (2) of the handout, normalised by ResNet-18's error rates.

The public names and signatures are those of ``student_template/robustness.py``. Each docstring
starts with the template's docstring (the contract given to students) and adds the formula.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

STD_BY_SEVERITY = (0.04, 0.07, 0.10, 0.15, 0.25)
SIGMA_BY_SEVERITY = (0.4, 0.6, 0.8, 1.1, 1.5)
BLUR_KERNEL_SIZE = 11
FACTOR_BY_SEVERITY = (0.75, 0.6, 0.5, 0.4, 0.3)
QUALITY_BY_SEVERITY = (90, 70, 50, 30, 10)
N_SEVERITIES = 5
# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale (and so ColorJitter's contrast) uses.
_LUMA = (0.2989, 0.587, 0.114)


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
    image = _image(image)
    std = STD_BY_SEVERITY[_severity_index(severity)]
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return (image + std * noise).clamp(0.0, 1.0)


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

    Formula:
        ``k[t] = exp(-t^2 / (2 sigma^2)) / sum_t' exp(-t'^2 / (2 sigma^2))`` for ``t = -5..5``; the
        2-D kernel is the outer product ``k k^T``, applied as two 1-D passes.
    """
    image = _image(image)
    sigma = SIGMA_BY_SEVERITY[_severity_index(severity)]
    radius = BLUR_KERNEL_SIZE // 2
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x[0].clamp(0.0, 1.0)


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

    Formula:
        ``out = clip(c image + (1 - c) mean_grey, 0, 1)``.
    """
    image = _image(image)
    factor = FACTOR_BY_SEVERITY[_severity_index(severity)]
    if image.shape[0] == 3:
        grey = sum(w * channel for w, channel in zip(_LUMA, image, strict=True))
    else:
        grey = image
    return (factor * image + (1.0 - factor) * grey.mean()).clamp(0.0, 1.0)


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
    image = _image(image)
    quality = QUALITY_BY_SEVERITY[_severity_index(severity)]
    pixels = (image.detach().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    pil = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255.0
    decoded = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(decoded)).to(image.dtype)


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

    Formula:
        ``CE = sum_s E_s / sum_s E_s^ResNet-18``, summing over the severities s = 1..5.
    """
    model = _severity_errors("errors", errors)
    normaliser = _severity_errors("resnet18_errors", resnet18_errors)
    return _ratio(model.sum(), normaliser.sum(), "CE", "the sum of ResNet-18's errors over the five severities")


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

    Formula:
        As the handout typesets it: ``RCE = (sum_s E_s - E_clean) / (sum_s E_s^ResNet-18 -
        E_clean^ResNet-18)``. (Hendrycks and Dietterich's relative mCE subtracts the clean error
        at every severity, ``sum_s (E_s - E_clean)``; the graders accept either reading, applied
        consistently.)
    """
    model = _severity_errors("errors", errors)
    normaliser = _severity_errors("resnet18_errors", resnet18_errors)
    clean = _error_rate("clean_error", clean_error)
    normaliser_clean = _error_rate("resnet18_clean_error", resnet18_clean_error)
    return _ratio(model.sum() - clean, normaliser.sum() - normaliser_clean, "RCE",
                  "ResNet-18's summed corruption errors minus its clean error")


def _image(image: torch.Tensor) -> torch.Tensor:
    image = torch.as_tensor(image)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float tensor (C, H, W); got {image.dtype} of shape {list(image.shape)}")
    return image


def _severity_index(severity: int) -> int:
    # A list indexed by severity - 1 would read severity 0 as severity 5: refuse it instead.
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= N_SEVERITIES:
        raise ValueError(f"severity must be an int from 1 to {N_SEVERITIES}; got {severity!r}")
    return int(severity) - 1


def _severity_errors(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (N_SEVERITIES,) or not np.isfinite(array).all():
        raise ValueError(f"{name} must hold {N_SEVERITIES} finite error rates, one per severity; got {values!r}")
    return array


def _error_rate(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite error rate; got {value!r}")
    return number


def _ratio(numerator: float, denominator: float, metric: str, what: str) -> float:
    if denominator == 0:
        raise ValueError(f"{metric} is undefined: {what} is 0, so the normaliser divides by zero")
    return float(numerator / denominator)
