"""End-to-end tests of torchgrade.engine.proxy.Submission against small submissions written by the tests.

Every behaviour that must not depend on the isolation mode runs in both modes ("none": the worker
session in this process, "process": ``python -m torchgrade.worker``). One Submission per mode and
folder is shared by the tests of this module; tests that kill the worker look their handles up
again. In-process submissions register modules under a fixed package name, so each one lives inside
:func:`private_import_state`, which stashes and restores that state around it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _toys import NAP_AND_BURN
from torch import nn

from torchgrade.engine.proxy import (
    BACKSTOP_FACTOR,
    BACKSTOP_SLACK,
    DEFAULT_CALL_TIMEOUT,
    MSG_LOAD_FAILED,
    MSG_NO_HIDDEN,
    STALE,
    Remote,
    Submission,
    SubmissionRecord,
)
from torchgrade.errors import (
    CheckFailure,
    MissingName,
    NotImplementedYet,
    SignatureMismatch,
    StudentError,
    StudentTimeout,
    TorchgradeError,
    WorkerCrashed,
)
from torchgrade.isolation import sandbox
from torchgrade.isolation.transport import CLOCK_TICK, HAS_PROC, MSG_FINISHED, InProcessBackend, session_ticks
from torchgrade.probes.params import count_parameters, parameter_shapes
from torchgrade.worker.loader import PACKAGE, _SiblingFinder
from torchgrade.worker.session import probe_key

MODES = ["none", "process"]

SHOES = (
    '''\
"""A submission with a bit of everything (written by tests/test_proxy.py)."""
import os
import signal
import sys
import time

import torch
from torch import nn

from helpers import double, explode

print("shoes.py is being imported")


class CNN(nn.Module):
    def __init__(self, n=4, k=3):
        super().__init__()
        self.conv = nn.Conv2d(3, n, k, padding=k // 2)
        self.fc = nn.Linear(n, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(h)


class Box:
    def __init__(self, value):
        self.value = value


def add(a, b):
    return a + b


def twice(x):
    return double(x)


def fail(x):
    return explode(x)


def stub(x):
    raise NotImplementedError("TODO")


def chatty(n):
    for i in range(n):
        print("chatter line", i)
    print("chatter on stderr", file=sys.stderr)
    sys.stdout.flush()
    os.write(1, b"chatter written to fd 1\\n")
    return n


def rand3():
    return torch.rand(3)


def torch_origin():
    return torch.__file__, hasattr(torch, "SHADOWED")


def spin():
    while True:
        pass


def crash(code):
    os._exit(code)


def stubborn(seconds):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)
    return "woke up"

'''
    + NAP_AND_BURN
    + """

def burn_in_child(seconds):
    pid = os.fork()
    if pid == 0:  # the parent only waits: the CPU time is the child's
        burn(seconds)
        os._exit(0)
    os.waitpid(pid, 0)
    return seconds


def bomb():
    if os.fork() == 0:  # a child that forks forever, left behind when the call returns
        while True:
            try:
                os.fork()
            except OSError:
                pass
    return "returned"
