"""Tests of the graders' own graph training loops (the probes of torchgrade.probes.graphs) and of the
grader-side collation of molecules (torchgrade.checks.graphs), on tiny inputs.

The loops return a trained model's outputs, never a score, and never receive a held-out label; the
grader scores the outputs (score_node_classifier, score_molecule_run). What they report for a bad
model (a wrong shape, a diverging loss, running out of memory) must be a clear error, never an
exception from deep inside torch, and a malformed run is the submission's failure (ValueError).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _toys import graders_module
from torch import nn

from fixtures import citation, molecules
from torchgrade import assignments
from torchgrade.checks.graphs import collate, score_molecule_run, score_node_classifier, without_targets
from torchgrade.engine.cache import GradeCache
from torchgrade.engine.proxy import Submission
from torchgrade.errors import CheckFailure
from torchgrade.importfile import import_file
from torchgrade.probes import graphs

_probes_gnn = graders_module("_probes_gnn")  # CSC413 A4's lent attention layer


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


# -- one bug, one deduction: the grader's attention layer lent to a submission's GAT ----------------
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_GNN = (ROOT / "reference" / "gnn.py").read_text()
#: A layer with other names (num_heads, concat, leaky_relu_negative_slope), a forward (x, adj) and a
#: bug (no mask), inside a correct GAT that builds its layers positionally and by those names.
RENAMED_GNN = """
import torch
from torch import nn


class GraphAttentionLayer(nn.Module):
    def __init__(self, in_dim, out_dim, num_heads, concat=True, dropout=0.6, leaky_relu_negative_slope=0.2):
        super().__init__()
        raise RuntimeError("this layer crashes in its constructor")

    def forward(self, x, adj):
        raise RuntimeError("never reached")


