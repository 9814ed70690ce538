"""Grader of UvA Deep Learning 1, assignment 2, Q2.2b: the number of parameters of an LSTM with a linear
output layer, ``lstm_param_count(n_hidden, n_input, n_output)``, against the formula and against the
submitted ``LSTM`` and ``TextGenerationModel`` themselves.

A module of its own, apart from ``test_lstm.py``, because it is the one LSTM check that reads
``answers.py``: grading a change to ``answers.py`` needs no training run of the text model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _lstm import PARAM_COUNT_SIZES, lstm_formula, make_text_model

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure
from torchgrade.probes import params

ASSIGNMENT = "uva-a2"


@pytest.mark.points(2, question="Q2.2b")
def test_lstm_param_count(sub, parts):
    """The LSTM with a linear output layer has 4(H I + H H + H) + O H + O parameters, as the submitted modules do."""
    with parts.part(1, "4(H I + H H + H) + O H + O for many sizes"):
        for hidden, inputs, outputs in PARAM_COUNT_SIZES:
            who = f"lstm_param_count(n_hidden={hidden}, n_input={inputs}, n_output={outputs})"
            got = sub.lstm_param_count(hidden, inputs, outputs)
            expected = lstm_formula(hidden, inputs, outputs)
            if not same_count(got, expected):
                raise CheckFailure(
                    f"{who} returned {shapes.summarise(got)}; expected {expected} = 4 (H I + H H + H) + O H + O: "
                    f"each of the four gates has an H x I input weight, an H x H recurrent weight and one bias of H, "
                    f"and the output layer an O x H weight and a bias of O."
                )
    with parts.part(1, "equals the parameters of the submitted LSTM and TextGenerationModel"):
        for hidden, embed, vocabulary in ((6, 4, 11), (16, 8, 25)):
            lstm = sub.LSTM(lstm_hidden_dim=hidden, embedding_size=embed)
            counted = sub.apply(params.count_parameters, lstm) + vocabulary * hidden + vocabulary
            answer = sub.lstm_param_count(hidden, embed, vocabulary)
            if not same_count(answer, counted):
                formula = lstm_formula(hidden, embed, vocabulary)
                side = (
                    "the LSTM's own count differs from the formula (one bias per gate: nn.LSTM's two make 4H more)"
                    if counted != formula
                    else "lstm_param_count differs from the formula"
                )
                raise CheckFailure(
                    f"LSTM(lstm_hidden_dim={hidden}, embedding_size={embed}) has {counted - vocabulary * (hidden + 1)} "
                    f"parameters, so with an output layer to {vocabulary} characters {counted}; "
                    f"lstm_param_count({hidden}, {embed}, {vocabulary}) returned {shapes.summarise(answer)}: {side}."
                )
            model = make_text_model(sub, vocabulary, embed, hidden)
            total = sub.apply(params.count_parameters, model)
            if not same_count(answer, total - vocabulary * embed):
                raise CheckFailure(
                    f"TextGenerationModel(vocabulary_size={vocabulary}, embedding_size={embed}, lstm_hidden_dim="
                    f"{hidden}) has {total} parameters, {total - vocabulary * embed} besides its {vocabulary} x "
                    f"{embed} embedding; lstm_param_count({hidden}, {embed}, {vocabulary}) returned "
                    f"{shapes.summarise(answer)}. The model is an embedding, the LSTM and one linear output layer."
                )


def same_count(value, expected: int) -> bool:
    """Whether ``value`` is the number ``expected``: a Python or numpy number, or a tensor or array of
    one number; anything else (a string, a long array) is not, and is never compared element-wise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "iuf":
            return False
        value = value.reshape(()).item()
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value == expected
