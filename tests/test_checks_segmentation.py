"""The graders' _unet.py (the grader's IoU, the scoring of a training run) and
torchgrade.probes.segmentation (the grader's training loop, the skip probe), on tiny hand-built
models whose answers are known."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _toys import graders_module
from torch import nn

from torchgrade.probes import segmentation as probes

segmentation = graders_module("_unet")  # CSC413 A4's IoU and scoring

pytestmark = pytest.mark.usefixtures("single_thread")


# -- IoU ------------------------------------------------------------------------------------------------
def test_class_iou_by_hand():
    target = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # class 0: 1 shared of {0, 1, 4}; class 1: 2 of {1, 2, 3}; class 2: 0 of {4}; class 3 nowhere.
    ious = segmentation.class_iou(pred, target, 4)
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 0.0]) and ious[3] is None
    assert segmentation.mean_of_present(ious) == pytest.approx(1 / 3)
    assert np.isnan(segmentation.mean_of_present([None, None]))


def test_class_iou_takes_tensors_of_any_shape():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 5, 5))
    from_arrays = segmentation.class_iou(target, target, 3)
    from_tensors = segmentation.class_iou(torch.from_numpy(target), torch.from_numpy(target).to(torch.uint8), 3)
    assert from_arrays == from_tensors == [1.0, 1.0, 1.0]


def test_confusion_matrix_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation.confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match="outside 0-1"):
        segmentation.confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)


def test_class_weights_are_inverse_square_root_frequencies():
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = probes.class_weights(labels, 3)
    assert weights[2] == 0  # absent: no pixel to weigh
    assert float(weights[1] / weights[0]) == pytest.approx(3.0)  # sqrt(90 / 10)
    assert float(weights[:2].mean()) == pytest.approx(1.0)


# -- tiny UNets -------------------------------------------------------------------------------------------
class TinyDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, zero_skip: bool = False):
        super().__init__()
        self.conv, self.bn, self.zero_skip = nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), zero_skip

    def forward(self, x):
        skip = torch.relu(self.bn(self.conv(x)))
        return nn.functional.max_pool2d(skip, 2), skip * 0 if self.zero_skip else skip


class TinyUNet(nn.Module):
    """One level: ``disable`` is "none" (skips used), "forward" (zeros_like in forward), "inside"
    (Down zeroes its own skip), "ignored" (the flag does nothing)."""

    def __init__(self, disable: str = "none"):
        super().__init__()
        self.disable = disable
        self.encoder = TinyDown(1, 4, zero_skip=disable == "inside")
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        down, skip = self.encoder(x)
        if self.disable == "forward":
            skip = torch.zeros_like(skip)
        return self.head(torch.cat((self.up(down), skip), dim=1))


def probe(model: nn.Module) -> dict:
    gen = torch.Generator().manual_seed(0)
    x, other = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    return probes.skip_probe(model, x, other, seed=1)


@pytest.mark.parametrize("disable", ["forward", "inside"])
def test_probe_sees_disabled_skips_as_disabled(disable):
    result = probe(TinyUNet(disable))
    assert result["down_blocks"] == ["encoder"]
    assert result["skip_change"] == 0.0
    assert result["down_change"] > 0.01 * result["output_scale"]
    assert result["input_change"] > 0.01 * result["output_scale"]


@pytest.mark.parametrize("disable", ["none", "ignored"])
def test_probe_sees_used_skips(disable):
    result = probe(TinyUNet(disable))
    assert result["skip_change"] > 0.01 * result["output_scale"]


def test_probe_leaves_the_model_as_it_was():
    model = TinyUNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe(model)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.encoder._forward_hooks


def test_probe_restores_a_model_it_cannot_copy():
    model = TinyUNet().eval()
    model.lock = threading.Lock()  # deepcopy refuses locks
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert probe(model)["skip_change"] > 0
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_probe_reports_a_model_without_down_blocks():
    result = probe(nn.Conv2d(1, 3, 3, padding=1))
    assert result["down_blocks"] == [] and "skip_change" not in result


def test_down_blocks_are_found_by_behaviour_and_nested_ones_left_out():
    class Wrapper(nn.Module):  # returns (down, skip) itself, around a TinyDown
        def __init__(self):
            super().__init__()
            self.inner = TinyDown(1, 2)

        def forward(self, x):
            return self.inner(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Wrapper()])
            self.pool = nn.MaxPool2d(2, return_indices=True)  # a pair, but not (down, skip)

        def forward(self, x):
            down, skip = self.blocks[0](x)
            pooled, _ = self.pool(skip)
            return pooled + down

    assert probes.find_down_blocks(Net(), torch.zeros(1, 1, 8, 8)) == ["blocks.0"]


# -- training -------------------------------------------------------------------------------------------------
def tiny_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright pixels are class 1, dark ones class 0; class 2 never occurs."""
    images = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return images, (images[:, 0] > 0.5).long()


