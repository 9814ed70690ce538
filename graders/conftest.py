"""Wires the torchgrade plugin into ``pytest graders`` and provides the graders' shared data.

Data comes from the deterministic generators in ``fixtures/``; nothing is downloaded. Each fixture
imports its generator itself and is built only when a check of its assignment runs: ``pytest graders
--only shoes`` builds no graph or molecule, and a release of one assignment needs only its generators.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from torchgrade.isolation.sandbox import worker_readable_folder

pytest_plugins = ["torchgrade.engine.plugin"]

ROOT = Path(__file__).resolve().parents[1]


def _import_fixtures() -> None:
    """Import fixtures/, which ships next to graders/, by its path. The assignment's folder never goes
    on ``sys.path``: a ``torch.py`` or ``numpy.py`` at the root of a student's repository shadows nothing."""
    if "fixtures" in sys.modules:  # the harness's own tests imported it already
        return
    spec = importlib.util.spec_from_file_location(
        "fixtures", ROOT / "fixtures" / "__init__.py", submodule_search_locations=[str(ROOT / "fixtures")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fixtures"] = module
    spec.loader.exec_module(module)


_import_fixtures()

# -- shoes (test_shoes.py) -------------------------------------------------------------------------
#: Seed of the synthetic shoe photos every shoe check uses.
SHOE_SEED = 2021
#: Students per folder of the fixture data set: small enough to load in a second.
N_TRAIN, N_TEST_W, N_TEST_M = 6, 3, 3


@pytest.fixture(scope="session")
def shoe_folder() -> Path:
    """A shoe data set in the course's layout (``train/``, ``test_w/``, ``test_m/`` of ``*.jpg`` photos; some
    CMYK JPEGs, which ``plt.imread`` returns with a 4th channel), in a folder the sandboxed worker may read:
    ``load_shoes`` opens it in the student's code."""
    from fixtures import shoes_data

    return shoes_data.write_shoe_dataset(
        worker_readable_folder("shoes-"), n_train=N_TRAIN, n_test_w=N_TEST_W, n_test_m=N_TEST_M, seed=SHOE_SEED
    )


@pytest.fixture(scope="session")
def shoe_pixels(shoe_folder: Path) -> dict[str, np.ndarray]:
    """The exact uint8 pixels of ``shoe_folder`` per folder name, ``[S, 3, 2, 224, 224, 3]``: the JPEG files
    decoded with PIL, as ``plt.imread`` decodes them, so the expected values are what a student reads."""
    from fixtures import shoes_data

    return shoes_data.read_shoe_dataset(shoe_folder)


@pytest.fixture(scope="session")
def shoe_arrays(shoe_pixels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``shoe_pixels`` as the handout's load step makes them: float32, ``/255 - 0.5``."""
    return {name: (pixels.astype(np.float32) / 255.0 - 0.5) for name, pixels in shoe_pixels.items()}


# -- graphs (test_gnn.py) -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def citation_graph(data_root: str | None):
    """Cora's public split when the Planetoid files are on disk (``--data-root`` or ../shared/data),
    else (or with ``--data-root synthetic``) the deterministic synthetic citation graph of
    fixtures/citation.py."""
    from fixtures import citation

    if data_root == "synthetic":
        return citation.synthetic_citation()
    return citation.citation_graph(data_root)


@pytest.fixture(scope="session")
def attention_graph(citation_graph):
    """The graph of the GAT check (see ``citation.attention_graph``)."""
    from fixtures import citation

    return citation.attention_graph(citation_graph)


# -- molecules (test_molecules.py) -----------------------------------------------------------------
MOLECULE_SEED = 2024
N_MOLECULES = {"n_train": 1000, "n_val": 200, "n_test": 300}


@pytest.fixture(scope="session")
def molecule_sets() -> dict[str, dict[str, np.ndarray]]:
    """QM9-like molecules, z-scored targets, collated per split; ``permuted_test`` renumbers the atoms
    of every test molecule."""
    return make_molecule_sets()


def make_molecule_sets() -> dict[str, dict[str, np.ndarray]]:
    from fixtures import molecules
    from torchgrade.checks.graphs import collate

    data = molecules.make_dataset(seed=MOLECULE_SEED, **N_MOLECULES)
    rng = np.random.default_rng(MOLECULE_SEED)
    permuted = [molecules.permute_atoms(m, rng) for m in data["test"]]
    return {
        "train": collate(data["train"]),
        "val": collate(data["val"]),
        "test": collate(data["test"]),
        "permuted_test": collate(permuted),
    }
