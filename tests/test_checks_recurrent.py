"""The recurrent topics, probes and checks: reading LSTM weights back and the float64 equations
(the graders' _lstm.py and _probes_lstm.py), what a model calls (torchgrade.probes.module_usage),
the language model's training loop and recording model (_probes_lstm.py and
_lstm.py), sampling (the graders' _probes_sampling.py), and beam search on explicit
trees (the graders' _probes_beam_search.py and _beam_search.py), on small hand-built models whose
answers are known."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _toys import graders_module
from torch import nn

from torchgrade.probes import params
from torchgrade.probes.module_usage import module_usage

pytestmark = pytest.mark.usefixtures("single_thread")

_beam_search = graders_module("_beam_search")  # the graders' own (EECS 182's beam search)
beam_search_reference, exhaustive_search = _beam_search.beam_search_reference, _beam_search.exhaustive_search
random_tree, read_beam_result = _beam_search.random_tree, _beam_search.read_beam_result
tree_decoder, decoder_record = _beam_search.tree_decoder, _beam_search.decoder_record
_lstm = graders_module("_lstm")  # UvA A2's LSTM and language model, grader side
held_out_windows = _lstm.held_out_windows
loss_gradient_reading = _lstm.loss_gradient_reading
read_text_samples = _lstm.read_text_samples
score_language_run = _lstm.score_language_run
table_logits = _lstm.table_logits
LSTMWeights = _lstm.LSTMWeights
UnmappableWeights = _lstm.UnmappableWeights
_gate_of = _lstm._gate_of
lstm_equations = _lstm.lstm_equations
lstm_weight_readings = _lstm.lstm_weight_readings
same_gates = _lstm.same_gates
_probes_lstm = graders_module("_probes_lstm")  # and worker side
construct_with_args = _probes_lstm.construct_with_args
inline_loss_gradient = _probes_lstm.inline_loss_gradient
language_model_output = _probes_lstm.language_model_output
recorded_inputs = _probes_lstm.recorded_inputs
recording_language_model = _probes_lstm.recording_language_model
template_arguments = _probes_lstm.template_arguments
train_language_model = _probes_lstm.train_language_model
call_recurrent = _probes_lstm.call_recurrent
lend_lstm = _probes_lstm.lend_lstm
lstm_probe = _probes_lstm.lstm_probe
return_lstm = _probes_lstm.return_lstm
_sampling = graders_module("_probes_sampling")  # UvA A2's sampling probes
sampling_cost, with_known_logits = _sampling.sampling_cost, _sampling.with_known_logits

H, E = 5, 3


class NamedLSTM(nn.Module):
    """Twelve named parameters; ``order`` is the gates the forward takes from the chunks g, i, f, o."""

    def __init__(self, order: str = "gifo", transposed: bool = False) -> None:
        super().__init__()
        self.order = order
        gen = torch.Generator().manual_seed(0)
        for gate in "gifo":
            x_shape, h_shape = ((E, H), (H, H)) if transposed else ((H, E), (H, H))
            setattr(self, f"W_{gate}x", nn.Parameter(torch.randn(*x_shape, generator=gen) * 0.5))
            setattr(self, f"W_{gate}h", nn.Parameter(torch.randn(*h_shape, generator=gen) * 0.5))
            setattr(self, f"b_{gate}", nn.Parameter(torch.randn(H, generator=gen) * 0.5))
        self.transposed = transposed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[1], H)
        c = x.new_zeros(x.shape[1], H)
        outputs = []
        for t in range(x.shape[0]):
            pre = {}
            for gate in "gifo":
                w_x, w_h = getattr(self, f"W_{gate}x"), getattr(self, f"W_{gate}h")
                pre[gate] = (x[t] @ w_x + h @ w_h if self.transposed else x[t] @ w_x.T + h @ w_h.T) + getattr(
                    self, f"b_{gate}"
                )
            g, i, f, o = (pre[gate] for gate in self.order)
            c = torch.tanh(g) * torch.sigmoid(i) + c * torch.sigmoid(f)
            h = torch.tanh(c) * torch.sigmoid(o)
            outputs.append(h)
        return torch.stack(outputs)


class ConcatenatedLSTM(nn.Module):
    """One ``[E + H, 4H]`` weight on ``[h, x]`` (h first) and one ``[4H]`` bias, gates in PyTorch's
    order i, f, g, o."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.weight = nn.Parameter(torch.randn(H + E, 4 * H, generator=gen) * 0.5)
        self.bias = nn.Parameter(torch.randn(4 * H, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple]:
        h, c = state
        outputs = []
        for t in range(x.shape[0]):
            i, f, g, o = (torch.cat((h, x[t]), dim=1) @ self.weight + self.bias).chunk(4, dim=1)
            c = torch.tanh(g) * torch.sigmoid(i) + c * torch.sigmoid(f)
            h = torch.tanh(c) * torch.sigmoid(o)
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    hidden_dim = H


def embeds(steps: int = 4, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(steps, batch, E, generator=torch.Generator().manual_seed(seed))


def matches(model: nn.Module, x: torch.Tensor) -> list[LSTMWeights]:
    probe = lstm_probe(model, x)
    readings, _ = lstm_weight_readings(params.parameter_values(model), H, E)
    return [r for r in readings if float((lstm_equations(x, r) - probe["output"]).abs().max()) < 1e-5]


# -- names and readings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "gate"),
    [
        ("W_fx", "f"),
        ("b_f", "f"),
        ("lstm.W_hf", "f"),
        ("W_if", "f"),
        ("W_ii", "i"),
        ("Wgx", "g"),
        ("W_cx", "g"),
        ("weight_forget", "f"),
        ("output_gate_bias", "o"),
        ("U_o", "o"),
        ("bias_i", "i"),
        ("W_x", None),
        ("w1", None),
    ],
)
def test_gate_of_reads_the_usual_spellings(name, gate):
    assert _gate_of(name) == gate


def test_named_reading_matches_an_lstm_that_follows_its_names():
    model, x = NamedLSTM(), embeds()
    readings, named = lstm_weight_readings(params.parameter_values(model), H, E)
    assert named is not None and named.named and named.sources["f"] == "W_fx, W_fh, b_f"
    expected = lstm_equations(x, named)
    assert torch.allclose(expected, model(x).double(), atol=1e-6)
    assert readings[0] is named


def test_swapped_gates_match_only_a_reading_against_the_names():
    model, x = NamedLSTM(order="giof"), embeds()
    _, named = lstm_weight_readings(params.parameter_values(model), H, E)
    found = matches(model, x)
    assert found and all(not r.named for r in found)
    assert found[0].sources["f"] == "W_ox, W_oh, b_o" and named.sources["f"] == "W_fx, W_fh, b_f"


def test_transposed_weights_are_read_too():
    model, x = NamedLSTM(transposed=True), embeds()
    assert any(r.named for r in matches(model, x))


def test_weights_applied_as_x_at_w_keep_the_gates_of_their_names():
    """[E, H] and [H, H] weights applied as x @ W and h @ W (issue 17: reported as swapped gates):
    the reading that matches follows the names, the orientation aside."""
    model, x = NamedLSTM(transposed=True), embeds()
    readings, named = lstm_weight_readings(params.parameter_values(model), H, E)
    found = matches(model, x)
    assert found[0].named and same_gates(found[0], named)
    assert found[0].sources["f"] == "W_fx (transposed), W_fh (transposed), b_f"
    assert named.gates()["f"] == "W_fx, W_fh, b_f"
    first_unnamed = next(i for i, r in enumerate(readings) if not r.named)
    assert all(r.named for r in readings[:first_unnamed])  # every orientation of the names comes first


def test_swapped_gates_are_told_apart_in_the_x_at_w_orientation_too():
    model, x = NamedLSTM(order="giof", transposed=True), embeds()
    _, named = lstm_weight_readings(params.parameter_values(model), H, E)
    found = matches(model, x)
    assert found and all(not r.named for r in found)
    assert not same_gates(found[0], named) and found[0].gates()["f"] == "W_ox, W_oh, b_o"


class TwoBiasesPerGate(NamedLSTM):
    """``b_xi, b_hi, b_xf, b_hf, ...`` registered gate by gate: the two biases of a gate are added."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        for gate in "gifo":
            delattr(self, f"b_{gate}")
            setattr(self, f"b_x{gate}", nn.Parameter(torch.randn(H, generator=gen)))
            setattr(self, f"b_h{gate}", nn.Parameter(torch.randn(H, generator=gen)))

    def __getattr__(self, name: str):
        if len(name) == 3 and name.startswith("b_"):
            return super().__getattr__(f"b_x{name[2]}") + super().__getattr__(f"b_h{name[2]}")
        return super().__getattr__(name)


def test_two_biases_per_gate_registered_gate_by_gate_are_paired_by_name():
    model, x = TwoBiasesPerGate(), embeds()
    _, named = lstm_weight_readings(params.parameter_values(model), H, E)
    assert named is not None and named.sources["f"] == "W_fx, W_fh, b_xf, b_hf"
    assert any(r.named for r in matches(model, x))


def test_nn_lstm_is_read_with_its_two_biases_added():
    model, x = nn.LSTM(E, H), embeds()
    found = matches(model, x)
    assert found
    assert "bias_ih_l0[5:10], bias_hh_l0[5:10]" in found[0].sources["f"]  # PyTorch's order i, f, g, o


def test_concatenated_weights_with_a_state_argument_are_read():
    model, x = ConcatenatedLSTM(), embeds()
    probe = lstm_probe(model, x)
    assert probe["adapted"] == "called as forward(x, (h0, c0)) with zero states"
    found = matches(model, x)
    assert found and "columns 0-4 (h)" in found[0].sources["g"]


def test_a_parameter_of_no_known_shape_is_reported():
    model = NamedLSTM()
    model.extra = nn.Parameter(torch.zeros(7, 2))
    with pytest.raises(UnmappableWeights, match=r"the parameter extra \[7, 2\] fits no part of an LSTM"):
        lstm_weight_readings(params.parameter_values(model), H, E)


def test_sizes_that_cannot_be_told_apart_are_refused():
    with pytest.raises(ValueError, match="H, 4H, E and E \\+ H differ"):
        lstm_weight_readings([], 4, 4)


# -- probes ----------------------------------------------------------------------------------------------------
class LinearInsideForward(nn.Module):
    """Builds an nn.Linear inside forward: not in the module tree, but called."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return nn.Linear(E, H)(x)


def test_module_usage_sees_modules_in_the_tree_and_built_at_run_time():
    usage = module_usage(LinearInsideForward(), embeds(), ["nn.Linear"])
    assert usage == {"in_tree": [], "called": ["nn.Linear"], "fused": []}
    usage = module_usage(nn.LSTM(E, H), embeds(), ["nn.Linear", "nn.LSTM"])
    assert usage == {"in_tree": ["LSTM (nn.LSTM)"], "called": ["nn.LSTM"], "fused": ["lstm"]}
    with pytest.raises(ValueError, match="unknown module names"):
        module_usage(nn.LSTM(E, H), embeds(), ["nn.Conv"])


def test_probe_gradient_is_zero_where_an_output_is_detached():
    class Detached(NamedLSTM):
        def forward(self, x):
            out = super().forward(x)
            return torch.cat((out[:1].detach(), out[1:]))

    x, cotangent = embeds(), torch.zeros(4, 2, H)
    cotangent[0] = 1.0
    assert lstm_probe(NamedLSTM(), x, cotangent)["grad"][0].abs().sum() > 0
    assert lstm_probe(Detached(), x, cotangent)["grad"].abs().sum() == 0


def test_the_lent_lstm_follows_the_equations_and_is_given_back():
    import types as _types

    module = _types.ModuleType("student_lstm_module")

    class StudentLSTM(NamedLSTM):
        pass

    class StudentModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = module.LSTM(7, 9)  # the submission's own arguments: ignored by the grader's LSTM

    for cls in (StudentLSTM, StudentModel):
        cls.__module__ = module.__name__
    module.LSTM, module.StudentModel = StudentLSTM, StudentModel
    sys.modules[module.__name__] = module
    try:
        names = lend_lstm(StudentModel, StudentLSTM, H, E, returns_state=False)
        assert names == ["LSTM"]
        lent = StudentModel().lstm
        x = embeds()
        assert matches(lent, x) and lent(x).shape == (4, 2, H)
        assert float(lent.bias.detach()[2 * H : 3 * H].mean()) > 0.5  # the forget gate's +1
        return_lstm(StudentModel, StudentLSTM, names)
        assert module.LSTM is StudentLSTM
    finally:
        del sys.modules[module.__name__]


# -- training and sampling ---------------------------------------------------------------------------------------
class TinyTextModel(nn.Module):
    """Embedding, nn.LSTM, linear; ``sample`` carries the state or, with ``recompute``, re-runs the prefix."""

    def __init__(self, vocabulary: int = 6, recompute: bool = False) -> None:
        super().__init__()
        self.vocabulary, self.recompute = vocabulary, recompute
        self.embedding = nn.Embedding(vocabulary, 4)
        self.lstm = nn.LSTM(4, 8)
        self.output = nn.Linear(8, vocabulary)

    def forward(self, x):
        return self.output(self.lstm(self.embedding(x))[0])

    def sample(self, batch_size=4, sample_length=30, temperature=0.0):
        tokens = [torch.randint(self.vocabulary, (1, batch_size))]
        state = None
        for _ in range(sample_length - 1):
            if self.recompute:
                logits = self(torch.cat(tokens))[-1:]
            else:
                out, state = self.lstm(self.embedding(tokens[-1]), state)
                logits = self.output(out)
            tokens.append(logits.argmax(-1))
        return torch.cat(tokens)


def test_train_language_model_learns_a_periodic_stream():
    stream = torch.arange(600) % 5
    inputs, targets = held_out_windows(stream[:110], 10)
    assert inputs.shape == (10, 10) and targets.tolist() == [(11 * k + 10) % 5 for k in range(10)]
    run = train_language_model(
        TinyTextModel(5), stream, inputs, vocabulary=5, steps=60, batch_size=8, seq_length=10, lr=0.05, clip=5.0, seed=0
    )
    assert sorted(run) == ["losses", "next_logits"] and run["next_logits"].shape == (10, 5)
    result = score_language_run(run, targets, 5)
    assert len(result["losses"]) == 60 and result["val_loss"] < 0.2 < result["losses"][0]


class ReadsAhead(nn.Module):
    """Predicts each position's next character by reading it from the input: what teacher forcing
    cannot stop, and what scoring on a character that never reaches the worker does."""

    def __init__(self, vocabulary: int) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        ahead = torch.cat([x[1:], x[-1:]])
        return 20.0 * F.one_hot(ahead, self.vocabulary).float() + self.bias


def test_a_model_that_reads_ahead_in_its_input_gets_no_credit():
    stream = torch.arange(600) % 5
    inputs, targets = held_out_windows(stream[:330], 10)
    run = train_language_model(
        ReadsAhead(5), stream, inputs, vocabulary=5, steps=5, batch_size=8, seq_length=10, lr=0.05, clip=5.0, seed=0
    )
    result = score_language_run(run, targets, 5)
    assert result["final_loss"] < 2.1 and result["val_loss"] > 10  # right on 9 of 10 training positions


def test_scoring_refuses_logits_of_another_shape_and_counts_non_finite_ones_infinite():
    targets = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"logits \[3, 4\]; expected \[3, 5\]"):
        score_language_run({"losses": [1.0], "next_logits": torch.zeros(3, 4)}, targets, 5)
    logits = torch.zeros(3, 5)
    logits[0, 0] = float("nan")
    assert score_language_run({"losses": [1.0], "next_logits": logits}, targets, 5)["val_loss"] == float("inf")
    assert score_language_run({"losses": [1.0], "next_logits": torch.zeros(3, 5)}, targets, 5)["val_loss"] == (
        pytest.approx(np.log(5))
    )


