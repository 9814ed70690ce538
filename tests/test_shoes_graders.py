"""Tests of the shoe graders' helpers (graders/_shoes.py, graders/_answers.py) and the shoe fixture data
(fixtures/shoes_data.py), without a grading run: binding calls by the submission's names, the channel
order CNNChannel's first convolution may see, the pair properties Q4b checks before lending the grader's
pair builders, the receptive fields of the handout's two downsampling designs, and JPEG photos read as
the handout reads them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import shoes_data
from torchgrade.errors import SignatureMismatch
from torchgrade.importfile import import_file
from torchgrade.probes import params
from torchgrade.probes import training as training_probes
from torchgrade.probes.receptive_field import downsampling_receptive_fields

ROOT = Path(__file__).resolve().parents[1]
ref = import_file(ROOT / "reference/shoes.py", "_torchgrade_reference_shoes_h3")


def graders_module(name: str):
    sys.path.insert(0, str(ROOT / "graders"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "graders"))


_shoes = graders_module("_shoes")
_answers = graders_module("_answers")


# -- binding by the submission's names --------------------------------------------------------------
def signature(fn) -> list[dict]:
    return params.call_signature(fn)


def test_bind_uses_the_names_of_the_signature_and_drops_what_it_lacks():
    def train_model(net, train, valid, bs=32, lr=0.001, num_epochs=30, path=None, plot=False): ...

    values = {
        "model": ("M", "model"),
        "train": ("T", "train_data"),
        "valid": ("V", "valid_data"),
        "batch_size": (6, "6"),
        "learning_rate": (0.01, "0.01"),
        "weight_decay": (0.0, "0"),
        "epochs": (3, "3"),
        "checkpoint": ("p/epoch-{}", "'p/epoch-{}'"),
    }
    binding = _shoes.bind("train_model", signature(train_model), values)
    assert binding.args == ["M", "T", "V"]
    assert binding.kwargs == {"bs": 6, "lr": 0.01, "num_epochs": 3, "path": "p/epoch-{}"}
    assert not binding.has("weight_decay") and binding.has("checkpoint")
    assert binding.label == "train_model(model, train_data, valid_data, bs=6, lr=0.01, num_epochs=3, path='p/epoch-{}')"


def test_bind_a_constructor_without_n_or_kernel_size():
    class CNN(torch.nn.Module):
        def __init__(self): ...

    class CNNChannel(torch.nn.Module):
        def __init__(self, n=4, dropout=0.5): ...

    values = {"n": (4, "4"), "kernel_size": (3, "3")}
    assert _shoes.bind("CNN", signature(CNN), values).label == "CNN()"
    channel = _shoes.bind("CNNChannel", signature(CNNChannel), values)
    assert channel.label == "CNNChannel(n=4)" and channel.has("n") and not channel.has("kernel_size")


def test_bind_refuses_a_required_parameter_the_handout_does_not_give():
    def train_model(model, train_data, valid_data, optimizer): ...

    with pytest.raises(SignatureMismatch, match="requires optimizer"):
        _shoes.bind(
            "train_model", signature(train_model), {"model": (1, "model"), "train": (2, "t"), "valid": (3, "v")}
        )


def test_training_budget_in_epochs_where_the_loop_takes_no_iteration_count():
    class Sub:  # what training_call needs of the proxy: a signature and the name
        def __init__(self, fn):
            self.fn = fn

        def apply(self, probe, target):
            return probe(target)

        def lookup(self, name):
            return self.fn

    def by_epochs(model, train_data, valid_data, batch_size=64, learning_rate=0.01, epochs=10): ...

    def by_iterations(model, train_data, valid_data, batch_size=64, learning_rate=0.01, max_iters=10, max_epoch=1): ...

    common = dict(model=1, train=np.zeros((5, 1)), valid=np.zeros((5, 1)), batch_size=10, learning_rate=1e-3)
    epochs = _shoes.training_call(Sub(by_epochs), iterations=250, epochs=84, **common)
    assert epochs.kwargs["epochs"] == 84 and "no iteration count" in _shoes.budget_text(epochs)
    iterations = _shoes.training_call(Sub(by_iterations), iterations=250, epochs=84, **common)
    assert iterations.kwargs["max_iters"] == 250 and iterations.kwargs["max_epoch"] >= 84


# -- CNNChannel's first convolution: any order of the six channels -------------------------------------
def first_conv_channels(model: torch.nn.Module, pairs: np.ndarray) -> list:
    x = _shoes.model_input(pairs, _shoes.NCHW)
    seen = training_probes.first_conv_input(model, x).numpy()
    left = np.transpose(pairs[:, : _shoes.SIZE], (0, 3, 1, 2))
    right = np.transpose(pairs[:, _shoes.SIZE :], (0, 3, 1, 2))
    return _shoes.channel_order(seen, left, right)


class _Stacked(ref.CNNChannel):
    def __init__(self, stack):
        super().__init__(n=2)
        self.stack = stack

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(self.stack(x)).flatten(1))))


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (lambda x: torch.cat([x[:, :, :224], x[:, :, 224:]], 1), ["L0", "L1", "L2", "R0", "R1", "R2"]),
        (lambda x: torch.cat([x[:, :, 224:], x[:, :, :224]], 1), ["R0", "R1", "R2", "L0", "L1", "L2"]),
        (lambda x: x.reshape(x.shape[0], 6, 224, 224), ["L0", "R0", "L1", "R1", "L2", "R2"]),
        (lambda x: torch.cat([x[:, :, :224], x[:, :, :224]], 1), ["L0", "L1", "L2", "L0", "L1", "L2"]),
    ],
    ids=["left-right", "right-left", "interleaved", "left-twice"],
)
def test_channel_order(stack, expected):
    pairs = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 448, 224, 3)).astype(np.float32)
    assert first_conv_channels(_Stacked(stack), pairs) == expected


# -- Q4b: the pair properties checked before lending the grader's builders ----------------------------
def test_pair_problems():
    data = _shoes.random_shoes(5, seed=3)
    assert _shoes.same_pair_problem(ref.generate_same_pair(data), data) == ""
    assert _shoes.different_pair_problem(ref.generate_different_pair(data), data) == ""
    assert _shoes.same_pair_problem(_shoes.same_pairs(data), data) == ""
    assert _shoes.different_pair_problem(_shoes.different_pairs(data), data) == ""
    across = np.concatenate([data[:, :, 0], np.roll(data[:, :, 1], -1, axis=0)], axis=2).reshape(-1, 448, 224, 3)
    assert "mixes two students" in _shoes.different_pair_problem(across, data)
    assert "true pair" in _shoes.different_pair_problem(ref.generate_same_pair(data), data)
    flipped = np.concatenate([data[:, :, 1], data[:, :, 0]], axis=2).reshape(-1, 448, 224, 3)
    assert "not a left shoe on top" in _shoes.same_pair_problem(flipped, data)


# -- Q3f: the handout's architecture, both downsampling designs ----------------------------------------
class _Strided(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        widths = [6, 2, 4, 8, 16]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(a, b, k, stride=2, padding=(k - 1) // 2) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.fc = torch.nn.Linear(16 * 14 * 14, 2)

    def forward(self, x):
        x = torch.cat([x[:, :, :224], x[:, :, 224:]], 1)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.fc(x.flatten(1))


def test_receptive_field_formulas_match_autograd():
    k = 3  # 5 x 5 is covered by the reference's own tests (tests/test_answers_reference.py); 10 s here
    pooled = downsampling_receptive_fields(ref.CNNChannel(n=2, kernel_size=k), (1, 3, 448, 224), half="top")
    assert pooled == _answers.receptive_fields_formula(k)
    assert _answers.receptive_fields_formula(3) == [4, 10, 22, 46]
    assert _answers.receptive_fields_formula(5) == [6, 16, 36, 76]
    strided = downsampling_receptive_fields(_Strided(k), (1, 3, 448, 224), half="top")
    assert strided == _answers.receptive_fields_strided(k)


# -- the fixture photos: JPEG, read as the handout reads them -----------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return shoes_data.write_shoe_dataset(tmp_path_factory.mktemp("shoes"), n_train=2, n_test_w=1, n_test_m=1, seed=4)


def test_photos_are_jpg_and_decode_as_plt_imread_reads_them(photos):
    plt = pytest.importorskip("matplotlib.pyplot")
    files = sorted((photos / "train").glob("*.jpg"))
    assert len(files) == 12 and not list(photos.rglob("*.png"))
    decoded = shoes_data.read_shoe_dataset(photos)
    assert {k: v.shape[0] for k, v in decoded.items()} == {"train": 2, "test_w": 1, "test_m": 1}
    assert decoded["train"].dtype == np.uint8
    channels = set()
    for i, path in enumerate(files):
        image = plt.imread(path)
        assert image.dtype == np.uint8  # /255 is right, /225 is not
        channels.add(image.shape[-1])
        np.testing.assert_array_equal(image[:, :, :3], decoded["train"].reshape(-1, 224, 224, 3)[i])
    assert channels == {3, 4}  # the second student's photos are CMYK JPEGs: RGBA through plt.imread
    with Image.open(files[6]) as cmyk, Image.open(files[0]) as rgb:
        assert (cmyk.mode, rgb.mode) == ("CMYK", "RGB")


def test_reference_load_shoes_reads_the_decoded_pixels(photos):
    loaded = ref.load_shoes(photos / "train")
    expected = shoes_data.read_shoe_dataset(photos)["train"].astype(np.float32) / 255 - 0.5
    np.testing.assert_allclose(loaded, expected, atol=1e-6)


def test_writing_twice_gives_the_same_bytes(tmp_path, photos):
    again = shoes_data.write_shoe_dataset(tmp_path, n_train=2, n_test_w=1, n_test_m=1, seed=4)
    for path in sorted(photos.rglob("*.jpg")):
        assert (again / path.relative_to(photos)).read_bytes() == path.read_bytes()


def test_checkpoint_target_works_as_pattern_prefix_and_folder():
    target = training_probes.checkpoint_target("h3-test-")
    folder = Path(target).parent
    try:
        for epoch, path in enumerate([target.format(0), target + "1", f"{target}/epoch_2.pk"]):
            torch.save({"scale": torch.tensor([float(epoch)]), "shift": torch.zeros(1)}, path)
        found = training_probes.read_checkpoints_under(str(folder))
        assert sorted(c["file"] for c in found) == ["epoch-0", "epoch-{}/epoch_2.pk", "epoch-{}1"]
        assert all(c["keys"] == ["scale", "shift"] for c in found)
    finally:
        import shutil

        shutil.rmtree(folder)


def test_colab_stand_in_mounts_nothing_and_goes_away():
    installed = training_probes.install_colab_stand_in()
    try:
        from google.colab import drive  # noqa: PLC0415

        assert drive.mount("/content/gdrive") is None
    finally:
        training_probes.remove_colab_stand_in(installed)
    assert "google.colab" not in sys.modules or not installed
