"""Tests of the grader's classifier of two images and its training loop (graders/_probes_shoes.py),
which the shoe grader's Q4b lends where a submission's model or loop failed its own check."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from _toys import graders_module

from torchgrade.importfile import import_file
from torchgrade.instructor.release import find_leaks

ROOT = Path(__file__).resolve().parents[1]
ref = import_file(ROOT / "reference/shoes.py", "_torchgrade_reference_shoes_pc")
pair_classifier = graders_module("_probes_shoes")  # the shoe grader's probe module
NCHW, TRANSPOSED, PairClassifier = pair_classifier.NCHW, pair_classifier.TRANSPOSED, pair_classifier.PairClassifier
to_batch, train_pair_classifier = pair_classifier.to_batch, pair_classifier.train_pair_classifier


def test_takes_both_layouts_and_gives_two_logits():
    torch.manual_seed(0)
    model = PairClassifier(n=2).eval()
    images = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 448, 224, 3)).astype(np.float32)
    tall, wide = to_batch(images, NCHW), to_batch(images, TRANSPOSED)
    assert list(tall.shape) == [3, 3, 448, 224] and list(wide.shape) == [3, 3, 224, 448]
    with torch.no_grad():
        out = model(tall)
        assert out.shape == (3, 2)
        assert torch.allclose(out, model(wide), atol=1e-6)


def test_layers_are_the_handouts_and_one_seed_gives_the_handouts_model():
    """The same layer shapes as the handout's CNNChannel, registered in the same order, so one seed gives
    the same initial weights and the same outputs (the lent model trains as the reference would)."""
    for n, k in ((4, 3), (2, 5)):
        torch.manual_seed(3)
        ours = PairClassifier(n=n, kernel_size=k)
        torch.manual_seed(3)
        theirs = ref.CNNChannel(n=n, kernel_size=k)
        assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
        x = torch.rand(2, 3, 448, 224) - 0.5
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def test_the_loop_trains_balanced_steps_and_lowers_the_loss():
    rng = np.random.default_rng(1)
    positives = rng.uniform(-0.5, 0.5, (4, 64, 32, 3)).astype(np.float32)
    negatives = rng.uniform(-0.5, 0.5, (4, 64, 32, 3)).astype(np.float32)
    torch.manual_seed(0)
    model = PairClassifier(n=2, side=32)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    result = train_pair_classifier(
        model, positives, negatives, layout=TRANSPOSED, batch_size=4, learning_rate=3e-3, iterations=40, seed=7
    )
    assert result["steps"] == 40 and seen == [4] * 40 and model.training
    assert result["last_loss"] < result["first_loss"]


def test_the_probe_is_not_the_reference_code(tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(pair_classifier.__file__, release / "_probes_shoes.py")
    assert find_leaks(release, reference_dir=ROOT / "reference", template_dir=ROOT / "student_template") == []