def test_train_language_model_reports_a_wrong_output_shape():
    class BatchFirst(TinyTextModel):
        def forward(self, x):
            return super().forward(x).transpose(0, 1)

    stream = torch.arange(300) % 5
    result = train_language_model(
        BatchFirst(5),
        stream,
        stream[:40].reshape(10, 4),
        vocabulary=5,
        steps=2,
        batch_size=4,
        seq_length=10,
        lr=0.01,
        clip=5.0,
        seed=0,
    )
    assert result == {
        "error": "the model returned a torch.float32 tensor of shape [4, 10, 5]; expected [10, 4, 5] logits"
    }


def test_sampling_cost_is_linear_when_the_state_is_carried():
    carried = sampling_cost(TinyTextModel(), 2, [12, 24], 0.0)["elements"]
    recomputed = sampling_cost(TinyTextModel(recompute=True), 2, [12, 24], 0.0)["elements"]
    assert 1.8 < carried[1] / carried[0] < 2.2
    assert recomputed[1] / recomputed[0] > 3.5


def test_known_logits_copy_predicts_them_after_any_input():
    model = TinyTextModel(6)
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3, -0.2])
    copied = with_known_logits(model, logits)
    out = copied(torch.randint(6, (5, 3)))
    assert torch.allclose(out, logits.expand(5, 3, 6))
    assert model.output.bias.abs().sum() > 0 and not torch.equal(model.output.bias.detach(), logits)  # untouched


