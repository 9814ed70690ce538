"""Reference solution of UvA DL1 assignment 2, question 1.1: CNN layers in NumPy, forward and backward.

Every layer is a pair of plain functions. The forward takes the input and the parameters; the
backward takes the gradient of the loss with respect to the forward's output and the forward's own
arguments, and returns the gradients with respect to the input and every parameter. Nothing is
cached between the two calls, so the functions can be checked one at a time. Conventions follow
``torch.nn.functional``: NCHW layout, convolution as cross-correlation, ``weight`` of a linear layer
shaped (out_features, in_features), max-pooling windows without padding and rounded down.

The public names and signatures are those of ``student_template/conv_numpy.py``. Each docstring
starts with the template's docstring (the contract given to students) and adds the formula.
Only NumPy is used: the graders check that no torch code runs inside these functions.
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

    Formula:
        With ``xp`` the zero-padded input,
        ``out[n, f, i, j] = bias[f] + sum_{c, u, v} weight[f, c, u, v] xp[n, c, i s + u, j s + v]``.
        The loop below runs over the KH x KW kernel offsets only; each offset contributes one
        strided view of ``xp`` contracted with one column of the weights.
    """
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    padded, out_h, out_w = _padded_input(x, weight, stride, padding)
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w), dtype=np.result_type(x, weight, bias))
    for u in range(weight.shape[2]):
        for v in range(weight.shape[3]):
            window = _strided_view(padded, u, v, stride, out_h, out_w)
            out += np.einsum("nchw,fc->nfhw", window, weight[:, :, u, v])
    return out + bias[None, :, None, None]


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

    Formula:
        ``grad_bias[f] = sum_{n, i, j} g[n, f, i, j]``;
        ``grad_weight[f, c, u, v] = sum_{n, i, j} g[n, f, i, j] xp[n, c, i s + u, j s + v]``;
        ``grad_xp[n, c, i s + u, j s + v] += sum_f g[n, f, i, j] weight[f, c, u, v]``, and ``grad_x``
        is ``grad_xp`` without its padded border.
    """
    grad_out, x, weight, bias = (np.asarray(a) for a in (grad_out, x, weight, bias))
    padded, out_h, out_w = _padded_input(x, weight, stride, padding)
    if grad_out.shape != (x.shape[0], weight.shape[0], out_h, out_w):
        raise ValueError(f"grad_out has shape {list(grad_out.shape)}; the forward's output has shape "
                         f"{[x.shape[0], weight.shape[0], out_h, out_w]}")
    grad_padded = np.zeros_like(padded, dtype=np.result_type(grad_out, weight))
    grad_weight = np.zeros(weight.shape, dtype=np.result_type(grad_out, x))
    for u in range(weight.shape[2]):
        for v in range(weight.shape[3]):
            window = _strided_view(padded, u, v, stride, out_h, out_w)
            grad_weight[:, :, u, v] = np.einsum("nfhw,nchw->fc", grad_out, window)
            rows = slice(u, u + stride * (out_h - 1) + 1, stride)
            cols = slice(v, v + stride * (out_w - 1) + 1, stride)
            grad_padded[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", grad_out, weight[:, :, u, v])
    height, width = x.shape[2], x.shape[3]
    grad_x = grad_padded[:, :, padding:padding + height, padding:padding + width]
    grad_bias = grad_out.sum(axis=(0, 2, 3)).astype(np.result_type(grad_out, bias))
    return grad_x, grad_weight, grad_bias


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

    Formula:
        ``out[n, c, i, j] = max_{u, v < k} x[n, c, i s + u, j s + v]``.
    """
    x = np.asarray(x)
    stride, out_h, out_w = _pool_geometry(x, kernel_size, stride)
    out = np.full((x.shape[0], x.shape[1], out_h, out_w), -np.inf, dtype=x.dtype)
    for u in range(kernel_size):
        for v in range(kernel_size):
            np.maximum(out, _strided_view(x, u, v, stride, out_h, out_w), out=out)
    return out


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

    Formula:
        ``grad_x[n, c, i s + u, j s + v] += g[n, c, i, j] [ (u, v) = argmax of window (i, j) ]``.
    """
    grad_out, x = np.asarray(grad_out), np.asarray(x)
    stride, out_h, out_w = _pool_geometry(x, kernel_size, stride)
    if grad_out.shape != (x.shape[0], x.shape[1], out_h, out_w):
        raise ValueError(f"grad_out has shape {list(grad_out.shape)}; the forward's output has shape "
                         f"{[x.shape[0], x.shape[1], out_h, out_w]}")
    maxima = max_pool2d_forward(x, kernel_size, stride)
    grad_x = np.zeros(x.shape, dtype=np.result_type(grad_out, x))
    routed = np.zeros(maxima.shape, dtype=bool)  # windows whose gradient has found its element
    for u in range(kernel_size):
        for v in range(kernel_size):
            hit = (_strided_view(x, u, v, stride, out_h, out_w) == maxima) & ~routed
            routed |= hit
            rows = slice(u, u + stride * (out_h - 1) + 1, stride)
            cols = slice(v, v + stride * (out_w - 1) + 1, stride)
            grad_x[:, :, rows, cols] += np.where(hit, grad_out, 0.0)
    return grad_x


def relu_forward(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit, element-wise.

    Shapes:
        x: any shape; returns the same shape.

    Args:
        x: Input.

    Returns:
        ``max(x, 0)`` as a NumPy array of the input's dtype.
    """
    x = np.asarray(x)
    return np.maximum(x, np.zeros((), dtype=x.dtype))


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of a loss through ``relu_forward(x)``.

    Shapes:
        grad_out, x: one shape; returns that shape.

    Args:
        grad_out: Gradient of the loss with respect to the forward's output.
        x: The forward's input.

    Returns:
        ``grad_x``. The derivative at exactly 0 is taken to be 0, as in PyTorch.

    Formula:
        ``grad_x = g [x > 0]``.
    """
    grad_out, x = np.asarray(grad_out), np.asarray(x)
    return np.where(x > 0, grad_out, np.zeros((), dtype=grad_out.dtype))


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
    x, weight, bias = np.asarray(x), np.asarray(weight), np.asarray(bias)
    return x @ weight.T + bias


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

    Formula:
        ``grad_x = g weight``; ``grad_weight = g^T x``; ``grad_bias = sum_n g[n]``.
    """
    grad_out, x, weight, bias = (np.asarray(a) for a in (grad_out, x, weight, bias))
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0).astype(np.result_type(grad_out, bias))