"""
)

FILES = {
    "shoes.py": SHOES,
    "helpers.py": """\
        def double(x):
            return 2 * x


        def explode(x):
            raise ValueError(f"bad value {x}")
        """,
    "other.py": """\
        def moved():
            return "found in other.py"
        """,
    "torch.py": """\
        SHADOWED = True
        raise RuntimeError("the submission's torch.py was imported")
        """,
    "broken_syntax.py": '''\
        """A module with a syntax error on line 3."""
        x = 1
        def broken(:
            pass
        ''',
    "broken_import.py": '''\
        """A module that raises on line 4 while being imported."""
        def boom():
            return 1
        raise RuntimeError("import-time boom")
        ''',
}
MODULES_PRESENT = ["broken_import.py", "broken_syntax.py", "helpers.py", "other.py", "shoes.py", "torch.py"]

INTERFACE = {
    **dict.fromkeys(
        [
            "CNN",
            "Box",
            "add",
            "twice",
            "fail",
            "stub",
            "chatty",
            "rand3",
            "torch_origin",
            "spin",
            "crash",
            "stubborn",
            "nap",
            "burn",
            "burn_in_child",
            "bomb",
            "moved",
            "absent",
        ],
        "shoes",
    ),
    "thing": "nomodule",
    "broken": "broken_syntax",
    "boom": "broken_import",
}


def write_submission(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _submission_modules() -> list[str]:
    """sys.modules keys holding submission modules: the private package and bare sibling aliases."""
    return [
        key
        for key, module in list(sys.modules.items())
        if key == PACKAGE or key.startswith(PACKAGE + ".") or str(getattr(module, "__name__", "")).startswith(PACKAGE)
    ]


@contextlib.contextmanager
def private_import_state():
    """Run an in-process submission with its own ``_tg_submission*`` modules and sibling finder."""
    saved_modules = {key: sys.modules.pop(key) for key in _submission_modules()}
    saved_finders = [f for f in sys.meta_path if isinstance(f, _SiblingFinder)]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SiblingFinder)]
    try:
        yield
    finally:
        for key in _submission_modules():
            del sys.modules[key]
        sys.meta_path[:] = saved_finders + [f for f in sys.meta_path if not isinstance(f, _SiblingFinder)]
        sys.modules.update(saved_modules)


@contextlib.contextmanager
def open_submission(folder: Path, isolation: str, interface: dict[str, str] = INTERFACE):
    with private_import_state() if isolation == "none" else contextlib.nullcontext():
        sub = Submission(folder, isolation, interface, hidden=sandbox.hidden_paths(folder, None, None))
        try:
            yield sub
        finally:
            sub.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_submission(tmp_path_factory.mktemp("submission"), FILES)


@pytest.fixture(scope="module")
def sub_none(folder: Path):
    with open_submission(folder, "none") as sub:
        yield sub


@pytest.fixture(scope="module")
def sub_process(folder: Path):
    with open_submission(folder, "process") as sub:
        yield sub


@pytest.fixture(params=MODES)
def sub(request: pytest.FixtureRequest) -> Submission:
    return request.getfixturevalue(f"sub_{request.param}")


# -- a model ------------------------------------------------------------------------------------------
def test_model_is_a_remote_handle_returning_plain_tensors(sub: Submission) -> None:
    model = sub.CNN(n=3)
    assert isinstance(model, Remote)
    x = torch.randn(2, 3, 8, 8)
    out = model(x)
    assert type(out) is torch.Tensor and out.shape == (2, 2)

    params = list(model.parameters())
    assert [tuple(p.shape) for p in params] == [(3, 3, 3, 3), (3,), (2, 3), (2,)]
    assert all(type(p) is torch.Tensor and p.requires_grad for p in params)
    conv_w, conv_b, fc_w, fc_b = (p.detach() for p in params)
    expected = F.linear(F.relu(F.conv2d(x, conv_w, conv_b, padding=1)).mean(dim=(2, 3)), fc_w, fc_b)
    torch.testing.assert_close(out.detach(), expected)  # the worker really ran forward on our x


def test_model_attributes_methods_and_submodules(sub: Submission) -> None:
    model = sub.CNN(n=2, k=5)
    assert model.training is True
    same = model.eval()
    assert isinstance(same, Remote) and same._ref.handle == model._ref.handle
    assert model.training is False and same.training is False
    conv = model.conv
    assert isinstance(conv, Remote) and conv._ref.type_name == "Conv2d"
    assert conv.kernel_size == (5, 5) and conv.out_channels == 2
    with pytest.raises(AttributeError, match="graders never modify submitted objects"):
        model.training = True


def test_handles_of_plain_objects(sub: Submission) -> None:
    box = sub.Box([1, {"a": (2, 3)}])
    assert box.value == [1, {"a": (2, 3)}]
    assert sub.twice(21) == 42  # `from helpers import double` inside shoes.py: a sibling import


# -- messages -------------------------------------------------------------------------------------------
def test_missing_module_names_the_modules_present(sub: Submission) -> None:
    with pytest.raises(MissingName) as info:
        _ = sub.thing
    message = str(info.value)
    assert message.startswith("the submission has no `thing`: there is no nomodule.py in the submission")
    assert f"(its modules: {', '.join(MODULES_PRESENT)})" in message
    first, *broken = message.splitlines()
    assert first.endswith("no other module defines it either.")
    # The modules that failed to import might have defined it: each is named with its error.
    assert broken == [
        "broken_import.py could not be imported, so it may define `thing`: RuntimeError: import-time boom",
        "broken_syntax.py could not be imported, so it may define `thing`: SyntaxError: invalid syntax",
        "torch.py could not be imported, so it may define `thing`: "
        "RuntimeError: the submission's torch.py was imported",
    ]


def test_missing_name(sub: Submission) -> None:
    with pytest.raises(
        MissingName,
        match=r"^the submission has no `absent`: shoes.py does not define it; "
        r"no other module defines it either\.\nbroken_import.py could not be imported",
    ):
        _ = sub.absent
    with pytest.raises(MissingName, match=r"the submission has no `not_in_interface`"):
        sub.lookup("not_in_interface")


def test_name_found_in_another_module(sub: Submission) -> None:
    assert sub.moved() == "found in other.py"
    assert sub.notes["moved"] == "`moved` was found in other.py instead of shoes.py"


def test_wrong_signature_names_the_submitted_signature(sub: Submission) -> None:
    with pytest.raises(SignatureMismatch) as info:
        sub.add(1)
    assert str(info.value) == (
        "could not call add(1): missing a required argument: 'b'. The submitted signature is add(a, b)."
    )
    with pytest.raises(
        SignatureMismatch,
        match=r"could not call CNN\(width=3\): .*'width'.*"
        r"The submitted signature is CNN\(n=4, k=3\)\.",
    ):
        sub.CNN(width=3)


def assert_only_student_frames(message: str, folder: Path) -> None:
    assert "torchgrade" not in message and "worker.py" not in message
    assert "site-packages" not in message and "torch/nn" not in message
    assert str(folder) not in message  # paths are relative to the submission


def test_exception_in_student_code(sub: Submission, folder: Path) -> None:
    with pytest.raises(StudentError) as info:
        sub.fail(7)
    assert type(info.value) is StudentError and info.value.exc_type == "ValueError"
    message = str(info.value)
    assert message.startswith("fail(7) raised ValueError: bad value 7\n")
    assert 'File "shoes.py", line 40, in fail' in message
    assert 'File "helpers.py", line 6, in explode' in message
    assert message.endswith("ValueError: bad value 7")
    assert_only_student_frames(message, folder)


def test_exception_inside_torch_keeps_the_student_frame(sub: Submission, folder: Path) -> None:
    model = sub.CNN(n=2)
    with pytest.raises(StudentError) as info:
        model(torch.zeros(1, 5, 4, 4))  # 5 channels; the conv expects 3
    message = str(info.value)
    assert message.startswith("CNN(n=2)(tensor[1, 5, 4, 4]) raised RuntimeError: ")
    assert 'File "shoes.py", line 22, in forward' in message
    assert_only_student_frames(message, folder)


def test_not_implemented_yet(sub: Submission) -> None:
    with pytest.raises(NotImplementedYet) as info:
        sub.stub(1)
    assert str(info.value) == "stub(1) is not implemented yet (it raises NotImplementedError: TODO)."
    assert info.value.exc_type == "NotImplementedError"


def test_module_with_a_syntax_error(sub: Submission, folder: Path) -> None:
    with pytest.raises(MissingName) as info:
        _ = sub.broken
    message = str(info.value)
    assert message.startswith("broken_syntax.py could not be imported, so `broken` is not available:\n")
    assert 'File "broken_syntax.py", line 3' in message
    assert "def broken(:" in message and "SyntaxError" in message
    assert_only_student_frames(message, folder)


def test_module_raising_on_import(sub: Submission, folder: Path) -> None:
    with pytest.raises(MissingName) as info:
        _ = sub.boom
    message = str(info.value)
    assert message.startswith("broken_import.py could not be imported, so `boom` is not available:\n")
    assert 'File "broken_import.py", line 4, in <module>' in message
    assert message.endswith("RuntimeError: import-time boom")
    assert_only_student_frames(message, folder)
    assert sub.add(1, 2) == 3  # a broken module elsewhere does not stop the others


# -- isolation of output and imports --------------------------------------------------------------------
def test_student_output_does_not_break_the_protocol(sub: Submission, capfd: pytest.CaptureFixture) -> None:
    assert sub.chatty(2000) == 2000
    assert sub.add(2, 2) == 4
    captured = capfd.readouterr()
    if sub.isolation == "process":
        deadline = time.monotonic() + 10  # a thread drains the worker's pipe
        while b"fd 1" not in sub.channel.backend.capture.kept and time.monotonic() < deadline:
            time.sleep(0.01)
        log = sub.channel.backend.capture.kept.decode()
        assert "chatter line 1999" in log and "chatter on stderr" in log and "chatter written to fd 1" in log
        assert "chatter" not in captured.out + captured.err  # the grader's own output stays clean
    else:
        assert "chatter line 1999" in captured.out and "chatter written to fd 1" in captured.out
        assert "chatter on stderr" in captured.err


def test_torch_py_in_the_submission_does_not_shadow_torch(sub: Submission, folder: Path) -> None:
    torch_file, shadowed = sub.torch_origin()
    assert shadowed is False
    assert torch_file == torch.__file__ and not torch_file.startswith(str(folder))
    assert sys.modules["torch"] is torch


# -- process isolation: limits and crashes ----------------------------------------------------------------
#: The CPU-budget message of a call, with the CPU seconds it used left open.
CPU_SPENT = r"timed out: the check's calls used \d+\.\d s of CPU time of a {budget} s budget \(time the machine spent "


def test_endless_loop_is_stopped_by_its_cpu_budget_and_a_fresh_worker_follows(sub_process: Submission) -> None:
    backend = sub_process.channel.backend
    spin, box = sub_process.spin, sub_process.Box(1)
    old_pid = backend.process.pid
    sub_process.set_cpu_budget(2)
    try:
        start = time.monotonic()
        with pytest.raises(StudentTimeout, match=r"^spin\(\) " + CPU_SPENT.format(budget=2)) as failure:
            spin()
        elapsed = time.monotonic() - start
    finally:
        sub_process.set_cpu_budget(None)
    assert str(failure.value).endswith("on other work is not counted). The worker was stopped.")
    used = float(re.search(r"used (\S+) s", str(failure.value)).group(1))
    assert 2 <= used < 3  # read every 0.25 s: overrun by at most that, times the worker's threads (shown to 0.1 s)
    assert 1.5 < elapsed < 30  # at least the budget; more where the machine is busy
    assert sub_process.add(2, 3) == 5
    assert backend.process.pid != old_pid
    with pytest.raises(
        CheckFailure,
        match="^" + re.escape(STALE.format(label="Box(1)")) + "$",
    ):
        _ = box.value


def test_os_exit_is_a_crash_and_the_next_call_works(sub_process: Submission) -> None:
    model = sub_process.CNN(n=2)
    with pytest.raises(
        WorkerCrashed,
        match=r"^crash\(3\): the process running the submission died "
        r"\(exit code 3\)",
    ):
        sub_process.crash(3)
    assert sub_process.add(1, 1) == 2
    with pytest.raises(CheckFailure, match=r"^CNN\(n=2\) is gone: the worker was restarted"):
        model(torch.zeros(1, 3, 4, 4))
    with pytest.raises(CheckFailure, match="worker was restarted"):
        list(model.parameters)


def test_a_sleeping_call_is_stopped_by_the_wall_clock_backstop(sub_process: Submission) -> None:
    """Sleeping uses no CPU time: only the backstop stops it (here a short one), whatever the call
    does with SIGALRM."""
    stubborn = sub_process.stubborn
    sub_process.set_cpu_budget(30, backstop=1)
    try:
        start = time.monotonic()
        with pytest.raises(
            StudentTimeout,
            match=r"^stubborn\(60\) timed out after 1 s of wall-clock time, having used 0\.\d s of CPU time "
            r"\(the check's calls: 0\.\d s of a 30 s budget\): the wall-clock backstop stops calls that wait ",
        ):
            stubborn(60)
        elapsed = time.monotonic() - start
    finally:
        sub_process.set_cpu_budget(None)
    assert elapsed < 4
    assert sub_process.nap(0.01) == 0.01


def test_the_default_backstop_is_a_multiple_of_the_budget(sub_none: Submission) -> None:
    sub_none.set_cpu_budget(10)
    try:
        left = sub_none.channel.remaining()
    finally:
        sub_none.set_cpu_budget(None)
    assert BACKSTOP_FACTOR * 10 + BACKSTOP_SLACK - 1 < left <= BACKSTOP_FACTOR * 10 + BACKSTOP_SLACK
    assert sub_none.channel.budget is None and sub_none.channel.remaining() == DEFAULT_CALL_TIMEOUT


@pytest.mark.parametrize("function", ["burn", "burn_in_child"])
def test_a_busy_call_over_its_budget_fails_in_process_once_it_returns(sub_none: Submission, function: str) -> None:
    """In-process a call cannot be stopped: its CPU time (children reaped included) is measured and
    the check fails after it, the verdict process isolation gives; later calls are not run."""
    sub_none.set_cpu_budget(0.3)
    try:
        with pytest.raises(StudentTimeout, match=rf"^{function}\(0\.6\) " + CPU_SPENT.format(budget=0.3)) as failure:
            sub_none.lookup(function)(0.6)
        assert str(failure.value).endswith(MSG_FINISHED)
        with pytest.raises(StudentTimeout, match=r"^add was not run: the check's earlier calls used up its CPU"):
            sub_none.add(1, 2)
    finally:
        sub_none.set_cpu_budget(None)
    assert sub_none.add(1, 2) == 3


def test_in_process_a_waiting_call_is_not_charged(sub_none: Submission) -> None:
    """A call that waits (for the machine, for a sleep) uses little CPU time: it keeps its budget."""
    sub_none.set_cpu_budget(0.3)
    try:
        assert sub_none.nap(0.6) == 0.6
        assert sub_none.channel.budget.spent < 0.1
    finally:
        sub_none.set_cpu_budget(None)


@pytest.mark.skipif(not HAS_PROC, reason="no /proc here: the worker's CPU time is read with psutil")
def test_session_ticks_count_the_cpu_time_of_this_session() -> None:
    before = session_ticks(os.getsid(0), [os.getpid()])
    start = time.process_time()
    while time.process_time() - start < 0.3:
        pass
    after = session_ticks(os.getsid(0))
    assert os.getpid() in after and os.getppid() not in before
    assert (after[os.getpid()] - before[os.getpid()]) / CLOCK_TICK >= 0.2


def test_a_waiting_call_is_not_charged_and_a_child_s_work_is(sub_process: Submission) -> None:
    """The budget counts what the worker computes: a call that sleeps past its budget keeps it, a
    call whose child process does the work is stopped all the same."""
    sub_process.set_cpu_budget(0.5)
    try:
        assert sub_process.nap(1.5) == 1.5
        assert sub_process.channel.budget.spent < 0.3
        with pytest.raises(StudentTimeout, match=r"^burn_in_child\(30\) " + CPU_SPENT.format(budget=0.5)):
            sub_process.burn_in_child(30)
    finally:
        sub_process.set_cpu_budget(None)
    assert sub_process.add(1, 2) == 3


def test_processes_left_running_are_stopped_between_checks_and_the_worker_stays(sub_process: Submission) -> None:
    backend = sub_process.channel.backend
    model = sub_process.CNN(n=2)
    if backend.worker.group is None:  # no pids cgroup here: the report says the cap is missing
        assert not backend.sandbox.pids_cgroup
        return
    worker_pid, restarts = backend.process.pid, backend.restarts
    assert sub_process.bomb() == "returned"
    deadline = time.monotonic() + 10
    while len(backend.worker.group.members()) < len(backend.worker.own) + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(backend.worker.group.members()) > len(backend.worker.own) + 1  # the bomb is going
    start = time.monotonic()
    sub_process.stop_background()
    assert time.monotonic() - start < 5
    assert set(backend.worker.group.members()) == set(backend.worker.own)
    assert backend.process.pid == worker_pid and backend.restarts == restarts
    assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 2)  # handles into the worker are still good
    assert sub_process.add(1, 2) == 3  # and it can fork again: the cap was restored
    assert "torchgrade stopped them" in sub_process.notes["background processes"]


# -- trusted checks next to the submission, and mode independence ------------------------------------------
def test_apply_runs_a_check_on_a_remote_model(sub_none: Submission, sub_process: Submission) -> None:
    expected = (3 * 3 * 9 + 3) + (3 * 2 + 2)
    counts = [s.apply(count_parameters, s.CNN(n=3)) for s in (sub_none, sub_process)]
    assert counts == [expected, expected] and all(type(c) is int for c in counts)
    shapes = [s.apply(parameter_shapes, s.CNN(n=3)) for s in (sub_none, sub_process)]
    assert (
        shapes[0]
        == shapes[1]
        == [("conv.weight", [3, 3, 3, 3]), ("conv.bias", [3]), ("fc.weight", [2, 3]), ("fc.bias", [2])]
    )
    assert sub_process.apply(count_parameters, sub_process.CNN(n=3), trainable_only=True) == expected


@pytest.mark.parametrize(
    "fn",
    [
        "os:getcwd",
        "torchgrade.checks.shapes:check_shape",
        "torchgrade.probes:x",
        "torchgrade.probesx:f",
        "builtins:eval",
    ],
)
def test_worker_applies_only_probes(sub: Submission, fn: str) -> None:
    """The worker refuses what is not a probe. Its refusal, like anything from the worker, proves no
    fault of the grader (student code can raise the same refusal), so it fails the call."""
    with pytest.raises(
        CheckFailure, match=f"^the submission's process refused getcwd: {fn} is not a torchgrade probe$"
    ):
        sub.channel.request("getcwd", "apply", fn=fn)


def test_apply_refuses_a_function_that_is_not_a_probe_before_sending_it(sub_none: Submission) -> None:
    with pytest.raises(TorchgradeError, match="^grader bug: posix.getcwd is not a torchgrade probe "):
        sub_none.apply(os.getcwd)


#: An assignment's probe module, as its graders would hold one (graders/_probes_<topic>.py).
TOY_PROBES = '''
"""Toy probes of an assignment. TOY-PROBE-MARKER"""
import torch

from torchgrade.probes.params import count_parameters

__torchgrade_probes__ = True


class Scaled:
    def __init__(self, model, factor):
        self.model, self.factor = model, factor

    def __call__(self, x):
        return self.model(x) * self.factor


def scaled(model, factor):
    return Scaled(model, factor)


def weight_sum(model):
    return [float(sum(p.detach().sum() for p in model.parameters())), count_parameters(model)]


def where():
    return __name__
'''


@contextlib.contextmanager
def probe_module(folder: Path, name: str, source: str):
    """Import ``source`` as the grader-side module ``name`` (from a file in ``folder``), for a while."""
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def test_apply_runs_a_probe_of_an_assignment_s_own_module(sub: Submission, tmp_path: Path) -> None:
    """A function of an assignment's probe module runs next to the submission's objects in both modes:
    in-process the grader's module itself, in a worker a copy executed from the source sent once."""
    with probe_module(tmp_path, "_probes_toy", TOY_PROBES) as probes:
        model = sub.CNN(n=3)
        summed, count = sub.apply(probes.weight_sum, model)
        assert isinstance(summed, float) and count == (3 * 3 * 9 + 3) + (3 * 2 + 2)
        x = torch.randn(2, 3, 8, 8)
        doubled = sub.apply(probes.scaled, model, 2.0)  # an object of the probe module, kept there
        assert isinstance(doubled, Remote) and torch.allclose(doubled(x), 2 * model(x))
        where = sub.apply(probes.where)
        if isinstance(sub.channel.backend, InProcessBackend):
            assert where == "_probes_toy"
        else:
            assert where.startswith("_torchgrade_probe_")


