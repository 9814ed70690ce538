"""Tests of the graders' own graph training loops (the probes of torchgrade.probes.graphs) and of the
grader-side collation of molecules (torchgrade.checks.graphs), on tiny inputs.

The loops return a trained model's outputs, never a score, and never receive a held-out label; the
grader scores the outputs (score_node_classifier, score_molecule_run). What they report for a bad
model (a wrong shape, a diverging loss, running out of memory) must be a clear error, never an
exception from deep inside torch, and a malformed run is the submission's failure (ValueError).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fixtures import molecules
from torchgrade.checks.graphs import collate, score_molecule_run, score_node_classifier, without_targets
from torchgrade.probes import graphs


def two_cluster_graph(n: int = 40) -> tuple[torch.Tensor, ...]:
    """Two classes told apart by the sign of the first feature; every other node is a test node."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 4, generator=generator)
    x[:, 0] = torch.where(y == 1, 2.0, -2.0) + 0.1 * x[:, 0]
    adj = torch.eye(n)
    train = torch.arange(n) < n // 2
    return x, adj, y, train, ~train


class LinearNodes(nn.Module):
    def __init__(self, out: int = 2):
        super().__init__()
        self.linear = nn.Linear(4, out)

    def forward(self, x, adj):
        return adj @ self.linear(x)


class DenseOnly(LinearNodes):
    def forward(self, x, adj):
        if adj.layout != torch.strided:
            raise RuntimeError("sparse tensors are not supported here")
        return super().forward(x, adj)


class AllPairs(LinearNodes):
    """Fails as torch's allocator does when an all-pairs attention outgrows the address-space limit
    of a sandbox (raised here rather than provoked: whether a huge allocation fails depends on the
    machine's overcommit policy)."""

    def forward(self, x, adj):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 640000000 bytes. Error code 12 (Cannot allocate memory)"
        )


def train(model: nn.Module, graph: tuple[torch.Tensor, ...], **budget) -> dict:
    """Train on the graph's training labels only, then score the returned logits as the grader does."""
    x, adj, y, train_mask, test_mask = graph
    budget = {"n_classes": 2, "epochs": 30, "lr": 0.1, "weight_decay": 0.0, "seed": 0, **budget}
    index = torch.nonzero(train_mask).flatten()
    run = graphs.train_node_classifier(model, x, adj, index, y[index], **budget)
    return score_node_classifier(run, y.numpy(), train_mask.numpy(), test_mask.numpy())


def test_node_classifier_returns_outputs_not_scores():
    x, adj, y, train_mask, _ = two_cluster_graph()
    index = torch.nonzero(train_mask).flatten()
    torch.manual_seed(0)
    run = graphs.train_node_classifier(
        LinearNodes(), x, adj, index, y[index], n_classes=2, epochs=3, lr=0.1, weight_decay=0.0, seed=0
    )
    assert sorted(run) == ["logits", "losses", "note"] and run["logits"].shape == (40, 2)


def test_scoring_counts_non_finite_outputs_wrong_and_refuses_a_wrong_shape():
    y = np.array([0, 1, 1, 0])
    mask = np.array([True, True, False, False])
    logits = np.array([[1.0, 0.0], [0.0, np.nan], [0.0, 1.0], [0.0, 1.0]])
    scored = score_node_classifier({"logits": torch.tensor(logits), "losses": [1.0]}, y, mask, ~mask)
    assert scored["train_accuracy"] == 0.5 and scored["test_accuracy"] == 0.5 and scored["note"] == ""
    with pytest.raises(ValueError, match=r"logits of shape \[4, 3\]; expected \[4, 2\]"):
        score_node_classifier({"logits": torch.zeros(4, 3), "losses": []}, y, mask, ~mask)
    with pytest.raises(ValueError, match="returned str as its logits"):
        score_node_classifier({"logits": "1.0", "losses": []}, y, mask, ~mask)


def test_node_classifier_learns_a_separable_graph():
    torch.manual_seed(0)
    result = train(LinearNodes(), two_cluster_graph())
    assert result["test_accuracy"] == 1.0 and result["train_accuracy"] == 1.0
    assert len(result["losses"]) == 30 and result["losses"][-1] < result["losses"][0]
    assert result["note"] == ""


def test_node_classifier_falls_back_to_a_dense_adjacency_with_a_note():
    x, adj, y, train_mask, test_mask = two_cluster_graph()
    torch.manual_seed(0)
    result = train(DenseOnly(), (x, adj.to_sparse(), y, train_mask, test_mask))
    assert result["test_accuracy"] == 1.0
    assert "could not take a sparse adjacency" in result["note"]


