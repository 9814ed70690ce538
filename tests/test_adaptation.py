"""Calls of handout names are bound to the submitted signature by parameter name, never by position;
the report says what was called, and every later message names the call actually made."""

from __future__ import annotations

import textwrap

import pytest
import torch

from torchgrade import assignments
from torchgrade.engine.binding import SubmittedParameter
from torchgrade.engine.proxy import Submission
from torchgrade.errors import SignatureMismatch, StudentError
from torchgrade.isolation import sandbox
from torchgrade.worker import session

SHOES = '''
import torch


class CNN(torch.nn.Module):
    """No n at all: the student fixed n = 4 and kernel_size = 3 inside."""
    def __init__(self):
        super().__init__()
        self.size = 4

    def forward(self, x):
        raise RuntimeError("forward is broken")


class CNNChannel:
    """n, then dropout where the handout has kernel_size."""
    def __init__(self, n, dropout=0.5):
        self.size = (n, dropout)


def train_model(net, train_loader, val_loader, lr=0.01, num_epochs=3, batch_size=8):
    return {"net": net, "train": train_loader, "valid": val_loader, "lr": lr, "epochs": num_epochs, "bs": batch_size}
'''

GNN = '''
class GraphAttentionLayer:
    """The handout's parameters reordered and renamed."""
    def __init__(self, in_dim, n_heads, out_dim, leaky_relu_negative_slope=0.2, concat=True, dropout=0.6):
        self.seen = dict(in_dim=in_dim, n_heads=n_heads, out_dim=out_dim, slope=leaky_relu_negative_slope,
                         concat=concat, dropout=dropout)
'''


def make(folder, files: dict[str, str], isolation: str = "none") -> Submission:
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    hidden = sandbox.hidden_paths(folder, None, None) if isolation == "process" else None
    return Submission(folder, isolation, assignments.active().name_to_module(), hidden=hidden)


@pytest.fixture
def sub(tmp_path):
    submission = make(tmp_path, {"shoes.py": SHOES, "gnn.py": GNN})
    yield submission
    submission.close()


def test_a_model_with_n_and_k_fixed_inside_is_called_without_them(sub):
    model = sub.CNN(n=4, kernel_size=3)
    assert model.size == 4
    assert sub.notes == {"call CNN": "CNN(n=4, kernel_size=3) did not fit CNN(); called CNN()"}
    assert sub.last_binding("CNN").dropped == {"n": 4, "kernel_size": 3}
    assert sub.last_binding("CNN").called == "CNN()"


def test_messages_name_the_call_actually_made(sub):
    model = sub.CNN(n=4, kernel_size=3)
    assert repr(model) == "<CNN CNN()>"
    with pytest.raises(StudentError, match=r"^CNN\(\)\(tensor\[1, 3, 4, 4\]\) raised RuntimeError: forward is broken"):
        model(torch.zeros(1, 3, 4, 4))


def test_a_value_other_than_the_handout_s_default_is_left_out_and_recorded(sub):
    """The grader reads n and the kernel size from the weights; it learns that n=2 did not reach."""
    assert sub.CNN(n=2).size == 4
    assert sub.last_binding("CNN").dropped == {"n": 2} and not sub.last_binding("CNN").received("n")


def test_dropout_never_receives_the_kernel_size(sub):
    """CNNChannel(n, dropout) was called as CNNChannel(4, 3), so dropout was 3."""
    assert sub.CNNChannel(n=4, kernel_size=3).size == (4, 0.5)
    assert sub.notes["call CNNChannel"] == (
        "CNNChannel(n=4, kernel_size=3) did not fit CNNChannel(n, dropout=0.5); called CNNChannel(n=4)"
    )


def test_a_required_parameter_the_grader_has_no_value_for_fails_naming_it(tmp_path):
    shoes = "class CNNChannel:\n    def __init__(self, n, dropout):\n        self.size = (n, dropout)\n"
    submission = make(tmp_path, {"shoes.py": shoes})
    try:
        with pytest.raises(SignatureMismatch) as info:
            submission.CNNChannel(n=4, kernel_size=3)
        assert str(info.value) == (
            "could not call CNNChannel(n=4, kernel_size=3): its parameter 'dropout' has no default and the grader "
            "has no value for it (the handout's CNNChannel has no such parameter); give it a default. The submitted "
            "signature is CNNChannel(n, dropout)."
        )
        assert info.value.parameters == (SubmittedParameter("n"), SubmittedParameter("dropout"))
        assert "call CNNChannel" not in submission.notes and submission.last_binding("CNNChannel") is None
    finally:
        submission.close()


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_attention_layer_called_positionally_binds_by_name_to_reordered_parameters(tmp_path, isolation):
    """The grader's GraphAttentionLayer(5, 6, 2, ...) once reached (in_dim, n_heads, out_dim) as
    n_heads=6, and alpha never reached leaky_relu_negative_slope."""
    submission = make(tmp_path, {"gnn.py": GNN}, isolation)
    try:
        layer = submission.GraphAttentionLayer(5, 6, 2, is_concat=False, dropout=0.6, alpha=0.1)
        assert layer.seen == {"in_dim": 5, "n_heads": 2, "out_dim": 6, "slope": 0.1, "concat": False, "dropout": 0.6}
        called = (
            "GraphAttentionLayer(in_dim=5, out_dim=6, n_heads=2, concat=False, dropout=0.6, "
            "leaky_relu_negative_slope=0.1)"
        )
        assert submission.notes["call GraphAttentionLayer"] == (
            "GraphAttentionLayer(5, 6, 2, is_concat=False, dropout=0.6, alpha=0.1) did not fit GraphAttentionLayer("
            "in_dim, n_heads, out_dim, leaky_relu_negative_slope=0.2, concat=True, dropout=0.6); called " + called
        )
        assert repr(layer) == f"<GraphAttentionLayer {called}>"
        assert submission.last_binding("GraphAttentionLayer").renamed["alpha"] == "leaky_relu_negative_slope"
    finally:
        submission.close()


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_train_model_receives_the_epoch_budget_under_its_own_name(tmp_path, isolation):
    submission = make(tmp_path, {"shoes.py": SHOES}, isolation)
    try:
        plan = submission.plan_call("train_model", 1, 2, 3, batch_size=4, max_iters=250, max_epoch=7)
        assert plan.dropped == {"max_iters": 250} and plan.target("max_epoch") == "num_epochs"
        assert submission.last_binding("train_model") is None  # a plan calls nothing
        got = submission.train_model(1, 2, 3, batch_size=4, learning_rate=0.1, max_iters=250, max_epoch=7)
        assert got == {"net": 1, "train": 2, "valid": 3, "lr": 0.1, "epochs": 7, "bs": 4}
        assert (
            submission.last_binding("train_model").called == "train_model(1, 2, 3, batch_size=4, lr=0.1, num_epochs=7)"
        )
    finally:
        submission.close()


