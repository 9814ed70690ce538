"""Tests of the shoe graders' helpers (graders/_shoes.py, graders/_answers.py) and the shoe fixture data
(fixtures/shoes_data.py), without a grading run: binding calls by the submission's names, the channel
order CNNChannel's first convolution may see, the pair properties Q4b checks before lending the grader's
pair builders, the receptive fields of the handout's two downsampling designs, and JPEG photos read as
the handout reads them.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import shoes_data
from torchgrade import assignments
from torchgrade.engine.proxy import Submission
from torchgrade.errors import CheckFailure, SignatureMismatch
from torchgrade.importfile import import_file
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


# -- calls bound by the submission's names (through the engine's binding) ------------------------------
def submission_of(folder: Path, code: str) -> Submission:
    (folder / "shoes.py").write_text(textwrap.dedent(code))
    return Submission(folder, "none", assignments.active().name_to_module())


def probe_training_call(sub):
    """The grader's train_model call for a tiny budget (250 iterations, or 84 epochs where the loop takes none)."""
    return _shoes.training_call(
        sub,
        model=1,
        train=np.zeros((5, 1)),
        valid=np.zeros((5, 1)),
        batch_size=10,
        learning_rate=1e-3,
        iterations=250,
        epochs=84,
    )


def test_training_call_uses_the_names_of_the_signature_and_drops_what_it_lacks(tmp_path):
    sub = submission_of(
        tmp_path,
        """
        def train_model(net, train, valid, bs=32, lr=0.001, num_epochs=30, path=None, plot=False):
            return dict(bs=bs, lr=lr, num_epochs=num_epochs, path=path)
        """,
    )
    try:
        train, valid = np.zeros((4, 1)), np.zeros((1, 1))
        common = dict(batch_size=6, learning_rate=0.01, weight_decay=0.0, iterations=12, epochs=3)
        call = _shoes.training_call(sub, model="M", train=train, valid=valid, checkpoint="p/epoch-{}", **common)
        assert call.label == (
            "train_model(model, train_data[4 students], valid_data[1 student], bs=6, lr=0.01, num_epochs=3, "
            "path='p/epoch-{}')"
        )
        assert not call.has("weight_decay") and call.has("checkpoint_path") and not call.requires("checkpoint_path")
        assert "no iteration count" in _shoes.budget_text(call)
        assert call(sub) == {"bs": 6, "lr": 0.01, "num_epochs": 3, "path": "p/epoch-{}"}
        assert sub.last_binding("train_model").renamed["max_epoch"] == "num_epochs"
    finally:
        sub.close()


def test_training_budget_in_iterations_where_the_loop_takes_an_iteration_count(tmp_path):
    sub = submission_of(
        tmp_path,
        """
        def train_model(model, train_data, valid_data, batch_size=64, learning_rate=0.01, max_iters=10, max_epoch=1):
            return [max_iters, max_epoch]
        """,
    )
    try:
        call = probe_training_call(sub)
        iterations, epochs = call(sub)
        assert iterations == 250 and epochs >= 84 and _shoes.budget_text(call) == ""
    finally:
        sub.close()


def test_build_a_constructor_without_n_or_kernel_size(tmp_path):
    sub = submission_of(
        tmp_path,
        """
        import torch

        class CNN(torch.nn.Module):
            def __init__(self):
                super().__init__()

        class CNNChannel(torch.nn.Module):
            def __init__(self, n=4, dropout=0.5):
                super().__init__()
        """,
    )
    try:
        cnn = _shoes.build_model(sub, "CNN", n=4, kernel_size=3)
        assert cnn.label == "CNN()" and not cnn.took_n and not cnn.took_k
        channel = _shoes.build_model(sub, "CNNChannel", n=4, kernel_size=3)
        assert channel.label == "CNNChannel(n=4)" and channel.took_n and not channel.took_k
    finally:
        sub.close()


