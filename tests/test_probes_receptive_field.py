"""Tests of torchgrade.probes.receptive_field on small hand-written models.

Expected values: a k x k convolution (stride 1, 'same') followed by a 2x2 pool of stride 2, four
times, has fields 1 + k (2^m - 1) after the m-th pool: [4, 10, 22, 46] for k = 3 and
[6, 16, 36, 76] for k = 5. A k x k convolution of stride 2 alone gives 1 + (k - 1)(2^m - 1).
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.probes.receptive_field import (
    downsampling_receptive_fields,
    invalid_half_message,
    measure_receptive_fields,
    no_downsampling_message,
)

EXPECTED = {3: [4, 10, 22, 46], 5: [6, 16, 36, 76]}
STRIDED_CONV_EXPECTED = {3: [3, 7, 15, 31], 5: [5, 13, 29, 61]}
# Large enough that a k = 5 field after four pools (76 px) fits well inside one half.
SMALL_PAIR = (1, 3, 256, 128)
POOLING_STYLES = ("shared_module", "modules", "functional", "torch", "indices", "avg")


pytestmark = pytest.mark.usefixtures("single_thread")


def _convs(in_channels: int, n: int, k: int, stride: int = 1) -> nn.ModuleList:
    widths = [in_channels, n, 2 * n, 4 * n, 8 * n]
    return nn.ModuleList(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2) for c_in, c_out in pairwise(widths)
    )


class Stages(nn.Module):
    """Four conv + 2x2 downsampling stages, without the fully connected head."""

    def __init__(self, k: int, pooling: str = "shared_module", in_channels: int = 3, n: int = 2):
        super().__init__()
        self.convs = _convs(in_channels, n, k)
        self.pooling = pooling
        self.pool = nn.MaxPool2d(2, 2)
        self.pools = nn.ModuleList(nn.MaxPool2d(2) for _ in range(4))

    def downsample(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self.pooling == "shared_module":
            return self.pool(x)
        if self.pooling == "modules":
            return self.pools[index](x)
        if self.pooling == "functional":
            return F.max_pool2d(x, kernel_size=2, stride=2)
        if self.pooling == "torch":
            return torch.max_pool2d(x, 2)
        if self.pooling == "indices":
            return F.max_pool2d(x, 2, return_indices=True)[0]
        if self.pooling == "avg":
            return F.avg_pool2d(x, 2)
        raise AssertionError(self.pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            x = self.downsample(F.relu(conv(x)), index)
        return x


class ChannelStacked(Stages):
    """CNNChannel-like: top and bottom halves of the input stacked on channels."""

    def __init__(self, k: int, n: int = 2):
        super().__init__(k, in_channels=6, n=n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[2] // 2
        return super().forward(torch.cat([x[:, :, :half], x[:, :, half:]], dim=1))


class ShoeCNN(nn.Module):
    """The handout's CNN / CNNChannel at full size, fully connected head included."""

    def __init__(self, n: int, k: int, channel: bool):
        super().__init__()
        self.channel = channel
        self.convs = _convs(6 if channel else 3, n, k)
        self.fc1 = nn.Linear(8 * n * (14 if channel else 28) * 14, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel:
            x = torch.cat([x[:, :, :224, :], x[:, :, 224:, :]], dim=1)
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class StridedConvs(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.convs = _convs(3, 2, k, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x


class NoDownsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)  # stride 1: not a downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("pooling", POOLING_STYLES)
def test_pooling_styles_give_the_same_fields(k: int, pooling: str) -> None:
    fields = downsampling_receptive_fields(Stages(k, pooling), (1, 3, 128, 128))
    assert fields == EXPECTED[k]


@pytest.mark.parametrize("k", [3, 5])
def test_channel_stacked_model_measured_in_one_half(k: int) -> None:
    model = ChannelStacked(k)
    assert downsampling_receptive_fields(model, SMALL_PAIR, half="top") == EXPECTED[k]
    assert downsampling_receptive_fields(model, SMALL_PAIR, half="bottom") == EXPECTED[k]
    # Over the whole input the unit's field appears once in each half, 128 rows apart.
    whole = measure_receptive_fields(model, SMALL_PAIR)
    assert [f.cols for f in whole] == EXPECTED[k]
    assert [f.rows for f in whole] == [128 + r for r in EXPECTED[k]]


class ChannelStackedTransposed(Stages):
    """CNNChannel fed the handout's ``transpose(1, 3)`` layout: shoes side by side along W."""

    def __init__(self, k: int):
        super().__init__(k, in_channels=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[3] // 2
        return super().forward(torch.cat([x[..., :half], x[..., half:]], dim=1))


@pytest.mark.parametrize("k", [3, 5])
def test_halves_along_the_width(k: int) -> None:
    shape = (1, 3, SMALL_PAIR[3], SMALL_PAIR[2])
    model = ChannelStackedTransposed(k)
    assert downsampling_receptive_fields(model, shape, half="left") == EXPECTED[k]
    assert downsampling_receptive_fields(model, shape, half="right") == EXPECTED[k]
    assert downsampling_receptive_fields(Stages(k), shape, half="left") == EXPECTED[k]


@pytest.mark.parametrize("k", [3, 5])
def test_height_stacked_model_with_half_moves_the_unit_off_the_seam(k: int) -> None:
    # The centre unit of a height-stacked model straddles the two halves; with half="top" the
    # check must pick a unit whose field lies inside the top half instead of a truncated one.
    model = Stages(k)
    assert downsampling_receptive_fields(model, SMALL_PAIR, half="top") == EXPECTED[k]
    assert downsampling_receptive_fields(model, SMALL_PAIR, half="bottom") == EXPECTED[k]
    assert downsampling_receptive_fields(model, SMALL_PAIR) == EXPECTED[k]


@pytest.mark.parametrize("channel", [False, True], ids=["CNN", "CNNChannel"])
def test_full_size_shoe_models(channel: bool) -> None:
    model = ShoeCNN(n=2, k=3, channel=channel)
    assert downsampling_receptive_fields(model, (1, 3, 448, 224), half="top") == EXPECTED[3]


@pytest.mark.parametrize("k", [3, 5])
def test_strided_convolutions_count_as_downsampling(k: int) -> None:
    measured = measure_receptive_fields(StridedConvs(k), (1, 3, 128, 128))
    assert [f.extent for f in measured] == STRIDED_CONV_EXPECTED[k]
    assert measured[0].op == f"conv2d(kernel_size=({k}, {k}), stride=(2, 2))"


def test_learned_2x2_strided_downsampling_equals_pooling() -> None:
    class ConvThenStridedConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = _convs(3, 2, 3)
            self.downs = nn.ModuleList(nn.Conv2d(c, c, 2, stride=2) for c in (2, 4, 8, 16))

        def forward(self, x):
            for conv, down in zip(self.convs, self.downs, strict=True):
                x = down(F.relu(conv(x)))
            return x

    assert downsampling_receptive_fields(ConvThenStridedConv(), (1, 3, 128, 128)) == EXPECTED[3]


def test_rectangular_kernel_reports_rows_and_cols() -> None:
    class Rect(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, (3, 5), padding=(1, 2))

        def forward(self, x):
            return F.max_pool2d(self.conv(x), 2)

    (field,) = measure_receptive_fields(Rect(), (1, 3, 32, 32))
    assert (field.rows, field.cols, field.extent) == (4, 6, 6)
    assert field.output_shape == (1, 2, 16, 16)


@pytest.mark.parametrize(("dilation", "ceil_mode"), [(1, True), (2, False), (2, True)])
def test_pooling_replacement_keeps_the_output_shape(dilation: int, ceil_mode: bool) -> None:
    class Odd(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 3, 2, 1, dilation, ceil_mode)

    shape = (1, 3, 31, 29)
    (field,) = measure_receptive_fields(Odd(), shape)
    assert field.output_shape == tuple(Odd()(torch.zeros(shape)).shape)
    assert field.extent == 1 + 2 * dilation


def test_batchnorm_and_dropout_do_not_change_the_fields() -> None:
    class Normed(Stages):
        def __init__(self):
            super().__init__(3)
            self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in (2, 4, 8, 16))
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            for conv, norm in zip(self.convs, self.norms, strict=True):
                x = self.pool(self.drop(F.relu(norm(conv(x)))))
            return x

    model = Normed()
    model.norms[0].running_mean.fill_(100.0)  # would kill every ReLU if it were used
    assert downsampling_receptive_fields(model, (1, 3, 128, 128)) == EXPECTED[3]


def test_max_downsamplings_skips_a_head_that_needs_another_input_size() -> None:
    model = ShoeCNN(n=2, k=3, channel=False)  # fc1 expects a 448 x 224 input
    with pytest.raises(RuntimeError):
        downsampling_receptive_fields(model, SMALL_PAIR)
    assert downsampling_receptive_fields(model, SMALL_PAIR, max_downsamplings=4) == EXPECTED[3]
    assert downsampling_receptive_fields(model, SMALL_PAIR, max_downsamplings=2) == EXPECTED[3][:2]


def test_checked_model_is_not_modified() -> None:
    model = Stages(3)
    model.train()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    grads_before = [p.grad for p in model.parameters()]
    downsampling_receptive_fields(model, (1, 3, 128, 128))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert [p.grad for p in model.parameters()] == grads_before


def test_works_when_called_under_no_grad() -> None:
    with torch.no_grad():
        assert downsampling_receptive_fields(Stages(3), (1, 3, 128, 128)) == EXPECTED[3]


def test_no_downsampling_raises_a_clear_value_error() -> None:
    message = no_downsampling_message("NoDownsampling", [1, 3, 32, 32])
    with pytest.raises(ValueError) as raised:
        downsampling_receptive_fields(NoDownsampling(), (1, 3, 32, 32))
    assert str(raised.value) == message


def test_unknown_half_lists_the_choices() -> None:
    with pytest.raises(ValueError) as raised:
        downsampling_receptive_fields(Stages(3), (1, 3, 64, 64), half="middle")
    assert str(raised.value) == invalid_half_message("middle")
    assert all(repr(h) in str(raised.value) for h in ("top", "bottom", "left", "right"))


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 3, 0, 64), "1x3x64x64"])
def test_bad_input_shape(shape: object) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        downsampling_receptive_fields(Stages(3), shape)  # type: ignore[arg-type]
