"""Student tracebacks trimmed to the student's own frames (worker side)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

#: The longest student traceback kept in a message, in lines.
MAX_TRACEBACK_LINES = 30


def format_student_exception(exc: BaseException, folder: Path) -> str:
    """Format a traceback keeping only the frames of files inside the submission ``folder``.

    The harness's own frames and torch's internals are noise to a student; the last library frame
    is kept when no student frame exists (for example a bad argument to ``torch.cat``).
    """
    folder_text = str(Path(folder).resolve())
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename.startswith(folder_text)]
    lines = traceback.format_list(own)
    if isinstance(exc, SyntaxError) and exc.filename:
        lines.append(f'  File "{exc.filename}", line {exc.lineno}\n    {(exc.text or "").rstrip()}\n')
    text = "".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))
    text = text.replace(folder_text + os.sep, "")
    kept = text.splitlines()
    if len(kept) > MAX_TRACEBACK_LINES:
        kept = (
            kept[:5] + [f"  ... {len(kept) - MAX_TRACEBACK_LINES} lines cut ..."] + kept[-(MAX_TRACEBACK_LINES - 6) :]
        )
    return "\n".join(kept)
