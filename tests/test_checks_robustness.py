"""The graders' _robustness.py (the test image, distortion measures, the grader's blur and contrast
fit, clipped-noise statistics, CE / RCE under both readings) and _probes_robustness.py (the
worker-side calls of a corruption)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _toys import graders_module
from scipy.ndimage import gaussian_filter

robustness = graders_module("_robustness")  # UvA A2's
probes = graders_module("_probes_robustness")


pytestmark = pytest.mark.usefixtures("single_thread")


def test_sample_image_is_deterministic_and_saturated():
    image = robustness.sample_image()
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert torch.equal(image, robustness.sample_image())
    assert image.min() == 0 and image.max() == 1 and 0.3 < float(image.mean()) < 0.7


@pytest.mark.parametrize("level", [0.5, 0.1, 0.97])
@pytest.mark.parametrize("std", [0.04, 0.25, 0.6])
def test_clipped_noise_std_matches_a_simulation(std, level):
    simulated = np.clip(level + std * np.random.default_rng(0).standard_normal(400_000), 0, 1) - level
    assert robustness.clipped_noise_std(std, level) == pytest.approx(simulated.std(), rel=0.01)


def test_clipped_noise_std_without_clipping_is_the_std():
    assert robustness.clipped_noise_std(0.01, 0.5) == pytest.approx(0.01, rel=1e-9)


@pytest.mark.parametrize("sigma", [0.4, 1.1, 1.5])
def test_blur_interior_is_scipys_gaussian_with_11_taps(sigma):
    image = robustness.sample_image().numpy().astype(np.float64)
    # truncate * sigma = 5: scipy's kernel then has the same 11 taps.
    expected = gaussian_filter(image, sigma=(0, sigma, sigma), truncate=5 / sigma)[:, 5:-5, 5:-5]
    np.testing.assert_allclose(robustness.blur_interior(image, sigma, 11), expected, atol=1e-12)
    assert robustness.gaussian_kernel(sigma, 11).sum() == pytest.approx(1.0)


def test_contrast_fit_recovers_a_blend_and_reports_residuals():
    image = robustness.sample_image().numpy()
    factors, offsets, residual = robustness.contrast_fit(0.4 * image + 0.3, image)
    np.testing.assert_allclose(factors, 0.4, atol=1e-6)
    np.testing.assert_allclose(offsets, 0.3, atol=1e-6)
    assert residual < 1e-6
    assert robustness.contrast_fit(image**2, image)[2] > 0.01


def test_rms_distortion():
    assert robustness.rms_distortion(np.full((2, 2), 0.5), np.zeros((2, 2))) == 0.5


def test_expected_ce_and_both_readings_of_rce():
    errors, r18 = [0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5]
    assert robustness.expected_ce(errors, r18) == pytest.approx(2.0 / 1.5)
    assert robustness.expected_rce(errors, 0.1, r18, 0.05, "as typeset") == pytest.approx(1.9 / 1.45)
    assert robustness.expected_rce(errors, 0.1, r18, 0.05, "per severity") == pytest.approx(1.5 / 1.25)
    assert robustness.expected_ce(errors, [0.0] * 5) is None
    assert robustness.expected_rce(errors, 0.1, [0.0] * 5, 0.0, "as typeset") is None
    assert robustness.expected_rce(errors, 0.1, [0.1] * 5, 0.1, "per severity") is None
    with pytest.raises(ValueError, match="choose from as typeset, per severity"):
        robustness.expected_rce(errors, 0.1, r18, 0.05, "other")


def test_call_keeping_input_shows_in_place_writes():
    image = torch.zeros(1, 2, 2)

    def brighten_in_place(img, amount):
        img += amount
        return img

    result = probes.call_keeping_input(brighten_in_place, image, 0.5)
    assert torch.equal(result["input_after"], torch.full((1, 2, 2), 0.5))


def noise_keyword(image, severity, generator=None):
    return image + severity * torch.randn(image.shape, generator=generator)


def noise_positional(image, severity, rng):
    return image + severity * torch.randn(image.shape, generator=rng)


def noise_global(image, severity, generator=None):
    return image + severity * torch.randn(image.shape)


def test_noise_with_generators_passes_them_by_keyword_or_position():
    image = torch.zeros(2, 3, 3)
    state = torch.random.get_rng_state()
    cases = (
        (noise_keyword, "generator=torch.Generator()"),
        (noise_positional, "a torch.Generator as the third argument"),
    )
    for fn, how in cases:
        result = probes.noise_with_generators(fn, image, 1, [3, 3, 4])
        first, twin, other = result["outputs"]
        assert result["how"] == how
        assert torch.equal(first, twin) and not torch.equal(first, other)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left as it was


def test_noise_with_generators_exposes_a_corruption_that_ignores_its_generator():
    first, twin = probes.noise_with_generators(noise_global, torch.zeros(2, 3, 3), 1, [3, 3])["outputs"]
    assert not torch.equal(first, twin)


def test_noise_with_generators_refuses_a_corruption_without_one():
    with pytest.raises(TypeError, match="takes no generator"):
        probes.noise_with_generators(lambda image, severity: image, torch.zeros(1, 2, 2), 1, [0])


def test_clipped_noise_std_limits():
    # Everything clipped: a huge noise on a grey image is +-0.5 with equal odds.
    assert robustness.clipped_noise_std(1e6, 0.5) == pytest.approx(0.5, rel=1e-3)
    assert math.isfinite(robustness.clipped_noise_std(0.3, 0.0))
