"""The files of a submission: regular files and folders only, never following a link, within caps.

A submission is untrusted data before any of its code runs. A symbolic link may point at the
reference, at another student's folder or at ``/dev/zero``; a named pipe blocks whoever reads it; a
dangling link or a link loop makes a naive copy crash. Everything that reads a submission's files
(the worker's scratch copy, the batch's content hash and packing, the worker's loader) lists them
here: only regular files are taken, each read through a descriptor that refuses links and never
blocks, within a cap on their number and total size; everything else is skipped and said why, for
the report. Imports nothing of torchgrade: both sides of the trust boundary use it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: Folders that are never part of a submission (nor of its content hash).
IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})
#: At most this many files are taken; the rest are skipped.
MAX_FILES = 2000
#: At most this many bytes in all; a file that would pass the cap is skipped.
MAX_BYTES = 256 * 2**20
#: Folders nested deeper than this are skipped (a course's data folders nest a few levels).
MAX_DEPTH = 32

_KINDS = (
    (stat.S_ISLNK, "a symbolic link (links are never followed)"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


@dataclass(frozen=True)
class Listing:
    """What :func:`list_files` found.

    Attributes:
        files: (relative POSIX path, path) of every regular file taken, sorted.
        skipped: (relative POSIX path, why) of everything left out, sorted.
    """

    files: tuple[tuple[str, Path], ...]
    skipped: tuple[tuple[str, str], ...]

    def note(self) -> str:
        """One sentence for the report; empty when nothing was skipped."""
        if not self.skipped:
            return ""
        shown = "; ".join(f"{path}: {why}" for path, why in self.skipped[:10])
        more = f"; and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
        return f"left out of the submission, so no check could use them: {shown}{more}"


def _kind(mode: int) -> str | None:
    """Why an entry of this mode is skipped; None for a regular file or a folder."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((why for test, why in _KINDS if test(mode)), "not a regular file")


def list_files(root: Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> Listing:
    """The regular files of the submission ``root`` (a folder, or a single file: itself).

    Folders are walked without following links; ``__pycache__``, ``.git``, notebook checkpoints and
    ``.pyc`` files are ignored. Names need not be UTF-8 (they are kept as the file system gives them).
    """
    root = Path(root)
    files: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    total = 0
    whole = root.is_dir() and not root.is_symlink()
    pending = [(root, "" if whole else root.name, 0)]  # a stack, not recursion: depth is the student's
    while pending:
        path, relative, depth = pending.pop()
        try:
            info = os.lstat(path)
        except OSError as exc:
            skipped.append((relative, f"unreadable ({exc.strerror or exc})"))
            continue
        why = _kind(info.st_mode)
        if why is not None:
            skipped.append((relative, why))
        elif stat.S_ISDIR(info.st_mode):
            if depth > MAX_DEPTH:
                skipped.append((relative, f"nested deeper than {MAX_DEPTH} folders"))
                continue
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError as exc:
                skipped.append((relative, f"unreadable ({exc.strerror or exc})"))
                continue
            for name in names:
                if name in IGNORED_DIRS or name.endswith(".pyc"):
                    continue
                pending.append((path / name, f"{relative}/{name}" if relative else name, depth + 1))
        elif len(files) >= max_files:
            skipped.append((relative, f"over the cap of {max_files} files"))
        elif total + info.st_size > max_bytes:
            skipped.append((relative, f"over the cap of {max_bytes // 2**20} MiB in all"))
        else:
            total += info.st_size
            files.append((relative, path))
    return Listing(tuple(sorted(files)), tuple(sorted(skipped)))


def read_regular(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, read through a descriptor that refuses a link and
    never blocks (the file may have been swapped for a pipe since it was listed).

    Raises:
        OSError: ``path`` is not a regular file (any more), or is larger than ``limit``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise OSError(f"{path} is larger than {limit} bytes")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OSError(f"{path} grew past {limit} bytes while it was read")
        return data
    finally:
        os.close(fd)
