"""Grading one submission in a fresh pytest process, and the exit codes that say how it went.

The command line (``torchgrade grade``), the sample engine (``torchgrade demo`` and ``torchgrade
check``) grade through :func:`grade`; a batch job starts the same pytest command itself
(:func:`pytest_command`), so that it can stop that process tree at its wall-clock limit, and reads
the outcome with :func:`grading_exit_code` as :func:`grade` does.

Exit codes:
    0  every auto-graded check passed
    1  some checks failed (the submission lost points)
    2  usage error (bad arguments, missing folders)
    3  internal error (a torchgrade bug or a broken set-up; never the student's fault)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
HELP_ONLY = "grade, count and report only this assignment of the manifest (assignments.toml)"


def only_args(assignment: Path, only: str | None) -> tuple[str, ...]:
    """The pytest arguments that grade one assignment (``--only ID``), checked against the manifest of
    ``assignment`` first, so that a wrong id is a usage error here rather than a failed grading.

    Raises:
        TorchgradeError: the folder has no manifest, or it declares no such assignment (the message
            lists the known ones).
    """
    if only is None:
        return ()
    from torchgrade import assignments

    assignments.load(assignment).get(only)
    return ("--only", only)


@dataclass(frozen=True)
class PytestCommand:
    """How to start the grading pytest of one submission.

    Attributes:
        argv: the command line (this Python, isolated, running pytest on the assignment's graders).
        env: its whole environment.
        cwd: the folder it runs in (the assignment).
        report: where the plugin writes the report (removed beforehand).
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    report: Path


def pytest_command(
    submission: Path,
    *,
    assignment: Path,
    report: Path,
    isolation: str = "process",
    extra_args: tuple[str, ...] = (),
    quiet: bool = True,
    extra_env: dict[str, str] | None = None,
) -> PytestCommand:
    """The pytest command that grades ``submission``; removes a stale ``report``.

    pytest runs with the assignment's own configuration, rooted at the assignment (``--rootdir``,
    ``-c``), loads no ``conftest.py`` above ``graders/`` (``--confcutdir``), and ``PYTEST_ADDOPTS``
    is dropped; Python runs isolated (``-I``: neither the current folder nor ``PYTHONPATH`` on
    ``sys.path``). A ``conftest.py``, ``torch.py`` or ``sitecustomize.py`` in the submission or at
    the root of a student's repository changes nothing of how it is graded.

    Args: as :func:`grade`'s.
    """
    assignment, submission, report = assignment.resolve(), Path(submission).resolve(), report.resolve()
    report.unlink(missing_ok=True)
    argv = [
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
        argv += ["-q", "--tb=no", "--no-header", "-rN"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"} | dict(extra_env or {})
    return PytestCommand(tuple(argv), env, assignment, report)


def grading_exit_code(pytest_code: int, data: dict[str, Any] | None) -> int:
    """The exit code of a grading (see the module docstring) from pytest's and the report's JSON.

    A grading is an internal error when pytest wrote no report or ended other than with 0 or 1.
    """
    if data is None or pytest_code not in (0, 1):
        return EXIT_INTERNAL
    return EXIT_OK if data["score"] == data["max_score"] else EXIT_FAILED


def read_report(report: Path) -> dict[str, Any] | None:
    """The report's JSON, or None if the grading wrote none (the plugin writes it atomically)."""
    return json.loads(report.read_text()) if report.is_file() else None


def grade(
    submission: Path,
    *,
    assignment: Path,
    isolation: str = "process",
    report: Path | None = None,
    extra_args: tuple[str, ...] = (),
    quiet: bool = True,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
) -> tuple[int, dict | None]:
    """Grade one submission in a fresh pytest process (:func:`pytest_command`).

    Args:
        submission: a folder of modules, or a notebook (``.ipynb``) or script (``.py``) whose
            definitions the plugin extracts (:mod:`torchgrade.intake.notebook`). Any other file is graded
            too: every check fails with a message saying why, so a batch still gets its report.
        assignment: the folder holding ``graders/`` and ``pyproject.toml``.
        isolation: ``process`` (default) or ``none``.
        report: where the report goes (default: a new temporary file).
        extra_args: more pytest arguments (``-k answers``, ``--grade-cache DIR``).
        quiet: pytest prints the score table only, no failure details.
        extra_env: environment variables set for the pytest process (e.g. ``OMP_NUM_THREADS`` when
            several gradings share the cores).
        log: a file that receives pytest's output (stdout and stderr); default: this process's own.

    Returns:
        The exit code (see the module docstring) and the report's JSON (None if none was written).
    """
    report = report or Path(tempfile.mkstemp(prefix="torchgrade-", suffix=".json")[1])
    command = pytest_command(
        submission,
        assignment=assignment,
        report=report,
        isolation=isolation,
        extra_args=extra_args,
        quiet=quiet,
        extra_env=extra_env,
    )
    with open(log, "wb") if log is not None else contextlib.nullcontext() as output:
        stderr = subprocess.STDOUT if output is not None else None
        code = subprocess.run(command.argv, cwd=command.cwd, env=command.env, stdout=output, stderr=stderr).returncode
    data = read_report(command.report)
    return grading_exit_code(code, data), data
