"""Tests of torchgrade.probes.params on small hand-written models."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.probes.params import count_parameters, parameter_shapes


class ShoeCNN(nn.Module):
    """The handout's CNN (channel=False) or CNNChannel (channel=True), written for this test."""

    def __init__(self, n: int, k: int, channel: bool):
        super().__init__()
        widths = [6 if channel else 3, n, 2 * n, 4 * n, 8 * n]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, padding=(k - 1) // 2) for a, b in pairwise(widths))
        self.fc1 = nn.Linear(8 * n * (14 if channel else 28) * 14, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def test_single_layers() -> None:
    assert count_parameters(nn.Linear(10, 5)) == 55
    assert count_parameters(nn.Linear(10, 5, bias=False)) == 50
    assert count_parameters(nn.Conv2d(3, 4, 3)) == 3 * 4 * 9 + 4
    assert count_parameters(nn.ReLU()) == 0


def test_buffers_are_not_parameters() -> None:
    assert count_parameters(nn.BatchNorm2d(8)) == 16  # weight and bias; running stats are buffers


def test_handout_shoe_models() -> None:
    # Facts in shared/ASSIGNMENTS.md for n = 4, k = 3.
    assert count_parameters(ShoeCNN(4, 3, channel=False)) == 1_260_918
    assert count_parameters(ShoeCNN(4, 3, channel=True)) == 633_826


def test_module_registered_twice_is_counted_once() -> None:
    block = nn.Linear(4, 4)
    model = nn.Sequential(block, nn.ReLU(), block)
    assert count_parameters(model) == 20
    assert parameter_shapes(model) == [("0.weight", [4, 4]), ("0.bias", [4])]


def test_tied_weight_is_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(6, 3, bias=False)
            self.decoder = nn.Linear(3, 6, bias=False)
            self.decoder.weight = self.encoder.weight  # shares (3, 6) storage

    assert count_parameters(Tied()) == 18


def test_trainable_only() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    assert count_parameters(model) == 8 + 3
    assert count_parameters(model, trainable_only=True) == 3


def test_parameter_shapes_in_registration_order() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    assert parameter_shapes(model) == [
        ("0.weight", [4, 3, 3, 3]),
        ("0.bias", [4]),
        ("2.weight", [2, 16]),
        ("2.bias", [2]),
    ]


def test_model_is_not_modified() -> None:
    model = nn.Linear(3, 2)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    count_parameters(model)
    parameter_shapes(model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_lazy_parameters_are_reported() -> None:
    model = nn.Sequential(nn.LazyLinear(3))
    with pytest.raises(ValueError, match=r"uninitialised lazy parameters \(0.weight, 0.bias\)"):
        count_parameters(model)
    model(torch.zeros(1, 5))
    assert count_parameters(model) == 18


def test_not_a_module() -> None:
    with pytest.raises(ValueError, match="expected a torch.nn.Module; got dict"):
        count_parameters({})  # type: ignore[arg-type]
