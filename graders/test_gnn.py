"""Graders of CSC413 assignment 4, part 3: graph convolutional networks (3.1-3.3) and graph
attention networks (3.4-3.6), on the Cora citation graph.

Expected values come from independent implementations (``_gnn.py`` beside this file), computed in
float64 from the weights read back from the submitted layers, never from a solution. Layers are
compared in eval mode, where dropout is off. Training runs use the grader's own loop with the
handout's hyperparameters and fixed seeds, once per submission; several checks read each run.
"""

from __future__ import annotations

import numpy as np
import pytest
from _gnn import (
    ATTENTION_PARTS,
    CALIBRATION,
    GAT_BUDGET,
    GAT_THRESHOLD,
    GCN_BUDGET,
    GCN_THRESHOLD,
    LAYER_ATOL,
    attention_layer_failures,
    check_any_close,
    check_permutation_equivariant,
    dense_of,
    evaluate,
    gnn_expectations,
    graph_convolution_expectations,
    normalisation_hint,
    normalized,
    random_graph,
    sparse,
    tensor,
    threshold_for,
    train_on,
)

from torchgrade.checks import shapes, training
from torchgrade.errors import CheckFailure
from torchgrade.probes import params

ASSIGNMENT = "csc413-a4"
MANUAL = {
    "3.6": (2, "why GAT is more accurate than GCN on Cora, and why it is slower"),
}


@pytest.mark.points(2, question="3.1")
def test_normalize_adjacency(sub, parts):
    """Normalises the adjacency matrix as D^-1/2 (A + I) D^-1/2, given dense or torch.sparse."""
    graphs_ = [random_graph(n, seed) for n, seed in ((6, 1), (9, 2))]
    for kind, convert in (("dense", tensor), ("torch.sparse", sparse)):
        with parts.part(1, f"D^-1/2 (A + I) D^-1/2 of a {kind} adjacency"):
            for adj in graphs_:
                who = f"normalize_adjacency({kind} A[{len(adj)}, {len(adj)}])"
                got = dense_of(sub.normalize_adjacency(convert(adj)), who)
                try:
                    shapes.check_close(got, normalized(adj), who, atol=1e-6)
                except CheckFailure as failure:
                    raise CheckFailure(f"{failure} {normalisation_hint(got, adj)}") from None


@pytest.mark.points(3, question="3.1")
def test_graph_convolution(sub, parts):
    """Transforms the input features with a linear layer, then sums over neighbouring nodes with adj."""
    n, f_in, f_out = 8, 6, 4
    adj = random_graph(n, 3)
    a_hat = normalized(adj)
    x = np.random.default_rng(4).normal(size=(n, f_in))
    layer = sub.GraphConvolution(f_in, f_out)
    who = f"GraphConvolution({f_in}, {f_out})(x[{n}, {f_in}], adj)"
    with parts.part(1, "equals Â H W + b with the layer's own weights"):
        values = sub.apply(params.parameter_values, layer)
        got = evaluate(layer, tensor(x), tensor(a_hat))
        check_any_close(got, graph_convolution_expectations(values, x, a_hat, f_out, who), who)
    with parts.part(1, "accepts a sparse adjacency (torch.sparse) with the same result"):
        dense_out = shapes.as_array(evaluate(layer, tensor(x), tensor(a_hat)), who)
        shapes.check_close(
            evaluate(layer, tensor(x), sparse(a_hat)),
            dense_out,
            f"{who} with a torch.sparse adj, against the same call with a dense adj",
            atol=LAYER_ATOL,
        )
    with parts.part(1, "permutation-equivariant: renumbering the nodes renumbers the output rows"):
        check_permutation_equivariant(layer, x, a_hat, 5, who)


