"""Reference solutions of the graph assignments.

* CSC413 A4 part 3 (``004_...``): ``normalize_adjacency``, ``GraphConvolution``, ``GNN`` (3.1-3.3),
  ``GraphAttentionLayer`` and ``GAT`` (3.4-3.6).
* UvA DL1 A2 part 3 (``003_...``): the circulant graph and the convolution theorem
  (``circulant_adjacency``, ``circulant_matrix``, ``dft_matrix``, ``circulant_eigenvalues``; Q3.2-3.4)
  and the molecule models ``MoleculeMLP`` and ``MoleculeGNN`` (Q3.6).

Conventions shared with the graders:
    node features   ``(N, F)`` float
    adjacency       ``(N, N)``, dense or ``torch.sparse``; for ``GraphConvolution`` the normalised
                    adjacency ``normalize_adjacency(A)``, for ``GraphAttentionLayer`` a 0/1 mask
                    that already contains the self-loops (``A + I``)
    molecules       PyG batches as plain tensors: ``x (N, >=5)`` with the element one-hot in
                    ``x[:, :5]``, ``edge_index (2, E)``, ``edge_attr (E, 4)`` bond-type one-hot,
                    ``batch (N,)`` molecule of each atom; models return ``(B,)`` predictions
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_ELEMENTS = 5  # H, C, N, O, F: the one-hot columns x[:, :5] of QM9
N_BOND_TYPES = 4  # single, double, triple, aromatic


# -- CSC413 3.1-3.3: graph convolution ------------------------------------------------------------
def normalize_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """The GCN propagation matrix ``D^-1/2 (A + I) D^-1/2``, with ``D`` the degrees of ``A + I``.

    Adding the identity lets each node keep its own features; the symmetric scaling keeps the
    propagation's eigenvalues in [-1, 1], so stacking layers neither explodes nor vanishes.

    Args:
        adj: ``(N, N)`` adjacency ``A`` (0/1 or weighted), dense or sparse COO.

    Returns:
        ``(N, N)`` float tensor, sparse COO if ``adj`` is sparse, dense otherwise.
    """
    dtype = adj.dtype if adj.dtype.is_floating_point else torch.float32
    n = adj.shape[0]
    if adj.layout != torch.strided:
        adj = adj.to_sparse_coo().coalesce().to(dtype)
        loops = torch.arange(n).repeat(2, 1)
        identity = torch.sparse_coo_tensor(loops, torch.ones(n, dtype=dtype), (n, n), check_invariants=True)
        with_loops = (adj + identity).coalesce()
        scale = torch.sparse.sum(with_loops, dim=1).to_dense().pow(-0.5)
        rows, cols = with_loops.indices()
        values = scale[rows] * with_loops.values() * scale[cols]
        return torch.sparse_coo_tensor(with_loops.indices(), values, (n, n), check_invariants=True).coalesce()
    with_loops = adj.to(dtype) + torch.eye(n, dtype=dtype)
    scale = with_loops.sum(dim=1).pow(-0.5)
    return scale[:, None] * with_loops * scale[None, :]


class GraphConvolution(nn.Module):
    """One GCN layer: ``H' = Â H W + b`` (Kipf and Welling, 2017).

    Args:
        in_features: ``F``, features per input node.
        out_features: ``F'``, features per output node.
        bias: whether to add ``b`` (after the aggregation over neighbours).

    Shapes:
        input ``(N, F)``, adj ``(N, N)`` dense or sparse -> ``(N, F')``.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, input, adj):
        """Transform every node, then sum over its (normalised) neighbours."""
        out = adj @ self.linear(input)
        return out + self.bias if self.bias is not None else out


class GNN(nn.Module):
    """The two-layer GCN of the handout: conv, ReLU, dropout, conv; returns logits (no softmax).

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
        self.gc1 = GraphConvolution(nfeat, n_hidden)
        self.gc2 = GraphConvolution(n_hidden, n_classes)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, adj):
        """Logits per node; the loss (cross-entropy) applies the softmax."""
        return self.gc2(self.dropout(self.relu(self.gc1(x, adj))), adj)


# -- CSC413 3.4-3.6: graph attention --------------------------------------------------------------
class GraphAttentionLayer(nn.Module):
    """Multi-head graph attention (Velickovic et al., 2018), as the handout sets it up.

    For head ``k``: ``s = W h`` split into heads, ``e_ij = LeakyReLU_alpha(a . [s_i || s_j])``,
    masked to the adjacency, ``alpha_ij = softmax_j(e_ij)`` over the neighbours ``j`` of ``i``,
    dropout on ``alpha``, and ``h'_i = sum_j alpha_ij s_j``; heads are concatenated or averaged.
    The attention vector ``a`` is shared by the heads, as the handout's ``nn.Linear(2 * n_hidden, 1)``.

    ``a . [s_i || s_j]`` is computed as ``a_left . s_i + a_right . s_j``, an ``(N, N, heads)``
    tensor: the same numbers as concatenating every pair, without the ``(N, N, heads, 2 F')``
    tensor that does not fit in memory for Cora's 2708 nodes.

    Args:
        in_features: ``F``, input features per node.
        out_features: ``F'`` output features per node (all heads together when concatenating).
        n_heads: ``K`` attention heads.
        is_concat: concatenate the heads (hidden layers) or average them (the output layer).
        dropout: drop probability of the attention weights (training mode only).
        alpha: negative slope of the LeakyReLU.

    Shapes:
        h ``(N, F)``, adj_mat ``(N, N)`` 0/1 with self-loops -> ``(N, F')``.
    """

    def __init__(self, in_features, out_features, n_heads, is_concat=True, dropout=0.6, alpha=0.2):
        super().__init__()
        self.is_concat = is_concat
        self.n_heads = n_heads
        if is_concat:
            if out_features % n_heads:
                raise ValueError(f"out_features={out_features} is not divisible by n_heads={n_heads}")
            self.n_hidden = out_features // n_heads
        else:
            self.n_hidden = out_features
        self.W = nn.Linear(in_features, self.n_hidden * n_heads, bias=False)
        self.attention = nn.Linear(2 * self.n_hidden, 1, bias=False)
        self.activation = nn.LeakyReLU(negative_slope=alpha)
        self.dropout_layer = nn.Dropout(dropout)

    def forward(self, h, adj_mat):
        """Attend over each node's neighbours in every head, then concatenate or average the heads."""
        n_nodes = h.shape[0]
        s = self.W(h).view(n_nodes, self.n_heads, self.n_hidden)
        a_left, a_right = self.attention.weight[0, : self.n_hidden], self.attention.weight[0, self.n_hidden :]
        e = self.activation((s @ a_left)[:, None, :] + (s @ a_right)[None, :, :])  # (N, N, heads)
        mask = adj_mat.to_dense() if adj_mat.layout != torch.strided else adj_mat
        mask = mask.reshape(n_nodes, n_nodes, 1)
        e = e.masked_fill(mask == 0, float("-inf"))
        attention = self.dropout_layer(torch.softmax(e, dim=1))
        out = torch.einsum("ijh,jhf->ihf", attention, s)
        return out.reshape(n_nodes, -1) if self.is_concat else out.mean(dim=1)


class GAT(nn.Module):
    """Two-layer GAT: dropout, attention layer (heads concatenated), ELU, dropout, attention
    layer with one head (averaged) giving the logits.

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
        self.dropout = nn.Dropout(dropout)
        self.layer1 = GraphAttentionLayer(nfeat, n_hidden, n_heads, is_concat=True, dropout=dropout, alpha=alpha)
        self.activation = nn.ELU()
        self.output = GraphAttentionLayer(n_hidden, n_classes, 1, is_concat=False, dropout=dropout, alpha=alpha)

    def forward(self, x, adj_mat):
        """Logits per node; the loss (cross-entropy) applies the softmax."""
        x = self.activation(self.layer1(self.dropout(x), adj_mat))
        return self.output(self.dropout(x), adj_mat)


# -- UvA Q3.2-3.4: circulant graphs and the convolution theorem ------------------------------------
def circulant_adjacency(n):
    """Adjacency of the cycle of ``n`` nodes: node ``i`` links to ``i - 1`` and ``i + 1`` (mod n).

    Args:
        n: number of nodes, at least 3 (with fewer, the two neighbours coincide).

    Returns:
        ``(n, n)`` float64 NumPy 0/1 matrix, symmetric, zero diagonal, two ones per row.
    """
    if n < 3:
        raise ValueError(f"a circulant graph needs at least 3 nodes, got n={n}")
    eye = np.eye(n)
    return np.roll(eye, 1, axis=1) + np.roll(eye, -1, axis=1)


def circulant_matrix(theta):
    """``C(theta)`` of the handout's eq. (23): ``C[i, j] = theta[(j - i) mod n]``.

    Row ``i`` holds ``w_0`` on the diagonal, ``w_1`` to the right and ``w_-1 = theta[n - 1]``
    to the left (wrapping around), so ``(C x)_i = sum_k theta_k x_(i + k mod n)``.

    Args:
        theta: ``(n,)`` filter ``(w_0, w_1, ..., w_-1)``.

    Returns:
        ``(n, n)`` NumPy matrix of ``theta``'s dtype.
    """
    theta = np.asarray(theta)
    n = theta.shape[0]
    return theta[(np.arange(n)[None, :] - np.arange(n)[:, None]) % n]


def dft_matrix(n):
    """The inverse-DFT matrix ``Phi`` of eq. (26): ``Phi[u, k] = exp(2 pi i u k / n) / sqrt(n)``.

    ``x = Phi x_hat`` and ``x_hat = Phi^* x``; ``Phi`` is unitary.

    Returns:
        ``(n, n)`` complex128 NumPy matrix.
    """
    u = np.arange(n)
    return np.exp(2j * np.pi * np.outer(u, u) / n) / math.sqrt(n)


def circulant_eigenvalues(theta):
    """Eigenvalues of ``C(theta)`` for its eigenvectors, the columns of ``Phi``: ``C Phi = Phi diag(lam)``.

    ``lam_k = sum_m theta_m exp(2 pi i k m / n) = sqrt(n) * conj(theta_hat_k)`` for real ``theta``:
    the DFT of the filter, up to the unitary DFT's ``sqrt(n)`` and the conjugate that comes from
    eq. (23) shifting ``x`` forward. Hence the convolution theorem ``C(theta) x = Phi (lam * x_hat)``.

    Returns:
        ``(n,)`` complex128 NumPy vector.
    """
    theta = np.asarray(theta, dtype=np.complex128)
    return np.fft.ifft(theta) * theta.shape[0]


# -- UvA Q3.6: molecules ---------------------------------------------------------------------------
class MoleculeMLP(nn.Module):
    """An MLP on a molecule written as fixed-size arrays: the element one-hots of atoms
    ``0..max_atoms-1`` and their bond-type adjacency, zero-padded and flattened.

    The input depends on how the atoms are numbered, so its predictions change when the same
    molecule is numbered differently: what the handout's Q3.6c shows.

    Args:
        max_atoms: the most atoms a molecule may have (QM9: 29).
        n_hidden: width of the two hidden layers.

    Shapes:
        x ``(N, >=5)``, edge_index ``(2, E)``, edge_attr ``(E, 4)``, batch ``(N,)`` -> ``(B,)``.
    """

    def __init__(self, max_atoms=29, n_hidden=128):
        super().__init__()
        self.max_atoms = max_atoms
        n_inputs = max_atoms * N_ELEMENTS + max_atoms * max_atoms * N_BOND_TYPES
        self.layers = nn.Sequential(nn.Linear(n_inputs, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_hidden),
                                    nn.ReLU(), nn.Linear(n_hidden, 1))

    def forward(self, x, edge_index, edge_attr, batch):
        """Predict one value per molecule from its padded atom and bond arrays."""
        from torch_geometric.utils import to_dense_adj, to_dense_batch

        n_molecules = int(batch.max()) + 1 if batch.numel() else 0
        atoms, _ = to_dense_batch(x[:, :N_ELEMENTS], batch, max_num_nodes=self.max_atoms, batch_size=n_molecules)
        bonds = to_dense_adj(edge_index, batch, edge_attr[:, :N_BOND_TYPES], max_num_nodes=self.max_atoms,
                             batch_size=n_molecules)
        features = torch.cat([atoms.flatten(1), bonds.flatten(1)], dim=1)
        return self.layers(features).squeeze(-1)


class MoleculeGNN(nn.Module):
    """A relational GCN on the molecule graph, summed over atoms, then an MLP.

    Element one-hots are embedded by a linear layer; each ``RGCNConv`` layer has one weight per
    bond type (the handout's suggestion); the readout sums over atoms because the target is
    additive over atoms and bonds (a mean would lose the molecule's size). Numbering the atoms
    differently permutes the node states and leaves the sum, hence the prediction, unchanged.

    Args:
        n_hidden: width of the node states and of the head.
        n_layers: message-passing layers.

    Shapes:
        x ``(N, >=5)``, edge_index ``(2, E)``, edge_attr ``(E, 4)``, batch ``(N,)`` -> ``(B,)``.
    """

    def __init__(self, n_hidden=64, n_layers=3):
        super().__init__()
        from torch_geometric.nn import RGCNConv

        self.embed = nn.Linear(N_ELEMENTS, n_hidden)
        self.convs = nn.ModuleList(RGCNConv(n_hidden, n_hidden, num_relations=N_BOND_TYPES) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 1))

    def forward(self, x, edge_index, edge_attr, batch):
        """Predict one value per molecule by message passing and a sum over its atoms."""
        from torch_geometric.nn import global_add_pool

        h = self.embed(x[:, :N_ELEMENTS])
        bond_type = edge_attr[:, :N_BOND_TYPES].argmax(dim=1)
        for conv in self.convs:
            h = F.relu(conv(h, edge_index, bond_type))
        n_molecules = int(batch.max()) + 1 if batch.numel() else 0
        return self.head(global_add_pool(h, batch, size=n_molecules)).squeeze(-1)
