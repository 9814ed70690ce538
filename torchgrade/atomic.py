"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one, never half.

A batch can be killed at any moment; everything it leaves behind must still be readable. Each
write goes to a temporary file in the destination's own folder (same file system, so the rename
is atomic) and is moved into place with :func:`os.replace`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

#: Prefix and suffix of the temporary files, so that a rerun can recognise and remove leftovers.
TMP_PREFIX, TMP_SUFFIX = ".", ".tmp"


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    # os.open with 0o666, not mkstemp (0o600): the file gets the umask's permissions, like any other.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder``; return what was removed."""
    removed = []
    for leftover in Path(folder).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed
