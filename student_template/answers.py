"""Hand computations of the shoe-pair assignment and the EECS 182 reviews, written as functions.

Questions 2, 3(d), 3(f) and 6 of the shoe-pair handout, and the basics and GNN problems of the
EECS 182 reviews, ask for computations done by hand. Write each one here as a function so that the
graders can check it on the handouts' numbers and on random inputs. Plain Python or NumPy is
enough; do not use autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    """
    raise NotImplementedError("Q2d: write receptive_field_1d(kernel_size, n_layers)")


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
    """
    raise NotImplementedError("Q3f: write cnn_receptive_fields(kernel_size)")


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
    """
    raise NotImplementedError("Q3d: write cnn_param_count(n, kernel_size)")


def cnn_channel_param_count(n: int, kernel_size: int) -> int:
    """Number of parameters of ``CNNChannel(n, kernel_size)`` (Q3d).

    Same layers as ``CNN``, but the left and right shoes are stacked on the channel axis, so
    the first convolution sees a [6, 224, 224] input.

    Args:
        n: Number of channels of the first convolution.
        kernel_size: Convolution kernel size k.

    Returns:
        The total number of scalar parameters.
    """
    raise NotImplementedError("Q3d: write cnn_channel_param_count(n, kernel_size)")


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
    """
    raise NotImplementedError("write lstm_param_count(n_hidden, n_input, n_output)")


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
    """
    raise NotImplementedError("Q2a: write conv1d_forward(x, kernel, bias, fc_weight, fc_bias, target)")


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
    """
    raise NotImplementedError("Q2b: write conv1d_kernel_grad(x, kernel, bias, fc_weight, fc_bias, target)")


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
    """
    raise NotImplementedError("Q6a: write gnn_sum_update(h, edges, W)")


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
    """
    raise NotImplementedError("Q6b: write gnn_graph_output(h, edges, W, q)")


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
    """
    raise NotImplementedError("Q6c: write gnn_param_grads(h, edges, W, q, target)")


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
    """
    raise NotImplementedError("GNN-2: write message_passing(h, edges, W, steps, neighbours)")

def sigmoid_derivative(z: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """Derivative of the logistic sigmoid ``sigma(z) = 1 / (1 + exp(-z))`` (EECS 182 review, basics 1a).

    Args:
        z: A number, or an array (or nested lists) of numbers.

    Returns:
        ``d sigma / dz`` at ``z``: a float for a number, else a float array of z's shape.
    """
    raise NotImplementedError("Basics-1a: write sigmoid_derivative(z)")


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
    """
    raise NotImplementedError("Basics-1b-e: write mlp_gradients(x, y_true, A, b, C, d)")


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
    """
    raise NotImplementedError("Basics-2: write ridge_solution(A, b, lam)")


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
    """
    raise NotImplementedError("Basics-3: write batchnorm_forward(x, gamma, beta, eps)")


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
    """
    raise NotImplementedError("Basics-4: write mean_only_batchnorm_backward(grad_y, x, gamma, beta)")