@pytest.mark.points(3, question="3.2")
def test_gnn(sub, parts):
    """Graph convolution, activation, dropout, then a second graph convolution; returns the logits."""
    n, nfeat, n_hidden, n_classes = 9, 6, 5, 3
    adj = random_graph(n, 6)
    a_hat = normalized(adj)
    x = np.random.default_rng(7).normal(size=(n, nfeat))
    model = sub.GNN(nfeat, n_hidden, n_classes, 0.5)
    who = f"GNN(nfeat={nfeat}, n_hidden={n_hidden}, n_classes={n_classes}, dropout=0.5)(x[{n}, {nfeat}], adj)"
    with parts.part(1, "graph convolution, ReLU, graph convolution (eval mode)"):
        values = sub.apply(params.parameter_values, model)
        check_any_close(
            evaluate(model, tensor(x), tensor(a_hat)), gnn_expectations(values, x, a_hat, n_hidden, n_classes, who), who
        )
    with parts.part(1, "returns logits, not probabilities"):
        out = shapes.check_shape(evaluate(model, tensor(x), tensor(a_hat)), (n, n_classes), who)
        if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5):
            raise CheckFailure(
                f"{who} returned rows that are probabilities (non-negative, summing to 1); return "
                f"the logits: F.cross_entropy applies the softmax itself, and a softmax before it "
                f"flattens the gradients."
            )
    with parts.part(1, "dropout active in training mode, off in eval mode"):
        model.train()
        first, second = (shapes.as_array(model(tensor(x), tensor(a_hat)), who) for _ in range(2))
        if np.allclose(first, second):
            raise CheckFailure(
                f"{who} gave the same output twice in training mode: with dropout=0.5 between the "
                f"layers the two outputs should differ."
            )
        model.eval()
        first, second = (shapes.as_array(model(tensor(x), tensor(a_hat)), who) for _ in range(2))
        if not np.array_equal(first, second):
            raise CheckFailure(
                f"{who} gave two different outputs in eval mode; use nn.Dropout (or "
                f"F.dropout(..., training=self.training)) so that dropout stops in eval mode."
            )


@pytest.mark.points(3, question="3.3")
@pytest.mark.timeout(120)
def test_gcn_accuracy(gcn_run, citation_graph, evidence):
    """The two-layer GNN trained on Cora classifies the test nodes with a calibrated accuracy."""
    evidence.update({k: gcn_run[k] for k in ("graph", "test_accuracy", "train_accuracy", "note")})
    budget = ", ".join(f"{k}={v:g}" for k, v in GCN_BUDGET.items())
    training.check_at_least(
        gcn_run["test_accuracy"],
        threshold_for(GCN_THRESHOLD, citation_graph.name),
        f"GNN trained by the grader on {citation_graph.name} ({budget})",
        "GCN test accuracy",
        CALIBRATION,
    )


@pytest.mark.points(6, question="3.4")
def test_graph_attention_layer(sub, parts):
    """K heads: LeakyReLU(alpha) scores masked by adj, softmax over the neighbours, heads concatenated or averaged."""
    for points, name, check in ATTENTION_PARTS:
        with parts.part(points, name):
            check(sub)


@pytest.mark.points(3, question="3.5")
@pytest.mark.timeout(180)
def test_gat_accuracy(gat_runs, attention_graph, evidence):
    """The GAT trained on Cora classifies the test nodes with a calibrated accuracy."""
    gat, gcn = gat_runs["GAT"], gat_runs["GCN"]
    evidence.update(
        {
            "graph": attention_graph.name,
            "GAT": gat.get("test_accuracy"),
            "GCN on the same graph": gcn.get("test_accuracy", gcn.get("failure")),
            "note": gat["note"],
        }
    )
    if "attention_layer" in gat:
        evidence["attention layer"] = gat["attention_layer"]
    budget = ", ".join(f"{k}={v:g}" for k, v in GAT_BUDGET.items())
    lent = " with the grader's GraphAttentionLayer (see the note)" if "attention_layer" in gat else ""
    training.check_at_least(
        gat["test_accuracy"],
        threshold_for(GAT_THRESHOLD, attention_graph.name),
        f"GAT trained by the grader on {attention_graph.name} ({budget}){lent}",
        "GAT test accuracy",
        CALIBRATION,
    )


# -- fixtures: the grader's training runs, once per submission --------------------------------------
@pytest.fixture(scope="module")
def gcn_run(submission, grade_cache, citation_graph) -> dict:
    """The GNN trained on the citation graph (Cora, or its synthetic stand-in)."""
    return train_on(submission, grade_cache, citation_graph, "GNN", GCN_BUDGET, ("GraphConvolution", "GNN"))


@pytest.fixture(scope="module")
def gat_runs(submission, grade_cache, attention_graph) -> dict:
    """The GAT and, for the comparison, the GCN, trained on the same (affordable) graph. One bug, one
    deduction: where the submitted GraphAttentionLayer fails a part of 3.4, the GAT is trained with
    the grader's layer in its place (``_gnn.train_on``), and the report says so."""
    failures = attention_layer_failures(submission)
    gat = train_on(
        submission, grade_cache, attention_graph, "GAT", GAT_BUDGET, ("GraphAttentionLayer", "GAT"), failures
    )
    if "attention_layer" in gat:
        submission.notes["3.5 GAT"] = gat["attention_layer"]
    try:
        gcn = train_on(submission, grade_cache, attention_graph, "GNN", GCN_BUDGET, ("GraphConvolution", "GNN"))
    except CheckFailure as failure:
        gcn = {"failure": str(failure)}
    return {"GAT": gat, "GCN": gcn}