class GAT(nn.Module):
    def __init__(self, nfeat, n_hidden, n_classes, dropout, n_heads=8, alpha=0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.first = GraphAttentionLayer(nfeat, n_hidden, n_heads, True, dropout, leaky_relu_negative_slope=alpha)
        self.second = GraphAttentionLayer(in_dim=n_hidden, out_dim=n_classes, num_heads=1, concat=False)

    def forward(self, x, adj_mat):
        hidden = nn.functional.elu(self.first(self.dropout(x), adj_mat))
        return self.second(adj=adj_mat, x=self.dropout(hidden))
"""


#: The reference with its attention unmasked (fails 3.4), and the same with a GAT that builds its layers
#: through another name for the class, so that the grader cannot stand in for them.
UNMASKED_GNN = REFERENCE_GNN.replace('        e = e.masked_fill(mask == 0, float("-inf"))\n', "")
OTHER_NAME_GNN = UNMASKED_GNN.replace("= GraphAttentionLayer(", "= Layer(") + "\nLayer = GraphAttentionLayer\n"


#: RENAMED_GNN's layer's parameters -> the handout's, as the engine's binding names them.
RENAMED_NAMES = {
    "in_dim": "in_features",
    "out_dim": "out_features",
    "num_heads": "n_heads",
    "concat": "is_concat",
    "dropout": "dropout",
    "leaky_relu_negative_slope": "alpha",
}


def load_module(tmp_path: Path, source: str, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return import_file(path, name)


def test_bind_layer_call_maps_the_submitted_names_to_the_handout_s():
    def layer(self, in_dim, out_dim, num_heads, concat=True, p=0.5, leaky_relu_negative_slope=0.1, bias=True):
        pass

    names = {**RENAMED_NAMES, "p": "dropout"}  # the grader's binding by name (graders/_gnn.py: layer_names)
    call = {"concat": False, "leaky_relu_negative_slope": 0.3}
    values, ignored = _probes_gnn.bind_layer_call(layer, (4, 6, 2), call, names)
    assert values == {
        "in_features": 4,
        "out_features": 6,
        "n_heads": 2,
        "is_concat": False,
        "dropout": 0.5,
        "alpha": 0.3,
    }
    assert ignored == ["bias=True"]


def test_bind_layer_call_takes_unnamed_sizes_in_order_and_handout_defaults():
    def layer(self, d_in, d_out, k):  # names the grader does not know; no is_concat, dropout or alpha
        pass

    values, _ = _probes_gnn.bind_layer_call(layer, (3, 8, 4), {})
    assert values == {
        "in_features": 3,
        "out_features": 8,
        "n_heads": 4,
        "is_concat": True,
        "dropout": 0.6,
        "alpha": 0.2,
    }
    values, _ = _probes_gnn.bind_layer_call(lambda self, a, b, h, average=False: None, (3, 8, 2), {"average": True})
    assert values["is_concat"] is False
    values, _ = _probes_gnn.bind_layer_call(
        lambda self, in_features, out_features, dropout, alpha: None, (3, 8, 0, 1), {}
    )
    assert values == {"in_features": 3, "out_features": 8, "n_heads": 1, "is_concat": True, "dropout": 0, "alpha": 1}
    with pytest.raises(TypeError, match="gives no out_features"):
        _probes_gnn.bind_layer_call(lambda self, a, concat: None, (3, True), {})
    with pytest.raises(TypeError):  # the call does not fit the submitted signature
        _probes_gnn.bind_layer_call(lambda self, a, b, c: None, (3, 8, 2, 1), {})


@pytest.mark.parametrize("concat", [True, False])
def test_correct_attention_layer_equals_the_reference_layer(tmp_path, concat):
    reference = load_module(tmp_path, REFERENCE_GNN, "reference_gnn_layer")
    torch.manual_seed(0)
    expected = reference.GraphAttentionLayer(5, 6 if concat else 3, 2, is_concat=concat, alpha=0.3).eval()
    layer = _probes_gnn.CorrectAttentionLayer(5, 6 if concat else 3, 2, is_concat=concat, alpha=0.3).eval()
    layer.load_state_dict(expected.state_dict(), strict=False)
    layer.W.weight.data.copy_(expected.W.weight)
    layer.attention.weight.data.copy_(expected.attention.weight)
    x, adj = torch.randn(7, 5), (torch.rand(7, 7) < 0.4).float() + torch.eye(7)
    adj = ((adj + adj.T) > 0).float()
    assert torch.allclose(layer(x, adj), expected(x, adj), atol=1e-6)
    assert torch.allclose(layer(adj_mat=adj, h=x), expected(x, adj), atol=1e-6)
    assert torch.allclose(layer(x, adj.to_sparse()), expected(x, adj), atol=1e-6)
    edge_index = (adj - torch.eye(7)).nonzero().T  # PyG's convention: the mask of its edges and self-loops
    assert torch.allclose(layer(x, edge_index), expected(x, adj), atol=1e-6)


def test_lent_layer_builds_a_gat_by_the_submitted_signature_and_puts_the_class_back(tmp_path):
    module = load_module(tmp_path, RENAMED_GNN, "renamed_gnn")
    submitted = module.GraphAttentionLayer
    built = _probes_gnn.build_with_lent_layer(module.GAT, [10, 16, 3, 0.5], {"n_heads": 4, "alpha": 0.1}, RENAMED_NAMES)
    assert module.GraphAttentionLayer is submitted
    assert built["built"] == [
        "GraphAttentionLayer(in_features=10, out_features=16, n_heads=4, is_concat=True, dropout=0.5, alpha=0.1)",
        "GraphAttentionLayer(in_features=16, out_features=3, n_heads=1, is_concat=False, dropout=0.6, alpha=0.2)",
    ]
    model = built["model"].eval()
    adj = torch.eye(6)
    adj[0, 1:] = adj[1:, 0] = 1.0
    assert model(torch.randn(6, 10), adj).shape == (6, 3)  # the second layer is called by keywords (adj=, x=)


def test_lent_layer_says_why_it_cannot_stand_in(tmp_path):
    no_layer = load_module(tmp_path, "from torch import nn\nclass GAT(nn.Module):\n    pass\n", "no_layer_gnn")
    assert "defines no class GraphAttentionLayer" in _probes_gnn.build_with_lent_layer(no_layer.GAT, [], {})["error"]
    other_name = load_module(tmp_path, OTHER_NAME_GNN, "other_name_gnn")
    result = _probes_gnn.build_with_lent_layer(other_name.GAT, [10, 16, 3, 0.5], {"n_heads": 4}, RENAMED_NAMES)
    assert result == {"error": "the GAT built no layer through the name GraphAttentionLayer"}
    assert other_name.GraphAttentionLayer is other_name.Layer
    too_many = load_module(tmp_path, RENAMED_GNN.replace("concat=False)", "concat=False, bias=True)"), "too_many_gnn")
    with pytest.raises(TypeError, match="bias"):  # a call the submitted layer could not take either
        _probes_gnn.build_with_lent_layer(too_many.GAT, [10, 16, 3, 0.5], {}, RENAMED_NAMES)
    assert too_many.GraphAttentionLayer.__module__ == "too_many_gnn"  # put back after the failure


# -- the GAT check (3.5) with a broken layer, graded through the grader's own functions --------------
def graders_gnn():
    """graders/_gnn.py, the GNN graders' helpers."""
    return graders_module("_gnn")


def grade_gat(folder: Path, source: str) -> tuple[list[str], dict]:
    """The parts of 3.4 that ``source`` fails and its GAT's training run, as graders/test_gnn.py gets
    them (in-process, on a small synthetic graph with a small budget)."""
    _gnn = graders_gnn()
    folder.mkdir()
    (folder / "gnn.py").write_text(source)
    submission = Submission(folder, "none", assignments.active().name_to_module())
    try:
        failures = _gnn.attention_layer_failures(submission)
        graph = citation.synthetic_citation(n_nodes=200, n_classes=3, n_features=20, seed=1)
        budget = {**_gnn.GAT_BUDGET, "n_hidden": 8, "n_heads": 2, "epochs": 3}
        names = ("GraphAttentionLayer", "GAT")
        try:
            run = _gnn.train_on(submission, GradeCache(None, folder), graph, "GAT", budget, names, failures)
        except CheckFailure as failure:
            run = {"failure": str(failure)}
        return failures, run
    finally:
        submission.close()


def test_gat_with_a_broken_layer_is_trained_with_the_grader_s_layer(tmp_path):
    reference_failures, reference_run = grade_gat(tmp_path / "reference", REFERENCE_GNN)
    assert reference_failures == [] and "attention_layer" not in reference_run
    failures, run = grade_gat(tmp_path / "unmasked", UNMASKED_GNN)
    assert failures == [
        "attention masked by the adjacency",
        "equals an independent implementation with the layer's own weights (LeakyReLU(alpha) scores, masked "
        "softmax, heads concatenated or averaged)",
    ]
    assert run["attention_layer"].startswith(
        "3.5 graded with the grader's GraphAttentionLayer in place of the submission's"
    )
    assert "n_heads=2, is_concat=True" in run["attention_layer"]
    # The grader's layer is the handout's: built in the same order, it trains exactly as the reference.
    assert run["test_accuracy"] == reference_run["test_accuracy"]


def test_gat_that_cannot_take_the_grader_s_layer_is_graded_with_its_own_and_says_so(tmp_path):
    failures, run = grade_gat(tmp_path / "other_name", OTHER_NAME_GNN)
    assert failures == grade_gat(tmp_path / "unmasked", UNMASKED_GNN)[0]
    assert run["attention_layer"].startswith(
        "3.5 could not be graded independently of 3.4: the submission's GraphAttentionLayer failed 3.4 "
        "(attention masked by the adjacency; equals an independent implementation"
    )
    assert "(the GAT built no layer through the name GraphAttentionLayer)" in run["attention_layer"]
    assert 0 <= run["test_accuracy"] <= 1


def test_gat_with_a_renamed_crashing_layer_is_graded_with_the_grader_s_layer(tmp_path):
    failures, run = grade_gat(tmp_path / "renamed", RENAMED_GNN)
    assert len(failures) == 5
    assert (
        "the submission's GAT built GraphAttentionLayer(in_features=20, out_features=8, n_heads=2"
        in run["attention_layer"]
    )
    # concat=False reached the grader's layer as is_concat by the engine's binding of the layer's names.
    assert "GraphAttentionLayer(in_features=8, out_features=3, n_heads=1, is_concat=False" in run["attention_layer"]
    assert 0 <= run["test_accuracy"] <= 1


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ("leaky_relu_negative_slope=0.2):\n        alpha = leaky_relu_negative_slope", (0.3, "")),
        ("**kwargs):\n        alpha = kwargs.get('alpha', 0.2)", (0.3, "")),
        ("):\n        alpha = 0.1", (0.1, " (the layer takes no alpha; compared with its own slope 0.1)")),
    ],
)
def test_a_layer_without_alpha_is_compared_with_the_slope_it_fixes(tmp_path, parameters, expected):
    _gnn = graders_gnn()
    folder = tmp_path / "sub"
    folder.mkdir()
    source = REFERENCE_GNN.replace(
        "is_concat=True, dropout=0.6, alpha=0.2):", f"is_concat=True, dropout=0.6, {parameters}"
    )
    (folder / "gnn.py").write_text(source)
    submission = Submission(folder, "none", assignments.active().name_to_module())
    try:
        layer = submission.GraphAttentionLayer(5, 6, 2)
        assert _gnn.layer_alpha(submission, layer, 0.3) == expected
    finally:
        submission.close()


