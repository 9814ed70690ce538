"""Tests of torchgrade.checks.shapes and torchgrade.checks.training: each check passes a good value
and fails a bad one with the message built from its own constant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchgrade.checks import shapes, training
from torchgrade.errors import CheckFailure


def test_check_key_returns_the_item_or_names_the_keys_it_found() -> None:
    assert shapes.check_key({"z": 5.0}, "z", "f(x)") == 5.0
    with pytest.raises(CheckFailure) as info:
        shapes.check_key({"loss": 1.0, 2: 0.0}, "z", "f(x)")  # keys of mixed types are listed, not compared
    assert str(info.value) == shapes.MSG_MISSING_KEY.format(who="f(x)", got=[2, "loss"], key="z")
    with pytest.raises(CheckFailure, match=r"^f\(x\) returned a list of 2 item\(s\); expected a dict with the key 'z'"):
        shapes.check_key([1, 2], "z", "f(x)")


def test_check_shape_accepts_tensors_and_arrays_and_names_the_wrong_shape() -> None:
    out = shapes.check_shape(torch.zeros(2, 3), (2, None), "model(x)")
    assert out.dtype == np.float64 and out.shape == (2, 3)
    with pytest.raises(CheckFailure) as info:
        shapes.check_shape(np.zeros((2, 4)), (2, 3), "model(x)")
    assert str(info.value) == shapes.MSG_SHAPE.format(who="model(x)", got="[2, 4]", expected="[2, 3]")
    with pytest.raises(CheckFailure, match=r"^model\(x\) returned None; expected a tensor or array of shape \[2, 3\]"):
        shapes.check_shape(None, (2, 3), "model(x)")


def test_check_close_checks_finiteness_before_closeness() -> None:
    shapes.check_close([1.0, 2.0], [1.0, 2.0 + 1e-9], "f()")
    with pytest.raises(
        CheckFailure, match=r"^f\(\) returned 1 non-finite value\(s\) \(NaN or inf\), first at index \[1\]"
    ):
        shapes.check_close([1.0, math.nan], [1.0, 2.0], "f()")
    with pytest.raises(CheckFailure, match=r"^f\(\): 1 of 2 values differ .* at index \[1\] \(got 3, expected 2\)"):
        shapes.check_close([1.0, 3.0], [1.0, 2.0], "f()")


@pytest.mark.parametrize("value", [0.5, math.nan, "0.95"])
def test_check_at_least_fails_below_the_threshold_or_on_a_non_number(value) -> None:
    training.check_at_least(0.95, 0.9, "train()", "accuracy", "calibrated")
    with pytest.raises(CheckFailure) as info:
        training.check_at_least(value, 0.9, "train()", "accuracy", "calibrated")
    assert str(info.value).startswith("accuracy was ")
    assert str(info.value).endswith("Run: train(). Threshold: calibrated.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            torch.arange(12.0).reshape(3, 4),
            "tensor[3, 4] of float32 (min 0, max 11, mean 5.5; first values 0, 1, 2, 3, ...)",
        ),
        (
            np.array([np.nan, 1.0, np.inf]),
            "array[3] of float64 (min 1, max 1, mean 1, 2 non-finite; first values nan, 1, inf)",
        ),
        (np.zeros((0, 3)), "array[0, 3] of float64 (empty)"),
        (torch.zeros(2, dtype=torch.bfloat16), "tensor[2] of bfloat16 (min 0, max 0, mean 0; first values 0, 0)"),
        (torch.zeros(2, dtype=torch.complex64), "tensor[2] of complex64 (first values 0j, 0j)"),
        (list(range(10_000)), "list[10000] of numbers (min 0, max 9999, mean 5000; first values 0, 1, 2, 3, ...)"),
        ([1, 2], "[1, 2]"),
        ("x" * 300, repr("x" * 300)[: shapes.MAX_VALUE_CHARS] + " [... 102 characters cut]"),
    ],
)
def test_summarise_renders_arrays_by_their_statistics_never_whole(value, expected) -> None:
    assert shapes.summarise(value) == expected


def test_a_returned_array_of_millions_of_values_gives_a_short_message() -> None:
    with pytest.raises(CheckFailure) as info:
        shapes.check_key(np.zeros((1000, 1000)), "z", "f(x)")
    assert str(info.value) == shapes.MSG_MISSING_KEY.format(
        who="f(x)",
        got="an array[1000, 1000] of float64 (min 0, max 0, mean 0; first values 0, 0, 0, 0, ...)",
        key="z",
    )
    with pytest.raises(CheckFailure) as info:
        shapes.check_key({f"key{i}": i for i in range(100_000)}, "z", "f(x)")
    assert len(str(info.value)) < 2 * shapes.MAX_VALUE_CHARS
