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
    CALIBRATION,
    GAT_BUDGET,
    GAT_HEADS,
    GAT_HIDDEN,
    GAT_IN,
    GAT_THRESHOLD,
    GCN_BUDGET,
    GCN_THRESHOLD,
    LAYER_ATOL,
    attention_layer,
    attention_mappings,
    check_any_close,
    check_permutation_equivariant,
    dense_of,
    evaluate,
    gnn_expectations,
    graph_convolution_expectations,
    make_attention_layer,
    normalisation_hint,
    normalized,
    random_graph,
    sparse,
    tensor,
    threshold_for,
    train_on,
    two_components,
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
    n = 9
    mask = random_graph(n, 8) + np.eye(n)
    x = np.random.default_rng(9).normal(size=(n, GAT_IN))
    with parts.part(1, "output shapes: heads concatenated [N, heads * F'] and averaged [N, F']"):
        for concat in (True, False):
            layer, out_features, who = make_attention_layer(sub, concat)
            shapes.check_shape(evaluate(layer, tensor(x), tensor(mask)), (n, out_features), f"{who}(h[{n}, 5], adj)")
    with parts.part(1, "attention masked by the adjacency: nodes outside the neighbourhood have no influence"):
        layer, out_features, who = make_attention_layer(sub, True)
        both = two_components(5, 6, 10)
        features = np.random.default_rng(10).normal(size=(11, GAT_IN))
        changed = features.copy()
        changed[5:] = np.random.default_rng(11).normal(size=(6, GAT_IN)) * 3
        before = shapes.as_array(evaluate(layer, tensor(features), tensor(both)), who)
        after = shapes.as_array(evaluate(layer, tensor(changed), tensor(both)), who)
        if before.shape[0] != 11 or not np.allclose(before[:5], after[:5], atol=LAYER_ATOL):
            raise CheckFailure(
                f"{who}: on a graph of two separate components, changing the features of the second "
                f"changed the output of the first. Hint: set the scores of non-edges to -inf "
                f"(masked_fill where adj == 0) before the softmax."
            )
    with parts.part(1, "attention weights sum to 1 over each node's neighbours"):
        layer, out_features, who = make_attention_layer(sub, True)
        same = np.tile(np.random.default_rng(12).normal(size=(1, GAT_IN)), (n, 1))
        alone = shapes.as_array(evaluate(layer, tensor(same), tensor(np.eye(n))), who)
        together = evaluate(layer, tensor(same), tensor(mask))
        try:
            shapes.check_close(together, alone, f"{who} on nodes with identical features", atol=LAYER_ATOL)
        except CheckFailure as failure:
            raise CheckFailure(
                f"{failure} With identical features every neighbour sends the same message, so a "
                f"weighted average must return it unchanged. Hint: the softmax must run over the "
                f"neighbours j of each node i (dim=1 of an [i, j, head] score tensor)."
            ) from None
    with parts.part(
        2,
        "equals an independent implementation with the layer's own weights (LeakyReLU(alpha) "
        "scores, masked softmax, heads concatenated or averaged)",
    ):
        for concat, alpha in ((True, 0.3), (False, 0.2)):
            layer, out_features, who = make_attention_layer(sub, concat, alpha)
            values = sub.apply(params.parameter_values, layer)
            mappings = attention_mappings(values, GAT_IN, GAT_HEADS, GAT_HIDDEN, who)
            got = evaluate(layer, tensor(x), tensor(mask))
            check_any_close(
                got,
                [attention_layer(x, mask, m, GAT_HEADS, GAT_HIDDEN, concat, alpha) for m in mappings],
                f"{who}(h[{n}, 5], adj)",
            )
    with parts.part(1, "permutation-equivariant: renumbering the nodes renumbers the output rows"):
        layer, out_features, who = make_attention_layer(sub, True)
        check_permutation_equivariant(layer, x, mask, 13, who)


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
    budget = ", ".join(f"{k}={v:g}" for k, v in GAT_BUDGET.items())
    training.check_at_least(
        gat["test_accuracy"],
        threshold_for(GAT_THRESHOLD, attention_graph.name),
        f"GAT trained by the grader on {attention_graph.name} ({budget})",
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
    """The GAT and, for the comparison, the GCN, trained on the same (affordable) graph."""
    gat = train_on(submission, grade_cache, attention_graph, "GAT", GAT_BUDGET, ("GraphAttentionLayer", "GAT"))
    try:
        gcn = train_on(submission, grade_cache, attention_graph, "GNN", GCN_BUDGET, ("GraphConvolution", "GNN"))
    except CheckFailure as failure:
        gcn = {"failure": str(failure)}
    return {"GAT": gat, "GCN": gcn}