def test_a_gat_not_implemented_yet_says_only_that(tmp_path):
    template = (ROOT / "student_template" / "gnn.py").read_text()
    failures, run = grade_gat(tmp_path / "template", template)
    assert len(failures) == 5
    assert run["failure"].startswith("GAT(20, 8, 3, 0.6, n_heads=2) is not implemented yet")
    assert "could not be graded independently" not in run["failure"]


def test_a_layer_without_is_concat_is_graded_on_what_it_does(tmp_path):
    """A layer that always concatenates (no is_concat) keeps 3.4: its averaged case is the one-head
    output layer of its GAT, where concatenating and averaging agree."""
    source = (
        REFERENCE_GNN.replace(
            "def __init__(self, in_features, out_features, n_heads, is_concat=True, dropout=0.6, alpha=0.2):",
            "def __init__(self, in_features, out_features, n_heads, dropout=0.6, alpha=0.2):\n        is_concat = True",
        )
        .replace("is_concat=False, dropout=dropout", "dropout=dropout")
        .replace("is_concat=True, dropout=dropout", "dropout=dropout")
    )
    failures, trained = grade_gat(tmp_path / "no_is_concat", source)
    assert failures == [] and "attention_layer" not in trained
    averaged = graders_gnn().make_attention_layer
    folder = tmp_path / "no_is_concat"
    submission = Submission(folder, "none", assignments.active().name_to_module())
    try:
        _, out_features, who, heads = averaged(submission, False)
    finally:
        submission.close()
    assert (out_features, heads) == (
        3,
        1,
    ) and who == "GraphAttentionLayer(5, 3, n_heads=1 (no is_concat: one head), alpha=0.2)"


def test_the_lent_layer_reads_the_gat_s_calls_by_the_engine_s_binding(tmp_path):
    """The grader's names for the submitted layer's parameters come from the engine's binding by name
    (``Submission.plan_call``), the one binding of the grader: aliases, and nothing for a parameter the
    handout does not have."""
    _gnn = graders_gnn()
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "gnn.py").write_text(RENAMED_GNN)
    submission = Submission(folder, "none", assignments.active().name_to_module())
    try:
        assert _gnn.layer_names(submission) == RENAMED_NAMES
        assert _gnn.submitted_layer_takes(submission, "alpha") and _gnn.submitted_layer_takes(submission, "is_concat")
    finally:
        submission.close()
