"""torchgrade.probes.gradients (finite differences) and torchgrade.checks.gradients (autograd) on
functions whose gradients are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

from torchgrade.checks import gradients
from torchgrade.probes.gradients import numerical_gradients

pytestmark = pytest.mark.usefixtures("single_thread")


def test_numerical_gradients_of_a_bilinear_function_are_exact():
    rng = np.random.default_rng(0)
    x, w, g = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=(3, 2))
    grad_x, grad_w = numerical_gradients(lambda a, b: a @ b.T, [x, w], g, [0, 1])
    np.testing.assert_allclose(grad_x, g @ w, atol=1e-8)
    np.testing.assert_allclose(grad_w, g.T @ x, atol=1e-8)


def test_numerical_gradients_pass_other_arguments_and_never_touch_the_inputs():
    x = np.array([[1.0, -2.0, 3.0]])
    before = x.copy()

    def scale_in_place(a, factor, *, shift):
        a *= factor  # a function that writes into its argument sees a copy
        return a + shift

    (grad,) = numerical_gradients(scale_in_place, [x, 3.0], np.ones((1, 3)), [0], {"shift": 1.0})
    np.testing.assert_allclose(grad, [[3.0, 3.0, 3.0]], atol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradients_refuse_an_output_of_another_shape():
    with pytest.raises(ValueError, match=r"returned shape \[2\]; expected \[3\]"):
        numerical_gradients(lambda a: a[:2], [np.zeros(3)], np.ones(3), [0])


def test_autograd_gradients_of_linear():
    rng = np.random.default_rng(1)
    x, w, b, g = rng.normal(size=(5, 3)), rng.normal(size=(2, 3)), rng.normal(size=2), rng.normal(size=(5, 2))
    out, (grad_x, grad_w, grad_b) = gradients.autograd_gradients(F.linear, [x, w, b], g)
    np.testing.assert_allclose(out, x @ w.T + b, atol=1e-14)
    np.testing.assert_allclose(grad_x, g @ w, atol=1e-14)
    np.testing.assert_allclose(grad_w, g.T @ x, atol=1e-14)
    np.testing.assert_allclose(grad_b, g.sum(axis=0), atol=1e-14)


def test_autograd_gradients_pass_keyword_arguments():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, (grad,) = gradients.autograd_gradients(F.max_pool2d, [x], np.ones((1, 1, 2, 2)), kernel_size=2)
    np.testing.assert_array_equal(out, [[[[5, 7], [13, 15]]]])
    assert grad.sum() == 4 and grad[0, 0, 1, 1] == 1
