"""torchgrade.engine.binding: a grader's call of a handout name, bound by parameter name."""

from __future__ import annotations

import inspect

import pytest

from torchgrade import assignments
from torchgrade.assignments import REQUIRED, HandoutParameter
from torchgrade.engine import binding
from torchgrade.engine.binding import (
    KEYWORD_ONLY,
    POSITIONAL_ONLY,
    CannotBind,
    MalformedParameters,
    SubmittedParameter,
    bind,
    covers,
    parse_parameters,
    render_signature,
)
from torchgrade.worker.session import describe_parameters

HANDOUT_PARAMETERS = assignments.active().calls()
PARAMETER_ALIASES = assignments.active().aliases()


def params(fn) -> tuple[SubmittedParameter, ...]:
    """The submitted parameters of ``fn`` as the worker reports them, validated as the grader does."""
    return parse_parameters(describe_parameters(fn))


def call(name: str, fn, *args, **kwargs) -> binding.Binding:
    return bind(name, HANDOUT_PARAMETERS[name], params(fn), args, kwargs, PARAMETER_ALIASES)


# -- the shoe models -------------------------------------------------------------------------------------
def test_the_handout_s_own_signature_is_called_as_written() -> None:
    def cnn(n=4, kernel_size=3): ...

    got = call("CNN", cnn, n=2, kernel_size=5)
    assert got.as_written and (got.args, got.kwargs) == ((), {"n": 2, "kernel_size": 5})
    assert got.targets == {"n": "n", "kernel_size": "kernel_size"} and not got.dropped and not got.renamed


def test_a_model_with_n_and_k_fixed_inside_is_called_without_them() -> None:
    def cnn(): ...

    got = call("CNN", cnn, n=4, kernel_size=3)
    assert not got.as_written and (got.args, got.kwargs) == ((), {})
    assert got.dropped == {"n": 4, "kernel_size": 3} and not got.received("n")


def test_a_value_other_than_the_default_is_dropped_and_recorded() -> None:
    """The grader reads n and the kernel size from the weights: it must learn that n=2 did not reach."""

    def cnn(): ...

    assert call("CNN", cnn, n=2).dropped == {"n": 2}


def test_dropout_never_receives_the_kernel_size() -> None:
    """CNNChannel(n, dropout) was called as CNNChannel(4, 3): dropout=3."""

    def cnn_channel(n, dropout=0.5): ...

    got = call("CNNChannel", cnn_channel, n=4, kernel_size=3)
    assert (got.args, got.kwargs) == ((), {"n": 4}) and got.dropped == {"kernel_size": 3}


def test_a_required_parameter_the_grader_has_no_value_for_is_named() -> None:
    def cnn_channel(n, dropout): ...

    with pytest.raises(CannotBind, match=r"^its parameter 'dropout' has no default and the grader has no value"):
        call("CNNChannel", cnn_channel, n=4, kernel_size=3)


def test_aliases_and_spellings_of_case_and_underscores() -> None:
    def cnn(numChannels=4, k=3): ...  # noqa: N803 - a student's spelling

    got = call("CNN", cnn, n=2, kernel_size=5)
    assert got.kwargs == {"numChannels": 2, "k": 5} and got.renamed == {"n": "numChannels", "kernel_size": "k"}


def test_a_keyword_is_never_moved_to_a_position() -> None:
    def cnn(channels, width=3): ...  # 'width' is no kernel size

    got = call("CNN", cnn, n=2, kernel_size=5)
    assert (got.args, got.kwargs) == ((), {"channels": 2}) and got.dropped == {"kernel_size": 5}


# -- GraphAttentionLayer: the grader passes its first three values by position ----------------------------
def test_positional_values_bind_by_the_handout_s_names_to_reordered_parameters() -> None:
    def layer(in_dim, n_heads, out_dim, leaky_relu_negative_slope=0.2, concat=True, dropout=0.6): ...

    got = call("GraphAttentionLayer", layer, 5, 6, 2, is_concat=False, dropout=0.6, alpha=0.1)
    assert got.args == () and not got.as_written
    assert got.kwargs == {
        "in_dim": 5,
        "out_dim": 6,
        "n_heads": 2,
        "concat": False,
        "dropout": 0.6,
        "leaky_relu_negative_slope": 0.1,
    }
    assert got.renamed == {
        "in_features": "in_dim",
        "out_features": "out_dim",
        "is_concat": "concat",
        "alpha": "leaky_relu_negative_slope",
    }