def test_a_probe_module_s_source_is_sent_once_per_worker(
    sub_process: Submission, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = sub_process.channel.backend
    frames: list[bytes] = []
    exchange = backend.exchange
    monkeypatch.setattr(backend, "exchange", lambda frame, *a, **k: frames.append(frame) or exchange(frame, *a, **k))
    with probe_module(tmp_path, "_probes_once", TOY_PROBES.replace("MARKER", "MARKER-ONCE")) as probes:
        sub_process.apply(probes.where)
        sub_process.apply(probes.where)
        assert [b"TOY-PROBE-MARKER-ONCE" in f for f in frames] == [True, False]
        with pytest.raises(WorkerCrashed):
            sub_process.crash(3)
        frames.clear()
        assert sub_process.apply(probes.where).startswith("_torchgrade_probe_")  # a fresh worker gets it again
        assert [b"TOY-PROBE-MARKER-ONCE" in f for f in frames][-1:] == [True]  # (after the load)
        assert sum(b"TOY-PROBE-MARKER-ONCE" in f for f in frames) == 1


def test_apply_refuses_a_grader_module_that_is_no_probe_module(sub_none: Submission, tmp_path: Path) -> None:
    with probe_module(tmp_path, "_helpers_toy", TOY_PROBES.replace("__torchgrade_probes__ = True", "")) as helpers:
        with pytest.raises(TorchgradeError, match="^grader bug: _helpers_toy.where is not a torchgrade probe "):
            sub_none.apply(helpers.where)


@pytest.mark.parametrize(
    "probe, why",
    [
        ({"key": "0" * 24, "source": None}, "was never sent to this worker"),
        ({"key": "0" * 24, "source": "def where(): return 1"}, "does not match its key"),
        ({"source": "def where(): return 1"}, "does not declare __torchgrade_probes__"),
        ({"source": "import graders_only_module"}, "failed to load: .*graders_only_module"),
    ],
)
def test_the_worker_refuses_a_probe_module_it_cannot_trust(sub_process: Submission, probe: dict, why: str) -> None:
    probe = {"key": probe_key(probe["source"] or ""), "name": "_probes_x", **probe}
    with pytest.raises(CheckFailure, match=f"refused where: .*{why}"):
        sub_process.channel.request("where", "apply", fn="_probes_x:where", probe=probe)


def test_seeded_computations_are_identical_in_both_modes(sub_none: Submission, sub_process: Submission) -> None:
    values, outputs = [], []
    x = torch.randn(2, 3, 6, 6)
    for s in (sub_none, sub_process):
        s.seed(3)
        values.append(s.rand3())
        s.seed(0)
        outputs.append(s.CNN(n=2)(x))
    assert torch.equal(values[0], values[1])
    assert torch.equal(outputs[0], outputs[1])
    torch.manual_seed(3)
    assert torch.equal(values[0], torch.rand(3))


# -- engine bugs, documented ----------------------------------------------------------------------------------
def test_release_invalidates_old_handles(sub: Submission) -> None:
    sub.release()
    old = sub.Box("old")  # handles 1 (the class) and 2 (the box)
    sub.release()
    sub.Box("new")  # handles 1 and 2 again
    with pytest.raises(CheckFailure, match="released|gone"):
        print(old.value)  # returns "new"


def test_stale_handle_passed_as_an_argument_is_refused(sub_process: Submission) -> None:
    sub_process.release()
    old = sub_process.CNN(n=2)  # handles 1 and 2
    with pytest.raises(WorkerCrashed):
        sub_process.crash(3)
    sub_process.CNN(n=5)  # the fresh worker hands out handles 1 and 2 again
    with pytest.raises(CheckFailure, match="restarted"):
        print(sub_process.apply(count_parameters, old))  # counts the n=5 model


def test_worker_start_up_is_not_charged_to_the_budget(sub_process: Submission, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = sub_process.channel.backend
    nap = sub_process.nap
    with pytest.raises(WorkerCrashed):
        sub_process.crash(3)
    real_start = backend.start

    def slow_start() -> Path:  # a machine under load: the worker takes a second longer to start
        time.sleep(1.0)
        return real_start()

    monkeypatch.setattr(backend, "start", slow_start)
    sub_process.set_cpu_budget(0.5, backstop=1.5)
    try:
        nap = sub_process.nap
        assert nap(0.8) == 0.8  # 0.8 s of student time in a 1.5 s backstop
        assert sub_process.channel.budget.spent < 0.3  # nor its CPU time: importing torch is not charged
    finally:
        sub_process.set_cpu_budget(None)


@pytest.mark.parametrize("isolation", MODES)
def test_unsendable_argument_is_a_harness_error(sub_none: Submission, sub_process: Submission, isolation: str) -> None:
    sub = sub_none if isolation == "none" else sub_process
    add = sub.add
    with pytest.raises(TorchgradeError, match="cannot send a Linear"):
        add(nn.Linear(1, 1), 1)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_process_submission_leaks_no_file_descriptor(folder: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        Submission(folder, "process", INTERFACE, hidden=[]).close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_in_process_submissions_do_not_leak_into_each_other(tmp_path: Path) -> None:
    files = {"shoes.py": "from helpers import VALUE\n"}
    first = write_submission(tmp_path / "first", {**files, "helpers.py": "VALUE = 1\n"})
    second = write_submission(tmp_path / "second", {**files, "helpers.py": "VALUE = 2\n"})
    with private_import_state():
        sub = Submission(first, "none", {"VALUE": "shoes"})
        assert sub.VALUE == 1
        sub.close()
        sub = Submission(second, "none", {"VALUE": "shoes"})
        try:
            assert sub.VALUE == 2
        finally:
            sub.close()


# -- set-up and the record for the report ---------------------------------------------------------------------
def test_process_isolation_requires_the_paths_to_hide(folder: Path) -> None:
    with pytest.raises(TorchgradeError, match="^" + re.escape(MSG_NO_HIDDEN) + "$"):
        Submission(folder, "process", INTERFACE)


def test_a_submission_that_cannot_be_loaded_is_a_harness_error_naming_it(tmp_path: Path) -> None:
    # Nothing in a submission's content stops it loading (only regular files are read, links and pipes
    # are left out), so the harness's own mistake stands in: a folder that is gone by the time it loads.
    # (In process isolation the sandbox cannot even start a worker over a folder that is gone.)
    gone = tmp_path / "gone"
    gone.mkdir()
    with open_submission(gone, "none") as sub:
        gone.rmdir()
        with pytest.raises(TorchgradeError, match="^" + re.escape(MSG_LOAD_FAILED.format(folder=gone, message=""))):
            sub.lookup("anything")


@pytest.mark.parametrize("isolation", MODES)
def test_close_returns_the_record_for_the_report(folder: Path, isolation: str) -> None:
    with open_submission(folder, isolation) as sub:
        assert sub.moved() == "found in other.py"
        assert sub.chatty(3) == 3
        record = sub.close()
    assert isinstance(record, SubmissionRecord) and sub.close() is record
    assert record.notes == ("`moved` was found in other.py instead of shoes.py",)
    if isolation == "process":
        assert record.sandbox == tuple(sandbox.choose().protections())
        assert "chatter line 2" in record.output and record.dropped_output == 0
    else:  # in-process, prints go to the terminal and nothing but the grader's process protects it
        assert (record.sandbox, record.output, record.dropped_output) == ((), "", 0)
