"""Thresholds of checks that train: the grader's verdict on a measured value."""

from __future__ import annotations

from torchgrade.errors import CheckFailure

MSG_BELOW_THRESHOLD = (
    "{what} was {value:.3f}; at least {threshold:.3f} is needed. Run: {who}. Threshold: {calibration}."
)


def check_at_least(value: float, threshold: float, who: str, what: str, calibration: str) -> None:
    """Fail unless ``value >= threshold``. The message starts with the measured value and the
    threshold (the score table shows the first line), then how it was run and calibrated.

    Raises:
        CheckFailure: when the value is below the threshold or not a number.
    """
    if not isinstance(value, (int, float)) or value != value or value < threshold:
        raise CheckFailure(
            MSG_BELOW_THRESHOLD.format(what=what, value=value, threshold=threshold, who=who, calibration=calibration)
        )
