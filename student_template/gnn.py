"""Your solution of the graph assignments (CSC413 A4 part 3 and UvA DL1 A2 part 3).

Fill in every function and class below; each one now raises ``NotImplementedError``. Keep the
names and signatures: the graders call them exactly like this (``pytest graders`` shows what
each check expects). You may add helper functions, classes and imports.

* CSC413 A4 part 3: 3.1 ``normalize_adjacency`` and ``GraphConvolution``, 3.2 ``GNN`` (the
  two-layer GCN), 3.4 ``GraphAttentionLayer`` and 3.5 ``GAT`` (the two-layer GAT).
* UvA DL1 A2 part 3: Q3.2 ``circulant_adjacency``; Q3.4a ``circulant_matrix``, ``dft_matrix``
  and ``circulant_eigenvalues`` (check the convolution theorem numerically); Q3.6b
  ``MoleculeMLP`` and Q3.6d ``MoleculeGNN``, which predict the z-scored atomization energy of
  QM9 molecules.

Tensor conventions:
    node features   ``(N, F)`` float
    adjacency       ``(N, N)``, dense or ``torch.sparse``; ``GraphConvolution`` receives the
                    normalised adjacency ``normalize_adjacency(A)``, ``GraphAttentionLayer`` a
                    0/1 mask that already contains the self-loops (``A + I``)
    molecules       PyG batches as plain tensors: ``x (N, >=5)`` with the element one-hot in
                    ``x[:, :5]``, ``edge_index (2, E)``, ``edge_attr (E, 4)`` bond-type one-hot,
                    ``batch (N,)`` molecule of each atom (0 .. B-1); models return ``(B,)``
                    predictions, one per molecule
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (you will need these)
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from torch import nn

N_ELEMENTS = 5  # H, C, N, O, F: the one-hot columns x[:, :5] of QM9
N_BOND_TYPES = 4  # single, double, triple, aromatic


# -- CSC413 3.1-3.3: graph convolution ------------------------------------------------------------
def normalize_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """The GCN propagation matrix: the adjacency with self-loops, normalised symmetrically by the
    node degrees (the ``D~^-1/2 A~ D~^-1/2`` of the GCN paper, with ``A~ = A + I``).

    Args:
        adj: ``(N, N)`` adjacency ``A`` without self-loops (0/1 or weighted), dense or sparse COO.

    Returns:
        ``(N, N)`` float tensor, sparse COO if ``adj`` is sparse, dense otherwise.
    """
    raise NotImplementedError("3.1: add the self-loops and normalise the adjacency by the degrees")


class GraphConvolution(nn.Module):
    """One graph convolution layer (Kipf and Welling, 2017): transform the features of every
    node with a learnable weight, then sum them over each node's neighbours using ``adj``.

    Args:
        in_features: ``F``, features per input node.
        out_features: ``F'``, features per output node.
        bias: whether to add a learnable bias to every output node, after the sum over
            neighbours.

    Shapes:
        input ``(N, F)``, adj ``(N, N)`` normalised, dense or sparse -> ``(N, F')``.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        raise NotImplementedError("3.1: build the weight (and bias) of GraphConvolution")

    def forward(self, input, adj):
        """Return the new node features ``(N, F')``; must work for dense and sparse ``adj``."""
        raise NotImplementedError("3.1: transform the node features and sum them over the neighbours")


class GNN(nn.Module):
    """The two-layer GCN of the handout: graph convolution, ReLU, dropout, graph convolution.

    The last layer has no activation: the model returns logits.

    Args:
        nfeat: input features per node.
        n_hidden: hidden features per node.
        n_classes: classes, the width of the logits.
        dropout: drop probability between the two convolutions (training mode only).

    Shapes:
        x ``(N, nfeat)``, adj ``(N, N)`` normalised -> logits ``(N, n_classes)``.
    """

    def __init__(self, nfeat, n_hidden, n_classes, dropout):
        super().__init__()
        raise NotImplementedError("3.2: build the layers of GNN")

    def forward(self, x, adj):
        """Return the logits ``(N, n_classes)`` of every node."""
        raise NotImplementedError("3.2: compute the logits of GNN")


# -- CSC413 3.4-3.6: graph attention --------------------------------------------------------------
class GraphAttentionLayer(nn.Module):
    """Multi-head graph attention (Velickovic et al., 2018), as the handout sets it up.

    Project the nodes with ``W`` and split the result into ``n_heads`` heads; in every head,
    score each pair of nodes with the attention layer applied to their concatenated projections
    and a LeakyReLU, keep only the pairs that are edges of ``adj_mat``, normalise the scores over
    each node's neighbours with a softmax, apply dropout to them, and let every node take the
    weighted sum of its neighbours' projections. Finally concatenate or average the heads.

    Parameters, as in the handout: ``W``, a bias-free linear map from ``F`` to
    ``n_heads * n_hidden`` features, and ``attention``, a bias-free linear map from
    ``2 * n_hidden`` to 1 that all heads share; ``n_hidden`` is ``out_features // n_heads``
    when concatenating and ``out_features`` when averaging. Cora has 2708 nodes: mind how large
    your intermediate tensors get.

    Args:
        in_features: ``F``, input features per node.
        out_features: ``F'``, output features per node (all heads together when concatenating).
        n_heads: ``K``, attention heads.
        is_concat: concatenate the heads (hidden layers) or average them (the output layer).
        dropout: drop probability of the attention weights (training mode only).
        alpha: negative slope of the LeakyReLU.

    Shapes:
        h ``(N, F)``, adj_mat ``(N, N)`` 0/1 with self-loops -> ``(N, F')``.

    Raises:
        ValueError: If ``is_concat`` and ``out_features`` is not divisible by ``n_heads``.
    """

    def __init__(self, in_features, out_features, n_heads, is_concat=True, dropout=0.6, alpha=0.2):
        super().__init__()
        raise NotImplementedError("3.4: build the projection, attention, activation and dropout layers")

    def forward(self, h, adj_mat):
        """Return the new node features ``(N, F')``."""
        raise NotImplementedError("3.4: attend over each node's neighbours in every head, then merge the heads")


class GAT(nn.Module):
    """Two-layer graph attention network: dropout, a ``GraphAttentionLayer`` with ``n_heads``
    heads concatenated, ELU, dropout, and a ``GraphAttentionLayer`` with one head (averaged)
    that gives the logits.

    Args:
        nfeat: input features per node.
        n_hidden: hidden features per node, all heads together.
        n_classes: classes, the width of the logits.
        dropout: drop probability of the inputs of both layers and of the attention weights.
        n_heads: heads of the first layer.
        alpha: negative slope of the LeakyReLU in the attention scores.

    Shapes:
        x ``(N, nfeat)``, adj_mat ``(N, N)`` 0/1 with self-loops -> logits ``(N, n_classes)``.
    """

    def __init__(self, nfeat, n_hidden, n_classes, dropout, n_heads=8, alpha=0.2):
        super().__init__()
        raise NotImplementedError("3.5: build the layers of GAT")

    def forward(self, x, adj_mat):
        """Return the logits ``(N, n_classes)`` of every node."""
        raise NotImplementedError("3.5: compute the logits of GAT")


# -- UvA Q3.2-3.4: circulant graphs and the convolution theorem ------------------------------------
def circulant_adjacency(n):
    """Adjacency matrix of the circulant graph of Figure 2: ``n`` nodes on a cycle, node ``i``
    linked to nodes ``i - 1`` and ``i + 1`` (mod ``n``).

    Args:
        n: number of nodes, at least 3.

    Returns:
        ``(n, n)`` float64 NumPy 0/1 matrix.

    Raises:
        ValueError: If ``n`` is smaller than 3.
    """
    raise NotImplementedError("Q3.2: build the adjacency matrix of the cycle of n nodes")


def circulant_matrix(theta):
    """The circulant matrix ``C(theta)`` of the handout's eq. (23), for any filter ``theta``.

    ``theta = (w_0, w_1, ..., w_-1)`` lists the weights of the shifts ``0, 1, ..., n - 1``
    (so ``theta[n - 1]`` is ``w_-1``); the first row of ``C(theta)`` is ``theta`` and every
    other row is the row above it shifted circularly one place to the right.

    Args:
        theta: ``(n,)`` filter (array-like).

    Returns:
        ``(n, n)`` NumPy matrix of ``theta``'s dtype.
    """
    raise NotImplementedError("Q3.4a: build the circulant matrix C(theta) of eq. (23)")


def dft_matrix(n):
    """The unitary matrix ``Phi`` of eq. (26), the inverse DFT of eq. (25).

    ``x = Phi @ x_hat`` and ``x_hat = Phi.conj().T @ x``, with the DFT normalised by
    ``1 / sqrt(n)`` as in eq. (25).

    Args:
        n: signal length.

    Returns:
        ``(n, n)`` complex128 NumPy matrix.
    """
    raise NotImplementedError("Q3.4a: build the inverse-DFT matrix Phi of eq. (26)")


def circulant_eigenvalues(theta):
    """Eigenvalues of ``C(theta)`` belonging to its eigenvectors, the columns of ``Phi``.

    Entry ``k`` is the eigenvalue of column ``k`` of ``dft_matrix(n)``, so that
    ``circulant_matrix(theta) @ Phi == Phi @ np.diag(lam)`` and hence
    ``C(theta) x = Phi (lam * x_hat)`` (eq. 24). The handout relates them to the DFT of
    ``theta``; check yours numerically, because the scaling and sign conventions of eqs. (23)
    and (25) matter.

    Args:
        theta: ``(n,)`` real filter (array-like).

    Returns:
        ``(n,)`` complex128 NumPy vector.
    """
    raise NotImplementedError("Q3.4a: compute the eigenvalues of C(theta) for the columns of Phi")


# -- UvA Q3.6: molecules ---------------------------------------------------------------------------
class MoleculeMLP(nn.Module):
    """A multilayer perceptron on molecules written as fixed-size vectors (Q3.6b and c).

    Build one vector per molecule from the element one-hots ``x[:, :5]`` and the bond-type
    one-hots ``edge_attr`` of its atoms ``0 .. max_atoms - 1``, in the order they are numbered,
    and map it to one number.

    Args:
        max_atoms: the most atoms a molecule may have (QM9: 29).
        n_hidden: width of the hidden layers.

    Shapes:
        x ``(N, >=5)``, edge_index ``(2, E)``, edge_attr ``(E, 4)``, batch ``(N,)`` -> ``(B,)``.
    """

    def __init__(self, max_atoms=29, n_hidden=128):
        super().__init__()
        raise NotImplementedError("Q3.6b: build the layers of MoleculeMLP")

    def forward(self, x, edge_index, edge_attr, batch):
        """Return one prediction per molecule, ``(B,)``."""
        raise NotImplementedError("Q3.6b: turn every molecule into a fixed-size vector and predict")


class MoleculeGNN(nn.Module):
    """A graph neural network on molecules (Q3.6d): atoms are nodes, bonds are typed edges.

    Use only the element one-hots ``x[:, :5]`` and the bond-type one-hots ``edge_attr``. The
    handout suggests embedding the atoms with a linear layer, message passing with
    ``RGCNConv`` and/or ``MFConv`` from PyTorch Geometric, then a global pooling over the atoms
    of each molecule and possibly more layers. Renumbering the atoms of a molecule must not
    change its prediction.

    Args:
        n_hidden: width of the node states.
        n_layers: message-passing layers.

    Shapes:
        x ``(N, >=5)``, edge_index ``(2, E)``, edge_attr ``(E, 4)``, batch ``(N,)`` -> ``(B,)``.
    """

    def __init__(self, n_hidden=64, n_layers=3):
        super().__init__()
        raise NotImplementedError("Q3.6d: build the layers of MoleculeGNN")

    def forward(self, x, edge_index, edge_attr, batch):
        """Return one prediction per molecule, ``(B,)``."""
        raise NotImplementedError("Q3.6d: pass messages over the bonds, pool over the atoms and predict")
