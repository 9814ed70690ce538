"""Tests of reference/conv_numpy.py: every layer against torch autograd on random shapes, strides and
paddings, NumPy only (both looks of torchgrade.probes.numpy_only), and the template in step.

The reference is loaded by file path (graders never import it; neither does the harness).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchgrade import assignments
from torchgrade.importfile import import_file
from torchgrade.probes import numpy_only

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


ref = import_file(ROOT / "reference/conv_numpy.py", "_torchgrade_reference_conv_numpy")


def _tensors(*arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_matches_autograd(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c, f = (int(v) for v in rng.integers(1, 4, size=3))
    h, w = (int(v) for v in rng.integers(3, 9, size=2))
    stride, padding = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    kh, kw = (int(v) for v in rng.integers(1, min(h, w) + 2 * padding + 1, size=2))
    x, weight, bias = rng.normal(size=(n, c, h, w)), rng.normal(size=(f, c, kh, kw)), rng.normal(size=f)
    xt, wt, bt = _tensors(x, weight, bias)
    out = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    grad_out = rng.normal(size=tuple(out.shape))
    out.backward(torch.from_numpy(grad_out))
    np.testing.assert_allclose(ref.conv2d_forward(x, weight, bias, stride, padding), out.detach().numpy(), atol=1e-12)
    grads = ref.conv2d_backward(grad_out, x, weight, bias, stride, padding)
    for got, want in zip(grads, (xt.grad, wt.grad, bt.grad), strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "kernel", "stride"),
    [((2, 3, 8, 8), 2, None), ((1, 2, 7, 9), 3, 2), ((2, 1, 6, 5), 2, 1), ((1, 1, 5, 5), 5, None)],
)
def test_max_pool2d_matches_autograd(shape, kernel, stride) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape)
    (xt,) = _tensors(x)
    out = F.max_pool2d(xt, kernel, stride)
    grad_out = rng.normal(size=tuple(out.shape))
    out.backward(torch.from_numpy(grad_out))
    np.testing.assert_array_equal(ref.max_pool2d_forward(x, kernel, stride), out.detach().numpy())
    np.testing.assert_allclose(ref.max_pool2d_backward(grad_out, x, kernel, stride), xt.grad.numpy(), atol=1e-14)


def test_max_pool2d_backward_routes_a_tie_to_the_first_maximum_as_torch_does() -> None:
    x = np.zeros((1, 1, 2, 2))
    xt = torch.zeros(1, 1, 2, 2, requires_grad=True)
    F.max_pool2d(xt, 2).backward(torch.ones(1, 1, 1, 1))
    np.testing.assert_array_equal(ref.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2), xt.grad.numpy())


def test_relu_and_linear_match_autograd() -> None:
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    x[0, 0] = 0.0  # ReLU'(0) = 0, as in PyTorch
    (xt,) = _tensors(x)
    F.relu(xt).backward(torch.from_numpy(g))
    np.testing.assert_array_equal(ref.relu_forward(x), np.maximum(x, 0))
    np.testing.assert_array_equal(ref.relu_backward(g, x), xt.grad.numpy())
    w, b, g = rng.normal(size=(2, 4)), rng.normal(size=2), rng.normal(size=(3, 2))
    xt, wt, bt = _tensors(x, w, b)
    out = F.linear(xt, wt, bt)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ref.linear_forward(x, w, b), out.detach().numpy(), atol=1e-14)
    for got, want in zip(ref.linear_backward(g, x, w, b), (xt.grad, wt.grad, bt.grad), strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-14)


def test_layers_keep_float64_and_refuse_bad_geometry() -> None:
    x = np.ones((1, 1, 3, 3))
    assert ref.conv2d_forward(x, np.ones((1, 1, 2, 2)), np.zeros(1)).dtype == np.float64
    with pytest.raises(ValueError, match="does not fit"):
        ref.conv2d_forward(x, np.ones((1, 1, 5, 5)), np.zeros(1))
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        ref.max_pool2d_forward(x, 2, 0)


def test_reference_uses_numpy_only() -> None:
    functions = {name: getattr(ref, name) for name in assignments.active().modules()["conv_numpy"]}
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 5, 5))
    calls = {
        "conv2d_forward": ([x, rng.normal(size=(3, 2, 3, 3)), np.zeros(3)], {"padding": 1}),
        "max_pool2d_backward": ([rng.normal(size=(1, 2, 2, 2)), x, 2], {}),
    }
    found = numpy_only.audit(functions, calls)
    assert all(findings == [] for findings in found["static"].values()), found["static"]
    assert all(trace == {"calls": [], "error": None} for trace in found["runtime"].values()), found["runtime"]
