"""A value a submission returns is summarised in a message, never printed whole (issue 17, class 9: a
74,589-character message held an array's repr): a million-element array returned where a number is
expected gives a message of a few hundred characters, from the training checks' threshold and from the
graders' own messages (robustness, parameter counts, beam search).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _toys import graders_module

from torchgrade.checks import training
from torchgrade.errors import CheckFailure

#: What a message about one returned value may take, all told.
SHORT = 500
HUGE = np.arange(10**6, dtype=np.float64)


@pytest.mark.parametrize("value", [HUGE, torch.from_numpy(HUGE), HUGE.tolist(), "x" * 10**6])
def test_check_at_least_summarises_a_value_that_is_not_a_number(value):
    with pytest.raises(CheckFailure) as info:
        training.check_at_least(value, 0.9, "train()", "accuracy", "calibrated")
    message = str(info.value)
    assert len(message) < SHORT, message[:SHORT]
    assert message.startswith("accuracy was not a number (")
    assert message.endswith("Run: train(). Threshold: calibrated.")


def test_a_metric_that_returns_an_array_instead_of_raising_is_summarised():
    _robustness = graders_module("_robustness")
    with pytest.raises(CheckFailure) as info:
        _robustness.expect_undefined(lambda: HUGE, "corruption_error([0.0], [0.0])", "the baseline's error")
    message = str(info.value)
    assert len(message) < SHORT, message[:SHORT]
    assert message.startswith("corruption_error([0.0], [0.0]) returned array[1000000] of float64 (min 0")


def test_a_parameter_count_that_is_an_array_is_not_a_count_and_is_summarised(pytestconfig):
    pytestconfig.addinivalue_line("markers", "points: the graders' marker, known here to import a grader module")
    counts = graders_module("test_lstm_params")
    assert counts.same_count(404, 404) and counts.same_count(np.int64(404), 404)
    assert counts.same_count(torch.tensor(404), 404) and counts.same_count(404.0, 404)
    for value in (HUGE, torch.from_numpy(HUGE), "404", True, None, [404]):
        assert not counts.same_count(value, 404)  # never compared element-wise (an ambiguous truth value)


def test_beam_search_messages_cut_long_token_sequences():
    _beam_search = graders_module("_beam_search")
    tokens = [0, 1] * 500_000
    assert len(_beam_search.words(tokens)) < SHORT
    assert len(_beam_search.tokens_text(list(range(10**6)))) < SHORT
    beam = [[(tokens, -1.0)] + [([i, 2], -2.0) for i in range(1000)]]
    with pytest.raises(CheckFailure) as info:
        _beam_search.compare_beams(beam, [[([0], -0.5)]], "beam_search(tree, beam_width=1, sequence_length=1)")
    assert len(str(info.value)) < SHORT
