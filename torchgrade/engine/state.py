"""The state of one grading run, and every pytest stash key of the plugin, declared in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from torchgrade.assignments import Repository
from torchgrade.engine.parts import Parts
from torchgrade.reporting import report

if TYPE_CHECKING:  # the proxies import torch; the plugin imports them only once a check needs them
    from torchgrade.engine.proxy import Submission, SubmissionRecord


@dataclass(frozen=True)
class CheckSpec:
    """What a check is worth, from its points marker."""

    assignment: str
    question: str
    max_points: float


@dataclass
class CheckRecord:
    """What happened to one check so far, over its setup, call and teardown."""

    outcome: str = "passed"  # passed | failed | error | skipped
    message: str = ""
    duration: float = 0.0
    parts: tuple[report.PartResult, ...] = ()
    #: The check's evidence (the ``evidence`` fixture), as the check filled it.
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunState:
    """One ``pytest graders`` run: its settings, the checks' points and outcomes, the submission."""

    submission: Path
    isolation: str
    report_path: Path
    cache_dir: str | None
    started_at: str
    specs: dict[str, CheckSpec] = field(default_factory=dict)
    manual: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    #: ``--only ID``: the one assignment graded (None: every assignment collected).
    only: str | None = None
    #: The repository's manifest, read once (:class:`torchgrade.assignments.Repository`).
    repository: Repository | None = None
    #: Assignments some of whose checks were deselected (``-k``, ``-m``, a file or node given):
    #: their sum is that of the selected checks, not the assignment's total.
    partial: set[str] = field(default_factory=set)
    results: dict[str, CheckRecord] = field(default_factory=dict)
    proxy: Submission | None = None
    #: The proxy's worker start-up seconds already taken out of the checks' durations.
    startup_counted: float = 0.0
    #: What the closed submission left for the report (notes, sandbox, output).
    record: SubmissionRecord | None = None
    #: For a notebook or script: the temporary folder of the code kept from it, and what was dropped.
    extracted_dir: Path | None = None
    extraction: report.Extraction | None = None


#: config.stash: the run.
STATE = pytest.StashKey[RunState]()
#: config.stash: the report of the run, once built.
REPORT = pytest.StashKey[report.Report]()
#: config.stash: why the report was written without passing its schema check (a torchgrade bug).
REPORT_PROBLEM = pytest.StashKey[str]()
#: item.stash: the check's partial credit (the ``parts`` fixture).
PARTS = pytest.StashKey[Parts]()
#: item.stash: the check's evidence (the ``evidence`` fixture).
EVIDENCE = pytest.StashKey[dict[str, Any]]()
#: item.stash: when the check's setup started (pytest-timeout's clock starts then too).
SETUP_STARTED = pytest.StashKey[float]()
