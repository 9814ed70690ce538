"""The worker's sandbox (torchgrade/isolation/sandbox.py): what a submission can and cannot do in each tier.

A probe submission reports from inside the worker what it sees; the tests state what each tier must
guarantee. Tiers this machine cannot provide are skipped with the reason (the rlimits tier always
runs).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from torchgrade import errors
from torchgrade.engine.proxy import Submission
from torchgrade.instructor import grading
from torchgrade.isolation import sandbox
from torchgrade.isolation.cgroup import PidsGroup
from torchgrade.isolation.transport import OUTPUT_CAP, OutputCapture
from torchgrade.worker import confine

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import errno, os, resource, socket, subprocess, sys

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

def fill(folder, mebibytes):
    # Files of 64 MiB (each under the file-size limit) until mebibytes are written or a write
    # fails: what stopped it (an errno name, or "written") and how many MiB went in.
    chunk, written = b"\\0" * 2**20, 0
    try:
        while written < mebibytes:
            with open(os.path.join(folder, f"fill-{written}"), "wb") as f:
                for _ in range(64):
                    f.write(chunk)
                    f.flush()
                    written += 1
        return "written", written
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc)), written
    finally:
        for name in os.listdir(folder):
            if name.startswith("fill-"):
                os.remove(os.path.join(folder, name))

def import_everything():
    import numpy, scipy.sparse, torch
    found = {"torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torch_geometric
        found["torch_geometric"] = torch_geometric.__version__
    except ImportError:
        pass
    return found
"""


def tiers() -> list:
    params = []
    for tier in sandbox.TIERS:
        box = sandbox.available(tier)
        mark = pytest.mark.skipif(box is None, reason=f"{tier} does not work on this machine")
        params.append(pytest.param(tier, marks=mark, id=tier))
    return params


#: What a read of something out of the worker's sight gives.
UNREADABLE = ("FileNotFoundError", "PermissionError")


@pytest.fixture
def probe(tmp_path, monkeypatch, request):
    """A probe submission graded in process isolation under the tier of the test's parameter, as
    one of a batch: beside another submission, its report bound for an --out folder."""
    tier = request.param
    monkeypatch.setenv("TORCHGRADE_SANDBOX", tier)
    monkeypatch.setenv("TORCHGRADE_SECRET", "grader only")
    sandbox.choose.cache_clear()
    folder = tmp_path / "submissions" / "alice"
    folder.mkdir(parents=True)
    (folder / "probe.py").write_text(textwrap.dedent(PROBE))
    (tmp_path / "submissions" / "bob").mkdir()
    (tmp_path / "submissions" / "bob" / "probe.py").write_text("ANSWER = 42\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bob.json").write_text('{"score": 10}')
    hidden = sandbox.hidden_paths(folder, ROOT, tmp_path / "out" / "alice.json")
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
    assert facts["cwd"].endswith("submission")
    if tier == "rlimits":  # HOME and TMPDIR in the scratch folder, on disk
        assert facts["home"].startswith(str(sandbox.scratch_area()))
        assert facts["tmp"].startswith(str(sandbox.scratch_area()))
    else:  # HOME and TMPDIR on the capped tmpfs of the worker's own view
        assert (facts["home"], facts["tmp"]) == (confine.HOME, "/tmp")
    box = submission.channel.backend.sandbox
    if tier != "rlimits" or box.drops_privileges:
        assert facts["uid"] == sandbox.NOBODY  # never root inside a namespace
    else:  # a grader that is not root: the report says the worker kept its uid
        assert facts["uid"] == os.geteuid() and f"runs as: uid {os.geteuid()}" in " ".join(box.protections())
    with pytest.raises(errors.CheckFailure, match="MemoryError"):
        call(submission, "allocate", 50)  # 50 GB: refused by the address-space limit, not the OOM killer


@pytest.mark.parametrize("probe", tiers(), indirect=True)
def test_the_report_says_which_uid_the_worker_has_outside(probe):
    tier, submission, _ = probe
    call(submission, "facts")
    backend = submission.channel.backend
    top = psutil.Process(backend.process.pid)  # bwrap, unshare or the worker itself
    tree = [top, *top.children(recursive=True)]
    uids = {p.uids().real for p in tree if "torchgrade.worker" in " ".join(p.cmdline())}
    runs_as = next(line for line in backend.protections if line.startswith("runs as: "))
    if os.geteuid() == 0 and backend.sandbox.drops_privileges:
        assert uids == {sandbox.NOBODY}, uids  # not root, not even where it has a namespace of its own
        assert runs_as.startswith(f"runs as: nobody (uid {sandbox.NOBODY})")
    else:
        assert uids == {os.geteuid()}, uids
        assert f"uid {os.geteuid()}" in runs_as


