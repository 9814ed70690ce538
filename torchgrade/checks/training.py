"""Thresholds of checks that train: the grader's verdict on a measured value (grader side).

What runs next to the student's training code (recording models, thread counts, checkpoint
readers) is in :mod:`torchgrade.probes.training`; it returns measurements, and this module decides.
"""

from __future__ import annotations

from typing import Any

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure

MSG_BELOW_THRESHOLD = "{what} was {value}; at least {threshold:.3f} is needed. Run: {who}. Threshold: {calibration}."


def check_at_least(value: Any, threshold: float, who: str, what: str, calibration: str) -> None:
    """Fail unless ``value >= threshold``. The message starts with the measured value and the
    threshold (the score table shows the first line), then how it was run and calibrated.

    Raises:
        CheckFailure: when the value is below the threshold or not a number (NaN included).
    """
    number = isinstance(value, (int, float))
    if not number or value != value or value < threshold:
        shown = f"{value:.3f}" if number else f"not a number ({shapes.summarise(value)})"  # arrays summarised
        raise CheckFailure(
            MSG_BELOW_THRESHOLD.format(what=what, value=shown, threshold=threshold, who=who, calibration=calibration)
        )