def test_known_logits_needs_one_output_bias():
    model = TinyTextModel(6)
    model.output = nn.Linear(8, 6, bias=False)
    message = with_known_logits(model, torch.zeros(6))
    assert message.startswith(
        "the grader needs exactly one parameter of shape [6] (the output layer's bias b_p) "
        "and found 0 among: embedding.weight [6, 4]"
    )


def test_recording_model_records_what_it_is_fed():
    model = recording_language_model(4, seed=0)
    x = torch.tensor([[0, 1], [2, 3]])
    assert torch.equal(model(x), table_logits(model.table.detach(), x))
    model(x[0])
    assert [r.tolist() for r in recorded_inputs(model)] == [[[0, 1], [2, 3]], [0, 1]]


def test_recording_model_called_with_a_state_returns_it_and_can_return_log_probabilities():
    model = recording_language_model(4, seed=0, log_probs=True)
    x = torch.tensor([[0, 1], [2, 3]])
    logits, state = model(x, None)
    assert state is None and torch.allclose(logits, torch.log_softmax(table_logits(model.table.detach(), x), -1))
    assert len(recorded_inputs(model)) == 1


# -- real students' spellings of the text model (issue 17) ------------------------------------------------------
class StateRequired(TinyTextModel):
    """``forward(x, prev_state)`` with no default, returning ``(logits, (h, c))`` (nn.LSTM's state)."""

    def forward(self, x, prev_state):
        out, state = self.lstm(self.embedding(x), tuple(s[None] for s in prev_state))  # the handout's (B, H)
        return self.output(out), state

    hidden_dim = 8