def test_training_learns_a_per_pixel_rule_and_the_grader_reports_absent_classes():
    torch.manual_seed(0)
    (x, y), (vx, vy) = tiny_scenes(32, 1), tiny_scenes(8, 2)
    model = TinyUNet()
    run = probes.train_segmenter(
        model, x, y.to(torch.uint8), vx, num_classes=3, steps=60, batch_size=8, lr=0.05, seed=0
    )
    assert set(run) == {"losses", "predictions"}  # the validation labels never reach the probe
    assert run["predictions"].dtype == torch.uint8 and run["predictions"].shape == vy.shape
    result = segmentation.score_training_run(run, vy, 3)
    assert set(result) == {"losses", "final_loss", "per_class_iou", "mean_iou", "pixel_accuracy"}
    assert len(result["losses"]) == 60 and result["losses"][-1] < result["losses"][0]
    assert result["final_loss"] == pytest.approx(np.mean(run["losses"][-10:]))
    assert result["per_class_iou"][2] is None
    assert result["mean_iou"] > 0.8 and result["pixel_accuracy"] > 0.9
    assert result["per_class_iou"] == segmentation.class_iou(run["predictions"], vy, 3)


def test_scoring_passes_errors_on_and_refuses_what_is_not_a_run():
    assert segmentation.score_training_run({"error": "boom"}, np.zeros((1, 2, 2)), 3) == {"error": "boom"}
    with pytest.raises(ValueError, match="expected losses and predictions"):
        segmentation.score_training_run({"losses": [1.0]}, np.zeros((1, 2, 2)), 3)
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation.score_training_run({"losses": [1.0], "predictions": torch.zeros(1, 2, 3)}, np.zeros((1, 2, 2)), 3)


def test_training_refuses_outputs_of_the_wrong_shape():
    (x, y), (vx, _) = tiny_scenes(8, 1), tiny_scenes(4, 2)
    result = probes.train_segmenter(nn.Conv2d(1, 3, 3), x, y, vx, num_classes=3, steps=2, batch_size=4, lr=0.01, seed=0)
    assert result == {
        "error": "the model returned a torch.float32 tensor of shape [4, 3, 6, 6]; expected [4, 3, 8, 8] logits"
    }


# -- the correct architectures the UNet thresholds are calibrated on (benchmarks/calibrate_unet.py) -------
def calibration_architectures():
    from pathlib import Path

    from torchgrade.importfile import import_file

    return import_file(Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_unet.py", "calibrate_unet")


@pytest.mark.parametrize("name", ["double", "bilinear", "narrow", "wide", "no_bn", "double_no_bn", "relu_bn_narrow"])
def test_calibration_architectures_are_correct_unets(name):
    """Each is a UNet the skip probe recognises: Down blocks whose skips reach the decoder, and cut
    (zeros) when disabled; logits of the input's size."""
    module = calibration_architectures()
    x, other = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    for disable in (False, True):
        torch.manual_seed(0)
        model = module.architecture(**module.ARCHITECTURES[name]).UNet(disable_skip_connections=disable)
        assert model.eval()(x).shape == (2, 11, 16, 16)
        result = probes.skip_probe(model, x, other, seed=0)
        assert len(result["down_blocks"]) == 2
        if disable:
            assert result["skip_change"] == 0.0 and result["down_change"] > 0
        else:
            assert result["skip_change"] > 0.01 * result["output_scale"]
