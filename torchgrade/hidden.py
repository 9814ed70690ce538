"""Hidden checks: grader modules under ``graders/hidden/``.

The folder, not a per-check marker, is what hides a check: ``torchgrade release`` leaves the folder
out of the students' copy, the plugin marks its checks ``hidden``, and ``torchgrade export
gradescope`` shows them to students only once grades are published.
"""

from __future__ import annotations

from pathlib import PurePosixPath

#: The folder of ``graders/`` whose modules are hidden from students.
HIDDEN_DIR = "hidden"


def is_hidden_check(nodeid: str) -> bool:
    """Whether a check is hidden: its module lives in a ``hidden/`` folder (``graders/hidden/x.py::t``)."""
    return HIDDEN_DIR in PurePosixPath(nodeid.split("::", 1)[0]).parts[:-1]
