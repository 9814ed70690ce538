"""Helpers of ``test_molecules.py`` (UvA DL1 A2, Q3.6): the grader's training runs of the submitted
``MoleculeMLP`` and ``MoleculeGNN`` on QM9-like molecules, their calibrated thresholds, and the
measures the checks read (the test loss; how far predictions move when the atoms are renumbered).
"""

from __future__ import annotations

import numpy as np

from torchgrade.checks.graphs import score_molecule_run, without_targets
from torchgrade.errors import CheckFailure
from torchgrade.probes import graphs as graph_probes

MOLECULE_BUDGET = {"epochs": 60, "lr": 3e-3, "batch_size": 32}
MOLECULE_TRAIN_SEED = 36
# The grader's loop anneals the learning rate to 0 (cosine) over the epochs, so the final losses
# are settled rather than one noisy epoch's. One run: ~12 s on one thread.
# The reference solution over seeds 0-19, test MSE on the z-scored target:
# * MoleculeMLP: min 0.393, mean 0.415, max 0.437 -> at most 0.55 (a constant prediction: ~1.0).
#   Renumbering the atoms moves its predictions by 1.51-2.33 (max over the test set). A correct
#   variant (the GNN calibration script, --variant wide_mlp: 256 hidden units), seeds 0-1: 0.415-0.423.
# * MoleculeGNN: min 0.0025, mean 0.0057, max 0.0113. The handout's other suggested convolution,
#   MFConv (degree-specific weights, no bond types; --variant mfconv, sum readout), seeds 0-19: min
#   0.0165, mean 0.0258, max 0.0357 (0.025, the threshold calibrated on the reference alone, failed
#   10 of them). Mean pooling where the target is additive (5 seeds) stays at 0.053-0.063; an MLP
#   posing as a GNN (an MLP on the atoms sorted by element) stays near the MLP's 0.42 -> at most
#   0.043, about the geometric middle of the correct variants' max (0.0357, x1.2 under it) and the
#   mean readout's min (0.053, /1.23 above it). (0.04, set on 3 MFConv seeds, left a margin of x1.12.)
MLP_THRESHOLD = 0.55
GNN_THRESHOLD = 0.043
MOLECULE_CALIBRATION = (
    "the largest loss of correct models (the reference and an MFConv GNN, 20 seeds each) plus a margin "
    "(numbers in graders/_molecules.py)"
)
INVARIANCE_ATOL = 1e-4  # float32 sums in another order, on z-scored targets of unit variance


def permutation_change(predictions, permuted_predictions) -> float:
    """The largest change of a prediction when a test molecule's atoms are renumbered."""
    return float(np.max(np.abs(np.asarray(predictions) - np.asarray(permuted_predictions))))


def worker_sets(molecule_sets: dict) -> tuple[dict, ...]:
    """The four sets the training probe gets: the training set with its targets, the others without."""
    return (
        molecule_sets["train"],
        *(without_targets(molecule_sets[name]) for name in ("val", "test", "permuted_test")),
    )


def score(result: dict, molecule_sets: dict) -> dict:
    """The losses of a run's predictions against the held-out targets (see ``score_molecule_run``)."""
    try:
        return score_molecule_run(result, molecule_sets["val"]["y"], molecule_sets["test"]["y"])
    except ValueError as error:
        return {"error": str(error)}


def train_molecules(submission, grade_cache, molecule_sets, model_name: str) -> dict:
    """Train the submitted ``model_name`` with the grader's loop, and score its predictions here
    against the validation and test targets, which never reach the worker; cached per graded code."""

    def run() -> dict:
        submission.seed(MOLECULE_TRAIN_SEED)
        submission.set_cpu_budget(55)
        try:
            model = submission.lookup(model_name)()
            result = submission.apply(
                graph_probes.train_molecule_regressor,
                model,
                *worker_sets(molecule_sets),
                seed=MOLECULE_TRAIN_SEED,
                **MOLECULE_BUDGET,
            )
        finally:
            submission.set_cpu_budget(None)
        result = score(result, molecule_sets)
        if "error" in result:
            raise CheckFailure(f"training {model_name}(): {result['error']}.")
        result["permutation_change"] = permutation_change(
            result.pop("test_predictions"), result.pop("permuted_predictions")
        )
        return result

    # Either model may build on the other (a GNN reusing the MLP's layers): keep both in the key.
    ignore = tuple(
        name
        for name, module in submission.interface.items()
        if module == "gnn" and name not in ("MoleculeMLP", "MoleculeGNN")
    )
    return grade_cache.compute(
        f"molecules-{model_name}", ("gnn",), {**MOLECULE_BUDGET, "seed": MOLECULE_TRAIN_SEED}, run, ignore=ignore
    )


def molecule_evidence(run: dict) -> dict:
    """What the report shows of a run."""
    return {k: run[k] for k in ("test_loss", "permuted_test_loss", "permutation_change", "val_losses")}


def check_loss(run: dict, name: str, threshold: float, hint: str = "") -> None:
    """Fail unless the run's test loss is at most ``threshold``."""
    loss = run["test_loss"]
    if not loss <= threshold:
        budget = ", ".join(f"{k}={v:g}" for k, v in MOLECULE_BUDGET.items())
        raise CheckFailure(
            f"{name}'s test loss (MSE on the z-scored target) was {loss:.4f}; at most {threshold:.4f} "
            f"is needed. Run: {name}() trained by the grader ({budget}, Adam, learning rate "
            f"annealed to 0 by a cosine). Threshold: {MOLECULE_CALIBRATION}.{hint}"
        )