@pytest.mark.parametrize("probe", tiers()[:2], indirect=True)
def test_namespaced_tiers_hide_the_assignment_and_the_network(probe):
    tier, submission, tmp_path = probe
    assert call(submission, "read", str(ROOT / "reference" / "gnn.py")) in UNREADABLE
    assert call(submission, "listing", str(ROOT / "graders")) in UNREADABLE
    assert call(submission, "listing", str(tmp_path / "submissions")) in UNREADABLE
    assert call(submission, "read", str(tmp_path / "submissions" / "bob" / "probe.py")) in UNREADABLE
    assert call(submission, "connect") != "connected"
    # Not writable: anything of the host's (nothing of it is there but the read-only installation);
    # writable: the worker's own copy and temp folder.
    canary = tmp_path / "canary.txt"
    canary.write_text("original")
    assert call(submission, "write", str(canary)) in ("OSError", *UNREADABLE)
    assert canary.read_text() == "original"
    assert call(submission, "write", str(ROOT / "graders" / "forged.py")) in UNREADABLE
    assert not (ROOT / "graders" / "forged.py").exists()
    assert call(submission, "write", sandbox.visible_paths()[0] + "/forged.py") == "OSError"  # read-only
    assert call(submission, "write", "notes.txt") == "written"


@pytest.mark.parametrize("probe", tiers()[:2], indirect=True)
def test_namespaced_tiers_show_the_worker_a_whitelist(probe):
    _, submission, tmp_path = probe
    # The machine's secrets, and root's home but for the Python installation that may live there.
    assert call(submission, "read", "/etc/shadow") in UNREADABLE
    assert sorted(call(submission, "listing", "/etc")) == ["group", "ld.so.cache", "passwd"]
    on_the_way = {Path(p).parts[2] for p in sandbox.visible_paths() if Path(p).is_relative_to("/root")}
    assert call(submission, "listing", "/root") in ("FileNotFoundError", sorted(on_the_way))
    assert call(submission, "read", "/root/.bashrc") in UNREADABLE
    # The assignment and its history (`git show HEAD:reference/...`).
    for path in (ROOT / "pyproject.toml", ROOT / ".git" / "HEAD", ROOT / "fixtures" / "submissions"):
        assert call(submission, "read", str(path)) in UNREADABLE, path
    assert call(submission, "listing", str(ROOT / ".git")) in UNREADABLE
    # Another grading's scratch copy (a worker of the same grading process: the same scratch area),
    # and the batch's --out folder with other students' reports.
    other = sandbox.Scratch.create(tmp_path / "submissions" / "bob", None)
    try:
        assert call(submission, "read", str(other.submission / "probe.py")) in UNREADABLE
        seen = call(submission, "listing", str(sandbox.scratch_area()))  # the folders of its own mounts at most
        own = submission.channel.backend.worker.scratch.root.name
        assert seen in UNREADABLE or set(seen) <= {own, confine.SHARED}, seen
    finally:
        other.remove()
    assert call(submission, "read", str(tmp_path / "out" / "bob.json")) in UNREADABLE
    assert call(submission, "listing", str(tmp_path / "out")) in UNREADABLE
    # What is there at all: the top folders of the whitelist, and nothing else.
    tops = {Path(target).parts[1] for _, _, target in confine.view(sandbox.visible_paths())}
    assert set(call(submission, "listing", "/")) == tops | {"dev", "etc", "home", "proc", "tmp"}


@pytest.mark.parametrize("probe", tiers()[:2], indirect=True)
def test_namespaced_tiers_cap_tmp_home_and_shm(probe):
    _, submission, _ = probe
    for folder, size in confine.TMPFS.items():
        cap = size // 2**20
        stopped, written = call(submission, "fill", folder, cap + 128)
        assert stopped == "ENOSPC" and written <= cap, (folder, stopped, written)