def test_node_classifier_grades_the_logits_of_a_model_that_returns_a_tuple():
    class WithAttention(LinearNodes):
        def forward(self, x, adj):
            return super().forward(x, adj), adj  # (logits, attention weights), as some GATs do

    torch.manual_seed(0)
    result = train(WithAttention(), two_cluster_graph())
    assert result["test_accuracy"] == 1.0 and result["note"] == ""


def test_node_classifier_reports_wrong_output_shape():
    result = train(LinearNodes(out=3), two_cluster_graph())
    assert result == {"error": "the model returned a torch.float32 tensor of shape [40, 3]; expected [40, 2] logits"}


def test_node_classifier_reports_a_diverging_loss():
    model = LinearNodes()
    with torch.no_grad():
        model.linear.weight.fill_(float("nan"))
    assert train(model, two_cluster_graph())["error"] == "the training loss became nan at epoch 1"


def test_node_classifier_reports_running_out_of_memory():
    error = train(AllPairs(), two_cluster_graph())["error"]
    assert error.startswith("the model ran out of memory on a graph of 40 nodes (RuntimeError: [enforce fail")
    assert "40x40 node pairs" in error


def test_node_classifier_lets_other_errors_through():
    class Broken(LinearNodes):
        def forward(self, x, adj):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        train(Broken(), two_cluster_graph())


def molecule_sets() -> dict[str, dict[str, np.ndarray]]:
    data = molecules.make_dataset(64, 16, 16, seed=0)
    permuted = [molecules.permute_atoms(m, np.random.default_rng(0)) for m in data["test"]]
    return {
        "train": collate(data["train"]),
        "val": collate(data["val"]),
        "test": collate(data["test"]),
        "permuted_test": collate(permuted),
    }


class AtomSum(nn.Module):
    """Sums a linear function of the atoms: invariant to their order."""

    def __init__(self):
        super().__init__()
        self.atom = nn.Linear(5, 1)

    def forward(self, x, edge_index, edge_attr, batch):
        n_molecules = int(batch.max()) + 1
        return torch.zeros(n_molecules).index_add(0, batch, self.atom(x[:, :5]).squeeze(-1))


def test_molecule_batch_renumbers_atoms_per_batch():
    sets = molecule_sets()
    x, edge_index, edge_attr, batch, y = graphs.molecule_batch(graphs._as_tensors(sets["train"]), [3, 1])
    reference = molecules.to_batch([molecules.make_dataset(64, 16, 16, seed=0)["train"][i] for i in (3, 1)])
    assert torch.equal(x, reference.x) and torch.equal(edge_index, reference.edge_index)
    assert torch.equal(edge_attr, reference.edge_attr) and torch.equal(batch, reference.batch)
    assert torch.equal(y, reference.y)


def test_molecule_regressor_trains_on_one_thread_and_restores_the_count():
    sets = molecule_sets()
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    run = graphs.train_molecule_regressor(
        AtomSum(),
        sets["train"],
        *(without_targets(sets[name]) for name in ("val", "test", "permuted_test")),
        epochs=5,
        lr=0.05,
        batch_size=16,
        seed=0,
    )
    assert torch.get_num_threads() == threads
    result = score_molecule_run(run, sets["val"]["y"], sets["test"]["y"])
    assert len(result["val_losses"]) == 5 and result["val_losses"][-1] < result["val_losses"][0]
    assert result["test_loss"] == pytest.approx(result["permuted_test_loss"], abs=1e-5)
    assert result["test_predictions"].shape == (16,)


def test_molecule_scoring_refuses_predictions_of_another_length():
    run = {"val_predictions": [torch.zeros(16)], "test_predictions": torch.zeros(15), "permuted_predictions": None}
    with pytest.raises(ValueError, match=r"test predictions of shape \[15\]; expected \[16\]"):
        score_molecule_run(run, np.zeros(16), np.zeros(16))


def test_molecule_regressor_reports_a_diverging_loss():
    sets = molecule_sets()
    model = AtomSum()
    with torch.no_grad():
        model.atom.bias.fill_(float("inf"))
    result = graphs.train_molecule_regressor(
        model, sets["train"], sets["val"], sets["test"], sets["permuted_test"], epochs=2, lr=0.01, batch_size=16, seed=0
    )
    assert result == {"error": "the training loss became inf in epoch 1"}
