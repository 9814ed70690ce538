"""Helpers of ``test_robustness.py`` (UvA DL1 A2 question 1.2): the handout's severity table,
tolerances and their measurements, the contract every corruption is held to, the measure of each
corruption's severity, and the tables of error rates for CE and RCE.

Severities are measured against the grader's own blur, contrast fit and clipped-noise statistics
(the last section); what must run next to a submitted corruption (the input as the call left it,
calls with ``torch.Generator`` objects) runs in the probe module ``_probes_robustness.py``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from _probes_robustness import call_keeping_input, noise_with_generators
from PIL import Image

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure, NotImplementedYet, StudentError

SEVERITIES = (1, 2, 3, 4, 5)
# The handout's corruption file (UvA DL1 2021, assignment 2, part 1).
NOISE_STD = (0.04, 0.07, 0.10, 0.15, 0.25)
BLUR_SIGMA = (0.4, 0.6, 0.8, 1.1, 1.5)
BLUR_SIZE = 11
CONTRAST_FACTOR = (0.75, 0.6, 0.5, 0.4, 0.3)
JPEG_QUALITY = (90, 70, 50, 30, 10)

RANGE_TOL = 1e-6
# Noise: 3 x 64 x 64 samples on a flat grey image; the standard deviation of the estimated
# standard deviation is ~0.7% of it, the mean's ~0.002 at severity 5.
NOISE_SHAPE = (3, 64, 64)
NOISE_STD_RTOL = 0.05
NOISE_MEAN_ATOL = 0.01
# Blur: away from the borders (where padding choices differ) any 11-tap Gaussian of the right sigma
# agrees with the grader's to 1e-6; scipy.ndimage.gaussian_filter (truncated at 4 sigma, 13 taps at
# sigma 1.5) to 2e-4.
BLUR_ATOL = 1e-3
# Contrast: a blend c x + (1 - c) m is exactly linear in x; float32 leaves residuals ~1e-7.
CONTRAST_FACTOR_ATOL = 1e-3
CONTRAST_RESIDUAL_ATOL = 1e-4
# JPEG: encoders differ (libjpeg versions, chroma subsampling, rounding to 8 bits); the grader
# encodes its image with Pillow at the severity's quality with 4:2:0 and 4:4:4 chroma and expects
# a distortion between half the smaller and twice the larger. On the test image (RMS distortion,
# severities 1-5): 4:2:0 0.069-0.121, 4:4:4 0.032-0.097. Qualities 1-5 in place of the table give
# 0.146-0.165 and fail at severity 1 (band up to 0.139); an image returned unchanged (0) fails.
JPEG_BAND = (0.5, 2.0)


# -- every corruption's contract --------------------------------------------------------------------------
def who(name: str, severity: int, image: torch.Tensor | None = None) -> str:
    shape = [3, 32, 32] if image is None else list(image.shape)
    return f"{name}(image{shape}, severity={severity})"


def check_image(value, image: torch.Tensor, label: str) -> np.ndarray:
    """An image of ``image``'s shape, finite, in [0, 1]."""
    out = shapes.check_shape(value, tuple(image.shape), label)
    shapes.check_finite(out, label)
    low, high = float(out.min()), float(out.max())
    if low < -RANGE_TOL or high > 1 + RANGE_TOL:
        raise CheckFailure(
            f"{label} returned values from {low:.4g} to {high:.4g}; expected an image in [0, 1].\n"
            f"Hint: clip the result to [0, 1], and return floats (divide 8-bit pixels by 255)."
        )
    return out


def corruption_outputs(sub, name: str, image: torch.Tensor) -> list[np.ndarray]:
    """The corruption at every severity, each checked for shape and range and for leaving its input
    as it was (the call runs next to the submission, so the grader sees the very tensor it got)."""
    outputs = []
    for severity in SEVERITIES:
        label = who(name, severity, image)
        outputs.append(check_image(sub.lookup(name)(image, severity), image, label))
        after = sub.apply(call_keeping_input, sub.lookup(name), image, severity)["input_after"]
        if not torch.equal(after, image):
            raise CheckFailure(
                f"{label} changed its input image; expected a new image and the input left as it "
                f"was.\nHint: in-place operations (image += noise, image.clamp_()) write into the "
                f"clean test set; use image + noise and clamp() instead."
            )
    return outputs


def shaped_outputs(sub, name: str, image: torch.Tensor) -> list[np.ndarray]:
    """The corruption at every severity, checked for shape only: a check's second part grades the
    values even when its first part failed on the range or on a changed input."""
    return [shapes.check_shape(sub.lookup(name)(image, s), tuple(image.shape), who(name, s)) for s in SEVERITIES]