@pytest.mark.parametrize(
    "slope", ["alpha", "leaky_relu_negative_slope", "negative_slope", "leaky_relu_slope", "lrelu_alpha"]
)
def test_alpha_under_its_other_names(slope: str) -> None:
    ns: dict = {}
    exec(f"def layer(in_features, out_features, n_heads, is_concat=True, dropout=0.6, {slope}=0.2): ...", ns)
    got = call("GraphAttentionLayer", ns["layer"], 5, 6, 2, is_concat=True, dropout=0.6, alpha=0.1)
    assert got.kwargs[slope] == 0.1 and got.as_written == (slope == "alpha")


def test_the_handout_s_order_is_called_as_written() -> None:
    def layer(in_features, out_features, n_heads, is_concat=True, dropout=0.6, alpha=0.2): ...

    got = call("GraphAttentionLayer", layer, 5, 6, 2, is_concat=True, dropout=0.6, alpha=0.2)
    assert got.as_written and got.args == (5, 6, 2)


def test_a_layer_that_always_concatenates_is_called_without_is_concat() -> None:
    def layer(in_features, out_features, n_heads, dropout=0.6, alpha=0.2): ...

    got = call("GraphAttentionLayer", layer, 5, 6, 2, is_concat=False, dropout=0.6, alpha=0.2)
    assert got.dropped == {"is_concat": False} and got.kwargs["n_heads"] == 2


def test_a_required_handout_parameter_without_a_place_fails_naming_it() -> None:
    def layer(in_features, out_features, is_concat=True): ...

    with pytest.raises(
        CannotBind, match=r"^it has no parameter for the handout's n_heads \(looked for n_heads, num_heads"
    ):
        call("GraphAttentionLayer", layer, 5, 6, 2)


def test_keywords_go_through_var_keyword_when_nothing_matches() -> None:
    def layer(in_features, out_features, n_heads, **kwargs): ...

    got = call("GraphAttentionLayer", layer, 5, 6, 2, is_concat=True, alpha=0.1)
    assert got.as_written and got.through_kwargs == ("is_concat", "alpha") and got.target("alpha") == "**kwargs"
    reordered = call("GraphAttentionLayer", lambda out_features, in_features, n_heads, **kw: None, 5, 6, 2, alpha=0.1)
    assert not reordered.as_written and reordered.kwargs == {
        "in_features": 5,
        "out_features": 6,
        "n_heads": 2,
        "alpha": 0.1,
    }


def test_a_positional_only_parameter_never_receives_a_keyword() -> None:
    def layer(in_features, out_features, n_heads, /, alpha=0.2): ...

    with pytest.raises(CannotBind, match="'in_features', which takes the handout's in_features, is positional-only"):
        call("GraphAttentionLayer", layer, 5, 6, 2)


# -- train_model: three values by position, the budgets by name -----------------------------------------------
HANDOUT_TRAIN = {"batch_size": 10, "learning_rate": 3e-3, "max_iters": 250, "max_epoch": 1000}


def test_train_model_s_positional_values_stay_positional_and_budgets_find_their_names() -> None:
    def train_model(net, train_loader, val_loader, lr=0.01, num_epochs=30, batch_size=32): ...

    got = call("train_model", train_model, "m", "t", "v", **HANDOUT_TRAIN)
    assert got.args == ("m", "t", "v") and got.kwargs == {"batch_size": 10, "lr": 3e-3, "num_epochs": 1000}
    assert got.dropped == {"max_iters": 250} and got.received("max_epoch") and not got.received("max_iters")
    assert got.target("max_epoch") == "num_epochs" and got.target("train_data") == "train_loader"
    assert got.positional == ("model", "train_data", "valid_data") and "train_data" not in got.renamed


@pytest.mark.parametrize("epochs", ["num_epochs", "epochs", "n_epochs", "max_epochs", "num_epoch", "max_epoch"])
def test_epoch_budgets_under_the_names_students_use(epochs: str) -> None:
    ns: dict = {}
    exec(f"def train_model(model, train_data, valid_data, {epochs}=5): ...", ns)
    got = call("train_model", ns["train_model"], "m", "t", "v", max_iters=250, max_epoch=7)
    assert got.kwargs == {epochs: 7} and got.dropped == {"max_iters": 250}


