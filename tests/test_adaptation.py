"""Graders adapt to a submission's spelling where the meaning is unambiguous, and say so."""

from __future__ import annotations

import pytest

from torchgrade.engine.proxy import Submission
from torchgrade.errors import SignatureMismatch

SHOES = '''
class CNN:
    """No n at all: the student fixed n = 4 and kernel_size = 3 inside."""
    def __init__(self):
        self.size = 4

class CNNChannel:
    """The handout's parameters under other names."""
    def __init__(self, channels=4, k=3):
        self.size = (channels, k)
'''


@pytest.fixture
def sub(tmp_path):
    (tmp_path / "shoes.py").write_text(SHOES)
    submission = Submission(tmp_path, "none", {"CNN": "shoes", "CNNChannel": "shoes"})
    yield submission
    submission.close()


def test_handout_defaults_are_dropped_and_the_adaptation_noted(sub):
    assert sub.CNN(n=4, kernel_size=3).size == 4
    assert sub.notes == {
        "call CNN": "CNN(n=4, kernel_size=3) did not fit the submitted signature; graded as CNN() instead"
    }


def test_keywords_under_other_names_are_passed_by_position(sub):
    assert sub.CNNChannel(n=2, kernel_size=5).size == (2, 5)
    assert "graded as CNNChannel(2, 5) instead" in sub.notes["call CNNChannel"]


def test_a_value_other_than_the_default_is_never_dropped(sub):
    with pytest.raises(SignatureMismatch) as info:
        sub.CNN(n=2)
    assert str(info.value) == (
        "could not call CNN(n=2): got an unexpected keyword argument 'n'. The submitted "
        "signature is CNN(). Also tried: CNN(2)."
    )


def test_a_value_is_never_passed_in_another_parameter_s_position(sub):
    """CNNChannel(kernel_size=5) must not become CNNChannel(5), which would set the channels."""
    with pytest.raises(SignatureMismatch, match=r"^could not call CNNChannel\(kernel_size=5\): "):
        sub.CNNChannel(kernel_size=5)
    assert "call CNNChannel" not in sub.notes


def test_dropping_a_default_keeps_later_keywords_by_name(tmp_path):
    (tmp_path / "shoes.py").write_text(
        "class CNN:\n    def __init__(self, kernel_size=3):\n        self.k = kernel_size\n"
    )
    submission = Submission(tmp_path, "none", {"CNN": "shoes"})
    try:
        assert submission.CNN(n=4, kernel_size=5).k == 5
        assert "graded as CNN(kernel_size=5) instead" in submission.notes["call CNN"]
    finally:
        submission.close()
