"""Graders of UvA Deep Learning 1, assignment 2, part 2 (recurrent neural networks): the LSTM written
from scratch (Q2.3) and the ``TextGenerationModel`` built on it, its loss and its training (Q2.4a), greedy
sampling (Q2.4b) and sampling with a temperature (Q2.4c). The parameter count of Q2.2b is graded in
``test_lstm_params.py``; Q2.1 and Q2.2a are answered in words and graded by hand.

How the checks know the answers (helpers in ``_lstm.py``): the submitted LSTM's parameters are read
back by shape and name and its outputs compared with equations (8)-(13) computed in float64 from
those same weights; the text model is trained by the grader's own loop on the synthetic corpus of
``fixtures/text.py``; sampling is tested on a copy of the model whose logits the grader set, and on the
model's own teacher-forced logits.

Written as real submissions write it, correct code keeps its points: weights stored either way round
(``W @ x`` or ``x @ W``), ``TextGenerationModel(args)`` as in the UvA template (``args`` holds the
template's ``train.py`` arguments and ``args.dataset`` the grader's index maps), ``forward(x, state)``
without a default, outputs ``(logits, (h, c))`` or log-probabilities, samples returned as text. Without
a ``sequence_loss`` (the 2021 template computes the loss inline), the loss is read from one backward
pass of ``train(args)``. Where the LSTM fails its own check, the text model is trained with the
grader's LSTM in its place (one bug, one deduction).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _lstm import (
    CORPUS_SEED,
    COST_LENGTHS,
    COST_RATIO_LIMIT,
    EMBED,
    FORBIDDEN_IN_LSTM,
    FORBIDDEN_IN_MODEL,
    GREEDY_SCALE,
    GREEDY_SIZES,
    HELD_OUT_CHARS,
    HIDDEN,
    INIT_EMBED,
    INIT_HIDDEN,
    KNOWN_LOGITS,
    KNOWN_SIZES,
    LEARN_BOUND,
    LOSS_SIZES,
    MSG_BORROWED_LSTM,
    SHAPE_SIZES,
    TEXT_BUDGET,
    TEXT_CALIBRATION,
    TEXT_SIZES,
    TIE_ATOL,
    budget_text,
    call_sample,
    check_batch_and_length,
    check_equations,
    check_forget_bias,
    check_gradient_reach,
    check_teacher_forcing,
    check_temperature,
    check_uniform_initialisation,
    close_loss,
    embeddings,
    loss_alternatives,
    loss_value,
    lstm_label,
    make_lstm,
    matching_reading,
    model_label,
    model_output,
    read_lstm,
    read_samples,
    returns_log_probabilities,
    submitted_loss,
    table_logits,
    text_model,
    train_text_model,
    with_hint,
)
from _probes_lstm import recorded_inputs, recording_language_model, sequence_cross_entropy
from _probes_sampling import sampling_cost, scaled_copy, with_known_logits

from fixtures import text
from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure
from torchgrade.probes import params
from torchgrade.probes.module_usage import holds_instance, module_usage

ASSIGNMENT = "uva-a2"
MANUAL = {
    "Q2.1a": (2, "the gradient of the vanilla RNN's loss at t = 3 with respect to W_hh, written out"),
    "Q2.1b": (2, "what goes wrong when training a vanilla RNN over many time steps"),
    "Q2.2a": (4, "the purpose and the non-linearity of each LSTM gate"),
}


# -- Q2.3: an LSTM from equations (8)-(13), without nn.Linear, nn.LSTM or nn.LSTMCell --------------------------------
@pytest.mark.points(1, question="Q2.3")
def test_lstm_uses_no_library_layers(sub):
    """The LSTM is built from nn.Parameter and tensor operations, without nn.Linear, nn.LSTM or nn.LSTMCell."""
    who = lstm_label(HIDDEN, EMBED)
    usage = sub.apply(
        module_usage, make_lstm(sub, HIDDEN, EMBED), embeddings(4, 2, EMBED, seed=1), list(FORBIDDEN_IN_LSTM)
    )
    problems = []
    if usage["in_tree"]:
        problems.append(f"it holds {', '.join(usage['in_tree'])}")
    if usage["called"]:
        problems.append(f"its forward calls {', '.join(usage['called'])}")
    if usage["fused"]:
        problems.append(f"its forward calls torch's recurrent kernel(s) {', '.join(usage['fused'])}")
    if problems:
        raise CheckFailure(
            f"{who}: {'; '.join(problems)}. The handout allows nn.Parameter and tensor operations only (no "
            f"nn.Linear, nn.LSTM or nn.LSTMCell, nor their relatives). Hint: keep each weight as an nn.Parameter "
            f"and write W x + b with @ (or F.linear)."
        )


@pytest.mark.points(3, question="Q2.3")
def test_lstm_follows_the_equations(sub, parts):
    """The LSTM computes equations (8)-(13), for any batch size and sequence length."""
    who = lstm_label(HIDDEN, EMBED)
    with parts.part(1, "equals equations (8)-(13) computed with the module's own weights"):
        check_equations(sub, who)
    with parts.part(1, "one instance takes any batch size and sequence length, each sequence independently"):
        try:
            check_batch_and_length(sub, who)
        except CheckFailure as failure:
            raise with_hint(
                failure,
                "Hint: build the zero state from the input's shape in every call; a state "
                "kept on self leaks from one call into the next.",
            ) from None
    with parts.part(1, "autograd: each output step depends on every input step up to it, and on none after it"):
        check_gradient_reach(sub, who)


@pytest.mark.points(2, question="Q2.3")
def test_lstm_initialisation(sub, parts):
    """All weights start uniform in +-1/sqrt(N_hidden), and the forget gate's bias 1 higher."""
    who = lstm_label(INIT_HIDDEN, INIT_EMBED)
    with parts.part(1, "every parameter drawn uniformly from +-1/sqrt(H)"):
        values = sub.apply(params.parameter_values, make_lstm(sub, INIT_HIDDEN, INIT_EMBED))
        check_uniform_initialisation(values, INIT_HIDDEN, who)
    with parts.part(1, "the forget gate's bias starts at +1 more than the others"):
        model = make_lstm(sub, INIT_HIDDEN, INIT_EMBED)
        probe, readings, named, x = read_lstm(sub, model, INIT_HIDDEN, INIT_EMBED, steps=3, batch=2, seed=6)
        found, difference = matching_reading(probe, readings, x)
        if found is None and named is not None:
            found = named  # the outputs' bug costs the equations check; the names still say which bias is b_f
        if found is None:
            raise CheckFailure(
                f"{who}: the grader cannot tell which bias is the forget gate's: the outputs differ from equations "
                f"(8)-(13) by up to {difference:.3g} under every reading of the parameters (the equations check "
                f"says more)."
            )
        check_forget_bias(found, who)


