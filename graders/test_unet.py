"""Graders of CSC413 A4 part 4, the UNet (``unet.py``): ``Down``, ``Up``, ``UNet``, ``mean_iou``, and
the comparison of the UNet trained with and without skip connections.

The handout numbers the whole part "4.", so every check grades question 4. Shapes are checked on
the submitted blocks and on the UNet for several input sizes; the skip connections are probed by
perturbing what the submitted ``Down`` blocks return; ``mean_iou`` is compared with the grader's
own IoU; the ablation trains the submitted ``UNet`` with and without skips with the grader's loop
on the synthetic line drawings of ``fixtures/segmentation.py``, once per variant, and both runs are
read by the last two checks. Inputs, hints, thresholds and their measurements are in ``_unet.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _unet import (
    CALIBRATION,
    DOWN_CASES,
    HINT_UNET_CHANNELS,
    HINT_UNET_SHAPE,
    LEARN_THRESHOLD,
    N_SCENES,
    SKIP_MARGIN,
    UNET_SIZES,
    UP_CASES,
    budget_text,
    changed,
    check_down,
    check_mean_iou,
    check_unet_shape,
    check_up,
    effect,
    noisy_labels,
    probe_skips,
    retry_note,
    run_evidence,
    scene_tensors,
    skip_gain_message,
    skip_run_with_retry,
    train_unet,
    unchanged,
)

from torchgrade.checks import training
from torchgrade.errors import CheckFailure

ASSIGNMENT = "csc413-a4"
QUESTION = "4"  # the handout's "4.": Down, Up, UNet, the IoU and the skip ablation, one question


@pytest.mark.points(4, question=QUESTION)
def test_down_and_up_blocks(sub, parts):
    """Down returns the pooled output and the skip connection, which skips the max pooling; Up
    returns twice its input's size, whatever the skip's width."""
    with parts.part(2, "Down(in, out)(x) returns (down at half the resolution, skip at the input's)"):
        for case in DOWN_CASES:
            check_down(sub, *case)
    with parts.part(2, "Up(in, skip, out)(x, skip) doubles the resolution and takes a skip of any width"):
        for case in UP_CASES:
            check_up(sub, *case)


@pytest.mark.points(2, question=QUESTION)
def test_unet_output_shape(sub, parts):
    """UNet returns a tensor of shape (B, num_classes, H, W): one logit per class and pixel."""
    with parts.part(1, "UNet(): [B, 11, H, W] for batches of 1 and 5 and sizes divisible by 4"):
        model = sub.UNet()
        for b, h, w in UNET_SIZES:
            check_unet_shape(model, "UNet()", (b, 1, h, w), h + w, (b, 11, h, w), HINT_UNET_SHAPE)
    with parts.part(1, "UNet(in_channels=3, out_channels=4): [B, 4, H, W]"):
        model = sub.UNet(in_channels=3, out_channels=4)
        check_unet_shape(
            model, "UNet(in_channels=3, out_channels=4)", (2, 3, 16, 24), 3, (2, 4, 16, 24), HINT_UNET_CHANNELS
        )


@pytest.mark.points(3, question=QUESTION)
def test_skip_connections(sub, parts):
    """The decoder uses the skip connections; disable_skip_connections sets all of them to zero and
    keeps the path through the bottleneck."""
    with parts.part(1, "UNet(): the decoder uses the skips"):
        result = probe_skips(sub, sub.UNet(disable_skip_connections=False), "UNet(disable_skip_connections=False)")
        if not changed(result, "skip_change"):
            raise CheckFailure(
                f"{result['who']}: multiplying the skips that the Down blocks return by random "
                f"factors {effect(result, 'skip_change')}; with skip connections the decoder must "
                f"use them. Hint: pass each Down's skip to the Up at the same resolution."
            )
    with parts.part(1, "UNet(disable_skip_connections=True): the skips do not reach the decoder"):
        result = probe_skips(sub, sub.UNet(disable_skip_connections=True), "UNet(disable_skip_connections=True)")
        if not unchanged(result, "skip_change"):
            raise CheckFailure(
                f"{result['who']}: multiplying the skips that the Down blocks return by random "
                f"factors {effect(result, 'skip_change')}; with the skips disabled the output must "
                f"not depend on them. Hint: when disable_skip_connections is set, hand each Up "
                f"torch.zeros_like(skip) instead of the skip."
            )
    with parts.part(1, "UNet(disable_skip_connections=True): the bottleneck path still carries the input"):
        result = probe_skips(sub, sub.UNet(disable_skip_connections=True), "UNet(disable_skip_connections=True)")
        for key, what in (
            ("down_change", "multiplying the pooled outputs of the Down blocks by random factors"),
            ("input_change", "another input image"),
        ):
            if not changed(result, key):
                raise CheckFailure(
                    f"{result['who']}: {what} {effect(result, key)}; disabling the skips must "
                    f"keep the path through the pooled outputs and the bottleneck."
                )


@pytest.mark.points(3, question=QUESTION)
def test_mean_iou(sub, parts):
    """mean_iou averages, over the classes, the IoU: the ratio between the area of overlap and the
    area of union of prediction and target."""
    rng = np.random.default_rng(413)
    with parts.part(1, "random label maps in which every class occurs"):
        for shape, num_classes in (((2, 16, 16), 5), ((3, 20, 20), 11)):
            check_mean_iou(sub, *noisy_labels(rng, shape, list(range(num_classes)), wrong=0.4), num_classes)
    with parts.part(1, "classes absent from both prediction and target are left out of the mean"):
        check_mean_iou(sub, *noisy_labels(rng, (2, 12, 12), [0, 1, 2, 5, 7], wrong=0.3), 8)
    with parts.part(1, "a class in only one of prediction and target counts with IoU 0"):
        pred, target = noisy_labels(rng, (2, 12, 12), [0, 1, 2], wrong=0.3)
        target[0, :3] = 3  # class 3 only in the target
        pred[1, -2:] = 4  # class 4 only in the prediction; class 5 nowhere
        check_mean_iou(sub, pred, target, 6)


@pytest.mark.points(2, question=QUESTION)
@pytest.mark.timeout(180)
def test_unet_learns_the_scenes(skip_run, evidence):
    """UNet with skip connections, trained, segments the validation scenes: its mean IoU reaches
    the threshold."""
    evidence["with skips"] = run_evidence(skip_run)
    training.check_at_least(
        skip_run["mean_iou"],
        LEARN_THRESHOLD,
        f"UNet(disable_skip_connections=False) trained by the grader on {N_SCENES['n_train']} synthetic 64x64 "
        f"scenes ({budget_text()}), mean IoU over 11 classes on {N_SCENES['n_val']} others{retry_note(skip_run)}",
        "UNet's validation mean IoU",
        CALIBRATION,
    )


@pytest.mark.points(3, question=QUESTION)
@pytest.mark.timeout(300)
def test_skips_raise_iou(skip_run, no_skip_run, evidence):
    """With skip connections the validation IoU is higher than without: they carry the fine
    boundaries of the early layers to the decoder."""
    gain = skip_run["mean_iou"] - no_skip_run["mean_iou"]
    evidence.update(
        {
            "with skips": run_evidence(skip_run),
            "without skips": run_evidence(no_skip_run),
            "mean_iou_gain": round(gain, 4),
        }
    )
    if not gain >= SKIP_MARGIN:
        raise CheckFailure(skip_gain_message(skip_run, no_skip_run))


# -- the two training runs the last two checks read ------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_data() -> dict[str, torch.Tensor]:
    return scene_tensors()


@pytest.fixture(scope="module")
def skip_run(submission, grade_cache, scene_data) -> dict:
    return skip_run_with_retry(submission, grade_cache, scene_data)


@pytest.fixture(scope="module")
def no_skip_run(submission, grade_cache, scene_data, skip_run) -> dict:
    return train_unet(submission, grade_cache, scene_data, disable=True, seed=skip_run["seed"])
