"""The graph data of the graph assignment: citation graphs (Cora loader, synthetic CSBM) and molecules.

The Planetoid loader is tested on a tiny fake data set written here in Planetoid's raw format, so
these tests need neither the shared Cora files nor a network; one extra test checks the real Cora
where the shared data folder has it.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from fixtures import citation, molecules

# ----------------------------------------------------------------------------------------------
# Citation graphs


def check_graph(graph: citation.CitationGraph) -> None:
    """Every invariant ``CitationGraph`` documents."""
    n, f = graph.num_nodes, graph.num_features
    assert graph.x.dtype == np.float32 and graph.x.shape == (n, f)
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape[0] == 2
    assert graph.y.dtype == np.int64 and graph.y.shape == (n,)
    assert set(np.unique(graph.y)) == set(range(graph.n_classes))
    for mask in (graph.train_mask, graph.val_mask, graph.test_mask):
        assert mask.dtype == np.bool_ and mask.shape == (n,)
    assert not (graph.train_mask & graph.val_mask).any()
    assert not (graph.train_mask & graph.test_mask).any()
    assert not (graph.val_mask & graph.test_mask).any()

    sums = graph.x.sum(axis=1)
    assert np.allclose(sums[sums != 0], 1.0, atol=1e-5)
    assert (graph.x >= 0).all()

    row, col = graph.edge_index
    assert row.min() >= 0 and max(row.max(), col.max()) < n
    assert (row != col).all(), "self-loops"
    keys = row * n + col
    assert (np.diff(keys) > 0).all(), "edges not sorted by (source, target) or duplicated"
    assert np.array_equal(np.sort(col * n + row), keys), "not symmetric"

    adjacency = graph.adjacency()
    assert adjacency.dtype == np.float32 and adjacency.shape == (n, n)
    assert np.array_equal(adjacency, adjacency.T) and not adjacency.diagonal().any()
    assert adjacency.sum() == graph.edge_index.shape[1]

    plain = graph.as_dict()
    assert set(plain) == {"name", "source", "x", "edge_index", "y", "train_mask", "val_mask", "test_mask", "n_classes"}
    assert all(isinstance(value, str | int | np.ndarray) for value in plain.values())
    assert plain["n_classes"] == graph.n_classes and plain["x"] is graph.x


def test_synthetic_graph_has_the_documented_shape_and_split():
    graph = citation.synthetic_citation()
    check_graph(graph)
    assert graph.name == "synthetic CSBM (500 nodes, seed 0)" and graph.source == "synthetic"
    assert (graph.num_nodes, graph.num_features, graph.n_classes) == (500, 300, 7)
    assert (graph.train_mask.sum(), graph.val_mask.sum(), graph.test_mask.sum()) == (140, 100, 260)
    assert np.array_equal(np.bincount(graph.y[graph.train_mask]), [20] * 7)
    assert np.bincount(graph.y).max() - np.bincount(graph.y).min() <= 1, "classes not balanced"
    degree = np.bincount(graph.edge_index[0], minlength=graph.num_nodes)
    assert degree.min() >= 1, "isolated nodes"
    assert 3.5 <= degree.mean() <= 4.5
    homophily = (graph.y[graph.edge_index[0]] == graph.y[graph.edge_index[1]]).mean()
    assert 0.55 <= homophily <= 0.75
    # Binary bag of words before normalisation: each row's nonzeros are equal.
    for row in graph.x[:20]:
        assert np.allclose(row[row > 0], row[row > 0][0])


def test_synthetic_graph_is_deterministic():
    first, again, other = (
        citation.synthetic_citation(seed=0),
        citation.synthetic_citation(seed=0),
        citation.synthetic_citation(seed=1),
    )
    for key, value in first.as_dict().items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, again.as_dict()[key]), key
    assert not np.array_equal(first.x, other.x)
    assert first.edge_index.shape != other.edge_index.shape or not np.array_equal(first.edge_index, other.edge_index)
    assert other.name == "synthetic CSBM (500 nodes, seed 1)"


def test_synthetic_graph_other_sizes():
    graph = citation.synthetic_citation(n_nodes=260, n_classes=3, n_features=50, seed=4)
    check_graph(graph)
    assert (graph.train_mask.sum(), graph.val_mask.sum(), graph.test_mask.sum()) == (60, 100, 100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_nodes": 200}, "n_nodes must be >= 247 for 7 classes"),
        ({"n_classes": 1}, "n_classes must be >= 2"),
        ({"n_features": 5}, "n_features must be >= n_classes (7)"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_synthetic_graph_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        citation.synthetic_citation(**kwargs)


class FakePlanetoid:
    """A tiny data set in Planetoid's raw format, with the arrays PyG must derive from it.

    Planetoid's layout (see ``torch_geometric/io/planetoid.py``): ``allx``/``ally`` hold the features
    and one-hot labels of nodes ``0 .. len(allx) - 1``, of which the first ``len(y)`` are the training
    nodes (``x``/``y``) and the next 500 the validation nodes; ``tx``/``ty`` hold the test nodes, row
    ``i`` being node ``test.index[i]``; ``graph`` maps a node to its neighbours' ids.
    """

    name = "Fake"
    n_train, n_allx, n_test, n_features, n_classes = 6, 510, 10, 7, 3

    def __init__(self, root: Path):
        rng = np.random.default_rng(0)
        n = self.n_allx + self.n_test
        features = (rng.random((n, self.n_features)) < 0.4).astype(np.float32)
        features[3] = 0.0  # a node without words stays a zero row
        labels = np.arange(n) % self.n_classes
        one_hot = np.eye(self.n_classes, dtype=np.float32)[labels]
        self.test_index = rng.permutation(np.arange(self.n_allx, n))
        edges = {(int(a), int(b)) for a, b in rng.integers(0, n, size=(800, 2))}
        graph = {node: [] for node in range(n)}
        for a, b in edges:
            graph[a].append(b)  # often one direction only: the loader must symmetrise
        graph[5] += [5, 7, 7]  # a self-loop and a duplicate, which the loader must drop
        expected_pairs = {(a, b) for a, b in edges | {(5, 7)} if a != b}
        expected_pairs |= {(b, a) for a, b in expected_pairs}

        raw = root / self.name / "raw"
        raw.mkdir(parents=True)
        prefix = f"ind.{self.name.lower()}"
        parts = {
            "x": scipy.sparse.csr_matrix(features[: self.n_train]),
            "tx": scipy.sparse.csr_matrix(features[self.test_index]),
            "allx": scipy.sparse.csr_matrix(features[: self.n_allx]),
            "y": one_hot[: self.n_train],
            "ty": one_hot[self.test_index],
            "ally": one_hot[: self.n_allx],
            "graph": graph,
        }
        for suffix, value in parts.items():
            (raw / f"{prefix}.{suffix}").write_bytes(pickle.dumps(value, protocol=2))
        (raw / f"{prefix}.test.index").write_text("".join(f"{node}\n" for node in self.test_index))

        sums = features.sum(axis=1, keepdims=True)
        self.x = np.divide(features, sums, out=np.zeros_like(features), where=sums > 0)
        self.y = labels
        self.edge_index = np.array(sorted(expected_pairs), dtype=np.int64).T
        self.train_mask = np.arange(n) < self.n_train
        self.val_mask = (np.arange(n) >= self.n_train) & (np.arange(n) < self.n_train + 500)
        self.test_mask = np.arange(n) >= self.n_allx


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open a network connection fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_planetoid_reads_the_raw_files_offline_and_leaves_them_alone(tmp_path, no_network):
    fake = FakePlanetoid(tmp_path / "data")
    before = _snapshot(tmp_path / "data")
    graph = citation.load_planetoid(tmp_path / "data", fake.name)
    assert _snapshot(tmp_path / "data") == before, "load_planetoid wrote into the source folder"

    check_graph(graph)
    assert graph.name == "Fake" and graph.source == str(tmp_path / "data")
    assert graph.n_classes == fake.n_classes
    np.testing.assert_allclose(graph.x, fake.x, rtol=1e-6)
    np.testing.assert_array_equal(graph.y, fake.y)
    np.testing.assert_array_equal(graph.edge_index, fake.edge_index)
    np.testing.assert_array_equal(graph.train_mask, fake.train_mask)
    np.testing.assert_array_equal(graph.val_mask, fake.val_mask)
    np.testing.assert_array_equal(graph.test_mask, fake.test_mask)
    assert not graph.x[3].any()


def test_load_planetoid_without_a_raw_file_fails_before_any_download(tmp_path, no_network):
    FakePlanetoid(tmp_path)
    (tmp_path / "Fake" / "raw" / "ind.fake.graph").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing Fake/raw/ind\.fake\.graph\."):
        citation.load_planetoid(tmp_path, "Fake")


def test_the_planetoid_loader_never_downloads(tmp_path, no_network):
    # load_planetoid checks the raw files first; should that ever be skipped, PyG's download step is an error.
    planetoid = citation._offline_planetoid_class()
    with pytest.raises(RuntimeError, match="Planetoid tried to download Fake into .*torchgrade loads it offline only"):
        planetoid(str(tmp_path), "Fake")


def test_find_planetoid_root(tmp_path, monkeypatch):
    FakePlanetoid(tmp_path / "data")
    assert citation.find_planetoid_root(tmp_path / "data", "Fake") == tmp_path / "data"
    assert citation.find_planetoid_root(str(tmp_path / "data"), "Fake") == tmp_path / "data"

    # The default folder is searched only without an explicit data_root.
    monkeypatch.setattr(citation, "DEFAULT_DATA_ROOT", tmp_path / "data")
    assert citation.find_planetoid_root(None, "Fake") == tmp_path / "data"
    monkeypatch.setattr(citation, "DEFAULT_DATA_ROOT", tmp_path / "empty")
    assert citation.find_planetoid_root(None, "Fake") is None

    # An explicit data_root without the files is an error naming what is missing, not a fallback.
    (tmp_path / "data" / "Fake" / "raw" / "ind.fake.tx").unlink()
    (tmp_path / "data" / "Fake" / "raw" / "ind.fake.test.index").unlink()
    with pytest.raises(FileNotFoundError) as error:
        citation.find_planetoid_root(tmp_path / "data", "Fake")
    message = str(error.value)
    assert "missing Fake/raw/ind.fake.tx, Fake/raw/ind.fake.test.index." in message
    assert "ind.fake.allx" not in message.split("Expected")[0]
    with pytest.raises(FileNotFoundError, match="has no complete Cora data set"):
        citation.find_planetoid_root(tmp_path / "empty")


def test_citation_graph_falls_back_to_the_synthetic_graph_only_without_data_root(tmp_path, monkeypatch):
    monkeypatch.setattr(citation, "DEFAULT_DATA_ROOT", tmp_path)
    graph = citation.citation_graph()
    assert graph.name == "synthetic CSBM (500 nodes, seed 0)"
    np.testing.assert_array_equal(graph.edge_index, citation.synthetic_citation().edge_index)
    with pytest.raises(FileNotFoundError):
        citation.citation_graph(tmp_path)


@pytest.mark.skipif(citation.find_planetoid_root() is None, reason="no shared Cora files on this machine")
def test_real_cora_when_available(no_network):
    before = _snapshot(citation.DEFAULT_DATA_ROOT)  # read-only by permissions, but not for root
    graph = citation.citation_graph()
    assert _snapshot(citation.DEFAULT_DATA_ROOT) == before, "citation_graph wrote into the shared data folder"
    check_graph(graph)
    assert graph.name == "Cora" and graph.source == str(citation.DEFAULT_DATA_ROOT)
    assert (graph.num_nodes, graph.num_features, graph.n_classes) == (2708, 1433, 7)
    assert (graph.train_mask.sum(), graph.val_mask.sum(), graph.test_mask.sum()) == (140, 500, 1000)
    assert graph.edge_index.shape == (2, 10556)  # 5278 undirected edges


# ----------------------------------------------------------------------------------------------
# Molecules


def bond_triples(molecule: dict) -> Counter:
    """Multiset of (element, element, bond type) over bonds, elements in ``ELEMENTS`` order."""
    element = molecule["x"].argmax(axis=1)
    kind = molecule["edge_attr"].argmax(axis=1)
    row, col = molecule["edge_index"]
    return Counter(
        (min(element[a], element[b]), max(element[a], element[b]), int(k))
        for a, b, k in zip(row, col, kind, strict=True)
        if a < b
    )


def test_molecules_have_the_documented_layout_and_chemistry():
    orders = np.array([molecules.BOND_ORDERS[b] for b in molecules.BOND_TYPES])
    valences = np.array([molecules.VALENCES[e] for e in molecules.ELEMENTS])
    seen_bonds = np.zeros(len(molecules.BOND_TYPES))
    for molecule in molecules.make_molecules(300, seed=3, max_heavy=9):
        x, edge_index, edge_attr, y = molecule["x"], molecule["edge_index"], molecule["edge_attr"], molecule["y"]
        assert set(molecule) == {"x", "edge_index", "edge_attr", "y"}
        n_atoms, n_edges = x.shape[0], edge_index.shape[1]
        assert x.dtype == np.float32 and x.shape == (n_atoms, 5)
        assert edge_index.dtype == np.int64 and edge_index.shape == (2, n_edges) and n_edges % 2 == 0
        assert edge_attr.dtype == np.float32 and edge_attr.shape == (n_edges, 4)
        assert y.dtype == np.float32 and y.shape == (1,)
        assert np.array_equal(x.sum(axis=1), np.ones(n_atoms)) and set(np.unique(x)) <= {0.0, 1.0}
        assert np.array_equal(edge_attr.sum(axis=1), np.ones(n_edges)) and set(np.unique(edge_attr)) <= {0.0, 1.0}
        assert 1 <= x[:, 1:].sum() <= 9 and n_atoms <= 29

        row, col = edge_index
        keys = row * n_atoms + col
        assert (row != col).all() and (np.diff(keys) > 0).all(), "self-loop, duplicate or unsorted edge"
        # Both directions of each bond, with the same bond type.
        reverse = np.searchsorted(keys, col * n_atoms + row)
        assert np.array_equal(keys[reverse], col * n_atoms + row)
        assert np.array_equal(edge_attr[reverse], edge_attr)
        # Every atom's bond orders add up to its valence; hydrogens bond to heavy atoms only.
        used = np.zeros(n_atoms)
        np.add.at(used, row, edge_attr @ orders)
        np.testing.assert_allclose(used, x @ valences)
        is_h = x[:, 0] == 1
        assert not (is_h[row] & is_h[col]).any()
        seen_bonds += edge_attr.sum(axis=0)

        # The target is the documented sum, up to its small noise.
        element = [molecules.ELEMENTS[i] for i in x.argmax(axis=1)]
        expected = sum(molecules.ATOM_ENERGY[e] for e in element)
        for (a, b, k), count in bond_triples(molecule).items():
            expected += (
                count * molecules.BOND_ENERGY[molecules.BOND_TYPES[k], molecules.ELEMENTS[a], molecules.ELEMENTS[b]]
            )
        assert abs(y[0] - expected) < 0.1
    assert (seen_bonds > 0).all(), f"not every bond type occurs: {seen_bonds}"


def test_molecules_are_deterministic_and_extend():
    first, again = molecules.make_molecules(20, seed=0), molecules.make_molecules(30, seed=0)[:20]
    other = molecules.make_molecules(20, seed=1)
    for a, b in zip(first, again, strict=True):
        for key in a:
            assert np.array_equal(a[key], b[key]), key
    assert any(
        a["x"].shape != b["x"].shape or not np.array_equal(a["x"], b["x"]) for a, b in zip(first, other, strict=True)
    )
    heavy = [int(m["x"][:, 1:].sum()) for m in molecules.make_molecules(200, seed=0, min_heavy=3, max_heavy=4)]
    assert set(heavy) == {3, 4}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_molecules": -1, "seed": 0}, "n_molecules must be >= 0"),
        ({"n_molecules": 1, "seed": -1}, "seed must be >= 0"),
        ({"n_molecules": 1, "seed": 0, "min_heavy": 0}, "need 1 <= min_heavy <= max_heavy <= 9"),
        ({"n_molecules": 1, "seed": 0, "max_heavy": 10}, "need 1 <= min_heavy <= max_heavy <= 9"),
    ],
)
def test_make_molecules_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        molecules.make_molecules(**kwargs)


def test_make_dataset_zscores_with_the_training_split():
    data = molecules.make_dataset(200, 30, 40, seed=0)
    assert [len(data[k]) for k in ("train", "val", "test")] == [200, 30, 40]
    assert isinstance(data["mean"], float) and isinstance(data["std"], float) and data["std"] > 0
    train_y = np.array([m["y"][0] for m in data["train"]], dtype=np.float64)
    assert abs(train_y.mean()) < 1e-5 and abs(train_y.std() - 1) < 1e-5
    raw = molecules.make_molecules(270, seed=0)
    scaled = data["train"] + data["val"] + data["test"]
    for r, s in zip(raw, scaled, strict=True):
        assert s["y"].dtype == np.float32 and np.array_equal(s["x"], r["x"])
        np.testing.assert_allclose(s["y"] * data["std"] + data["mean"], r["y"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="need n_train >= 2"):
        molecules.make_dataset(1, 0, 0, seed=0)


def test_permute_atoms_keeps_the_molecule():
    rng = np.random.default_rng(0)
    for molecule in molecules.make_molecules(20, seed=5):
        before = {key: value.copy() for key, value in molecule.items()}
        permuted = molecules.permute_atoms(molecule, rng)
        for key in molecule:
            assert np.array_equal(molecule[key], before[key]), f"permute_atoms modified {key}"
        assert np.array_equal(permuted["y"], molecule["y"])
        assert Counter(map(tuple, permuted["x"])) == Counter(map(tuple, molecule["x"]))
        assert bond_triples(permuted) == bond_triples(molecule)
        assert np.array_equal(permuted["edge_attr"], molecule["edge_attr"])
        assert permuted["edge_index"].dtype == np.int64
    molecule = molecules.make_molecules(1, seed=0, min_heavy=7)[0]
    permuted = molecules.permute_atoms(molecule, np.random.default_rng(1))
    assert not np.array_equal(permuted["x"], molecule["x"])


def test_to_batch_builds_pyg_batches():
    import torch

    mols = molecules.make_molecules(5, seed=0)
    data = molecules.to_data(mols[0])
    assert data.x.dtype == torch.float32 and data.edge_index.dtype == torch.int64
    assert data.edge_attr.dtype == torch.float32 and data.y.shape == (1,)
    batch = molecules.to_batch(mols)
    assert batch.num_graphs == 5
    assert batch.x.shape == (sum(m["x"].shape[0] for m in mols), 5)
    assert batch.edge_index.shape[1] == batch.edge_attr.shape[0] == sum(m["edge_index"].shape[1] for m in mols)
    assert batch.y.shape == (5,)
    np.testing.assert_array_equal(batch.y.numpy(), [m["y"][0] for m in mols])
    assert torch.equal(torch.bincount(batch.batch), torch.tensor([m["x"].shape[0] for m in mols]))
    with pytest.raises(ValueError, match="at least one molecule"):
        molecules.to_batch([])