# -- Q2.4a: the TextGenerationModel, its loss and its training -------------------------------------------------------
@pytest.mark.points(2, question="Q2.4a")
def test_text_model_shapes(sub, parts):
    """The model embeds the characters, runs your own LSTM and maps each step to logits (eq. 14)."""
    v, e, h = SHAPE_SIZES["vocabulary"], SHAPE_SIZES["embed"], SHAPE_SIZES["hidden"]
    who = model_label(v, e, h)
    rng = np.random.default_rng(24)
    with parts.part(1, "[T, B] characters -> [T, B, V] logits, for several T and B"):
        model = text_model(sub, v, e, h)
        model.eval()
        for steps, batch in ((1, 1), (7, 3), (12, 5)):
            x = torch.from_numpy(rng.integers(0, v, size=(steps, batch)))
            call = f"{who}(x[{steps}, {batch}])"
            try:
                out = shapes.check_shape(model_output(sub, model, x, who, h), (steps, batch, v), call)
            except CheckFailure as failure:
                raise with_hint(
                    failure,
                    "Hint: embed x [T, B] to [T, B, E], run the LSTM to [T, B, H], and map "
                    "every step to V logits with the output layer (eq. 14).",
                ) from None
            shapes.check_finite(out, call)
            if np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1, atol=1e-4):
                raise CheckFailure(
                    f"{call} returned rows of probabilities (non-negative, summing to 1); return the "
                    f"logits p of eq. (14): cross-entropy and sampling apply the softmax themselves."
                )
    with parts.part(1, "uses the submitted LSTM class, not a library recurrent layer"):
        model = text_model(sub, v, e, h)
        usage = sub.apply(module_usage, model, torch.zeros(3, 2, dtype=torch.long), list(FORBIDDEN_IN_MODEL))
        found = usage["in_tree"] + usage["called"] + usage["fused"]
        if found:
            raise CheckFailure(
                f"{who} uses {', '.join(dict.fromkeys(found))}; the handout asks for your own LSTM "
                f"from Q2.3 (nn.LSTM only if yours does not work, with a deduction)."
            )
        if not sub.apply(holds_instance, model, sub.LSTM):
            raise CheckFailure(
                f"{who} holds no instance of the submitted LSTM class; build it with "
                f"self.lstm = LSTM(lstm_hidden_dim, embedding_size)."
            )