def check_repeatable(sub, name: str, image: torch.Tensor, first: list[np.ndarray]) -> None:
    """A deterministic corruption gives the same image when called again."""
    for severity, before in zip(SEVERITIES, first, strict=True):
        again = shapes.as_array(sub.lookup(name)(image, severity), who(name, severity, image))
        if not np.array_equal(again, before):
            raise CheckFailure(
                f"{who(name, severity, image)} gave a different image when called again "
                f"(largest change {np.abs(again - before).max():.3g}); expected the same image: this "
                f"corruption has no randomness."
            )


def check_growth(name: str, measured: list[float], what: str) -> None:
    for severity in SEVERITIES[1:]:
        if not measured[severity - 1] > measured[severity - 2]:
            raise CheckFailure(
                f"{name} distorts the test image by {measured[severity - 2]:.4g} (RMS) at severity "
                f"{severity - 1} and {measured[severity - 1]:.4g} at severity {severity}; expected "
                f"the distortion to grow with the severity ({what})."
            )


def distortions(outputs: list[np.ndarray], image: torch.Tensor) -> list[float]:
    return [rms_distortion(out, image.numpy()) for out in outputs]


# -- Gaussian noise -------------------------------------------------------------------------------------
def noise_outputs(sub, image: torch.Tensor, severity: int, seeds: tuple[int, ...]) -> list[np.ndarray]:
    result = sub.apply(noise_with_generators, sub.gaussian_noise, image, severity, list(seeds))
    return [
        check_image(out, image, f"{who('gaussian_noise', severity, image)} with generator {seed}")
        for out, seed in zip(result["outputs"], seeds, strict=True)
    ]


def check_same_generator_same_noise(sub, image: torch.Tensor) -> None:
    """Generators seeded alike give the same noise, seeded differently different noise."""
    same, twin, other = noise_outputs(sub, image, 3, (5, 5, 6))
    if not np.array_equal(same, twin):
        raise CheckFailure(
            "gaussian_noise(image, 3, generator) gave different images for two generators seeded "
            "alike (the global generator was in different states); expected the same image.\n"
            "Hint: draw the noise with torch.randn(image.shape, generator=generator)."
        )
    if np.array_equal(same, other):
        raise CheckFailure(
            "gaussian_noise(image, 3, generator) gave the same image for generators seeded 5 and "
            "6; expected different noise."
        )


def check_noise_std(sub, image: torch.Tensor) -> None:
    """Noise of the handout's standard deviation at each severity, on a grey image, growing with it."""
    flat = torch.full(NOISE_SHAPE, 0.5)
    for severity, std in zip(SEVERITIES, NOISE_STD, strict=True):
        (out,) = noise_outputs(sub, flat, severity, (severity,))
        noise = out - 0.5
        expected = clipped_noise_std(std, 0.5)
        measured, mean = float(noise.std()), float(noise.mean())
        if abs(measured - expected) > NOISE_STD_RTOL * expected or abs(mean) > NOISE_MEAN_ATOL:
            raise CheckFailure(
                f"{who('gaussian_noise', severity, flat)} on a grey image (0.5 everywhere) added noise of mean "
                f"{mean:.4f} and standard deviation {measured:.4f}; expected mean 0 and {expected:.4f} (the "
                f"handout's {std:g} for severity {severity}, clipped to [0, 1]), within {NOISE_STD_RTOL:.0%}."
            )
    noisy = [noise_outputs(sub, image, s, (0,))[0] for s in SEVERITIES]
    check_growth(
        "gaussian_noise", distortions(noisy, image), "standard deviations " + ", ".join(f"{s:g}" for s in NOISE_STD)
    )


# -- Gaussian blur --------------------------------------------------------------------------------------
def check_blur_sigma(outputs: list[np.ndarray], image: torch.Tensor) -> None:
    """An 11-tap Gaussian of the handout's sigma at each severity, away from the border, growing with it."""
    margin = BLUR_SIZE // 2
    for severity, sigma, out in zip(SEVERITIES, BLUR_SIGMA, outputs, strict=True):
        expected = blur_interior(image.numpy(), sigma, BLUR_SIZE)
        try:
            shapes.check_close(
                out[:, margin:-margin, margin:-margin],
                expected,
                f"{who('gaussian_blur', severity)} away from the {margin}-pixel border",
                atol=BLUR_ATOL,
                rtol=0,
            )
        except CheckFailure as failure:
            raise CheckFailure(
                f"{failure}\nHint: blur each channel on its own with the normalised Gaussian "
                f"exp(-t^2 / (2 sigma^2)), t = -5..5, sigma = {sigma:g} for severity {severity} "
                f"(torchvision's GaussianBlur(kernel_size=11, sigma={sigma:g}))."
            ) from None
    check_growth("gaussian_blur", distortions(outputs, image), "sigmas " + ", ".join(f"{s:g}" for s in BLUR_SIGMA))


