"""Gradients by torch autograd of the grader's own float64 function. Grader side.

:func:`autograd_gradients` is the exact expectation for a submitted backward pass (e.g. of a
convolution written in NumPy). The second opinion, central finite differences of the submitted forward pass, runs
next to that forward: :func:`torchgrade.probes.gradients.numerical_gradients`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def autograd_gradients(
    fn: Callable[..., torch.Tensor], inputs: Sequence[Any], grad_out: Any, **kwargs: Any
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The output of ``fn(*inputs, **kwargs)`` and the gradients of ``sum(output * grad_out)``.

    Args:
        fn: A torch function of float tensors (e.g. ``torch.nn.functional.conv2d``).
        inputs: Arrays; each becomes a float64 tensor that requires grad.
        grad_out: The upstream gradient, shaped like the output.
        **kwargs: Passed to ``fn`` as they are (strides, paddings).

    Returns:
        ``(output, [d/d input_i for each input])`` as float64 NumPy arrays.
    """
    tensors = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in inputs]
    out = fn(*tensors, **kwargs)
    out.backward(torch.as_tensor(np.asarray(grad_out, dtype=np.float64)))
    return out.detach().numpy(), [t.grad.numpy() if t.grad is not None else np.zeros(t.shape) for t in tensors]
