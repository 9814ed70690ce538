"""The worker's view of the machine: a whitelist, not a list of hidden folders.

Both namespaced tiers of :mod:`torchgrade.isolation.sandbox` give the worker the same view: the
Python installation and its packages, read-only (:func:`interpreter_paths`), the system libraries
they load (:data:`SYSTEM_PATHS`), a minimal ``/dev``, its own ``/proc``, its scratch copy of the
submission (the working directory, writable) and size-capped tmpfs for ``/tmp``, ``HOME`` and
``/dev/shm`` (:data:`TMPFS`); nothing else of the host. :func:`view` lists the read-only part as
mounts. The bubblewrap tier hands them to ``bwrap``; in the ``unshare`` tier the worker, root of a
fresh user namespace, mounts them itself and enters them with ``pivot_root`` (:func:`hide_paths`),
then re-executes as uid 65534 of a nested user namespace (:func:`leave_root`) before it loads the
submission.

Runs in the worker process; imports nothing of torchgrade.
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import shutil
import site
import sys
import sysconfig
from collections.abc import Sequence

#: The user an unprivileged worker runs as (``nobody``), also when the grader is root.
NOBODY = 65534
#: The worker's home in the namespaced tiers: a tmpfs of its own.
HOME = "/home/worker"
#: The worker's writable tmpfs and their sizes in bytes, 1 GiB in all. Writing more fails with
#: ENOSPC. A tmpfs holds memory that the address-space limit does not count: hence the caps.
TMPFS = {"/tmp": 512 * 2**20, HOME: 256 * 2**20, "/dev/shm": 256 * 2**20}


def tmpfs_order() -> tuple[dict[str, int], dict[str, int]]:
    """:data:`TMPFS` split into those mounted before the read-only binds of :func:`view` and those
    mounted after ``/dev``: a Python installation or a checkout under ``/tmp`` (a CI runner's) must be
    bound onto the worker's /tmp, not hidden under it; ``/dev/shm`` needs ``/dev`` first."""
    after = {target: size for target, size in TMPFS.items() if target.startswith("/dev/")}
    return {target: size for target, size in TMPFS.items() if target not in after}, after


#: What the dynamic loader reads besides the interpreter's own folders: the system libraries (or the
#: links to them of a merged /usr) and its cache of where they are.
SYSTEM_PATHS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache")
#: The device nodes of the worker's /dev (bwrap's ``--dev`` has the same ones).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: /etc/passwd and /etc/group of the sandbox: only the worker's user, so that ``getpass.getuser()``,
#: ``pwd.getpwuid()`` and ``~`` work.
PASSWD = f"nobody:x:{NOBODY}:{NOBODY}:nobody:{HOME}:/usr/sbin/nologin\n"
GROUP = f"nogroup:x:{NOBODY}:\n"

#: The folder beside the worker's scratch folder (in the grading process's scratch area) that holds
#: data the grader shares with every worker, bound read-only (``sandbox.worker_readable_folder``).
SHARED = "shared"

#: A read-only bind (``("bind", source, target)``) or a symbolic link (``("symlink", link, at)``).
Mount = tuple[str, str, str]


def interpreter_paths() -> list[str]:
    """What this Python reads to run the worker: its prefixes and executable, the standard library,
    every site-packages folder and the folders their ``.pth`` files add, and torchgrade's own
    package (an editable install lives outside site-packages). The same in the grader and in a
    ``python -I`` worker: computed from the installation, not from ``sys.path``, which in the
    grader holds pytest's folders too.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(here)}
    paths.add(os.path.realpath(sys.executable))
    installed = sysconfig.get_paths()
    paths.update(installed[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in installed)
    for folder in site.getsitepackages():
        paths.add(folder)
        for pth in glob.glob(os.path.join(glob.escape(folder), "*.pth")):
            try:
                with open(pth, encoding="utf-8") as lines:
                    for line in lines:
                        line = line.rstrip()
                        if line and not line.startswith(("#", "import ", "import\t")):
                            paths.add(os.path.join(folder, line))
            except (OSError, UnicodeDecodeError):
                continue  # site skips an unreadable .pth file too
    return sorted(os.path.abspath(p) for p in paths if os.path.exists(p))


def view(paths: Sequence[str], hidden: Sequence[str] = ()) -> list[Mount]:
    """The read-only part of the worker's view: ``paths`` and :data:`SYSTEM_PATHS` as the fewest
    binds (each at its real path) plus the symbolic links on the way to them (``/lib -> usr/lib``),
    so that each path resolves inside the sandbox as it does outside.

    A path that holds one of ``hidden`` (the assignment root on ``sys.path``, say) is left out: the
    worker never sees a folder above reference/, graders/ or the submissions.
    """
    hidden_real = [os.path.realpath(h) for h in hidden]
    binds: set[str] = set()
    links: dict[str, str] = {}
    for path in (*SYSTEM_PATHS, *paths):
        path = os.path.abspath(path)
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real == "/" or any(_within(h, real) for h in hidden_real):
            continue
        binds.add(real)
        links.update(_links_to(path))
    kept: list[str] = []
    for real in sorted(binds):  # a folder sorts before what it holds
        if not any(_within(real, k) for k in kept):
            kept.append(real)
    mounts: list[Mount] = [("bind", real, real) for real in kept]
    mounts += [("symlink", link, at) for at, link in sorted(links.items()) if not any(_within(at, k) for k in kept)]
    return mounts


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _links_to(path: str) -> dict[str, str]:
    """The symbolic links met while resolving ``path``: {where the link is (a real path): its text}."""
    links: dict[str, str] = {}
    parts = [p for p in path.split("/") if p]
    current = "/"
    while parts and len(links) < 40:  # 40: the kernel's own limit on links in one lookup
        candidate = os.path.join(current, parts.pop(0))
        if os.path.islink(candidate):
            text = os.readlink(candidate)
            links[candidate] = text
            resolved = os.path.normpath(os.path.join(current, text))
            parts = [p for p in resolved.split("/") if p] + parts
            current = "/"
        else:
            current = candidate
    return links


# -- the unshare tier: the worker builds the view itself ------------------------------------------
# mount(2) flags; statvfs's ST_* flags have the same values.
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME, _MS_REC, _MS_PRIVATE = 1024, 2048, 1 << 21, 16384, 1 << 18
_LOCKED_FLAGS = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME | _MS_RELATIME
_MNT_DETACH = 2
_CLONE_NEWNS = 0x00020000
#: pivot_root(2) has no libc wrapper: its system call number per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


@functools.cache
def libc():
    """The C library through ctypes. Loaded before a fork: a child calls it before it executes."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2), raising OSError."""
    args = [None if text is None else text.encode() for text in (source, target, fstype)]
    _check(libc().mount(*args, flags, None if data is None else data.encode()), f"mount {source} on {target}")


def new_mount_namespace() -> None:
    """unshare(2) a mount namespace whose mounts leave the parent's untouched (root only)."""
    _check(libc().unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, _MS_REC | _MS_PRIVATE)


def bind(source: str, target: str, readonly: bool = True) -> None:
    """Bind ``source`` (a folder or a file) on ``target``, made first if missing."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "wb").close()
    mount(source, target, None, _MS_BIND)
    if readonly:
        kept = os.statvfs(source).f_flag & _LOCKED_FLAGS  # a user namespace may not clear these
        mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)


def tmpfs(target: str, size: int, mode: str = "1777") -> None:
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},mode={mode}")


def hide_paths(paths: Sequence[str], writable: str) -> None:
    """Leave this process (root of a fresh user, mount and PID namespace, its working directory the
    scratch copy of the submission under ``writable``) a whitelisted view of the machine: build
    :func:`view` of :func:`interpreter_paths` (and the ``unshare`` executable :func:`leave_root`
    needs) on a tmpfs under ``writable``, with /dev, /proc, the capped tmpfs of :data:`TMPFS`, the
    scratch copy (writable), /etc/passwd and /etc/group, and enter it with ``pivot_root``. The old
    root is detached: nothing else of the host stays reachable. ``paths`` (reference/, graders/,
    the submissions...) are never under what is bound (see :func:`view`).

    The unshare tier's version of bubblewrap's command line; runs before the submission is loaded.
    """
    submission = os.getcwd()
    mounts = view([*interpreter_paths(), shutil.which("unshare") or "/usr/bin/unshare"], paths)
    mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    root = os.path.join(writable, "root")
    tmpfs(root, 2**20, "0755")
    before, after = tmpfs_order()
    for target, size in before.items():
        tmpfs(root + target, size, "0700" if target == HOME else "1777")
    for kind, source, target in mounts:
        if kind == "symlink":
            os.makedirs(os.path.dirname(root + target), exist_ok=True)
            os.symlink(source, root + target)
        else:
            bind(source, root + target)
    dev = root + "/dev"
    tmpfs(dev, 2**16, "0755")
    for name in DEVICES:
        bind(f"/dev/{name}", f"{dev}/{name}", readonly=False)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(link, f"{dev}/{name}")
    os.symlink("/proc/self/fd/2", f"{dev}/stderr")
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for target, size in after.items():
        tmpfs(root + target, size, "1777")
    os.makedirs(root + "/etc", exist_ok=True)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        with open(f"{root}/etc/{name}", "w") as file:
            file.write(text)
    shared = os.path.join(os.path.dirname(os.path.abspath(writable)), SHARED)
    if os.path.isdir(shared):
        bind(shared, root + shared)
    bind(submission, root + submission, readonly=False)
    mount(None, root, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(root)
    number = _SYS_PIVOT_ROOT.get(platform.machine().lower())
    if number is None:
        raise OSError(f"pivot_root: no system call number known for {platform.machine()}")
    _check(libc().syscall(number, b".", b"."), "pivot_root")
    _check(libc().umount2(b".", _MNT_DETACH), "umount2 of the old root")
    os.chdir(submission)


def leave_root(worker_args: Sequence[str], module: str = "torchgrade.worker") -> None:
    """Re-execute ``python -m module`` as uid 65534 of a nested user namespace, keeping the mounts
    (and the request/reply descriptors ``worker_args``). Root of a user namespace could undo the
    mounts of :func:`hide_paths`; uid 65534 without capabilities cannot."""
    unshare = shutil.which("unshare") or "unshare"
    os.execv(
        unshare,
        [
            unshare,
            "--user",
            f"--map-user={NOBODY}",
            f"--map-group={NOBODY}",
            sys.executable,
            "-I",
            "-u",
            "-m",
            module,
            *worker_args,
        ],
    )


if __name__ == "__main__":  # the probe of sandbox.available(): a worker's start without its descriptors
    writable_root = [a.removeprefix("--writable=") for a in sys.argv[1:] if a.startswith("--writable=")]
    if writable_root:
        hide_paths([], writable_root[0])
        leave_root([], module="torchgrade.worker.confine")  # as uid 65534, in the view: exits at once