class ArgsModel(nn.Module):
    """The UvA 2021 template's ``TextGenerationModel(args)``, reading what real submissions read."""

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.embedding = nn.Embedding(args.vocabulary_size, args.embedding_size)
        self.lstm = nn.LSTM(args.embedding_size, args.lstm_hidden_dim)
        self.output = nn.Linear(args.lstm_hidden_dim, args.vocabulary_size).to(args.device)
        self.decode = args.dataset.convert_to_string
        assert args._ix_to_char[0] == args.dataset._ix_to_char[0] and args.batch_size == 7

    def forward(self, x, prev_state):
        out, state = self.lstm(self.embedding(x), tuple(s[None] for s in prev_state))
        return self.output(out), state


def test_a_forward_that_requires_a_state_gets_float_zeros_for_integer_tokens():
    x = torch.randint(6, (5, 3))
    out, adapted = call_recurrent(StateRequired(), x)
    assert adapted == "called as forward(x, (h0, c0)) with zero states" and out[0].shape == (5, 3, 6)
    probe = language_model_output(StateRequired(), x)
    assert probe["adapted"] == adapted and probe["output"].shape == (5, 3, 6)


class NoneOrLibraryState(TinyTextModel):
    """``forward(x, prev_state)`` that takes None or nn.LSTM's own ``(1, B, H)`` state, not ``(B, H)``."""

    def forward(self, x, prev_state):
        out, state = self.lstm(self.embedding(x), prev_state)
        return self.output(out), state