@pytest.mark.parametrize("iters", ["num_iters", "n_iters", "iterations", "max_iter", "num_iterations", "iters"])
def test_iteration_budgets_under_the_names_students_use(iters: str) -> None:
    ns: dict = {}
    exec(f"def train_model(model, train_data, valid_data, {iters}=5): ...", ns)
    got = call("train_model", ns["train_model"], "m", "t", "v", max_iters=250, max_epoch=7)
    assert got.kwargs == {iters: 250} and got.dropped == {"max_epoch": 7}


def test_a_required_extra_parameter_fails_naming_it() -> None:
    def train_model(model, train_data, valid_data, optimizer, num_epochs=3): ...

    with pytest.raises(CannotBind, match=r"^its parameter 'optimizer' has no default and the grader has no value"):
        call("train_model", train_model, "m", "t", "v", max_epoch=2)


def test_a_required_parameter_standing_for_a_keyword_the_call_leaves_out_says_so() -> None:
    def train_model(model, train_data, valid_data, num_epochs): ...

    with pytest.raises(CannotBind, match=r"\(it stands for the handout's max_epoch, which this call does not pass\)"):
        call("train_model", train_model, "m", "t", "v", max_iters=3)


def test_positional_parameters_that_do_not_line_up_fail() -> None:
    def train_model(model, train_data, batch_size=32, lr=0.01): ...

    with pytest.raises(CannotBind, match=r"its parameter 'batch_size' stands where the handout has valid_data"):
        call("train_model", train_model, "m", "t", "v", batch_size=8)

    def swapped(model, valid_set, train_set): ...

    with pytest.raises(CannotBind, match=r"its parameter 'valid_set' stands where the handout has train_data"):
        call("train_model", swapped, "m", "t", "v")


def test_too_few_positional_parameters_fail_and_var_positional_takes_them() -> None:
    def two(model, data): ...

    with pytest.raises(
        CannotBind, match=r"^it takes 2 positional parameter\(s\); the handout passes model, train_data"
    ):
        call("train_model", two, "m", "t", "v")
    star = call("train_model", lambda model, *data: None, "m", "t", "v")
    assert star.as_written and star.target("valid_data") == "*data"


def test_a_positional_handout_value_given_by_name_is_passed_by_position() -> None:
    def train_model(net, train_data, valid_data): ...

    got = call("train_model", train_model, model="m", train_data="t", valid_data="v")
    assert (got.args, got.kwargs, got.as_written) == (("m", "t", "v"), {}, False)

    def positional_only(model, train_data, valid_data, /): ...

    got = call("train_model", positional_only, model="m", train_data="t", valid_data="v")
    assert (got.args, got.kwargs, got.as_written) == (("m", "t", "v"), {}, False)


# -- the language model ------------------------------------------------------------------------------------
def test_lstm_sizes_under_other_names() -> None:
    def lstm(input_size, hidden_size): ...

    got = call("LSTM", lstm, lstm_hidden_dim=8, embedding_size=3)
    assert got.kwargs == {"hidden_size": 8, "input_size": 3}


def test_text_generation_model_sizes_under_other_names() -> None:
    def model(vocab_size, embedding_dim=64, lstm_num_hidden=128): ...

    got = call("TextGenerationModel", model, vocabulary_size=20, embedding_size=5, lstm_hidden_dim=7)
    assert got.kwargs == {"vocab_size": 20, "embedding_dim": 5, "lstm_num_hidden": 7}


def test_an_args_object_gets_no_value() -> None:
    with pytest.raises(CannotBind, match=r"^it has no parameter for the handout's vocabulary_size"):
        call("TextGenerationModel", lambda args: None, vocabulary_size=20, embedding_size=5, lstm_hidden_dim=7)


def test_an_exact_name_wins_over_another_keyword_s_alias() -> None:
    handout = (HandoutParameter("a", 1), HandoutParameter("b", 2))

    def fn(a=0, b=0): ...

    got = bind("f", handout, params(fn), (), {"a": 1, "b": 2}, {"a": ("b",)})
    assert got.as_written and got.targets == {"a": "a", "b": "b"}


def test_droppable_marks_a_required_handout_parameter_that_may_be_left_out() -> None:
    handout = (HandoutParameter("x"), HandoutParameter("y", REQUIRED, droppable=True))
    assert bind("f", handout, params(lambda x: None), (), {"x": 1, "y": 2}).dropped == {"y": 2}
    with pytest.raises(CannotBind, match="for the handout's x"):
        bind("f", handout, params(lambda y: None), (), {"x": 1, "y": 2})


