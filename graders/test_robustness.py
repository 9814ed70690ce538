"""Graders of UvA DL1 assignment 2, question 1.2: the four corruption functions, Gaussian noise,
Gaussian blur, contrast reduction and JPEG compression, over severities 1 to 5, and the CE / RCE
metrics of equations (1) and (2) (``robustness.py``). Training the CIFAR-10 models is out of scope;
their results are graded by hand.

Each corruption is called on a CIFAR-sized test image at severities 1-5. Its contract: an image of
the input's shape in [0, 1], the input left as it was, the same output for the same generator
state (Gaussian noise, with ``torch.Generator`` objects made next to the submission) or on every
call (the others). Its severity: distortion that grows from severity 1 to 5, as the handout's table
sets it (noise standard deviation, blur sigma, contrast factor, JPEG quality). The metrics are
compared with equations (1) and (2) on tables of error rates, edge cases included; a zero
denominator must raise an error, not return inf or nan. The table, tolerances and their
measurements are in ``_robustness.py``.
"""

from __future__ import annotations

import pytest
import torch
from _robustness import (
    MODELS,
    check_blur_sigma,
    check_ce_tables,
    check_contrast_factor,
    check_jpeg_quality,
    check_noise_std,
    check_rce_tables,
    check_repeatable,
    check_same_generator_same_noise,
    corruption_outputs,
    expect_undefined,
    sample_image,
    shaped_outputs,
)

ASSIGNMENT = "uva-a2"
QUESTION = "Q1.2"
MANUAL = {
    "Q1.2a": (
        4,
        "ResNet-18 trained on CIFAR-10: test accuracy per corruption and severity, clean included; "
        "the plot and the trends",
    ),
    "Q1.2b": (
        3,
        "CE and RCE of VGG-11, VGG-11-BN, ResNet-34 and DenseNet-121 per corruption; the trends "
        "(depth, architecture, batch norm)",
    ),
}


@pytest.mark.points(1, question=QUESTION)
def test_gaussian_noise(sub, parts, image):
    """Gaussian noise of the handout's standard deviation at each severity, drawn from the generator given."""
    with parts.part(0.5, "an image in [0, 1], the input untouched, the same noise for the same generator"):
        corruption_outputs(sub, "gaussian_noise", image)
        check_same_generator_same_noise(sub, image)
    with parts.part(0.5, "noise of the handout's standard deviation at each severity"):
        check_noise_std(sub, image)


@pytest.mark.points(1, question=QUESTION)
def test_gaussian_blur(sub, parts, image):
    """Gaussian blur with the handout's 11-tap kernel and sigma at each severity."""
    outputs = []
    with parts.part(0.5, "an image in [0, 1], the input untouched, the same image on every call"):
        outputs = corruption_outputs(sub, "gaussian_blur", image)
        check_repeatable(sub, "gaussian_blur", image, outputs)
    with parts.part(0.5, "an 11-tap Gaussian of the handout's sigma at each severity"):
        check_blur_sigma(outputs or shaped_outputs(sub, "gaussian_blur", image), image)


@pytest.mark.points(1, question=QUESTION)
def test_contrast(sub, parts, image):
    """Contrast reduction by the handout's factor at each severity."""
    outputs = []
    with parts.part(0.5, "an image in [0, 1], the input untouched, the same image on every call"):
        outputs = corruption_outputs(sub, "contrast", image)
        check_repeatable(sub, "contrast", image, outputs)
    with parts.part(0.5, "contrast scaled by the handout's factor at each severity"):
        check_contrast_factor(outputs or shaped_outputs(sub, "contrast", image), image)


@pytest.mark.points(1, question=QUESTION)
def test_jpeg(sub, parts, image):
    """JPEG compression at the handout's quality at each severity."""
    outputs = []
    with parts.part(0.5, "an image in [0, 1], the input untouched, the same image on every call"):
        outputs = corruption_outputs(sub, "jpeg", image)
        check_repeatable(sub, "jpeg", image, outputs)
    with parts.part(0.5, "compressed at the handout's quality at each severity"):
        check_jpeg_quality(outputs or shaped_outputs(sub, "jpeg", image), image)


@pytest.mark.points(2, question=QUESTION)
def test_corruption_error(sub, parts):
    """corruption_error is equation (1): the model's errors summed over the severities, normalised by
    ResNet-18's."""
    with parts.part(1, "equation (1) on tables of error rates"):
        check_ce_tables(sub)
    with parts.part(1, "ResNet-18 without errors: CE is undefined"):
        errors = MODELS["VGG-11"]["jpeg"]
        expect_undefined(
            lambda: sub.corruption_error(errors, [0.0] * 5),
            f"corruption_error({errors}, [0.0, 0.0, 0.0, 0.0, 0.0])",
            "the sum of ResNet-18's errors over the severities",
        )


@pytest.mark.points(2, question=QUESTION)
def test_relative_corruption_error(sub, parts, evidence):
    """relative_corruption_error is equation (2): the summed errors minus the clean error, normalised
    by ResNet-18's."""
    with parts.part(1, "equation (2) on tables of error rates"):
        check_rce_tables(sub, evidence)
    with parts.part(1, "ResNet-18 without errors: RCE is undefined"):
        errors, clean = MODELS["VGG-11"]["jpeg"], MODELS["VGG-11"]["clean"]
        expect_undefined(
            lambda: sub.relative_corruption_error(errors, clean, [0.0] * 5, 0.0),
            f"relative_corruption_error({errors}, {clean:g}, [0.0, 0.0, 0.0, 0.0, 0.0], 0)",
            "ResNet-18's summed corruption errors minus its clean error",
        )


# -- the test image every corruption check reads --------------------------------------------------------
@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return sample_image()