def test_a_forward_that_refuses_zero_states_of_the_handouts_shape_gets_none():
    x = torch.randint(6, (5, 3))
    out, adapted = call_recurrent(NoneOrLibraryState(), x, hidden=8)
    assert adapted == "called as forward(x, None): no initial state" and out[0].shape == (5, 3, 6)


class RefusesEveryState(TinyTextModel):
    def forward(self, x, prev_state):
        raise ValueError(f"cannot read a state {type(prev_state).__name__}")


def test_a_forward_that_refuses_every_state_raises_its_error_for_the_zero_state():
    with pytest.raises(ValueError, match="cannot read a state tuple"):
        call_recurrent(RefusesEveryState(), torch.randint(6, (5, 3)), hidden=8)


def test_the_template_args_hold_the_train_script_arguments_and_the_index_maps():
    args = template_arguments(4, 3, 5, characters="ab c", batch_size=7, seq_length=9)
    assert (args.vocabulary_size, args.embedding_size, args.lstm_hidden_dim, args.input_seq_length) == (4, 3, 5, 9)
    assert {"txt_file", "lr", "num_epochs", "clip_grad_norm", "seed", "device"} <= set(vars(args))
    assert args.dataset._char_to_ix == {"a": 0, "b": 1, " ": 2, "c": 3} and args._ix_to_char[2] == " "
    assert args.dataset.convert_to_string(torch.tensor([3, 0])) == "ca"
    sizes = {"vocabulary_size": 4, "embedding_size": 3, "lstm_hidden_dim": 5}
    model = construct_with_args(ArgsModel, sizes, "ab c", 7, 9)
    assert call_recurrent(model, torch.zeros(2, 1, dtype=torch.long))[0][0].shape == (2, 1, 4)
    with pytest.raises(ValueError, match="distinct characters"):
        template_arguments(3, 3, 5, characters="aab")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["ab", "ba"], ([[0, 1], [1, 0]], True)),
        ("abc", ([[0, 1, 2]], True)),
        ([["a", "b"], ["c", "a"]], ([[0, 1], [2, 0]], True)),
        (["az"], (["az"], False)),  # a character the grader never gave
        (torch.tensor([1]), (None, False)),
    ],
)
def test_text_samples_are_read_back_with_the_graders_characters(value, expected):
    indices, was_text = read_text_samples(value, "abc")
    assert was_text == expected[1]
    if was_text:
        assert indices == expected[0]
    else:
        assert indices is value