def test_keywords_without_a_parameter_go_through_var_keyword(tmp_path):
    shoes = "class CNN:\n    def __init__(self, **config):\n        self.config = config\n"
    submission = make(tmp_path, {"shoes.py": shoes})
    try:
        assert submission.CNN(n=2, kernel_size=5).config == {"n": 2, "kernel_size": 5}
        assert submission.last_binding("CNN").through_kwargs == ("n", "kernel_size")
        assert "call CNN" not in submission.notes  # sent as the grader wrote it
    finally:
        submission.close()


def test_the_handout_s_own_signature_is_called_as_written(tmp_path):
    shoes = "class CNN:\n    def __init__(self, n=4, kernel_size=3):\n        self.size = (n, kernel_size)\n"
    submission = make(tmp_path, {"shoes.py": shoes})
    try:
        model = submission.CNN(n=2, kernel_size=5)
        assert model.size == (2, 5) and repr(model) == "<CNN CNN(n=2, kernel_size=5)>"
        assert submission.last_binding("CNN").as_written and not submission.notes
    finally:
        submission.close()


def test_a_call_not_made_of_the_handout_s_parameters_is_sent_as_written(sub):
    """The worker's own binding check answers, with the submitted parameters attached."""
    with pytest.raises(SignatureMismatch) as info:
        sub.CNN(width=3)
    assert str(info.value) == (
        "could not call CNN(width=3): got an unexpected keyword argument 'width'. The submitted signature is CNN()."
    )
    assert info.value.parameters == ()
    with pytest.raises(SignatureMismatch) as info:
        sub.lookup("train_model")(1)
    assert [p.name for p in info.value.parameters][:3] == ["net", "train_loader", "val_loader"]


def test_signature_gives_the_submitted_parameters(sub):
    assert [(p.name, p.default) for p in sub.signature("CNNChannel")] == [("n", None), ("dropout", 0.5)]
    assert sub.signature("CNN") == ()


def test_a_malformed_description_from_the_worker_is_not_trusted(sub, monkeypatch):
    """Everything from the worker is untrusted: a description that does not validate binds nothing,
    and the call goes as written (the worker's own binding check answers)."""
    monkeypatch.setattr(session, "describe_parameters", lambda target: [{"name": "n", "kind": "odd"}])
    assert sub.signature("CNN") is None
    with pytest.raises(SignatureMismatch) as info:
        sub.CNN(n=4, kernel_size=3)
    assert str(info.value).startswith("could not call CNN(n=4, kernel_size=3): got an unexpected keyword argument")
    assert info.value.parameters is None and sub.last_binding("CNN").called == "CNN(n=4, kernel_size=3)"


SHORT_NAMES_GAT = '''
class GraphAttentionLayer:
    """The spellings the grader's own lent layer recognised before the engine bound its calls."""
    def __init__(self, in_size, out_size, head=1, concatenate=True, drop=0.6, slope=0.2):
        self.seen = dict(in_size=in_size, out_size=out_size, head=head, concatenate=concatenate, drop=drop,
                         slope=slope)
'''


def test_attention_layer_short_spellings_receive_every_handout_parameter(tmp_path):
    """in_size/out_size/head/concatenate/drop/slope are aliases of the manifest ([csc413-a4.aliases])."""
    submission = make(tmp_path, {"gnn.py": SHORT_NAMES_GAT})
    try:
        layer = submission.GraphAttentionLayer(5, 6, 2, is_concat=False, dropout=0.1, alpha=0.3)
        assert layer.seen == {"in_size": 5, "out_size": 6, "head": 2, "concatenate": False, "drop": 0.1, "slope": 0.3}
        assert not submission.last_binding("GraphAttentionLayer").dropped
    finally:
        submission.close()


RARE_SPELLINGS_SHOES = """
def train_model(model, train, val, batch=8, learn_rate=0.01, l2=0.0, nepochs=3, folder=None):
    return dict(batch=batch, learn_rate=learn_rate, l2=l2, nepochs=nepochs, folder=folder)
"""


def test_train_model_rarer_spellings_receive_the_handout_values(tmp_path):
    """The spellings the shoe grader knew before its calls went through the engine ([shoes.aliases])."""
    submission = make(tmp_path, {"shoes.py": RARE_SPELLINGS_SHOES})
    try:
        got = submission.train_model(
            1, 2, 3, batch_size=4, learning_rate=0.1, weight_decay=0.5, max_epoch=7, checkpoint_path="ck"
        )
        assert got == {"batch": 4, "learn_rate": 0.1, "l2": 0.5, "nepochs": 7, "folder": "ck"}
    finally:
        submission.close()
