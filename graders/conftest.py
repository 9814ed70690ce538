"""Wires the torchgrade plugin into ``pytest graders`` and provides the graders' shared data.

Data comes from the deterministic generators in ``fixtures/``; nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["torchgrade.plugin"]

# fixtures/ ships with the assignment next to graders/; make it importable however pytest is run.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fixtures import shoes_data  # noqa: E402

#: Seed of the synthetic shoe photos every shoe check uses.
SHOE_SEED = 2021
#: Students per folder of the fixture data set: small enough to load in a second.
N_TRAIN, N_TEST_W, N_TEST_M = 6, 3, 3


@pytest.fixture(scope="session")
def shoe_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shoe data set in the course's layout (``train/``, ``test_w/``, ``test_m/``; some RGBA PNGs)."""
    return shoes_data.write_shoe_dataset(tmp_path_factory.mktemp("shoes"), n_train=N_TRAIN, n_test_w=N_TEST_W,
                                         n_test_m=N_TEST_M, seed=SHOE_SEED)


@pytest.fixture(scope="session")
def shoe_pixels() -> dict[str, np.ndarray]:
    """The exact uint8 pixels of ``shoe_folder`` per folder name, ``[S, 3, 2, 224, 224, 3]``."""
    return {folder: shoes_data.shoe_students(count, seed=SHOE_SEED, kind=kind)
            for kind, folder, count in (("train", "train", N_TRAIN), ("w", "test_w", N_TEST_W),
                                        ("m", "test_m", N_TEST_M))}


@pytest.fixture(scope="session")
def shoe_arrays(shoe_pixels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``shoe_pixels`` as the handout's load step makes them: float32, ``/255 - 0.5``."""
    return {name: (pixels.astype(np.float32) / 255.0 - 0.5) for name, pixels in shoe_pixels.items()}