def test_training_a_model_that_requires_a_state():
    stream = torch.arange(300) % 5
    inputs, _ = held_out_windows(stream[:66], 10)
    run = train_language_model(
        StateRequired(5), stream, inputs, vocabulary=5, steps=3, batch_size=4, seq_length=10, lr=0.01, clip=5.0, seed=0
    )
    assert run["next_logits"].shape == (6, 5)


# -- the loss computed inline in the UvA 2021 template's train(args) --------------------------------------------
class TextGenerationModel(nn.Module):
    """Stands for the submission's model in the script below (the probe replaces this global); returns
    ``(logits, state)`` as many submissions do."""

    def __init__(self, args):
        super().__init__()
        self.output = nn.Embedding(args.vocabulary_size, args.vocabulary_size)

    def forward(self, x, state=None):
        return self.output(x), (None, None)


def template_train(args, reduce="mean", shift=1):
    """A training script as the UvA 2021 template has it: its own dataset, loss computed inline."""
    with open(args.txt_file) as handle:
        text = handle.read()
    index = {c: i for i, c in enumerate(sorted(set(text)))}
    args.vocabulary_size = len(index)
    data = torch.tensor([index[c] for c in text])
    model = TextGenerationModel(args)
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    for _ in range(args.num_epochs):
        for _ in range(5):
            starts = torch.randint(len(data) - args.input_seq_length - 2, (args.batch_size,))
            window = data[starts[:, None] + torch.arange(args.input_seq_length + 1)].T
            chars, labels = window[:-1], window[shift:][: args.input_seq_length]
            pred, _ = model(chars)
            if reduce == "mean":
                loss = F.cross_entropy(pred.permute(0, 2, 1), labels)
            else:  # the sum over time steps of each step's batch mean
                loss = sum(F.cross_entropy(pred[t], labels[t]) for t in range(len(pred)))
            loss.backward()
            optimizer.step()
    raise AssertionError("the probe stops the script at its first backward pass")


INLINE_ARGS = {"input_seq_length": 6, "batch_size": 3, "lr": 0.01, "num_epochs": 1}


