"""Grading one submission in a fresh pytest process, and the exit codes that say how it went.

The command line (``torchgrade grade``), batch grading, the demo and ``torchgrade check`` all grade
through :func:`grade`.

Exit codes:
    0  every auto-graded check passed
    1  some checks failed (the submission lost points)
    2  usage error (bad arguments, missing folders)
    3  internal error (a torchgrade bug or a broken set-up; never the student's fault)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def grade(
    submission: Path,
    *,
    assignment: Path,
    isolation: str = "process",
    report: Path | None = None,
    extra_args: tuple[str, ...] = (),
    quiet: bool = True,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, dict | None]:
    """Grade one submission in a fresh pytest process.

    pytest runs with the assignment's own configuration, rooted at the assignment (``--rootdir``,
    ``-c``), loads no ``conftest.py`` above ``graders/`` (``--confcutdir``), and ``PYTEST_ADDOPTS``
    is dropped; Python runs isolated (``-I``: neither the current folder nor ``PYTHONPATH`` on
    ``sys.path``). A ``conftest.py``, ``torch.py`` or ``sitecustomize.py`` in the submission or at
    the root of a student's repository changes nothing of how it is graded.

    Args:
        submission: a folder of modules, or a notebook (``.ipynb``) or script (``.py``) whose
            definitions the plugin extracts (:mod:`torchgrade.intake.notebook`). Any other file is graded
            too: every check fails with a message saying why, so a batch still gets its report.
        extra_env: environment variables set for the pytest process (e.g. ``OMP_NUM_THREADS`` when
            several gradings share the cores).

    Returns:
        The exit code (see the module docstring) and the report's JSON (None if none was written).
    """
    assignment, submission = assignment.resolve(), Path(submission).resolve()  # pytest runs in the assignment
    report = (report or Path(tempfile.mkstemp(prefix="torchgrade-", suffix=".json")[1])).resolve()
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-I",
        "-m",
        "pytest",
        str(assignment / "graders"),
        f"--rootdir={assignment}",
        "-c",
        str(assignment / "pyproject.toml"),
        f"--confcutdir={assignment / 'graders'}",
        "-p",
        "no:cacheprovider",
        f"--submission={submission}",
        f"--isolation={isolation}",
        f"--report={report}",
        *extra_args,
    ]
    if quiet:
        command += ["-q", "--tb=no", "--no-header", "-rN"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"} | dict(extra_env or {})
    code = subprocess.run(command, cwd=assignment, env=env).returncode
    data = json.loads(report.read_text()) if report.is_file() else None
    if data is None or code not in (0, 1):
        return EXIT_INTERNAL, data
    return (EXIT_OK if data["score"] == data["max_score"] else EXIT_FAILED), data
