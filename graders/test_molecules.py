"""Graders of UvA Deep Learning 1, assignment 2, part 3.4 (Q3.6): an MLP and a GNN that predict the
z-scored atomization energy U0 of molecules from their atoms and bonds.

The grader trains the submitted ``MoleculeMLP()`` and ``MoleculeGNN()`` itself, with fixed seeds,
on QM9-like molecules (one-hot elements ``x[:, :5]``, one-hot bonds ``edge_attr``), once per
submission; several checks read each run. Thresholds and their calibration are in
``_molecules.py`` beside this file.
"""

from __future__ import annotations

import pytest
from _molecules import GNN_THRESHOLD, INVARIANCE_ATOL, MLP_THRESHOLD, check_loss, molecule_evidence, train_molecules

from torchgrade.errors import CheckFailure

ASSIGNMENT = "uva-a2"
MANUAL = {
    "Q3.6a": (2, "why a naive MLP on QM9 is a problem, and the fix"),
}


@pytest.mark.points(7, question="Q3.6b")
@pytest.mark.timeout(120)
def test_molecule_mlp(mlp_run, evidence):
    """An MLP on the one-hot atoms and bonds predicts the z-scored U0 with a calibrated test loss."""
    evidence.update(molecule_evidence(mlp_run))
    check_loss(mlp_run, "MoleculeMLP", MLP_THRESHOLD)


@pytest.mark.points(3, question="Q3.6c")
@pytest.mark.timeout(120)
def test_mlp_depends_on_atom_order(mlp_run, evidence):
    """The MLP's predictions change when the test set's atomic indices are permuted."""
    evidence.update(molecule_evidence(mlp_run))
    if mlp_run["permutation_change"] < 1e-3:
        raise CheckFailure(
            f"MoleculeMLP's predictions moved by at most {mlp_run['permutation_change']:.2g} when "
            f"the atoms of the test molecules were renumbered; an MLP on the padded atom and bond "
            f"arrays depends on the numbering. Is it an MLP on x[:, :5] and edge_attr?"
        )


@pytest.mark.points(8, question="Q3.6d")
@pytest.mark.timeout(120)
def test_molecule_gnn(molecule_gnn_run, parts, evidence):
    """A GNN predicts the z-scored U0 with a low test loss, the same for permuted atomic indices."""
    evidence.update(molecule_evidence(molecule_gnn_run))
    with parts.part(5, "test loss below the calibrated threshold"):
        check_loss(
            molecule_gnn_run,
            "MoleculeGNN",
            GNN_THRESHOLD,
            hint=" The target adds up over atoms and bonds: does the readout keep the molecule's size?",
        )
    with parts.part(3, "predictions invariant to renumbering the atoms"):
        change = molecule_gnn_run["permutation_change"]
        if change > INVARIANCE_ATOL:
            raise CheckFailure(
                f"MoleculeGNN's predictions moved by up to {change:.3g} when the atoms of the test "
                f"molecules were renumbered (tolerance {INVARIANCE_ATOL:g}); message passing with a "
                f"sum (or mean, max) over atoms does not depend on the numbering."
            )


# -- fixtures: the grader's training runs, once per submission --------------------------------------
@pytest.fixture(scope="module")
def mlp_run(submission, grade_cache, molecule_sets) -> dict:
    """The submitted MoleculeMLP trained by the grader."""
    return train_molecules(submission, grade_cache, molecule_sets, "MoleculeMLP")


@pytest.fixture(scope="module")
def molecule_gnn_run(submission, grade_cache, molecule_sets) -> dict:
    """The submitted MoleculeGNN trained by the grader."""
    return train_molecules(submission, grade_cache, molecule_sets, "MoleculeGNN")
