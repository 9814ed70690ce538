"""Student tracebacks trimmed to the student's own frames (worker side), and the text of student
exceptions made fit for a message: terminal escape codes removed (torch's own messages carry ANSI
bold), long text cut with how much was cut (an exception holding an array's repr ran to 74,589
characters)."""

from __future__ import annotations

import os
import re
import traceback
from pathlib import Path

#: The longest student traceback kept in a message, in lines.
MAX_TRACEBACK_LINES = 30
#: The longest line of a traceback kept (a frame's source line, a line of the exception's text).
MAX_LINE_CHARS = 300
#: The longest exception text kept, at the end of a traceback or as a message.
MAX_MESSAGE_CHARS = 2000
MSG_CUT = " [... {count:,} characters cut]"
#: Terminal escape sequences: colours and bold (CSI), OSC sequences such as hyperlinks, and the rest.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def clean_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` without terminal escape codes, cut to ``limit`` characters with how many were cut."""
    text = ANSI.sub("", text)
    return text if len(text) <= limit else text[:limit] + MSG_CUT.format(count=len(text) - limit)


def exception_message(exc: BaseException) -> str:
    """``str(exc)`` fit for a message (:func:`clean_text`); a ``__str__`` that raises is said so."""
    try:
        text = str(exc)
    except Exception as error:  # noqa: BLE001 - a student exception's __str__ may raise anything
        text = f"<its message could not be shown: {type(error).__name__}>"
    return clean_text(text)


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
    try:
        only = "".join(traceback.format_exception_only(type(exc), exc))
    except Exception:  # noqa: BLE001 - a student exception's __str__ may raise anything
        only = f"{type(exc).__name__}: <its message could not be shown>\n"
    text = "".join(lines) + clean_text(only)
    text = text.replace(folder_text + os.sep, "")
    kept = [line if len(line) <= MAX_LINE_CHARS else clean_text(line, MAX_LINE_CHARS) for line in text.splitlines()]
    if len(kept) > MAX_TRACEBACK_LINES:
        kept = (
            kept[:5] + [f"  ... {len(kept) - MAX_TRACEBACK_LINES} lines cut ..."] + kept[-(MAX_TRACEBACK_LINES - 6) :]
        )
    return "\n".join(kept)
