"""Reference answers to the hand computations of the shoe-pair assignment and the EECS 182 reviews.

Questions 2, 3(d), 3(f) and 6 of the shoe-pair handout, and the basics and GNN problems of the
EECS 182 reviews, are answered on paper. This module writes each of those hand computations as a
function, so that a grader can check a submission both on the handout's own numbers and on
random inputs (where a memorised number cannot pass). Everything here is plain Python and NumPy;
gradients are derived by hand, not taken from autograd, so the harness's tests can compare them
with autograd as an independent check.

The public names and signatures are those of ``student_template/answers.py``. Each docstring
starts with the template's docstring (the contract given to students) and adds the formula and
the handout's worked example, which students must not receive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

# Geometry of the shoe-pair models (handout Q3a/Q3b): the input is one [3, 448, 224] image
# holding the left shoe above the right one, and four 2x2 downsamplings divide each side by 16.
_IMAGE_HEIGHT = 448
_IMAGE_WIDTH = 224
_N_DOWNSAMPLINGS = 4
_HIDDEN_UNITS = 100
_N_CLASSES = 2


def receptive_field_1d(kernel_size: int, n_layers: int) -> int:
    """Width of the effective receptive field of a unit in a chain of 1-D convolutions (Q2d).

    Every layer is a 1-D convolution of width ``kernel_size`` with stride 1 and no dilation.
    Layers are counted as in the handout's diagram: layer 1 is the input sequence itself, so
    a unit of layer 1 sees exactly one input position.

    Args:
        kernel_size: Kernel width K (K >= 1).
        n_layers: Index N of the layer that holds the unit (N >= 1).

    Returns:
        The number of input positions that affect one unit of layer N.

    Formula:
        ``1 + (N - 1)(K - 1)``: each of the N - 1 convolutions between the input and layer N
        widens the window by K - 1 positions. (With N counting convolutions instead of layers
        the same argument gives ``1 + N(K - 1)``.)
    """
    _require_positive_int("kernel_size", kernel_size)
    _require_positive_int("n_layers", n_layers)
    return 1 + (n_layers - 1) * (kernel_size - 1)


def cnn_receptive_fields(kernel_size: int) -> list[int]:
    """Receptive field after each of the four downsamplings of ``CNNChannel`` (Q3f).

    Every stage is a ``kernel_size`` x ``kernel_size`` convolution with stride 1 and 'same'
    padding, followed by a 2x2 max-pool with stride 2. The unit lies near the centre of the
    feature map, so image borders do not matter.

    Args:
        kernel_size: Odd convolution kernel size k (3 or 5 in the handout).

    Returns:
        Four ints: the side, in input pixels of one shoe image, of the square region that
        affects one unit directly after the 1st, 2nd, 3rd and 4th downsampling.

    Formula:
        Before stage m (m = 1..4) neighbouring units are ``2^(m-1)`` input pixels apart, so the
        convolution widens the field by ``(k - 1) 2^(m-1)`` and the 2x2 pool by ``2^(m-1)``.
        Summing from a field of 1 pixel: ``r_m = 1 + k (2^m - 1)``; k = 3 gives
        [4, 10, 22, 46] and k = 5 gives [6, 16, 36, 76].
    """
    _require_positive_int("kernel_size", kernel_size)
    return [1 + kernel_size * (2**m - 1) for m in range(1, _N_DOWNSAMPLINGS + 1)]


def cnn_param_count(n: int, kernel_size: int) -> int:
    """Number of parameters of ``CNN(n, kernel_size)`` (Q3d).

    Layers: convolutions 3 -> n -> 2n -> 4n -> 8n channels with biases, each followed by a
    2x2 downsampling of the [3, 448, 224] input, then a fully connected layer to 100 units and
    a fully connected layer to 2 units, both with biases.

    Args:
        n: Number of channels of the first convolution.
        kernel_size: Convolution kernel size k.

    Returns:
        The total number of scalar parameters.

    Formula:
        ``sum over convs (c_in k^2 + 1) c_out + (8n * 28 * 14 + 1) * 100 + (100 + 1) * 2``
        with (c_in, c_out) in (3, n), (n, 2n), (2n, 4n), (4n, 8n); 28 x 14 is 448 x 224
        divided by 16. n = 4, k = 3 gives 6,216 + 1,254,500 + 202 = 1,260,918.
    """
    return _shoe_cnn_param_count(n, kernel_size, in_channels=3, height=_IMAGE_HEIGHT)


def cnn_channel_param_count(n: int, kernel_size: int) -> int:
    """Number of parameters of ``CNNChannel(n, kernel_size)`` (Q3d).

    Same layers as ``CNN``, but the left and right shoes are stacked on the channel axis, so
    the first convolution sees a [6, 224, 224] input.

    Args:
        n: Number of channels of the first convolution.
        kernel_size: Convolution kernel size k.

    Returns:
        The total number of scalar parameters.

    Formula:
        As ``cnn_param_count`` with 6 input channels and a 14 x 14 final map:
        ``sum over convs (c_in k^2 + 1) c_out + (8n * 14 * 14 + 1) * 100 + (100 + 1) * 2``.
        n = 4, k = 3 gives 6,324 + 627,300 + 202 = 633,826.
    """
    return _shoe_cnn_param_count(n, kernel_size, in_channels=6, height=_IMAGE_HEIGHT // 2)


def lstm_param_count(n_hidden: int, n_input: int, n_output: int) -> int:
    """Number of parameters of a one-layer LSTM with a linear output layer.

    The LSTM has the four gates of the standard equations (input, forget, cell candidate,
    output), each with input weights, recurrent weights and a single bias vector; a linear
    layer with bias maps the hidden state to the outputs.

    Args:
        n_hidden: Hidden size H.
        n_input: Input size I.
        n_output: Output size O.

    Returns:
        The total number of scalar parameters.

    Formula:
        ``4 (H I + H H + H) + O H + O``. (``nn.LSTM`` keeps two bias vectors per gate and
        so has 4H more.)
    """
    _require_positive_int("n_hidden", n_hidden)
    _require_positive_int("n_input", n_input)
    _require_positive_int("n_output", n_output)
    h, i, o = n_hidden, n_input, n_output
    return 4 * (h * i + h * h + h) + o * h + o


def conv1d_forward(
    x: Sequence[float],
    kernel: Sequence[float],
    bias: float,
    fc_weight: Sequence[float] | float,
    fc_bias: float,
    target: float,
) -> dict[str, object]:
    """Forward pass of the Q2a network: 1-D convolution, ReLU, one output unit, cross-entropy.

    The convolution has one input and one output channel, no padding and stride 1, and is a
    cross-correlation as in PyTorch: ``conv[i] = sum_j kernel[j] * x[i + j] + bias``. A fully
    connected layer maps the ReLU outputs to one logit ``z``; ``y = sigmoid(z)`` and the loss is
    the binary cross-entropy of ``y`` against ``target``.

    Args:
        x: Input sequence, length T.
        kernel: Kernel, length K <= T.
        bias: Convolution bias.
        fc_weight: Fully connected weights, length T - K + 1 (a number is used for all of them).
        fc_bias: Fully connected bias.
        target: Binary target t in [0, 1].

    Returns:
        A dict with keys ``conv`` (list of T - K + 1 floats), ``relu`` (list), ``z`` (float),
        ``y`` (float) and ``loss`` (float).

    Formula:
        ``z = sum_i w2[i] ReLU(conv[i]) + b2``; ``loss = -t log y - (1 - t) log(1 - y)``,
        computed as ``softplus(z) - t z`` so that it stays finite for large ``|z|``.
        Handout example (x = [1, 3, 2, 1, 1, 0, 1], kernel [-1, 2, -1], bias 0, weights and
        bias 1, t = 0): conv [3, 0, -1, 1, -2], ReLU [3, 0, 0, 1, 0], z = 5,
        loss = -log(1 - sigmoid(5)) = 5.00672.
    """
    x_arr, k_arr, w2 = _conv1d_inputs(x, kernel, fc_weight)
    conv = _correlate_valid(x_arr, k_arr) + float(bias)
    relu = np.maximum(conv, 0.0)
    z = float(w2 @ relu + float(fc_bias))
    return {
        "conv": conv.tolist(),
        "relu": relu.tolist(),
        "z": z,
        "y": _sigmoid(z),
        "loss": _softplus(z) - float(target) * z,
    }


def conv1d_kernel_grad(
    x: Sequence[float],
    kernel: Sequence[float],
    bias: float,
    fc_weight: Sequence[float] | float,
    fc_bias: float,
    target: float,
) -> list[float]:
    """Gradient of the Q2a loss with respect to the convolution kernel (Q2b).

    Same network and arguments as ``conv1d_forward``. The derivative of ReLU at 0 is taken
    to be 0, as in PyTorch.

    Args:
        x: Input sequence, length T.
        kernel: Kernel, length K <= T.
        bias: Convolution bias.
        fc_weight: Fully connected weights, length T - K + 1 (a number is used for all of them).
        fc_bias: Fully connected bias.
        target: Binary target t in [0, 1].

    Returns:
        d loss / d kernel as a list of K floats.

    Formula:
        ``dL/dz = y - t``; ``dL/dconv[i] = (y - t) w2[i] [conv[i] > 0]``;
        ``dL/dkernel[j] = sum_i dL/dconv[i] x[i + j]``. Handout example: only conv[0] = 3 and
        conv[3] = 1 are positive, so the gradient is sigmoid(5) (x[0:3] + x[3:6])
        = sigmoid(5) [2, 4, 2] = [1.98661, 3.97323, 1.98661].
    """
    x_arr, k_arr, w2 = _conv1d_inputs(x, kernel, fc_weight)
    conv = _correlate_valid(x_arr, k_arr) + float(bias)
    z = float(w2 @ np.maximum(conv, 0.0) + float(fc_bias))
    grad_conv = (_sigmoid(z) - float(target)) * w2 * (conv > 0)
    n_out = conv.shape[0]
    grad_kernel = [float(grad_conv @ x_arr[j : j + n_out]) for j in range(k_arr.shape[0])]
    return grad_kernel


def gnn_sum_update(
    h: Sequence[Sequence[float]],
    edges: Sequence[tuple[int, int]],
    W: Sequence[Sequence[float]],
) -> np.ndarray:
    """One GNN layer: ``h_v' = ReLU(sum over u in N(v) and v itself of W h_u)`` (Q6a).

    Shapes:
        h: (V, d); row ``v - 1`` holds the features of node ``v``.
        W: (d_out, d).
        returns: (V, d_out).

    Args:
        h: Node features.
        edges: Undirected edges as pairs of node numbers **1..V**, written as in the handout,
            e.g. ``[(1, 2), (2, 3)]``. Order inside a pair does not matter.
        W: Layer weights.

    Returns:
        The updated node features as a float NumPy array.

    Formula:
        With ``A`` the 0/1 adjacency matrix plus the identity (a repeated edge still counts
        once), ``H' = ReLU(A H W^T)``. Handout example (h1 = [1, 1], h2 = [0, 1],
        h3 = [1, 0], h4 = [-1, 0], W = [[1, 2], [0, 1]]): rows [5, 2], [5, 2], [2, 1], [2, 1].
    """
    h_arr, a_hat, w_arr = _gnn_inputs(h, edges, W)
    return np.maximum(a_hat @ h_arr @ w_arr.T, 0.0)


def gnn_graph_output(
    h: Sequence[Sequence[float]],
    edges: Sequence[tuple[int, int]],
    W: Sequence[Sequence[float]],
    q: Sequence[float],
) -> dict[str, float]:
    """Graph-level output of one GNN layer: ``y = sigmoid(q^T sum_v h_v')`` (Q6b).

    Args:
        h: Node features, shape (V, d); row ``v - 1`` is node ``v``.
        edges: Undirected edges as pairs of node numbers 1..V.
        W: Layer weights, shape (d_out, d).
        q: Readout vector, shape (d_out,).

    Returns:
        ``{"z": q^T sum_v h_v', "y": sigmoid(z)}`` as floats.

    Formula:
        Handout example: ``sum_v h_v' = [14, 6]``, ``z = 20``, ``y = sigmoid(20)``.
    """
    q_arr = np.asarray(q, dtype=float)
    pooled = gnn_sum_update(h, edges, W).sum(axis=0)
    _require_shape("q", q_arr, pooled.shape)
    z = float(q_arr @ pooled)
    return {"z": z, "y": _sigmoid(z)}


def gnn_param_grads(
    h: Sequence[Sequence[float]],
    edges: Sequence[tuple[int, int]],
    W: Sequence[Sequence[float]],
    q: Sequence[float],
    target: float,
) -> dict[str, np.ndarray]:
    """Gradients of the binary cross-entropy of the Q6 GNN output against ``target`` (Q6c).

    The network is ``gnn_graph_output``; the loss is ``-t log y - (1 - t) log(1 - y)``. The
    derivative of ReLU at 0 is taken to be 0, as in PyTorch.

    Args:
        h: Node features, shape (V, d); row ``v - 1`` is node ``v``.
        edges: Undirected edges as pairs of node numbers 1..V.
        W: Layer weights, shape (d_out, d).
        q: Readout vector, shape (d_out,).
        target: Binary target t in [0, 1].

    Returns:
        ``{"W": dL/dW with shape (d_out, d), "q": dL/dq with shape (d_out,)}`` as float arrays.

    Formula:
        Let ``S = A H`` (row v is the sum of h_u over N(v) and v), ``P = S W^T`` and
        ``e = y - t``. Then ``dL/dq = e sum_v ReLU(P_v)`` and, with
        ``G_v = e q * [P_v > 0]``, ``dL/dW = G^T S``. Handout example (all pre-activations
        positive): ``dL/dq = sigmoid(20) [14, 6]`` and
        ``dL/dW = sigmoid(20) q [2, 6] = sigmoid(20) [[2, 6], [2, 6]]``.
    """
    h_arr, a_hat, w_arr = _gnn_inputs(h, edges, W)
    q_arr = np.asarray(q, dtype=float)
    _require_shape("q", q_arr, (w_arr.shape[0],))
    summed = a_hat @ h_arr
    pre = summed @ w_arr.T
    post = np.maximum(pre, 0.0)
    error = _sigmoid(float(q_arr @ post.sum(axis=0))) - float(target)
    grad_pre = error * q_arr[None, :] * (pre > 0)
    return {"W": grad_pre.T @ summed, "q": error * post.sum(axis=0)}


def message_passing(
    h: Sequence[Sequence[float]],
    edges: Sequence[tuple[int, int]],
    W: Sequence[Sequence[float]],
    steps: int = 1,
    neighbours: bool = True,
) -> np.ndarray:
    """Node updates of the EECS 182 review (section C), repeated ``steps`` times.

    Without neighbours each node only transforms itself, ``v_i <- f(v_i)``; with them it adds the
    transformed states of its neighbours, ``v_i <- f(v_i) + sum over j in N(i) of f(v_j)``, where
    ``f(v) = W v``.

    Shapes:
        h: (V, d); row ``i`` holds node ``i`` (A = 0, B = 1, ...).
        W: (d, d).
        returns: (V, d).

    Args:
        h: Node states at step 0.
        edges: Undirected edges as pairs of node indices **0..V-1**, e.g. ``[(0, 1)]`` for A-B.
        W: The update ``f_v`` as a matrix.
        steps: How many updates to apply.
        neighbours: Whether messages from neighbours are added.

    Returns:
        The node states after ``steps`` updates, as a float NumPy array.

    Formula:
        ``H <- (I + A) H W^T`` (``A`` the 0/1 adjacency, or zero without neighbours). Example:
        ``f_v = [[3, 5], [4, 1]]``, ``v_A = [1, 2]``: alone ``[13, 6]`` then ``[69, 58]``; with its
        neighbour ``v_B = [-1, 2]``: ``[20, 4]``.
    """
    h_arr = np.asarray(h, dtype=float)
    w_arr = np.asarray(W, dtype=float)
    _require_shape("W", w_arr, (h_arr.shape[1], h_arr.shape[1]))
    propagate = np.eye(h_arr.shape[0])
    if neighbours:
        for i, j in edges:
            propagate[i, j] = propagate[j, i] = 1.0
    for _ in range(steps):
        h_arr = propagate @ h_arr @ w_arr.T
    return h_arr


def sigmoid_derivative(z: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """Derivative of the logistic sigmoid ``sigma(z) = 1 / (1 + exp(-z))`` (EECS 182 review, basics 1a).

    Args:
        z: A number, or an array (or nested lists) of numbers.

    Returns:
        ``d sigma / dz`` at ``z``: a float for a number, else a float array of z's shape.

    Formula:
        ``sigma'(z) = sigma(z) (1 - sigma(z))``, with sigma computed without overflow for large
        ``|z|`` (``exp(-|z|)`` only).
    """
    z_arr = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z_arr))
    sig = np.where(z_arr >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    grad = sig * (1.0 - sig)
    return float(grad) if grad.ndim == 0 else grad


def mlp_gradients(
    x: float,
    y_true: float,
    A: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    C: Sequence[Sequence[float]],
    d: float,
) -> dict[str, object]:
    """Gradients of the L2 loss of ``y_pred = C sigmoid(A x + b) + d`` (EECS 182 review, basics 1b-1e).

    The network has a scalar input, one hidden layer of k sigmoid units and an affine scalar
    output; the loss is ``L = (y_true - y_pred)^2``.

    Shapes:
        x, y_true, d: scalars.
        A, b: (k, 1).
        C: (1, k).

    Args:
        x: The input.
        y_true: The label.
        A: Hidden weights.
        b: Hidden biases.
        C: Output weights.
        d: Output bias.

    Returns:
        A dict with ``y_pred`` and ``loss`` (floats), and ``d`` (float), ``C`` (1, k), ``b`` (k, 1)
        and ``A`` (k, 1): the gradients of the loss, shaped like the parameters.

    Formula:
        With ``z = A x + b`` and ``e = 2 (y_pred - y_true)``: ``dL/dd = e``;
        ``dL/dC_i = e sigma(z_i)``; ``dL/db_i = e C_i sigma'(z_i)``; ``dL/dA_i = e C_i sigma'(z_i) x``.
        (The review's printed answers to (d) and (e), ``2 C sigma'(Ax + b)`` and the same times
        ``x_i``, drop the factor ``y_pred - y_true`` and the index of ``C``.)
    """
    a_col = np.asarray(A, dtype=float).reshape(-1, 1)
    b_col = np.asarray(b, dtype=float).reshape(-1, 1)
    c_row = np.asarray(C, dtype=float).reshape(1, -1)
    if not a_col.shape == b_col.shape == c_row.T.shape:
        raise ValueError(f"A, b and C must hold k values each; got {a_col.size}, {b_col.size} and {c_row.size}")
    z = a_col * float(x) + b_col
    hidden = np.asarray([[_sigmoid(float(v))] for v in z.ravel()])
    y_pred = float((c_row @ hidden).item()) + float(d)
    error = 2.0 * (y_pred - float(y_true))
    grad_b = error * c_row.T * sigmoid_derivative(z)
    return {
        "y_pred": y_pred,
        "loss": (float(y_true) - y_pred) ** 2,
        "d": error,
        "C": error * hidden.T,
        "b": grad_b,
        "A": grad_b * float(x),
    }


def ridge_solution(A: Sequence[Sequence[float]], b: Sequence[float], lam: float) -> np.ndarray:
    """Minimiser of ``||A x - b||^2 + lam ||x||^2`` (EECS 182 review, basics 2).

    Shapes:
        A: (m, n).
        b: (m,).
        returns: (n,).

    Args:
        A: The matrix.
        b: The right-hand side.
        lam: The regularisation strength, >= 0 (> 0 when A has fewer rows than columns).

    Returns:
        The solution x as a float NumPy array.

    Formula:
        ``x = (A^T A + lam I)^-1 A^T b``, computed by solving the linear system rather than
        inverting. It is the least-squares solution of the augmented system
        ``[A; sqrt(lam) I] x = [b; 0]``; ``lam`` shifts every eigenvalue of ``A^T A`` (the squared
        singular values of A) away from zero.
    """
    a_arr = np.asarray(A, dtype=float)
    b_arr = np.asarray(b, dtype=float)
    if a_arr.ndim != 2 or b_arr.shape != (a_arr.shape[0],):
        raise ValueError(f"A must be (m, n) and b (m,); got {list(a_arr.shape)} and {list(b_arr.shape)}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0; got {lam!r}")
    gram = a_arr.T @ a_arr + float(lam) * np.eye(a_arr.shape[1])
    return np.linalg.solve(gram, a_arr.T @ b_arr)


def batchnorm_forward(
    x: Sequence[float] | np.ndarray,
    gamma: float | Sequence[float] = 1.0,
    beta: float | Sequence[float] = 0.0,
    eps: float = 0.0,
) -> np.ndarray:
    """Batch normalisation in training mode (EECS 182 review, basics 3).

    Each feature is standardised with the mean and variance of the batch, then scaled by gamma and
    shifted by beta.

    Shapes:
        x: (m,) for a batch of numbers or (m, d) for a batch of feature vectors.
        gamma, beta: numbers, or (d,) per feature.
        returns: x's shape.

    Args:
        x: The batch.
        gamma: Scale.
        beta: Shift.
        eps: Added to the variance before the square root (the review uses none).

    Returns:
        The normalised batch as a float NumPy array.

    Formula:
        ``mu = mean_i x_i``; ``var = mean_i (x_i - mu)^2`` (the biased variance, dividing by m, as
        batch norm does); ``y_i = gamma (x_i - mu) / sqrt(var + eps) + beta``. Review example:
        {1, 7, 7, 9} has mu = 6, var = 9, so y = {-5/3, 1/3, 1/3, 1}.
    """
    x_arr = np.asarray(x, dtype=float)
    centred = x_arr - x_arr.mean(axis=0)
    variance = (centred**2).mean(axis=0)
    return np.asarray(gamma, dtype=float) * centred / np.sqrt(variance + eps) + np.asarray(beta, dtype=float)


def mean_only_batchnorm_backward(
    grad_y: Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray,
    gamma: float | Sequence[float] = 1.0,
    beta: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """Gradient through a batch norm that only subtracts the mean (EECS 182 review, basics 4).

    The layer computes ``y_i = gamma (x_i - mu) + beta`` with ``mu`` the batch mean of x (no
    division by the standard deviation). Given ``dL/dy`` for the whole batch, return ``dL/dx``.

    Shapes:
        grad_y, x: (m,) or (m, d).
        gamma, beta: numbers, or (d,) per feature.
        returns: x's shape.

    Args:
        grad_y: ``dL/dy_i`` for every element of the batch.
        x: The layer's input.
        gamma: Scale.
        beta: Shift.

    Returns:
        ``dL/dx`` as a float NumPy array.

    Formula:
        ``dL/dx_i = sum_j dL/dy_j dy_j/dx_i = gamma (dL/dy_i - (1/m) sum_j dL/dy_j)``: the mean
        depends on every x_i, so every y_j passes back ``-gamma/m`` of its gradient. The review's
        printed answer ``gamma (1 - 1/m) dL/dy_i`` keeps only the j = i term; it is right only when
        every other ``dL/dy_j`` is 0.
    """
    g = np.asarray(grad_y, dtype=float)
    x_arr = np.asarray(x, dtype=float)
    if g.shape != x_arr.shape:
        raise ValueError(f"grad_y and x must have one shape; got {list(g.shape)} and {list(x_arr.shape)}")
    return np.asarray(gamma, dtype=float) * (g - g.mean(axis=0))


def _shoe_cnn_param_count(n: int, kernel_size: int, *, in_channels: int, height: int) -> int:
    _require_positive_int("n", n)
    _require_positive_int("kernel_size", kernel_size)
    channels = [in_channels, n, 2 * n, 4 * n, 8 * n]
    convs = sum((c_in * kernel_size**2 + 1) * c_out for c_in, c_out in pairwise(channels))
    scale = 2**_N_DOWNSAMPLINGS
    flat = channels[-1] * (height // scale) * (_IMAGE_WIDTH // scale)
    fc1 = (flat + 1) * _HIDDEN_UNITS
    fc2 = (_HIDDEN_UNITS + 1) * _N_CLASSES
    return convs + fc1 + fc2


def _conv1d_inputs(
    x: Sequence[float], kernel: Sequence[float], fc_weight: Sequence[float] | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_arr = np.asarray(x, dtype=float)
    k_arr = np.asarray(kernel, dtype=float)
    if x_arr.ndim != 1 or k_arr.ndim != 1 or not 1 <= k_arr.shape[0] <= x_arr.shape[0]:
        raise ValueError(
            f"x and kernel must be 1-D with 1 <= len(kernel) <= len(x); got shapes "
            f"{list(x_arr.shape)} and {list(k_arr.shape)}"
        )
    n_out = x_arr.shape[0] - k_arr.shape[0] + 1
    w2 = np.asarray(fc_weight, dtype=float)
    if w2.ndim == 0:
        w2 = np.full(n_out, float(w2))
    _require_shape("fc_weight", w2, (n_out,))
    return x_arr, k_arr, w2


def _correlate_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # np.correlate in 'valid' mode is exactly PyTorch's conv1d (no kernel flip).
    return np.correlate(x, kernel, mode="valid")


def _gnn_inputs(
    h: Sequence[Sequence[float]], edges: Sequence[tuple[int, int]], W: Sequence[Sequence[float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h_arr = np.asarray(h, dtype=float)
    w_arr = np.asarray(W, dtype=float)
    if h_arr.ndim != 2:
        raise ValueError(f"h must have shape (V, d); got {list(h_arr.shape)}")
    if w_arr.ndim != 2 or w_arr.shape[1] != h_arr.shape[1]:
        raise ValueError(
            f"W must have shape (d_out, {h_arr.shape[1]}) to act on h of shape "
            f"{list(h_arr.shape)}; got {list(w_arr.shape)}"
        )
    n_nodes = h_arr.shape[0]
    a_hat = np.eye(n_nodes)
    for edge in edges:
        u, v = (int(node) for node in edge)
        if not (1 <= u <= n_nodes and 1 <= v <= n_nodes):
            raise ValueError(
                f"edge {tuple(edge)} names a node outside 1..{n_nodes}; nodes are numbered from 1 as in the handout"
            )
        a_hat[u - 1, v - 1] = a_hat[v - 1, u - 1] = 1.0
    return h_arr, a_hat, w_arr


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _softplus(z: float) -> float:
    # log(1 + e^z) without overflow for large z.
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _require_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _require_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}; got {list(array.shape)}")