# -- contrast -------------------------------------------------------------------------------------------
def check_contrast_factor(outputs: list[np.ndarray], image: torch.Tensor) -> None:
    """Contrast scaled by the handout's factor at each severity (an exact linear blend), growing with it."""
    for severity, factor, out in zip(SEVERITIES, CONTRAST_FACTOR, outputs, strict=True):
        factors, _, residual = contrast_fit(out, image.numpy())
        worst = float(np.abs(factors - factor).max())
        if residual > CONTRAST_RESIDUAL_ATOL or worst > CONTRAST_FACTOR_ATOL:
            raise CheckFailure(
                f"{who('contrast', severity)}: fitting output = c * input + m per channel gives c = "
                f"{', '.join(f'{f:.4f}' for f in factors)} (largest residual {residual:.2g}); expected c = "
                f"{factor:g} in every channel, the handout's factor for severity {severity}, and no residual.\n"
                f"Hint: blend with the mean grey level, c * image + (1 - c) * mean, as torchvision's "
                f"adjust_contrast does."
            )
    check_growth("contrast", distortions(outputs, image), "factors " + ", ".join(f"{c:g}" for c in CONTRAST_FACTOR))


# -- JPEG -----------------------------------------------------------------------------------------------
def pillow_jpeg_distortion(image: torch.Tensor, quality: int, subsampling: int) -> float:
    pixels = (image.numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float64).transpose(2, 0, 1) / 255
    return rms_distortion(decoded, image.numpy())


def check_jpeg_quality(outputs: list[np.ndarray], image: torch.Tensor) -> None:
    """A distortion at each severity in the band of Pillow's JPEG at the handout's quality, growing with it."""
    measured = distortions(outputs, image)
    for severity, quality, value in zip(SEVERITIES, JPEG_QUALITY, measured, strict=True):
        references = [pillow_jpeg_distortion(image, quality, subsampling) for subsampling in (0, 2)]
        low, high = JPEG_BAND[0] * min(references), JPEG_BAND[1] * max(references)
        if not low <= value <= high:
            raise CheckFailure(
                f"{who('jpeg', severity)} distorts the test image by {value:.4f} (RMS); JPEG at quality {quality} "
                f"(the handout's for severity {severity}) gives {min(references):.4f}-{max(references):.4f} "
                f"with Pillow, so expected {low:.4f}-{high:.4f}.\nHint: encode the 8-bit image with quality "
                f"{quality} and decode it again."
            )
    check_growth("jpeg", measured, "qualities " + ", ".join(str(q) for q in JPEG_QUALITY))


# -- CE and RCE -----------------------------------------------------------------------------------------
# Invented CIFAR-10 error rates (fractions), one row per (model, corruption): severities 1-5, clean.
RESNET18 = {
    "clean": 0.07,
    "gaussian_noise": [0.12, 0.2, 0.3, 0.42, 0.58],
    "gaussian_blur": [0.08, 0.1, 0.15, 0.24, 0.38],
    "contrast": [0.09, 0.12, 0.15, 0.2, 0.3],
    "jpeg": [0.11, 0.16, 0.2, 0.26, 0.38],
}
MODELS = {
    "VGG-11": {"clean": 0.1, "gaussian_noise": [0.16, 0.27, 0.39, 0.52, 0.66], "jpeg": [0.14, 0.2, 0.25, 0.31, 0.44]},
    "VGG-11-BN": {
        "clean": 0.08,
        "gaussian_blur": [0.09, 0.13, 0.19, 0.3, 0.45],
        "contrast": [0.1, 0.15, 0.2, 0.27, 0.4],
    },
    "ResNet-34": {
        "clean": 0.06,
        "gaussian_noise": [0.1, 0.17, 0.26, 0.37, 0.52],
        "contrast": [0.07, 0.1, 0.12, 0.16, 0.25],
    },
    "DenseNet-121": {
        "clean": 0.05,
        "gaussian_blur": [0.06, 0.07, 0.11, 0.19, 0.31],
        "jpeg": [0.09, 0.13, 0.17, 0.22, 0.33],
    },
}