# -- calls not made of the handout's parameters ----------------------------------------------------------------
def test_covers_only_the_handout_s_parameters_each_once() -> None:
    handout = HANDOUT_PARAMETERS["GraphAttentionLayer"]
    assert covers(handout, (5, 6, 2), {"alpha": 0.1})
    assert not covers(handout, (5,), {"in_features": 5})
    assert not covers(handout, (), {"width": 3})
    assert not covers(HANDOUT_PARAMETERS["CNN"], (1, 2, 3), {})
    with pytest.raises(CannotBind, match="the handout's CNN has no parameter 'width'"):
        call("CNN", lambda n=4: None, width=3)


# -- what the worker reports, validated ---------------------------------------------------------------------
OPAQUE = object()


def test_the_worker_describes_every_kind_and_plain_defaults_only() -> None:
    def fn(a, /, b=1.5, *args, c=None, d=OPAQUE, e="x" * 500, **kwargs): ...

    assert describe_parameters(fn) == [
        {"name": "a", "kind": "positional_only", "has_default": False},
        {"name": "b", "kind": "positional_or_keyword", "has_default": True, "default": 1.5},
        {"name": "args", "kind": "var_positional", "has_default": False},
        {"name": "c", "kind": "keyword_only", "has_default": True, "default": None},
        {"name": "d", "kind": "keyword_only", "has_default": True},
        {"name": "e", "kind": "keyword_only", "has_default": True},
        {"name": "kwargs", "kind": "var_keyword", "has_default": False},
    ]
    assert render_signature("fn", params(fn)) == "fn(a, /, b=1.5, *args, c=None, d=..., e=..., **kwargs)"

    class Model:
        def __init__(self, n, k=3): ...

    assert [p.name for p in params(Model)] == ["n", "k"]  # a class: its constructor without self
    assert render_signature("f", (SubmittedParameter("x", KEYWORD_ONLY),)) == "f(*, x)"


def test_a_signature_that_cannot_be_read_is_none() -> None:
    class Odd:
        @property
        def __signature__(self):
            raise RuntimeError("no")

        def __call__(self): ...

    assert describe_parameters(Odd()) is None


@pytest.mark.parametrize(
    "data",
    [
        None,
        "n",
        [{"name": "n"}],
        [{"name": "n", "kind": "positional_or_keyword", "has_default": 1}],
        [{"name": "n", "kind": "odd", "has_default": False}],
        [{"name": "1n", "kind": "keyword_only", "has_default": False}],
        [{"name": "n" * 201, "kind": "keyword_only", "has_default": False}],
        [{"name": "n", "kind": "keyword_only", "has_default": False, "default": 1}],
        [{"name": "n", "kind": "keyword_only", "has_default": True, "default": [1]}],
        [{"name": "n", "kind": "keyword_only", "has_default": True, "default": float("nan")}],
        [{"name": "n", "kind": "keyword_only", "has_default": False, "extra": 1}],
        [{"name": "n", "kind": "keyword_only", "has_default": False}] * 2,
        [{"name": n, "kind": "var_keyword", "has_default": False} for n in "ab"],
        [{"name": f"p{i}", "kind": "keyword_only", "has_default": False} for i in range(257)],
    ],
)
def test_malformed_descriptions_are_refused(data) -> None:
    with pytest.raises(MalformedParameters):
        parse_parameters(data)


def test_positional_only_is_rendered_with_its_slash() -> None:
    got = (SubmittedParameter("a", POSITIONAL_ONLY), SubmittedParameter("b", POSITIONAL_ONLY, True, 2, True))
    assert render_signature("f", got) == "f(a, b=2, /)"


def test_handout_data_is_well_formed() -> None:
    """Positional handout parameters form a leading run; aliases name handout parameters and never
    collide within one callable."""
    for name, handout in HANDOUT_PARAMETERS.items():
        flags = [p.positional for p in handout]
        assert flags == sorted(flags, reverse=True), name
        spellings = [s for p in handout for s in (p.name, *PARAMETER_ALIASES.get(p.name, ()))]
        assert len(spellings) == len(set(spellings)), name
    used = {p.name for handout in HANDOUT_PARAMETERS.values() for p in handout}
    assert set(PARAMETER_ALIASES) <= used
    assert all(s.isidentifier() for spellings in PARAMETER_ALIASES.values() for s in spellings)
    assert inspect.isclass(HandoutParameter)