@pytest.mark.parametrize("probe", tiers()[:2], indirect=True)
def test_the_whitelist_holds_what_grading_imports(probe):
    _, submission, _ = probe
    found = call(submission, "import_everything")
    assert {"torch", "numpy"} <= set(found)
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        return
    assert "torch_geometric" in found


@pytest.mark.parametrize("probe", tiers(), indirect=True)
def test_the_worker_reads_what_the_grader_shares_and_cannot_change_it(probe):
    tier, submission, _ = probe
    call(submission, "facts")  # a worker that started before the folder was made sees it too
    shared = sandbox.worker_readable_folder("data-")
    (shared / "photo.txt").write_text("pixels")
    assert call(submission, "read", str(shared / "photo.txt")) == "read 6"
    if tier != "rlimits" or submission.channel.backend.sandbox.drops_privileges:
        assert call(submission, "write", str(shared / "photo.txt")) in ("OSError", "PermissionError")
        assert (shared / "photo.txt").read_text() == "pixels"


def test_the_view_binds_the_fewest_folders_and_recreates_links(tmp_path):
    library = tmp_path / "real" / "lib"
    (library / "package").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real")
    assignment = tmp_path / "assignment"
    (assignment / "reference").mkdir(parents=True)
    paths = [library, library / "package", tmp_path / "link" / "lib", assignment]
    mounts = confine.view([str(p) for p in paths], hidden=[str(assignment / "reference")])
    binds = [target for kind, _, target in mounts if kind == "bind"]
    assert str(library) in binds and str(library / "package") not in binds  # inside a bind already
    assert str(assignment) not in binds  # it holds reference/: never bound, whatever sys.path says
    assert ("symlink", "real", str(tmp_path / "link")) in mounts  # link/lib resolves inside as outside
    assert all(source == target for kind, source, target in mounts if kind == "bind")


def test_folders_nobody_cannot_enter_are_laid_open_with_only_what_the_worker_needs():
    base = Path(tempfile.mkdtemp(prefix="torchgrade-test-"))  # not under pytest's folder, which is 0700
    try:
        base.chmod(0o755)
        closed = base / "closed"  # like /root
        (closed / "python" / "lib").mkdir(parents=True)
        (closed / "secrets").mkdir()
        closed.chmod(0o700)
        found = sandbox._out_of_reach([str(closed / "python"), str(closed / "python" / "lib"), str(base)])
        if any(not sandbox._enterable_by_nobody(folder) for folder in base.parents):
            pytest.skip(f"the temporary folder {base.parent} is closed to nobody already")
        assert found == ((str(closed), (str(closed / "python"),)),)
    finally:
        shutil.rmtree(base)


def test_a_scratch_copy_nested_deeper_than_the_recursion_limit_is_removed(tmp_path):
    """The worker may nest folders without end in its copy: removing it neither recurses nor follows a link."""
    outside = tmp_path / "outside.txt"
    outside.write_text("kept")
    root = tmp_path / "scratch"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(sys.getrecursionlimit() + 100):  # where shutil.rmtree raises RecursionError
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.symlink(outside, "link", dir_fd=fd)
    os.mkdir("closed", mode=0, dir_fd=fd)
    os.close(fd)
    sandbox.Scratch(root).remove()
    assert not root.exists() and outside.read_text() == "kept"


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


def test_the_capped_tmpfs_go_under_the_binds_so_an_installation_under_tmp_stays_visible(tmp_path, monkeypatch):
    """A CI runner may check out (and install into) a folder under /tmp: bubblewrap's /tmp tmpfs must
    come before the read-only binds, not over them (a clean clone under /tmp had no namespaced tier)."""
    before, after = confine.tmpfs_order()
    assert "/tmp" in before and confine.HOME in before and list(after) == ["/dev/shm"]
    monkeypatch.setattr(sandbox, "visible_paths", lambda: ["/tmp/checkout/.venv", "/usr/lib"])
    monkeypatch.setattr(confine, "view", lambda paths, hidden: [("bind", p, p) for p in paths])
    box = sandbox.Sandbox("bubblewrap")
    line = box.command(["python"], sandbox.Scratch(tmp_path), [])
    first_bind = line.index("--ro-bind")
    assert line.index("/tmp") < first_bind and line.index(confine.HOME) < first_bind
    assert line.index("/dev/shm") > line.index("--dev")