def metric_cases() -> list[dict]:
    """(errors, clean, resnet18_errors, resnet18_clean, label) for the invented models and the edge cases."""
    cases = []
    for model, row in MODELS.items():
        for corruption, errors in row.items():
            if corruption != "clean":
                cases.append(
                    {
                        "label": f"{model}, {corruption}",
                        "errors": errors,
                        "clean": row["clean"],
                        "r18": RESNET18[corruption],
                        "r18_clean": RESNET18["clean"],
                    }
                )
    noise = RESNET18["gaussian_noise"]
    cases += [
        {
            "label": "ResNet-18 against itself (1 for both metrics)",
            "errors": noise,
            "clean": RESNET18["clean"],
            "r18": noise,
            "r18_clean": RESNET18["clean"],
        },
        {
            "label": "a model that makes no mistakes (0)",
            "errors": [0.0] * 5,
            "clean": 0.0,
            "r18": noise,
            "r18_clean": RESNET18["clean"],
        },
        {
            "label": "error rates in percent",
            "errors": [100 * e for e in MODELS["VGG-11"]["jpeg"]],
            "clean": 10.0,
            "r18": [100 * e for e in RESNET18["jpeg"]],
            "r18_clean": 7.0,
        },
        {
            "label": "a model whose clean error exceeds its corrupted ones (a negative numerator)",
            "errors": [0.01, 0.01, 0.02, 0.02, 0.03],
            "clean": 0.5,
            "r18": noise,
            "r18_clean": RESNET18["clean"],
        },
    ]
    return cases


def metric_call(name: str, case: dict) -> str:
    if name == "corruption_error":
        return f"corruption_error({case['errors']}, {case['r18']})"
    return f"relative_corruption_error({case['errors']}, {case['clean']:g}, {case['r18']}, {case['r18_clean']:g})"


def returned_number(value, label: str) -> float:
    number = shapes.check_shape(value, (), label, allow_sequences=True)
    shapes.check_finite(number, label)
    return float(number)


def expect_undefined(call: Callable[[], object], label: str, what: str) -> None:
    """The call must raise (ValueError, or an arithmetic error) rather than return inf, nan or a number."""
    try:
        value = call()
    except NotImplementedYet:
        raise
    except StudentError as error:
        if error.exc_type in ("ValueError", "ZeroDivisionError", "FloatingPointError"):
            return
        raise CheckFailure(
            f"{label} raised {error.exc_type}; expected a ValueError saying that {what} is 0.\n{error}"
        ) from None
    raise CheckFailure(
        f"{label} returned {shapes.summarise(value)}; expected an error (ValueError): {what} is 0, so the metric is "
        f"undefined.\nHint: check the denominator and raise ValueError with a message that says so."
    )


def check_ce_tables(sub) -> None:
    """``corruption_error`` equals equation (1) on every row of :func:`metric_cases`."""
    for case in metric_cases():
        label = f"{metric_call('corruption_error', case)} ({case['label']})"
        got = returned_number(sub.corruption_error(case["errors"], case["r18"]), label)
        expected = expected_ce(case["errors"], case["r18"])
        shapes.check_close(got, expected, label, atol=1e-12, rtol=1e-9)


def check_rce_tables(sub, evidence: dict) -> None:
    """``relative_corruption_error`` equals equation (2) on every row of :func:`metric_cases`, under
    one reading of the clean error's subtraction on all rows; the reading goes into the evidence."""
    cases = metric_cases()
    got = []
    for case in cases:
        label = f"{metric_call('relative_corruption_error', case)} ({case['label']})"
        value = sub.relative_corruption_error(case["errors"], case["clean"], case["r18"], case["r18_clean"])
        got.append(returned_number(value, label))
    expected = {
        reading: [expected_rce(c["errors"], c["clean"], c["r18"], c["r18_clean"], reading) for c in cases]
        for reading in RCE_READINGS
    }
    matching = [reading for reading, values in expected.items() if np.allclose(got, values, rtol=1e-9, atol=1e-12)]
    if matching:
        evidence["rce_reading"] = f"{matching[0]}: {RCE_READINGS[matching[0]]}"
        return
    typeset, per_severity = expected["as typeset"], expected["per severity"]
    index = next(i for i, value in enumerate(got) if not np.isclose(value, typeset[i], rtol=1e-9, atol=1e-12))
    case = cases[index]
    ce = expected_ce(case["errors"], case["r18"])
    hint = (
        "\nHint: that is the CE of equation (1); RCE subtracts the clean error from the model's summed "
        "errors and ResNet-18's clean error from ResNet-18's."
        if np.isclose(got[index], ce)
        else ""
    )
    raise CheckFailure(
        f"{metric_call('relative_corruption_error', case)} ({case['label']}) returned {got[index]:.6g}; "
        f"expected {typeset[index]:.6g}, equation (2) as typeset, "
        f"{RCE_READINGS['as typeset']} (or {per_severity[index]:.6g} if the clean error is "
        f"subtracted at every severity, {RCE_READINGS['per severity']}, on every row).{hint}"
    )


# -- the grader's own images, distortions and metrics (was torchgrade.checks.robustness) -----------
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