def test_training_call_refuses_a_required_parameter_the_handout_does_not_give(tmp_path):
    sub = submission_of(tmp_path, "def train_model(model, train_data, valid_data, optimizer):\n    pass\n")
    try:
        with pytest.raises(SignatureMismatch, match="optimizer"):
            probe_training_call(sub)
    finally:
        sub.close()


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


# -- Q4b: the checks' parts, run again to decide what to lend ----------------------------------------
def failure_of(check, *args) -> str:
    try:
        check(*args)
    except CheckFailure as exc:
        return str(exc)
    return ""


def test_pair_builder_parts():
    data = _shoes.random_shoes(5, seed=3)
    same, different = _shoes.check_same_pair_rows, _shoes.check_different_pair_rows
    for rows, built in ((same, ref.generate_same_pair(data)), (same, _shoes.same_pairs(data))):
        assert failure_of(rows, built, data, "same") == ""
    for rows, built in ((different, ref.generate_different_pair(data)), (different, _shoes.different_pairs(data))):
        assert failure_of(rows, built, data, "different") == ""
    across = np.concatenate([data[:, :, 0], np.roll(data[:, :, 1], -1, axis=0)], axis=2).reshape(-1, 448, 224, 3)
    assert "mixes students" in failure_of(different, across, data, "different")
    assert "is a true pair" in failure_of(different, ref.generate_same_pair(data), data, "different")
    flipped = np.concatenate([data[:, :, 1], data[:, :, 0]], axis=2).reshape(-1, 448, 224, 3)
    assert "is not a left shoe on top" in failure_of(same, flipped, data, "same")
    assert "shape" in failure_of(_shoes.check_pair_shape, flipped[:3], data, "same")


def test_memorise_notes_say_what_was_lent_and_why():
    notes = _shoes.memorise_notes(
        {
            "lent": {"loop": {_shoes.LOOP_LABELS: "step 1 labelled 1 an input that is not a true pair"}},
            "stalled": "with seed 7 the run stalled",
        }
    )
    assert "grader's training loop" in notes["grader's loop"] and _shoes.LOOP_LABELS in notes["grader's loop"]
    assert notes["stalled seed"] == "with seed 7 the run stalled"
    both = _shoes.memorise_notes({"lent": {"not_independent": {"model": {"a": "x"}, "loop": {"b": "y"}}}})
    assert "could not be graded independently" in both["not independent"]


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


@pytest.mark.parametrize(
    ("model_fails", "loop_fails", "lent"),
    [(False, False, set()), (True, False, {"model"}), (False, True, {"loop"}), (True, True, {"not_independent"})],
)
def test_q4b_lends_the_grader_s_unit_only_where_the_other_passed_its_check(monkeypatch, model_fails, loop_fails, lent):
    def failed_parts(parts, *args):
        fails = model_fails if parts is _shoes.CHANNEL_PARTS else loop_fails
        return {parts[0][1]: "failed"} if fails else {}

    monkeypatch.setattr(_shoes, "failed_parts", failed_parts)
    assert set(_shoes.lent_units(None, {})) == lent


def test_a_second_seed_runs_only_where_the_first_stalls_at_chance():
    def runner(results):
        calls = []

        def run_seed(seed):
            calls.append(seed)
            return {"seed": seed, "train": results[seed]}

        return run_seed, calls

    first, second = _shoes.MEMORISE_SEEDS
    run_seed, calls = runner({first: (1.0, 0.9)})
    assert _shoes.seeded_run(run_seed) == {"seed": first, "train": (1.0, 0.9)} and calls == [first]
    run_seed, calls = runner({first: (0.5, 0.5), second: (1.0, 1.0)})
    best = _shoes.seeded_run(run_seed)
    assert calls == [first, second] and best["seed"] == second
    assert f"with seed {first} the run stalled at chance" in best["stalled"]
    run_seed, calls = runner({first: (0.6, 0.6), second: (0.5, 0.5)})
    assert _shoes.seeded_run(run_seed)["seed"] == first and calls == [first, second]
