"""Calibrate the training-based thresholds of graders/test_gnn.py and graders/test_molecules.py (kept
in graders/_gnn.py and graders/_molecules.py): run the grader's own training loops
(torchgrade.probes.graphs) with the graders' budgets on a submission (the reference by
default) over many seeds, and print min / mean / max of what each check measures.

    python benchmarks/calibrate_gnn.py --runs gcn gat mlp molgnn --seeds 20
    python benchmarks/calibrate_gnn.py --submission /tmp/samples/gat_unmasked --runs gat --seeds 5
    python benchmarks/calibrate_gnn.py --variant kipf_gcn per_head_gat mfconv wide_mlp --seeds 5

The thresholds must hold for correct models other than the reference's: ``--variant`` replaces one
class of the submission's module with a correct one written another way (:data:`VARIANTS`: pygcn's
layer, one attention vector per head, the handout's other suggested convolution, another MLP) and
runs the model it belongs to.

``--graph synthetic`` ignores the Planetoid files even where they are on disk. Each seed replaces
the graders' fixed seed (model initialisation, dropout, shuffling); the data stay the graders'.
Runs one thread per process: start two processes for two cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graders"))

import _gnn  # noqa: E402
import _molecules  # noqa: E402
import conftest  # noqa: E402  (the graders' data fixtures, called as plain functions)

from fixtures import citation  # noqa: E402
from torchgrade.checks import graphs as checks_graphs  # noqa: E402
from torchgrade.importfile import import_file  # noqa: E402
from torchgrade.probes import graphs  # noqa: E402


# -- correct variants: one class of the module replaced (the models read it as a global) -------------
class KipfConvolution(nn.Module):
    """pygcn's layer (Kipf's own code): ``adj @ (x @ W) + b`` with W stored (in, out) and both drawn
    uniformly in +-1/sqrt(out)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        stdv = 1.0 / math.sqrt(out_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-stdv, stdv))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-stdv, stdv)) if bias else None

    def forward(self, input, adj):
        out = adj @ (input @ self.weight)
        return out + self.bias if self.bias is not None else out


class PerHeadAttention(nn.Module):
    """A graph attention layer with one attention vector per head (the GAT paper's, PyG's GATConv)
    instead of the handout's shared ``nn.Linear(2F', 1)``; Xavier-initialised parameters."""

    def __init__(self, in_features, out_features, n_heads, is_concat=True, dropout=0.6, alpha=0.2):
        super().__init__()
        self.n_heads, self.is_concat = n_heads, is_concat
        self.n_hidden = out_features // n_heads if is_concat else out_features
        self.W = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_features, n_heads * self.n_hidden)))
        self.a = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_heads, 2 * self.n_hidden)))
        self.leaky = nn.LeakyReLU(alpha)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, adj_mat):
        n = h.shape[0]
        s = (h @ self.W).view(n, self.n_heads, self.n_hidden)
        left = (s * self.a[:, : self.n_hidden]).sum(-1)
        right = (s * self.a[:, self.n_hidden :]).sum(-1)
        e = self.leaky(left[:, None, :] + right[None, :, :]).masked_fill(adj_mat[:, :, None] == 0, float("-inf"))
        out = torch.einsum("ijh,jhf->ihf", self.drop(torch.softmax(e, dim=1)), s)
        return out.reshape(n, -1) if self.is_concat else out.mean(dim=1)


class MFConvMoleculeGNN(nn.Module):
    """The handout's other suggested convolution: MFConv (degree-specific weights, no bond types),
    three layers, summed over the atoms, an MLP head."""

    def __init__(self, n_hidden=64, n_layers=3):
        super().__init__()
        from torch_geometric.nn import MFConv

        self.embed = nn.Linear(5, n_hidden)
        self.convs = nn.ModuleList(MFConv(n_hidden, n_hidden) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 1))

    def forward(self, x, edge_index, edge_attr, batch):
        from torch_geometric.nn import global_add_pool

        h = self.embed(x[:, :5])
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index))
        return self.head(global_add_pool(h, batch, size=int(batch.max()) + 1)).squeeze(-1)


