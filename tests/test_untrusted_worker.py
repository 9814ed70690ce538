"""Everything from the worker is untrusted (issue 16): a reply out of step, a malformed frame, a
refusal raised by student code, a reply far larger than the call justifies, and code that replaces
what the grader's probes run are the student's failure for that call, with a clear message, never a
harness error; the next call gets a fresh worker and works.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_proxy import open_submission

from torchgrade import wire
from torchgrade.engine.proxy import DEFAULT_REPLY_LIMIT
from torchgrade.errors import CheckFailure
from torchgrade.probes import params
from torchgrade.probes.graphs import train_node_classifier
from torchgrade.probes.params import count_parameters

MODULE = '''\
"""A submission that attacks the channel to the grader (written by tests/test_untrusted_worker.py)."""
import os
import sys
import threading
import time

import torch
from torch import nn


def ok(x):
    return x + 1


def write_on_reply_pipe(data):
    os.write(int(sys.argv[2]), bytes.fromhex(data))
    return "done"


def write_later(seconds, data):
    def later():
        time.sleep(seconds)
        os.write(int(sys.argv[2]), bytes.fromhex(data))

    threading.Thread(target=later, daemon=True).start()
    return "scheduled"


def refuse(kind):
    from torchgrade.worker.session import _Refused

    raise _Refused(kind, "forged by the submission")


def big(n):
    return torch.zeros(n, dtype=torch.uint8)


def long_list(n):
    return list(range(n))


def patch_probe():
    import torchgrade.probes.params as params

    params.count_parameters = lambda model: 10**6
    return "patched"


def patch_torch():
    import torch.nn.functional as F

    F.cross_entropy = lambda *args, **kwargs: torch.tensor(0.01)
    return "patched"


Plain = nn.Linear


class Nodes(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x, adj):
        return adj @ self.linear(x)


class Patching(nn.Module):
    """Replaces a probe's helper while the probe runs it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def named_parameters(self, *args, **kwargs):
        import torchgrade.probes.params as params

        params.count_parameters = lambda model: 0
        return super().named_parameters(*args, **kwargs)
'''
INTERFACE = dict.fromkeys(
    [
        "ok",
        "Plain",
        "Nodes",
        "write_on_reply_pipe",
        "write_later",
        "refuse",
        "big",
        "long_list",
        "patch_probe",
        "patch_torch",
        "Patching",
    ],
    "attacks",
)
#: A whole frame as the worker writes it, a well-formed reply to request 999: in step by format, not by number.
FORGED_FRAME = (
    len(wire.encode({"value": 42, "seq": 999})).to_bytes(8, "little") + wire.encode({"value": 42, "seq": 999})
).hex()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "attacks.py").write_text(textwrap.dedent(MODULE))
    return tmp_path


def test_a_forged_reply_on_the_reply_pipe_fails_that_call_and_the_next_call_works(folder: Path) -> None:
    with open_submission(folder, "process", INTERFACE) as sub:
        with pytest.raises(CheckFailure, match=r"sent the grader a reply to request 999 while request \d+ was waiting"):
            sub.write_on_reply_pipe(FORGED_FRAME)
        assert sub.ok(1) == 2  # a fresh worker


def test_garbage_on_the_reply_pipe_fails_that_call_only(folder: Path) -> None:
    with open_submission(folder, "process", INTERFACE) as sub:
        with pytest.raises(CheckFailure, match="sent the grader a malformed reply"):
            sub.write_on_reply_pipe((b"\x10" + b"\x00" * 7 + b"garbage!" * 2).hex())
        assert sub.ok(1) == 2


def test_a_partial_frame_written_by_a_thread_is_a_timeout_of_that_call_not_a_hang(folder: Path) -> None:
    with open_submission(folder, "process", INTERFACE) as sub:
        sub.write_later(0.2, (b"\xff\x00\x00\x00\x00\x00\x00\x00" + b"x" * 10).hex())  # announces 255 bytes
        time.sleep(1.0)  # written between calls: the next reply is read behind it
        sub.set_cpu_budget(3, backstop=3)  # the call waits for the rest of the frame: only the backstop ends it
        with pytest.raises(CheckFailure):
            sub.ok(1)
        sub.set_cpu_budget(None)
        assert sub.ok(1) == 2


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize("kind", ["harness", "tampered", "nonsense"])
def test_a_refusal_raised_by_student_code_is_the_students_failure(folder: Path, isolation: str, kind: str) -> None:
    with open_submission(folder, isolation, INTERFACE) as sub:
        with pytest.raises(CheckFailure, match="forged by the submission"):
            sub.refuse(kind)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_reply_over_the_calls_limit_fails_before_the_grader_reads_it(folder: Path, isolation: str) -> None:
    with open_submission(folder, isolation, INTERFACE) as sub:
        sub.set_reply_limit(100_000)
        assert sub.big(1000).shape == (1000,)
        with pytest.raises(
            CheckFailure, match=r"big\(1000000\) sent back 1,000,\d+ bytes; at most 100,000 are accepted"
        ):
            sub.big(1_000_000)
        sub.set_reply_limit(None)
        assert sub.channel.reply_limit == DEFAULT_REPLY_LIMIT and sub.big(1_000_000).shape == (1_000_000,)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_reply_of_millions_of_plain_numbers_is_refused_as_too_large(folder: Path, isolation: str) -> None:
    with open_submission(folder, isolation, INTERFACE) as sub:
        with pytest.raises(CheckFailure, match="sent back a value of .* bytes of plain lists and numbers"):
            sub.long_list(3_000_000)
        assert sub.ok(1) == 2


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_replaced_probe_is_refused_with_what_was_replaced(
    folder: Path, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(params, "count_parameters", count_parameters)  # restored after an in-process run
    with open_submission(folder, isolation, INTERFACE) as sub:
        model = sub.Plain(2, 2)
        assert sub.apply(count_parameters, model) == 6
        sub.patch_probe()
        with pytest.raises(CheckFailure, match=r"the submission replaced torchgrade\.probes\.params\.count_parameters"):
            sub.apply(count_parameters, model)


def test_a_probe_helper_replaced_while_the_probe_runs_voids_its_result(folder: Path) -> None:
    with open_submission(folder, "process", INTERFACE) as sub:
        with pytest.raises(CheckFailure, match=r"replaced torchgrade\.probes\.params\.count_parameters"):
            sub.apply(count_parameters, sub.Patching())


def test_a_replaced_torch_function_is_refused_by_the_probes_that_call_it_only(folder: Path) -> None:
    x, adj = torch.eye(4), torch.eye(4)
    with open_submission(folder, "process", INTERFACE) as sub:
        sub.patch_torch()
        model = sub.Nodes()
        assert sub.apply(count_parameters, model) == 10  # counting parameters calls no cross-entropy
        with pytest.raises(CheckFailure, match=r"replaced torch\.nn\.functional\.cross_entropy"):
            sub.apply(
                train_node_classifier, model, x, adj, torch.arange(2), torch.tensor([0, 1]),
                n_classes=2, epochs=1, lr=0.1, weight_decay=0.0, seed=0,
            )  # fmt: skip
    assert torch.nn.functional.cross_entropy.__module__ == "torch.nn.functional"
