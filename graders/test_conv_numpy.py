"""Graders of UvA DL1 assignment 2, question 1.1: the layers of a CNN implemented from scratch with
NumPy functions (``conv_numpy.py``), convolution, max-pooling, ReLU and linear, forward and backward.

Every forward is compared with ``torch.nn.functional`` and every backward with torch autograd, in
float64, on seeded random shapes, strides and paddings, with tight tolerances. As a second opinion
each backward is also compared with central finite differences of the submitted forward, run next
to it: a backward that disagrees is inconsistent with the student's own forward (where that forward
is itself wrong, the differences are taken of torch's, so a forward bug is charged once). The
question asks for NumPy only: each layer's functions are read (the names their code uses) and
traced while they run; a layer that uses torch earns nothing. Cases, tolerances and hints are in
``_conv_numpy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from _conv_numpy import (
    CONV_GRADS,
    HINT_NUMPY,
    NAMES,
    check_conv_backward,
    check_conv_forward,
    check_linear,
    check_numeric,
    check_pool_backward,
    check_pool_forward,
    check_pool_numeric,
    check_relu,
    conv_cases,
    require_numpy,
    run_audit,
)

from torchgrade.checks.numpy_only import torch_findings
from torchgrade.errors import CheckFailure, NotImplementedYet

ASSIGNMENT = "uva-a2"
QUESTION = "Q1.1"


@pytest.mark.points(1, question=QUESTION)
def test_layers_use_numpy_only(numpy_audit):
    """Every layer is implemented from scratch using NumPy functions, without torch."""
    if numpy_audit["failure"]:
        raise CheckFailure(numpy_audit["failure"])
    for name, message in numpy_audit["missing"].items():
        raise CheckFailure(f"{message} (checking that {name} uses NumPy only)")
    for name in NAMES:
        error = numpy_audit["runtime"].get(name, {}).get("error")
        if error and error["type"] == "NotImplementedError":
            said = f": {error['message']}" if error["message"] else ""
            raise NotImplementedYet(
                f"{name} is not implemented yet (it raises NotImplementedError{said}).", "NotImplementedError"
            )
    findings = torch_findings(numpy_audit, NAMES)
    if findings:
        raise CheckFailure(f"conv_numpy.py's layers use torch: {'; '.join(findings)}.\n{HINT_NUMPY}")


@pytest.mark.points(1, question=QUESTION)
def test_conv2d_forward(sub, numpy_audit):
    """conv2d_forward computes the convolution of PyTorch's conv2d, with stride and zero padding."""
    require_numpy(numpy_audit, ["conv2d_forward"])
    check_conv_forward(sub, conv_cases(padded=False, count=4, seed=1) + conv_cases(padded=True, count=6, seed=2))


@pytest.mark.points(3, question=QUESTION)
def test_conv2d_backward(sub, parts, numpy_audit):
    """conv2d_backward returns the gradients of the input, the weights and the bias."""
    require_numpy(numpy_audit, ["conv2d_backward"])
    with parts.part(1, "no padding, strides 1-3, against autograd"):
        check_conv_backward(sub, conv_cases(padded=False, count=4, seed=3), seed=30)
    with parts.part(1, "padding 1-2, strides 1-3, against autograd"):
        check_conv_backward(sub, conv_cases(padded=True, count=6, seed=4), seed=40)
    with parts.part(1, "against finite differences of your conv2d_forward (stride 2, padding 1)"):
        rng = np.random.default_rng(5)
        args = [rng.normal(size=(1, 2, 5, 5)), rng.normal(size=(2, 2, 3, 3)), rng.normal(size=2)]
        check_numeric(
            sub, "conv2d_forward", "conv2d_backward", args, {"stride": 2, "padding": 1}, CONV_GRADS, F.conv2d, seed=50
        )


@pytest.mark.points(1, question=QUESTION)
def test_max_pool2d_forward(sub, numpy_audit):
    """max_pool2d_forward takes the maximum of each window, as PyTorch's max_pool2d."""
    require_numpy(numpy_audit, ["max_pool2d_forward"])
    check_pool_forward(sub, seed=6)


@pytest.mark.points(2, question=QUESTION)
def test_max_pool2d_backward(sub, parts, numpy_audit):
    """max_pool2d_backward routes each window's gradient to the element that holds its maximum."""
    require_numpy(numpy_audit, ["max_pool2d_backward"])
    with parts.part(1, "side by side, overlapping and leftover windows, against autograd"):
        check_pool_backward(sub, seed=7)
    with parts.part(1, "against finite differences of your max_pool2d_forward (kernel 3, stride 2)"):
        check_pool_numeric(sub, seed=8)


@pytest.mark.points(2, question=QUESTION)
def test_relu_and_linear(sub, parts, numpy_audit):
    """relu and linear layers compute PyTorch's forward and backward."""
    with parts.part(1, "relu_forward and relu_backward, against torch"):
        require_numpy(numpy_audit, ["relu_forward", "relu_backward"])
        check_relu(sub, seed=9)
    with parts.part(1, "linear_forward and linear_backward, against torch"):
        require_numpy(numpy_audit, ["linear_forward", "linear_backward"])
        check_linear(sub, seed=10)


# -- the audit of the NumPy-only rule that every check reads ------------------------------------------------
@pytest.fixture(scope="module")
def numpy_audit(submission) -> dict:
    """``{"static": {name: findings}, "runtime": {name: trace}, "missing": {name: message}, "failure"}``
    for the layer functions, read and traced once per submission."""
    return run_audit(submission)
