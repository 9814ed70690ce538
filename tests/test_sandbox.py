"""The worker's sandbox (torchgrade/isolation/sandbox.py): what a submission can and cannot do in each tier.

A probe submission reports from inside the worker what it sees; the tests state what each tier must
guarantee. Tiers this machine cannot provide are skipped with the reason (the rlimits tier always
runs).
"""

from __future__ import annotations

import os
import resource
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from torchgrade import errors
from torchgrade.engine.proxy import Submission
from torchgrade.instructor import grading
from torchgrade.isolation import sandbox
from torchgrade.isolation.cgroup import PidsGroup
from torchgrade.isolation.transport import OUTPUT_CAP, OutputCapture

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import os, resource, socket, subprocess, sys

def read(path):
    try:
        with open(path) as f:
            return "read " + str(len(f.read()))
    except OSError as exc:
        return type(exc).__name__

def write(path):
    try:
        with open(path, "w") as f:
            f.write("forged")
        return "written"
    except OSError as exc:
        return type(exc).__name__

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__

def connect():
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__

def facts():
    return {"uid": os.getuid(), "home": os.environ.get("HOME"), "tmp": os.environ.get("TMPDIR"),
            "cwd": os.getcwd(), "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "grader_env": sorted(k for k in os.environ if k.startswith("TORCHGRADE_") and k != "TORCHGRADE_THREADS"),
            "isolated": sys.flags.isolated}

def spawn_sleeper(marker):
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)", marker]
    return subprocess.Popen(sleeper, start_new_session=True).pid

def allocate(gigabytes):
    return len(bytearray(int(gigabytes * 2**30)))
"""


def tiers() -> list:
    params = []
    for tier in sandbox.TIERS:
        box = sandbox.available(tier)
        mark = pytest.mark.skipif(box is None, reason=f"{tier} does not work on this machine")
        params.append(pytest.param(tier, marks=mark, id=tier))
    return params


@pytest.fixture
def probe(tmp_path, monkeypatch, request):
    """A probe submission graded in process isolation under the tier of the test's parameter."""
    tier = request.param
    monkeypatch.setenv("TORCHGRADE_SANDBOX", tier)
    monkeypatch.setenv("TORCHGRADE_SECRET", "grader only")
    sandbox.choose.cache_clear()
    folder = tmp_path / "submissions" / "alice"
    folder.mkdir(parents=True)
    (folder / "probe.py").write_text(textwrap.dedent(PROBE))
    (tmp_path / "submissions" / "bob").mkdir()
    (tmp_path / "submissions" / "bob" / "probe.py").write_text("ANSWER = 42\n")
    hidden = sandbox.hidden_paths(folder, ROOT, None)  # the assignment: reference/ and graders/ must be hidden
    submission = Submission(folder, "process", {}, hidden=hidden)
    yield tier, submission, tmp_path
    submission.close()
    sandbox.choose.cache_clear()


def call(submission: Submission, name: str, *args):
    return submission.lookup(name)(*args)


@pytest.mark.parametrize("probe", tiers(), indirect=True)
def test_every_tier_limits_and_cleans_the_environment(probe):
    tier, submission, _ = probe
    facts = call(submission, "facts")
    assert facts["address_space"] == sandbox.Limits().address_space
    assert facts["grader_env"] == []  # TORCHGRADE_SECRET stayed with the grader
    assert facts["isolated"] == 1  # python -I
    assert facts["home"].startswith(str(sandbox.scratch_area())) and facts["cwd"].endswith("submission")
    assert facts["tmp"].startswith(str(sandbox.scratch_area()))
    box = submission.channel.backend.sandbox
    if tier != "rlimits" or box.drops_privileges:
        assert facts["uid"] == sandbox.NOBODY  # never root inside a namespace
    else:  # root's Python under /root is out of nobody's reach: the report says the worker kept the uid
        assert facts["uid"] == os.geteuid() and f"runs as: uid {os.geteuid()}" in " ".join(box.protections())
    with pytest.raises(errors.CheckFailure, match="MemoryError"):
        call(submission, "allocate", 50)  # 50 GB: refused by the address-space limit, not the OOM killer


@pytest.mark.parametrize("probe", tiers()[:2], indirect=True)
def test_namespaced_tiers_hide_the_assignment_and_the_network(probe):
    tier, submission, tmp_path = probe
    assert call(submission, "read", str(ROOT / "reference" / "gnn.py")) in ("FileNotFoundError", "PermissionError")
    assert call(submission, "listing", str(ROOT / "graders")) in ([], "PermissionError")
    assert call(submission, "listing", str(tmp_path / "submissions")) in ([], "PermissionError")
    assert call(submission, "read", str(tmp_path / "submissions" / "bob" / "probe.py")) != "read 12"
    assert call(submission, "connect") != "connected"
    # Not writable: the assignment (a write into a hidden folder lands in a throwaway tmpfs at most);
    # writable: the worker's own copy and temp folder.
    canary = tmp_path / "canary.txt"
    canary.write_text("original")
    assert call(submission, "write", str(canary)) in ("OSError", "PermissionError")
    assert canary.read_text() == "original"
    call(submission, "write", str(ROOT / "graders" / "forged.py"))
    assert not (ROOT / "graders" / "forged.py").exists()
    assert call(submission, "write", "notes.txt") == "written"


