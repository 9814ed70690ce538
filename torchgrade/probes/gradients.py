"""Central finite differences of any function, a submitted forward pass included. Worker side.

:func:`numerical_gradients` is the second opinion on a submitted backward pass: it differentiates
the *submitted* forward pass, so a backward that disagrees with it is inconsistent with the
student's own forward, whatever torch says. It calls the function many times, so graders run it
next to the function (``sub.apply(numerical_gradients, sub.lookup("conv2d_forward"), ...)``): one
round trip instead of hundreds. It takes and returns plain data (NumPy arrays) and imports only
NumPy. The grader also calls it on its own functions (torch's forward, where the submitted one is
wrong); the exact expectation, autograd, is grader side (:mod:`torchgrade.checks.gradients`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Step of the central differences. The layers graded this way are piecewise linear in each input,
#: so the truncation error is zero away from kinks and the step only trades off rounding
#: (~1e-16 / EPS relative) against the chance of crossing a kink (a ReLU's 0, a change of maximum).
EPS = 1e-6


def numerical_gradients(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    grad_out: Any,
    wrt: Sequence[int],
    kwargs: dict[str, Any] | None = None,
    eps: float = EPS,
) -> list[np.ndarray]:
    """Central differences of ``L = sum(fn(*inputs, **kwargs) * grad_out)`` with respect to some inputs.

    ``dL/d inputs[i][k] ~ (L(inputs[i][k] + eps) - L(inputs[i][k] - eps)) / (2 eps)``, one element
    at a time, each time on fresh float64 copies (``fn`` never sees, and cannot change, the caller's
    arrays).

    Args:
        fn: The function to differentiate; it must return an array-like shaped like ``grad_out``.
        inputs: Its positional arguments (arrays are copied to float64; others passed as they are).
        grad_out: The upstream gradient.
        wrt: Indices of the inputs to differentiate with respect to.
        kwargs: Keyword arguments passed to ``fn`` every time.
        eps: The step.

    Returns:
        One float64 array per index of ``wrt``, shaped like that input.

    Raises:
        ValueError: ``fn`` returned something of another shape than ``grad_out``.
    """
    kwargs = dict(kwargs or {})
    base = [np.array(a, dtype=np.float64) if isinstance(a, (np.ndarray, list)) else a for a in inputs]
    upstream = np.asarray(grad_out, dtype=np.float64)

    def loss(args: list[Any]) -> float:
        out = np.asarray(fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args], **kwargs), dtype=np.float64)
        if out.shape != upstream.shape:
            raise ValueError(f"the function returned shape {list(out.shape)}; expected {list(upstream.shape)}")
        return float(np.sum(out * upstream))

    grads = []
    for index in wrt:
        grad = np.zeros(base[index].shape)
        for position in np.ndindex(*base[index].shape):
            args = list(base)
            plus, minus = base[index].copy(), base[index].copy()
            plus[position] += eps
            minus[position] -= eps
            args[index] = plus
            high = loss(args)
            args[index] = minus
            grad[position] = (high - loss(args)) / (2 * eps)
        grads.append(grad)
    return grads