#: variant -> (the run it belongs to, the module attribute it replaces, its replacement).
VARIANTS = {
    "kipf_gcn": ("gcn", "GraphConvolution", KipfConvolution),
    "per_head_gat": ("gat", "GraphAttentionLayer", PerHeadAttention),
    "mfconv": ("molgnn", "MoleculeGNN", MFConvMoleculeGNN),
}


def wide_mlp(module):
    """MoleculeMLP with 256 hidden units instead of 128."""
    original = module.MoleculeMLP
    return lambda *args, **kwargs: original(*args, **{"n_hidden": 256, **kwargs})


def node_run(gnn, graph, model_name: str, seed: int) -> dict:
    budget = _gnn.GCN_BUDGET if model_name == "GNN" else _gnn.GAT_BUDGET
    torch.manual_seed(seed)
    model = _gnn.node_classifier(gnn, graph, model_name, budget)
    run = graphs.train_node_classifier(
        model,
        *_gnn.node_inputs(graph, normalise=model_name == "GNN"),
        n_classes=graph.n_classes,
        epochs=budget["epochs"],
        lr=budget["lr"],
        weight_decay=budget["weight_decay"],
        seed=seed,
    )
    return checks_graphs.score_node_classifier(run, graph.y, graph.train_mask, graph.test_mask)


def molecule_run(gnn, sets: dict, model_name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = getattr(gnn, model_name)()
    result = _molecules.score(
        graphs.train_molecule_regressor(model, *_molecules.worker_sets(sets), seed=seed, **_molecules.MOLECULE_BUDGET),
        sets,
    )
    return {
        "test_loss": result["test_loss"],
        "permutation_change": _molecules.permutation_change(result["test_predictions"], result["permuted_predictions"]),
    }


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: min {min(values):.4f}  mean {statistics.mean(values):.4f}  max {max(values):.4f}  (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submission", type=Path, default=ROOT / "reference")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["gcn", "gat", "mlp", "molgnn"],
        choices=["gcn", "gat", "gcn-small", "mlp", "molgnn"],
    )
    parser.add_argument("--variant", nargs="+", choices=[*VARIANTS, "wide_mlp"], default=[])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--graph", choices=["auto", "synthetic"], default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gnn = import_file(args.submission / "gnn.py", "calibrated_gnn")
    if args.variant:  # each variant replaces one class and runs only the model it belongs to
        args.runs = []
    for name in args.variant:
        run, attribute, replacement = VARIANTS.get(name) or ("mlp", "MoleculeMLP", wide_mlp(gnn))
        setattr(gnn, attribute, replacement)
        args.runs.append(run)
    graph = citation.synthetic_citation() if args.graph == "synthetic" else citation.citation_graph()
    small = citation.attention_graph(graph)
    sets = conftest.make_molecule_sets() if "mlp" in args.runs or "molgnn" in args.runs else None
    print(
        f"submission {args.submission} {' '.join(args.variant)}; graph {graph.name}; attention graph {small.name}",
        flush=True,
    )
    for run in args.runs:
        values: dict[str, list[float]] = {}
        started = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if run in ("gcn", "gat", "gcn-small"):
                result = node_run(gnn, graph if run == "gcn" else small, "GAT" if run == "gat" else "GNN", seed)
                result = {"test_accuracy": result.get("test_accuracy", float("nan"))}
            else:
                result = molecule_run(gnn, sets, "MoleculeMLP" if run == "mlp" else "MoleculeGNN", seed)
            for key, value in result.items():
                values.setdefault(key, []).append(value)
            print(f"  {run} seed {seed}: {result}", flush=True)
        elapsed = (time.perf_counter() - started) / args.seeds
        for key, series in values.items():
            print(f"{run} {summary(key, series)}; {elapsed:.1f} s per run", flush=True)


if __name__ == "__main__":
    main()
