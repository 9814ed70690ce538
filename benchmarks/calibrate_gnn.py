"""Calibrate the training-based thresholds of graders/test_gnn.py and graders/test_molecules.py (kept
in graders/_gnn.py and graders/_molecules.py): run the grader's own training loops
(torchgrade.probes.graphs) with the graders' budgets on a submission (the reference by
default) over many seeds, and print min / mean / max of what each check measures.

    python benchmarks/calibrate_gnn.py --runs gcn gat mlp molgnn --seeds 20
    python benchmarks/calibrate_gnn.py --submission /tmp/samples/gat_unmasked --runs gat --seeds 5

``--graph synthetic`` ignores the Planetoid files even where they are on disk. Each seed replaces
the graders' fixed seed (model initialisation, dropout, shuffling); the data stay the graders'.
Runs one thread per process: start two processes for two cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

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
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--graph", choices=["auto", "synthetic"], default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gnn = import_file(args.submission / "gnn.py", "calibrated_gnn")
    graph = citation.synthetic_citation() if args.graph == "synthetic" else citation.citation_graph()
    small = citation.attention_graph(graph)
    sets = conftest.make_molecule_sets() if "mlp" in args.runs or "molgnn" in args.runs else None
    print(f"submission {args.submission}; graph {graph.name}; attention graph {small.name}", flush=True)
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
