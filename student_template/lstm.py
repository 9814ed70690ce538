"""Your solution of the recurrent-network parts: UvA DL1 A2 part 2 and the beam search of EECS 182
discussion 8.

Fill in every function and class below; each one now raises ``NotImplementedError``. Keep the
names and signatures: the graders call them exactly like this (``pytest graders/test_lstm.py``
shows what each check expects). You may add helper functions, classes and imports.

* Q2.3 ``LSTM``: equations (8)-(13) of the handout with ``nn.Parameter`` and tensor operations
  only (no ``nn.Linear``, ``nn.LSTM`` or ``nn.LSTMCell``, which the graders look for);
* Q2.4 ``TextGenerationModel`` with ``sample``, and ``sequence_loss`` (eq. 17);
* EECS 182 ``beam_search``.

The graders train your ``TextGenerationModel`` (small sizes, a few hundred Adam steps) on a
synthetic English-like corpus (``fixtures/text.py``) and expect its held-out loss to fall well
below what a model that sees only the previous character can reach.

Tensor conventions (time first, as in the handout's ``TextDataset``):
    embeddings  ``(T, B, E)`` float
    tokens      ``(T, B)`` int64 character indices in ``[0, V)``
    logits      ``(T, B, V)``, one unnormalised score per character (no softmax)
"""

from __future__ import annotations

import math  # noqa: F401  (you will need these)
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: F401
from torch import nn


class LSTM(nn.Module):
    """A one-layer LSTM written from the handout's equations (8)-(13)::

        g = tanh(W_gx x + W_gh h + b_g)        (8)
        i = sigmoid(W_ix x + W_ih h + b_i)     (9)
        f = sigmoid(W_fx x + W_fh h + b_f)     (10)
        o = sigmoid(W_ox x + W_oh h + b_o)     (11)
        c = g * i + c * f                      (12)
        h = tanh(c) * o                        (13)

    Initialise every parameter uniformly in ``[-1/sqrt(H), 1/sqrt(H)]`` and add 1 to the forget
    gate's bias. The state starts at zero in every call (keep nothing on ``self`` between calls:
    the batch size may change).

    Args:
        lstm_hidden_dim: ``H``, the size of ``h`` and ``c``.
        embedding_size: ``E``, the size of each input vector.

    Shapes:
        embeds ``(T, B, E)`` -> outputs ``(T, B, H)`` (the ``h`` of every step), and the final
        state ``(h, c)``, each ``(B, H)``.
    """

    def __init__(self, lstm_hidden_dim: int, embedding_size: int):
        super().__init__()
        raise NotImplementedError("Q2.3: create W_gx, W_gh, b_g, ... as nn.Parameter and call init_parameters()")

    def init_parameters(self) -> None:
        """Every parameter uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, then +1 on the forget gate's bias."""
        raise NotImplementedError("Q2.3: initialise the parameters uniformly and shift the forget gate's bias")

    def forward(
        self, embeds: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the LSTM over a sequence.

        Args:
            embeds: ``(T, B, E)`` input vectors.
            state: ``(h, c)``, each ``(B, H)``, to continue from; zeros when None.

        Returns:
            ``(outputs, (h, c))``: the hidden state of every step ``(T, B, H)`` and the last state
            (returning only ``outputs`` also passes the graders, which read the first element).
        """
        raise NotImplementedError("Q2.3: apply equations (8)-(13) at every time step")


class TextGenerationModel(nn.Module):
    """A character model: ``nn.Embedding`` -> your ``LSTM`` -> a linear layer to one logit per character.

    Args:
        vocabulary_size: ``V``, the number of characters.
        embedding_size: ``E``, the size of a character's embedding.
        lstm_hidden_dim: ``H``, the LSTM's hidden size (the handout trains with 1024).

    Shapes:
        x ``(T, B)`` int64 -> logits ``(T, B, V)``: ``logits[t]`` scores the character after ``x[t]``.
    """

    def __init__(self, vocabulary_size: int, embedding_size: int = 256, lstm_hidden_dim: int = 1024):
        super().__init__()
        raise NotImplementedError("Q2.4a: build the embedding, your LSTM and the output layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the next character at every position of ``x (T, B)``."""
        raise NotImplementedError("Q2.4a: embed x, run the LSTM, map every step to V logits")

    def sample(self, batch_size: int = 4, sample_length: int = 30, temperature: float = 0.0) -> torch.Tensor:
        """Generate ``batch_size`` sequences of ``sample_length`` characters.

        Start each sequence with a random character; pick every next one as the argmax of the logits
        (temperature 0) or draw it from ``softmax(logits / temperature)``. Carry the LSTM's state
        from one step to the next, so each step feeds one character.

        Returns:
            ``(sample_length, batch_size)`` int64 character indices.
        """
        raise NotImplementedError("Q2.4b/c: generate characters greedily or with a temperature")


def sequence_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss of eq. (17): cross-entropy averaged over all time steps and sequences.

    Teacher forcing: the model reads the true characters ``inputs`` (not its own predictions) and
    is scored on predicting ``targets``, the same text shifted by one character.

    Args:
        model: maps ``(T, B)`` tokens to ``(T, B, V)`` logits.
        inputs: ``(T, B)`` int64, characters ``1..T`` of each sequence.
        targets: ``(T, B)`` int64, characters ``2..T+1``.

    Returns:
        A scalar tensor that can be backpropagated.
    """
    raise NotImplementedError("Q2.4a: average the cross-entropy of model(inputs) against targets over all steps")


def beam_search(
    next_log_probs: Callable[[tuple[int, ...], Any], tuple[Sequence[float], Any]],
    beam_width: int,
    sequence_length: int,
    initial_state: Any = None,
) -> tuple[list[int], list[list[tuple[tuple[int, ...], float]]]]:
    """Beam search over the tokens of an autoregressive model (EECS 182 discussion 8, problem 2).

    At every step extend each kept hypothesis by every token, score each extension by the sum of
    its tokens' log-probabilities, and keep the ``beam_width`` best. Store with each hypothesis the
    model state returned when it was extended, so the model runs one step per hypothesis and step.

    Args:
        next_log_probs: ``next_log_probs(tokens, state) -> (log_probs, new_state)``: the
            log-probability of every next token (a 1-D tensor or sequence of ``M`` floats) after the
            hypothesis ``tokens`` (a tuple of ints, empty at the first step), given the ``state``
            returned when that hypothesis was made (``initial_state`` at the first step).
        beam_width: ``k``, the hypotheses kept per step.
        sequence_length: ``T``, the number of tokens to decode.
        initial_state: the model state before the first token (e.g. an RNN's zero state).

    Returns:
        ``(best, beams)``: ``best`` the most likely final hypothesis as a list of ``T`` token
        indices; ``beams[t]`` the hypotheses kept after step ``t + 1``, each a ``(tokens,
        log_prob)`` pair, most likely first.
    """
    raise NotImplementedError("beam search: keep the beam_width most likely hypotheses at every step")