@pytest.mark.points(2, question="Q2.4a")
def test_sequence_loss(sub, parts):
    """The loss is the cross-entropy averaged over all time steps (eq. 17), with teacher forcing."""
    v, steps, batch = LOSS_SIZES["vocabulary"], LOSS_SIZES["steps"], LOSS_SIZES["batch"]
    rng = np.random.default_rng(17)
    stream = torch.from_numpy(rng.integers(0, v, size=(steps + 1, batch)))
    inputs, targets = stream[:-1], stream[1:]
    call = f"sequence_loss(model, inputs[{steps}, {batch}], targets[{steps}, {batch}])"
    loss = submitted_loss(sub, parts)
    if loss is None:  # no sequence_loss: graded inside the training script (or skipped, saying why)
        return
    with parts.part(1, "the cross-entropy averaged over all time steps and sequences (eq. 17)"):
        model = sub.apply(recording_language_model, v, 3)
        table = sub.apply(params.parameter_values, model)[0][1]
        logits = table_logits(table, inputs)
        expected = float(sequence_cross_entropy(logits, targets))
        got = loss_value(loss(model, inputs, targets), call)
        if not close_loss(got, expected) and returns_log_probabilities(sub):
            # The submission's model ends in log_softmax, and its loss is written for that (nll_loss):
            # graded with a recording model that returns log-probabilities too.
            got = loss_value(loss(sub.apply(recording_language_model, v, 3, True), inputs, targets), call)
            if close_loss(got, expected):
                sub.notes["sequence_loss on log-probabilities"] = (
                    "the submitted TextGenerationModel returns log-probabilities; sequence_loss was graded with a "
                    "grader's model that returns log-probabilities too"
                )
        if not close_loss(got, expected):
            alternatives = loss_alternatives(logits, inputs, targets)
            mistakes = [name for name, alt in alternatives.items() if close_loss(got, alt)]
            said = f" That is {mistakes[0]}." if mistakes else ""
            raise CheckFailure(
                f"{call} returned {got:.6g}; expected {expected:.6g}, the mean of the {steps * batch} per-character "
                f"cross-entropies of the model's logits for inputs against targets (a grader's model with known "
                f"logits).{said} Hint: F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))."
            )
    with parts.part(1, "teacher forcing: the model reads the true characters"):
        model = sub.apply(recording_language_model, v, 4)
        loss(model, inputs, targets)
        check_teacher_forcing(sub.apply(recorded_inputs, model), inputs, call)


@pytest.mark.points(3, question="Q2.4a")
@pytest.mark.timeout(120)
def test_text_model_learns(text_run, corpus, evidence, submission):
    """Trained with teacher forcing, the model learns to predict the next character."""
    losses = text_run["losses"]
    if text_run.get("borrowed_lstm"):
        submission.notes["Q2.4a trained with the grader's LSTM"] = MSG_BORROWED_LSTM.format(
            why=text_run["borrowed_lstm"]
        )
        evidence["borrowed"] = "the grader's LSTM (the submitted one failed Q2.3)"
    evidence.update(
        {
            "val_loss": round(text_run["val_loss"], 4),
            "final_training_loss": round(text_run["final_loss"], 4),
            "training_loss_every_20_steps": losses[::20],
            "bigram_model_loss": round(text.conditional_entropy(corpus["train"].numpy(), corpus["val"].numpy(), 2), 4),
        }
    )
    if not text_run["val_loss"] <= LEARN_BOUND:
        vocabulary = len(text.VOCABULARY)
        raise CheckFailure(
            f"the held-out loss was {text_run['val_loss']:.3f} nats per character (the cross-entropy of the "
            f"character after each held-out window of {TEXT_BUDGET['seq_length']} characters, which the model never "
            f"sees); at most {LEARN_BOUND:.3f} is needed. Run: "
            f"{model_label(vocabulary, TEXT_SIZES['embed'], TEXT_SIZES['hidden'])} trained by the "
            f"grader ({budget_text()}, Adam, teacher forcing) on the synthetic corpus of fixtures/text.py; a model "
            f"that sees only the previous character reaches {evidence['bigram_model_loss']:.2f} at best. "
            f"Threshold: {TEXT_CALIBRATION}."
        )


