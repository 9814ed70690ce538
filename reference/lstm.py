"""Reference solution of the recurrent-network parts: UvA DL1 A2 part 2 (``003_...``) and the beam
search of EECS 182 discussion 8 (``002_...``).

* Q2.3 ``LSTM``: equations (8)-(13) of the handout written with ``nn.Parameter`` and tensor
  operations only (no ``nn.Linear``, ``nn.LSTM``, ``nn.LSTMCell``); every parameter drawn uniformly
  from ``[-1/sqrt(H), 1/sqrt(H)]`` and the forget gate's bias shifted by +1.
* Q2.4 ``TextGenerationModel``: an embedding, the LSTM and a linear output layer; ``sequence_loss``
  is the average cross-entropy over all time steps with teacher forcing (eq. 17); ``sample``
  generates text greedily (temperature 0) or from ``softmax(logits / temperature)``, carrying the
  LSTM's state from one token to the next.
* EECS 182 ``beam_search``: keeps the ``beam_width`` most likely hypotheses at every step.

Tensor conventions shared with the graders (time first, as in the handout's ``TextDataset``):
    embeddings  ``(T, B, E)`` float
    tokens      ``(T, B)`` int64 character indices in ``[0, V)``
    logits      ``(T, B, V)``, one unnormalised score per character (no softmax)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class LSTM(nn.Module):
    """A one-layer LSTM written from the handout's equations (8)-(13).

    For each time step ``t``, with ``x`` the input and ``h``, ``c`` the previous state::

        g = tanh(W_gx x + W_gh h + b_g)        (8)  input modulation
        i = sigmoid(W_ix x + W_ih h + b_i)     (9)  input gate
        f = sigmoid(W_fx x + W_fh h + b_f)     (10) forget gate
        o = sigmoid(W_ox x + W_oh h + b_o)     (11) output gate
        c = g * i + c * f                      (12)
        h = tanh(c) * o                        (13)

    The state starts at zero for every call unless one is passed in (it is never kept on the
    module: two calls with different batch sizes are independent).

    Args:
        lstm_hidden_dim: ``H``, the size of ``h`` and ``c``.
        embedding_size: ``E``, the size of each input vector.

    Shapes:
        embeds ``(T, B, E)`` -> outputs ``(T, B, H)`` (the ``h`` of every step), and the final
        state ``(h, c)``, each ``(B, H)``.
    """

    def __init__(self, lstm_hidden_dim: int, embedding_size: int):
        super().__init__()
        self.hidden_dim = lstm_hidden_dim
        self.embed_dim = embedding_size
        hidden, embed = lstm_hidden_dim, embedding_size
        # One weight per gate and source, named after the handout's symbols.
        self.W_gx, self.W_ix, self.W_fx, self.W_ox = (nn.Parameter(torch.empty(hidden, embed)) for _ in range(4))
        self.W_gh, self.W_ih, self.W_fh, self.W_oh = (nn.Parameter(torch.empty(hidden, hidden)) for _ in range(4))
        self.b_g, self.b_i, self.b_f, self.b_o = (nn.Parameter(torch.empty(hidden)) for _ in range(4))
        self.init_parameters()

    def init_parameters(self) -> None:
        """Every parameter uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, then +1 on the forget gate's bias,
        so that the cell starts by remembering (f close to sigmoid(1) = 0.73)."""
        bound = 1.0 / math.sqrt(self.hidden_dim)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)
            self.b_f += 1.0

    def forward(
        self, embeds: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the LSTM over a sequence.

        Args:
            embeds: ``(T, B, E)`` input vectors.
            state: ``(h, c)``, each ``(B, H)``, to continue from; zeros when None.

        Returns:
            ``(outputs, (h, c))``: the hidden state of every step ``(T, B, H)`` and the last state.
        """
        if embeds.dim() != 3 or embeds.shape[2] != self.embed_dim:
            raise ValueError(f"LSTM: expected embeds of shape (T, B, {self.embed_dim}), got {list(embeds.shape)}")
        steps, batch, _ = embeds.shape
        if state is None:
            h = embeds.new_zeros(batch, self.hidden_dim)
            c = embeds.new_zeros(batch, self.hidden_dim)
        else:
            h, c = state
        # The input terms of all four gates for all steps in one product; only the recurrent term
        # has to wait for the previous step.
        w_x = torch.cat((self.W_gx, self.W_ix, self.W_fx, self.W_ox))  # (4H, E)
        w_h = torch.cat((self.W_gh, self.W_ih, self.W_fh, self.W_oh))  # (4H, H)
        bias = torch.cat((self.b_g, self.b_i, self.b_f, self.b_o))  # (4H,)
        from_input = embeds @ w_x.T + bias  # (T, B, 4H)
        outputs = []
        for t in range(steps):
            g, i, f, o = (from_input[t] + h @ w_h.T).chunk(4, dim=1)
            c = torch.tanh(g) * torch.sigmoid(i) + c * torch.sigmoid(f)
            h = torch.tanh(c) * torch.sigmoid(o)
            outputs.append(h)
        return torch.stack(outputs), (h, c)


