"""The synthetic segmentation scenes of fixtures/segmentation.py: what its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import segmentation as scenes

GRADER_SETS = {"n_train": 512, "n_val": 128, "seed": 2025}  # graders/test_unet.py's scenes


@pytest.fixture(scope="module")
def grader_data() -> dict[str, np.ndarray]:
    return scenes.make_dataset(**GRADER_SETS)


def test_class_constants_describe_ten_objects_and_the_background():
    assert len(scenes.CLASS_NAMES) == 10 and len(set(scenes.CLASS_NAMES)) == 10
    assert scenes.BACKGROUND == 10 and scenes.N_CLASSES == 11


def test_scenes_have_the_documented_shapes_and_types():
    images, labels = scenes.make_scenes(5, seed=1)
    assert images.dtype == np.float32 and images.shape == (5, 1, 64, 64)
    assert labels.dtype == np.uint8 and labels.shape == (5, 64, 64)
    assert labels.max() <= scenes.BACKGROUND
    small_images, small_labels = scenes.make_scenes(2, seed=1, size=32)
    assert small_images.shape == (2, 1, 32, 32) and small_labels.shape == (2, 32, 32)


def test_scenes_are_deterministic_and_depend_on_the_seed():
    first, again, other = scenes.make_scenes(4, seed=7), scenes.make_scenes(4, seed=7), scenes.make_scenes(4, seed=8)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_dataset_splits_are_drawn_independently(grader_data):
    assert grader_data["train_images"].shape == (512, 1, 64, 64)
    assert grader_data["val_labels"].shape == (128, 64, 64)
    again = scenes.make_dataset(**GRADER_SETS)
    assert all(np.array_equal(grader_data[k], again[k]) for k in grader_data)
    assert not np.array_equal(grader_data["train_labels"][:128], grader_data["val_labels"])


def test_every_class_occurs_in_both_splits_and_every_scene_holds_four_to_seven(grader_data):
    for split in ("train", "val"):
        labels = grader_data[f"{split}_labels"]
        assert set(np.unique(labels)) == set(range(scenes.N_CLASSES))
        per_scene = [len(np.unique(scene)) - 1 for scene in labels]  # minus the background
        assert min(per_scene) >= 4 and max(per_scene) <= 7
        counts = np.bincount(labels.ravel(), minlength=scenes.N_CLASSES)
        assert counts[:10].min() > 0.4 * counts[:10].mean(), "an object class is much rarer than the others"


def test_labels_mark_exactly_the_bright_pixels(grader_data):
    images, labels = grader_data["val_images"][:, 0], grader_data["val_labels"]
    stroke = labels != scenes.BACKGROUND
    assert images[stroke].min() > 0.6 and images[~stroke].max() < 0.4  # 1 + noise vs noise, sigma 0.05
    assert abs(images[~stroke].std() - scenes.NOISE) < 0.002
    assert 0.02 < stroke.mean() < 0.035  # strokes are ~2.7% of the pixels


def test_objects_never_touch(grader_data):
    for scene in grader_data["val_labels"]:
        padded = np.pad(scene, 1, constant_values=scenes.BACKGROUND)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                neighbour = padded[1 + dr : 65 + dr, 1 + dc : 65 + dc]
                touching = (scene != scenes.BACKGROUND) & (neighbour != scenes.BACKGROUND) & (neighbour != scene)
                assert not touching.any()


def test_strokes_are_one_pixel_wide(grader_data):
    labels = grader_data["val_labels"]
    stroke = labels != scenes.BACKGROUND
    full_2x2 = stroke[:, :-1, :-1] & stroke[:, 1:, :-1] & stroke[:, :-1, 1:] & stroke[:, 1:, 1:]
    assert full_2x2.sum() < 0.01 * stroke.sum()  # only where a triangle's or a zigzag's sides meet
    full_3x3 = np.ones_like(stroke[:, 1:-1, 1:-1])
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            full_3x3 &= stroke[:, dr : 62 + dr, dc : 62 + dc]
    assert not full_3x3.any()


def block_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """Each k x k block labelled with the object class it holds most of (the background if none),
    scaled back to the full resolution: the best a quarter-resolution map can do."""
    n, h, w = labels.shape
    blocks = labels.reshape(n, h // k, k, w // k, k).transpose(0, 1, 3, 2, 4).reshape(n, h // k, w // k, k * k)
    counts = np.stack([(blocks == c).sum(axis=-1) for c in range(scenes.BACKGROUND)], axis=-1)
    coarse = np.where(counts.max(axis=-1) > 0, counts.argmax(axis=-1), scenes.BACKGROUND)
    return coarse.repeat(k, axis=1).repeat(k, axis=2)


def object_iou(pred: np.ndarray, target: np.ndarray) -> float:
    ious = [((pred == c) & (target == c)).sum() / ((pred == c) | (target == c)).sum() for c in range(10)]
    return float(np.mean(ious))


def test_strokes_lose_most_of_their_iou_at_low_resolution(grader_data):
    labels = grader_data["val_labels"]
    assert object_iou(block_labels(labels, 4), labels) < 0.25  # measured 0.19: what skips must restore
    assert object_iou(block_labels(labels, 2), labels) < 0.5  # measured 0.42
    assert object_iou(block_labels(labels, 1), labels) == 1.0


@pytest.mark.parametrize("label", range(10))
def test_shapes_stay_within_their_reach(label):
    rng = np.random.default_rng(label)
    sizes = set()
    for _ in range(50):
        offsets = scenes.shape_offsets(label, rng)
        assert offsets.dtype == np.int64 and offsets.ndim == 2 and offsets.shape[1] == 2
        assert np.abs(offsets).max() <= 8
        assert len(np.unique(offsets, axis=0)) == len(offsets) >= 9
        sizes.add(len(offsets))
    assert len(sizes) > 1, "every object of a class has the same size"


def test_unknown_class_and_small_size_are_refused():
    with pytest.raises(ValueError, match="choose from 0-9"):
        scenes.shape_offsets(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 24"):
        scenes.make_scenes(1, seed=0, size=16)