def _padded_input(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be (N, C, H, W) and weight (F, C, KH, KW) with the same C; got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    _require_int("stride", stride, minimum=1)
    _require_int("padding", padding, minimum=0)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (padded.shape[2] - weight.shape[2]) // stride + 1
    out_w = (padded.shape[3] - weight.shape[3]) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {weight.shape[2]}x{weight.shape[3]} kernel does not fit in the padded input "
                         f"{list(padded.shape[2:])}")
    return padded, out_h, out_w


def _pool_geometry(x: np.ndarray, kernel_size: int, stride: int | None) -> tuple[int, int, int]:
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W); got {list(x.shape)}")
    _require_int("kernel_size", kernel_size, minimum=1)
    stride = kernel_size if stride is None else stride
    _require_int("stride", stride, minimum=1)
    out_h = (x.shape[2] - kernel_size) // stride + 1
    out_w = (x.shape[3] - kernel_size) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kernel_size}x{kernel_size} window does not fit in the input {list(x.shape[2:])}")
    return stride, out_h, out_w


def _strided_view(array: np.ndarray, u: int, v: int, stride: int, out_h: int, out_w: int) -> np.ndarray:
    # The element at offset (u, v) of every window: rows u, u + s, ..., one per output row.
    return array[:, :, u:u + stride * (out_h - 1) + 1:stride, v:v + stride * (out_w - 1) + 1:stride]


def _require_int(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
