"""Tests of reference/robustness.py: the corruptions keep shape and range, leave their input alone,
follow the handout's severity tables and grow with severity; CE and RCE follow equations (1) and (2)
and refuse a zero normaliser; the template stays in step.

The reference is loaded by file path (graders never import it; neither does the harness).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _toys import graders_module

from torchgrade.importfile import import_file

ROOT = Path(__file__).resolve().parents[1]
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")

pytestmark = pytest.mark.usefixtures("single_thread")


ref = import_file(ROOT / "reference/robustness.py", "_torchgrade_reference_robustness")
checks = graders_module("_robustness")  # the graders' measures


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_corruptions_keep_shape_range_and_input(name: str, channels: int) -> None:
    image = checks.sample_image(shape=(channels, 20, 24))
    before = image.clone()
    measured = []
    for severity in range(1, 6):
        out = getattr(ref, name)(image, severity)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert 0 <= float(out.min()) and float(out.max()) <= 1
        measured.append(checks.rms_distortion(out.numpy(), image.numpy()))
    assert torch.equal(image, before)
    if name != "gaussian_noise":  # noise from the global generator: the grader measures it with one
        assert all(b > a for a, b in zip(measured, measured[1:], strict=False)), measured


def test_noise_is_deterministic_given_a_generator_and_has_the_tables_std() -> None:
    image = torch.full((3, 64, 64), 0.5)
    first = ref.gaussian_noise(image, 3, torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global generator does not matter
    assert torch.equal(first, ref.gaussian_noise(image, 3, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(first, ref.gaussian_noise(image, 3, torch.Generator().manual_seed(2)))
    for severity, std in enumerate(ref.STD_BY_SEVERITY, start=1):
        noise = ref.gaussian_noise(image, severity, torch.Generator().manual_seed(severity)) - 0.5
        assert float(noise.std()) == pytest.approx(checks.clipped_noise_std(std, 0.5), rel=0.03)


def test_blur_and_contrast_follow_the_tables() -> None:
    image = checks.sample_image()
    for severity, sigma in enumerate(ref.SIGMA_BY_SEVERITY, start=1):
        inner = ref.gaussian_blur(image, severity).numpy()[:, 5:-5, 5:-5]
        np.testing.assert_allclose(inner, checks.blur_interior(image.numpy(), sigma, 11), atol=1e-6)
    for severity, factor in enumerate(ref.FACTOR_BY_SEVERITY, start=1):
        factors, offsets, residual = checks.contrast_fit(ref.contrast(image, severity).numpy(), image.numpy())
        np.testing.assert_allclose(factors, factor, atol=1e-5)
        assert residual < 1e-5 and np.ptp(offsets) < 1e-5  # one grey level for every channel


def test_jpeg_quantises_to_8_bits() -> None:
    out = ref.jpeg(checks.sample_image(), 1).numpy()
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)


@pytest.mark.parametrize("severity", [0, 6, 2.0, True])
def test_corruptions_refuse_severities_outside_1_to_5(severity) -> None:
    with pytest.raises(ValueError, match="severity must be an int from 1 to 5"):
        ref.contrast(checks.sample_image(), severity)


def test_ce_and_rce_follow_equations_1_and_2() -> None:
    errors, r18 = [0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5]
    assert ref.corruption_error(errors, r18) == pytest.approx(checks.expected_ce(errors, r18))
    assert ref.relative_corruption_error(errors, 0.1, r18, 0.05) == pytest.approx(
        checks.expected_rce(errors, 0.1, r18, 0.05, "as typeset")
    )
    assert ref.corruption_error(r18, r18) == 1.0
    assert ref.relative_corruption_error(r18, 0.05, r18, 0.05) == 1.0


def test_zero_normalisers_and_malformed_tables_raise() -> None:
    with pytest.raises(ValueError, match="CE is undefined"):
        ref.corruption_error([0.1] * 5, [0.0] * 5)
    with pytest.raises(ValueError, match="RCE is undefined"):
        ref.relative_corruption_error([0.1] * 5, 0.1, [0.1, 0.0, 0.0, 0.0, 0.0], 0.1)
    with pytest.raises(ValueError, match="5 finite error rates"):
        ref.corruption_error([0.1] * 4, [0.1] * 5)
    with pytest.raises(ValueError, match="finite error rate"):
        ref.relative_corruption_error([0.1] * 5, float("nan"), [0.1] * 5, 0.1)
