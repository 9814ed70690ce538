"""The worker's side of the ``unshare`` sandbox tier: hide paths, then stop being root.

Runs in the worker process before the submission is loaded (:mod:`torchgrade.isolation.sandbox`
starts the worker); imports nothing of torchgrade.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

#: The user an unprivileged worker runs as (``nobody``), also when the grader is root.
NOBODY = 65534


def hide_paths(paths: Sequence[str], writable: str) -> None:
    """Make this mount namespace read-only but for ``writable``, and mount an empty tmpfs over
    each of ``paths`` (a file: bind ``/dev/null``): the unshare tier's version of bubblewrap's
    ``--ro-bind / /``, ``--bind SCRATCH`` and ``--tmpfs``. Runs as root of a fresh user namespace,
    before the submission is loaded."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        args = [None if text is None else text.encode() for text in (source, target, fstype)]
        if libc.mount(*args, flags, None if data is None else data.encode()) != 0:
            raise OSError(ctypes.get_errno(), f"mount {source} on {target} failed: {os.strerror(ctypes.get_errno())}")

    mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    mount(writable, writable, None, _MS_BIND)  # its own mount, left writable below
    with open("/proc/self/mountinfo") as table:
        points = [line.split()[4].replace("\\040", " ") for line in table]
    for point in points:
        if point == writable or point.startswith(("/proc", "/sys", "/dev")):
            continue
        try:
            kept = os.statvfs(point).f_flag & _LOCKED_FLAGS  # a user namespace may not clear these
            mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)
        except OSError:
            continue  # a mount we cannot see through (shadowed, or gone): nothing to make read-only
    for path in paths:
        if os.path.isfile(path):
            mount("/dev/null", path, None, _MS_BIND)
        else:
            mount("tmpfs", path, "tmpfs", _MS_RDONLY, "size=1m")
    os.chdir(os.getcwd())  # the working directory was entered before the mounts: enter it again through them


# mount(2) flags; statvfs's ST_* flags have the same values.
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME, _MS_REC, _MS_PRIVATE = 1024, 2048, 1 << 21, 16384, 1 << 18
_LOCKED_FLAGS = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME | _MS_RELATIME


def leave_root(worker_args: Sequence[str]) -> None:
    """Re-execute the worker as uid 65534 of a nested user namespace, keeping the mounts (and the
    request/reply descriptors ``worker_args``). Root of a user namespace could undo the mounts of
    :func:`hide_paths`; uid 65534 without capabilities cannot."""
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
            "torchgrade.worker",
            *worker_args,
        ],
    )


if __name__ == "__main__":  # the probe of sandbox.available(): a worker's start without its descriptors
    writable_root = [a.removeprefix("--writable=") for a in sys.argv[1:] if a.startswith("--writable=")]
    if writable_root:
        hide_paths([], writable_root[0])