# -- Q2.4b: greedy sampling ------------------------------------------------------------------------------------------
@pytest.mark.points(3, question="Q2.4b")
def test_greedy_sampling(sub, parts):
    """Greedy sampling picks the most likely character, storing the hidden state between steps."""
    v, e, h = GREEDY_SIZES["vocabulary"], GREEDY_SIZES["embed"], GREEDY_SIZES["hidden"]
    who = model_label(v, e, h)
    length, batch = 15, 6
    with parts.part(2, "temperature 0: each character is the argmax of the logits given the characters before it"):
        model = sub.apply(scaled_copy, text_model(sub, v, e, h), GREEDY_SCALE)
        call = f"{who}.sample(batch_size={batch}, sample_length={length}, temperature=0)"
        value, _ = call_sample(model, batch, length, 0.0, call, sub.notes)
        samples = read_samples(value, length, batch, v, call, sub.notes)
        out = model_output(sub, model, torch.from_numpy(samples[:-1]), who, h)
        logits = shapes.check_shape(out, (length - 1, batch, v), f"{who}(sample[:-1])")
        chosen = np.take_along_axis(logits, samples[1:, :, None], axis=2)[..., 0]
        wrong = np.argwhere(chosen < logits.max(axis=2) - TIE_ATOL)
        if len(wrong):
            t, b = (int(i) for i in wrong[0])
            raise CheckFailure(
                f"{call}: character {t + 1} of sequence {b} is {samples[t + 1, b]}, but the model's logits after "
                f"the {t + 1} characters before it (the model run on the sample itself) favour "
                f"{int(logits[t, b].argmax())} ({len(wrong)} of {(length - 1) * batch} characters differ). Hint: "
                f"at temperature 0 take the argmax, and carry the LSTM's state (h, c) from one step to the next "
                f"instead of starting from zeros for every character."
            )
    with parts.part(1, "the hidden state is carried: sampling 2L characters costs about twice L, not four times"):
        model = text_model(sub, v, e, h)
        _, positional = call_sample(model, 2, 3, 0.0, who, sub.notes)
        cost = sub.apply(sampling_cost, model, 2, list(COST_LENGTHS), 0.0, positional)["elements"]
        ratio = cost[1] / max(cost[0], 1)
        if not ratio <= COST_RATIO_LIMIT:
            raise CheckFailure(
                f"{who}.sample(batch_size=2, sample_length={COST_LENGTHS[1]}) did {ratio:.2f} times the work of "
                f"sample_length={COST_LENGTHS[0]} (elements computed by torch: {cost[1]} against {cost[0]}); with "
                f"the state carried it is about 2, re-running the model over the whole prefix for every character "
                f"makes it about 4. Hint: keep (h, c) between steps and feed only the newest character."
            )


# -- Q2.4c: sampling with a temperature ------------------------------------------------------------------------------
@pytest.mark.points(3, question="Q2.4c")
def test_temperature_sampling(sub, parts):
    """At temperature tau, the next character is drawn from softmax(logits / tau)."""
    v, e, h = KNOWN_SIZES["vocabulary"], KNOWN_SIZES["embed"], KNOWN_SIZES["hidden"]
    who = f"{model_label(v, e, h)} with its logits set to {list(KNOWN_LOGITS)}"
    for temperature in (1.0, 0.5, 2.0):
        with parts.part(1, f"temperature {temperature:g}: characters follow softmax(logits / {temperature:g})"):
            model = sub.apply(with_known_logits, text_model(sub, v, e, h), torch.tensor(KNOWN_LOGITS))
            if isinstance(model, str):
                raise CheckFailure(f"{model_label(v, e, h)}: {model}; the grader sets the logits through it.")
            check_temperature(sub, model, temperature, who)


# -- fixtures: the corpus and the training run, shared by the checks that need them ----------------------------------
@pytest.fixture(scope="module")
def corpus() -> dict[str, torch.Tensor]:
    data = text.make_dataset(seed=CORPUS_SEED, n_val=HELD_OUT_CHARS)
    return {name: torch.from_numpy(stream) for name, stream in data.items()}


@pytest.fixture(scope="module")
def text_run(submission, grade_cache, corpus) -> dict:
    return train_text_model(submission, grade_cache, corpus)