@pytest.mark.parametrize("probe", tiers()[:1], indirect=True)
def test_background_processes_die_with_the_worker(probe, processes_with):
    _, submission, _ = probe
    # A marker of this run's own: a `sleep 300` elsewhere on the machine is not the worker's.
    marker = f"torchgrade-test-sleeper-{uuid.uuid4().hex}"
    call(submission, "spawn_sleeper", marker)
    backend = submission.channel.backend
    worker = backend.process.pid
    submission.close()
    # bwrap's PID namespace ends with its first process: no sleeper survives anywhere. The kernel
    # kills the namespace's processes once its init is gone: give it a moment on a busy machine.
    deadline = time.monotonic() + 5
    while sleepers := processes_with(marker):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not sleepers, f"the sleeper {marker} outlived worker {worker}"


def test_required_refuses_the_rlimits_tier(monkeypatch):
    monkeypatch.setenv("TORCHGRADE_SANDBOX", "required")
    sandbox.choose.cache_clear()
    monkeypatch.setattr(sandbox, "available", lambda tier: sandbox.Sandbox(tier) if tier == "rlimits" else None)
    with pytest.raises(sandbox.SandboxUnavailable, match="neither bubblewrap nor unshare"):
        sandbox.choose()
    sandbox.choose.cache_clear()


def test_unknown_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("TORCHGRADE_SANDBOX", "docker")
    sandbox.choose.cache_clear()
    with pytest.raises(sandbox.SandboxUnavailable, match="expected auto, required"):
        sandbox.choose()
    sandbox.choose.cache_clear()


def test_hidden_paths_never_hide_what_the_worker_needs(tmp_path):
    submission = tmp_path / "class" / "alice"
    submission.mkdir(parents=True)
    hidden = sandbox.hidden_paths(submission, ROOT, tmp_path / "missing-report.json")
    assert ROOT / "reference" in hidden and ROOT / "graders" in hidden
    assert submission in hidden and submission.parent in hidden
    # The assignment root holds torchgrade itself (an editable install): never hidden as a whole.
    assert ROOT not in hidden and Path("/") not in hidden


def test_limits_apply_in_a_child():
    limits = sandbox.Limits(address_space=3 * 2**30)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        limits.apply()
        os._exit(0 if resource.getrlimit(resource.RLIMIT_AS)[0] == 3 * 2**30 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_output_capture_keeps_the_head_and_counts_the_rest():
    capture = OutputCapture(6)
    for _ in range(2):  # two worker starts share one budget
        end = capture.attach()
        os.write(end, b"a" * 5 + "é".encode() + b"b" * 50)
        os.close(end)
    assert capture.result() == ("a" * 5 + "\ufffd", 2 * 57 - 6)  # a character cut in half is replaced


def test_the_report_names_the_sandbox_and_caps_the_output(tmp_path):
    folder = tmp_path / "loud"
    folder.mkdir()
    answers = (ROOT / "reference" / "answers.py").read_text()
    (folder / "answers.py").write_text(answers + "\nprint('x' * 200_000)\n")
    _, data = grading.grade(
        folder,
        assignment=ROOT,
        isolation="process",
        report=tmp_path / "report.json",
        extra_args=("-k", "test_receptive_field_1d"),
    )
    assert data["score"] == data["max_score"] > 0
    assert data["sandbox"][0] == f"sandbox: {sandbox.choose().tier}"
    assert data["student_output"]["text"].startswith("x" * 1000)
    assert data["student_output"]["dropped_bytes"] == 200_001 - OUTPUT_CAP


def test_a_pids_cgroup_caps_processes_and_kills_every_one():
    group = PidsGroup.create(8)
    if group is None:  # no writable pids controller: the report must say the cap is missing
        assert not sandbox.choose().pids_cgroup
        assert any(
            line.startswith(("not in force: a process cap", "processes: at most"))
            for line in sandbox.choose().protections()
        )
        return
    shell = subprocess.Popen(
        ["sh", "-c", "for i in $(seq 20); do setsid sleep 60 & done; wait"],
        preexec_fn=group.join,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while len(group.members()) < 8 and shell.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 1 <= len(group.members()) <= 8  # at most 8 tasks, however many the shell tried
    group.kill()  # setsid took the sleepers out of the shell's process group: the cgroup still holds them
    assert not group.path.exists()
    shell.wait(timeout=10)


def test_the_empty_groups_of_killed_graders_are_removed():
    group = PidsGroup.create(8)
    if group is None:
        assert not sandbox.choose().pids_cgroup
        return
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more
    stale = group.path.parent / f"torchgrade-{gone.pid}-1"
    stale.mkdir()
    try:
        PidsGroup.create(8).remove()
        assert not stale.exists() and group.path.exists()  # a live grader's group is kept
    finally:
        group.remove()
        if stale.exists():
            stale.rmdir()