def _next_token(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """One token per row of ``logits (B, V)``: the argmax at temperature 0, else a draw from
    ``softmax(logits / temperature)`` (the temperature divides the logits, before the softmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probabilities, num_samples=1).squeeze(1)


class TextGenerationModel(nn.Module):
    """A character model: ``nn.Embedding`` -> ``LSTM`` -> a linear layer to one logit per character.

    Args:
        vocabulary_size: ``V``, the number of characters.
        embedding_size: ``E``, the size of a character's embedding.
        lstm_hidden_dim: ``H``, the LSTM's hidden size (the handout trains with 1024).

    Shapes:
        x ``(T, B)`` int64 -> logits ``(T, B, V)``: ``logits[t]`` scores the character after ``x[t]``.
    """

    def __init__(self, vocabulary_size: int, embedding_size: int = 256, lstm_hidden_dim: int = 1024):
        super().__init__()
        self.vocabulary_size = vocabulary_size
        self.embedding = nn.Embedding(vocabulary_size, embedding_size)
        self.lstm = LSTM(lstm_hidden_dim, embedding_size)
        self.output_layer = nn.Linear(lstm_hidden_dim, vocabulary_size)  # eq. (14); allowed outside the LSTM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the next character at every position of ``x (T, B)``."""
        outputs, _ = self.lstm(self.embedding(x))
        return self.output_layer(outputs)

    def sample(self, batch_size: int = 4, sample_length: int = 30, temperature: float = 0.0) -> torch.Tensor:
        """Generate ``batch_size`` sequences of ``sample_length`` characters.

        Each sequence starts with a random character; every next one is the argmax of the logits
        (temperature 0) or drawn from ``softmax(logits / temperature)``. The LSTM's state is
        carried from one step to the next, so each step feeds one character: the cost grows
        linearly with the length.

        Returns:
            ``(sample_length, batch_size)`` int64 character indices.
        """
        device = self.output_layer.weight.device
        token = torch.randint(self.vocabulary_size, (batch_size,), device=device)
        tokens = [token]
        state = None
        with torch.no_grad():
            for _ in range(sample_length - 1):
                outputs, state = self.lstm(self.embedding(token[None]), state)
                token = _next_token(self.output_layer(outputs[-1]), temperature)
                tokens.append(token)
        return torch.stack(tokens)


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
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def beam_search(
    next_log_probs: Callable[[tuple[int, ...], Any], tuple[Sequence[float], Any]],
    beam_width: int,
    sequence_length: int,
    initial_state: Any = None,
) -> tuple[list[int], list[list[tuple[tuple[int, ...], float]]]]:
    """Beam search over the tokens of an autoregressive model (EECS 182 discussion 8, problem 2).

    At every step each kept hypothesis is extended by every token, each extension scored by the
    sum of its tokens' log-probabilities, and the ``beam_width`` best extensions are kept. Each
    hypothesis carries the model state returned when it was extended, so the model runs one step
    per hypothesis and step (the discussion's part f).

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
    if beam_width < 1 or sequence_length < 1:
        raise ValueError("beam_search: beam_width and sequence_length must be at least 1")
    kept: list[tuple[tuple[int, ...], float, Any]] = [((), 0.0, initial_state)]
    beams = []
    for _ in range(sequence_length):
        candidates = []
        for tokens, score, state in kept:
            log_probs, new_state = next_log_probs(tokens, state)
            for token, log_prob in enumerate(torch.as_tensor(log_probs, dtype=torch.float64).tolist()):
                candidates.append((tokens + (token,), score + log_prob, new_state))
        candidates.sort(key=lambda candidate: candidate[1], reverse=True)  # stable: ties keep their order
        kept = candidates[:beam_width]
        beams.append([(tokens, score) for tokens, score, _ in kept])
    return list(kept[0][0]), beams