@pytest.mark.parametrize(
    ("reduce", "shift", "weight", "aligned"),
    [("mean", 1, 1 / 18, True), ("sum", 1, 1 / 3, True), ("mean", 0, 1 / 18, False)],
)
def test_the_inline_loss_is_read_from_one_backward_pass(reduce, shift, weight, aligned):
    def train(args):
        template_train(args, reduce, shift)

    train.__globals__["TextGenerationModel"] = TextGenerationModel
    run = inline_loss_gradient(train, "the cat sat on the mat. " * 20, INLINE_ARGS, seed=0)
    assert run["stopped"] and run["error"] is None and run["built"] == 1 and run["vocabulary"] == 11
    assert train.__globals__["TextGenerationModel"] is TextGenerationModel  # put back
    calls = [c for c in run["calls"] if c["grad"] is not None]
    targets, weights, departure = loss_gradient_reading(calls)
    assert departure < 1e-6 and torch.allclose(weights, torch.full((18,), weight, dtype=torch.float64))
    x = calls[0]["input"]
    assert torch.equal(targets.reshape(x.shape)[:-1], x[1:]) == aligned


def test_a_script_that_fails_before_its_backward_pass_is_reported():
    def train(args):
        raise KeyError("log_dir")

    run = inline_loss_gradient(train, "abc" * 10, INLINE_ARGS, seed=0)
    assert run == {"calls": [], "stopped": False, "error": "KeyError: 'log_dir'", "vocabulary": None, "built": 0}


# -- beam search -------------------------------------------------------------------------------------------
DISCUSSION = {
    (): [-0.65, -0.73],
    (0,): [-0.8, -0.6],
    (1,): [-0.6, -0.8],
    (0, 0): [-4.6, -0.01],
    (0, 1): [-0.8, -0.6],
    (1, 0): [-0.8, -0.6],
    (1, 1): [-0.7, -0.69],
}


def test_reference_beam_search_reproduces_the_discussion():
    best, beams = beam_search_reference(DISCUSSION, 2, 3)
    assert best == [0, 1, 1]  # "neural network network"
    assert [[tokens for tokens, _ in step] for step in beams] == [[[0], [1]], [[0, 1], [1, 0]], [[0, 1, 1], [1, 0, 1]]]
    assert [round(score, 2) for _, score in beams[2]] == [-1.85, -1.93]
    sequence, score = exhaustive_search(DISCUSSION, 3)
    assert sequence == [0, 0, 1] and score == pytest.approx(-1.46)  # "neural neural network"


def test_a_wide_beam_is_exhaustive_on_random_trees():
    rng = np.random.default_rng(0)
    for _ in range(5):
        tree = random_tree(3, 3, rng)
        assert all(math.isclose(sum(np.exp(v)), 1.0) for v in tree.values())
        assert beam_search_reference(tree, 9, 3)[0] == exhaustive_search(tree, 3)[0]


def test_tree_decoder_records_states_that_do_not_belong_to_the_tokens():
    decoder = tree_decoder([(list(k), v) for k, v in DISCUSSION.items()])
    _, state = decoder((), None)
    decoder((0,), state)  # the state returned for the parent: fine
    decoder(torch.tensor([0, 1]), None)  # a state never handed back
    record = decoder_record(decoder)
    assert record == {"calls": [[], [0], [0, 1]], "state_mismatches": [[[0, 1], "None"]]}
    with pytest.raises(KeyError, match="not a hypothesis of this tree"):
        decoder((0, 1, 1), (0, 1))


def test_read_beam_result_takes_the_pair_with_tensors_or_a_bare_sequence():
    best, beams, problem = read_beam_result(([0, 1], [[((0,), -0.5)], [((0, 1), -1.0)]]))
    assert (best, beams, problem) == ([0, 1], [[([0], -0.5)], [([0, 1], -1.0)]], "")
    with_tensors = (torch.tensor([1, 0]), [[(torch.tensor([1]), torch.tensor(-0.25))]])
    best, beams, problem = read_beam_result(with_tensors)
    assert (best, beams, problem) == ([1, 0], [[([1], -0.25)]], "")
    assert read_beam_result([0, 1]) == (
        [0, 1],
        None,
        "beam_search returned one sequence, not the pair (best, beams)",
    )
    best, beams, problem = read_beam_result(([0], [[("a", 1.0)]]))
    assert best is None and problem.startswith("could not read (best, beams) from the tuple it returned")
