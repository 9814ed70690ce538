"""UvA DL1 assignment 2, question 1.1: the layers of a CNN in NumPy, forward and backward.

Write every layer as a pair of plain functions. The forward takes the input and the parameters;
the backward takes the gradient of the loss with respect to the forward's output and the forward's
own arguments, and returns the gradients with respect to the input and every parameter. Follow the
conventions of ``torch.nn.functional``: NCHW layout, convolution as cross-correlation, a linear
layer's ``weight`` shaped (out_features, in_features), max-pooling windows without padding.

Use NumPy only: the graders compare your layers with torch, but a layer that calls torch earns no
points. For-loops are fine; the graders' arrays are small.
"""

from __future__ import annotations

import numpy as np


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1,
                   padding: int = 0) -> np.ndarray:
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    Shapes:
        x: (N, C, H, W).
        weight: (F, C, KH, KW).
        bias: (F,).
        returns: (N, F, H_out, W_out) with ``H_out = (H + 2 padding - KH) // stride + 1`` and
        ``W_out`` likewise.

    Args:
        x: Input batch.
        weight: Filters.
        bias: One bias per filter.
        stride: Step between neighbouring windows, in both directions.
        padding: Zeros added on every side of the height and width.

    Returns:
        The output as a NumPy array of the input's dtype.
    """
    raise NotImplementedError("Q1.1: write conv2d_forward(x, weight, bias, stride, padding)")


def conv2d_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1,
                    padding: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of a loss through ``conv2d_forward(x, weight, bias, stride, padding)``.

    Shapes:
        grad_out: (N, F, H_out, W_out), the gradient of the loss with respect to the output.
        x, weight, bias: as in ``conv2d_forward``.
        returns: arrays shaped like x, weight and bias.

    Args:
        grad_out: Gradient of the loss with respect to the forward's output.
        x: The forward's input.
        weight: The forward's filters.
        bias: The forward's biases.
        stride: The forward's stride.
        padding: The forward's padding.

    Returns:
        ``(grad_x, grad_weight, grad_bias)``.
    """
    raise NotImplementedError("Q1.1: write conv2d_backward(grad_out, x, weight, bias, stride, padding)")


def max_pool2d_forward(x: np.ndarray, kernel_size: int, stride: int | None = None) -> np.ndarray:
    """2-D max-pooling (as ``torch.nn.functional.max_pool2d`` without padding).

    Shapes:
        x: (N, C, H, W).
        returns: (N, C, H_out, W_out) with ``H_out = (H - kernel_size) // stride + 1`` and
        ``W_out`` likewise (windows that would cross the border are dropped).

    Args:
        x: Input batch.
        kernel_size: Side of the square window.
        stride: Step between neighbouring windows; None means ``kernel_size`` (windows that do not
            overlap), as in PyTorch.

    Returns:
        The maximum of every window, as a NumPy array of the input's dtype.
    """
    raise NotImplementedError("Q1.1: write max_pool2d_forward(x, kernel_size, stride)")


def max_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: int,
                        stride: int | None = None) -> np.ndarray:
    """Gradient of a loss through ``max_pool2d_forward(x, kernel_size, stride)``.

    Shapes:
        grad_out: (N, C, H_out, W_out).
        x: (N, C, H, W), the forward's input.
        returns: (N, C, H, W).

    Args:
        grad_out: Gradient of the loss with respect to the forward's output.
        x: The forward's input.
        kernel_size: The forward's window side.
        stride: The forward's stride (None: ``kernel_size``).

    Returns:
        ``grad_x``: each window passes its gradient to the element that holds its maximum (the
        first one in row-major order if several do); elements of overlapping windows add up what
        they receive; every other element gets 0.
    """
    raise NotImplementedError("Q1.1: write max_pool2d_backward(grad_out, x, kernel_size, stride)")


def relu_forward(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit, element-wise.

    Shapes:
        x: any shape; returns the same shape.

    Args:
        x: Input.

    Returns:
        ``max(x, 0)`` as a NumPy array of the input's dtype.
    """
    raise NotImplementedError("Q1.1: write relu_forward(x)")


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of a loss through ``relu_forward(x)``.

    Shapes:
        grad_out, x: one shape; returns that shape.

    Args:
        grad_out: Gradient of the loss with respect to the forward's output.
        x: The forward's input.

    Returns:
        ``grad_x``. The derivative at exactly 0 is taken to be 0, as in PyTorch.
    """
    raise NotImplementedError("Q1.1: write relu_backward(grad_out, x)")


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Fully connected layer (as ``torch.nn.functional.linear``).

    Shapes:
        x: (N, in_features).
        weight: (out_features, in_features).
        bias: (out_features,).
        returns: (N, out_features).

    Args:
        x: Input batch.
        weight: Weights, one row per output.
        bias: Biases.

    Returns:
        ``x weight^T + bias`` as a NumPy array.
    """
    raise NotImplementedError("Q1.1: write linear_forward(x, weight, bias)")


def linear_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray,
                    bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of a loss through ``linear_forward(x, weight, bias)``.

    Shapes:
        grad_out: (N, out_features).
        x, weight, bias: as in ``linear_forward``.
        returns: arrays shaped like x, weight and bias.

    Args:
        grad_out: Gradient of the loss with respect to the forward's output.
        x: The forward's input.
        weight: The forward's weights.
        bias: The forward's biases.

    Returns:
        ``(grad_x, grad_weight, grad_bias)``.
    """
    raise NotImplementedError("Q1.1: write linear_backward(grad_out, x, weight, bias)")
