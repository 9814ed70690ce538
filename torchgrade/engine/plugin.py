"""The pytest plugin that turns ``pytest graders`` into an autograder.

It owns every option, marker and fixture of torchgrade, and the hooks that turn test outcomes into
points, the score table printed at the end and the JSON report. Graders load it from
``graders/conftest.py`` with ``pytest_plugins = ["torchgrade.engine.plugin"]``.

A grader check is a test with a points marker::

    @pytest.mark.points(3, question="Q3a")
    def test_cnn_output_shape(sub):
        out = sub.CNN(n=4)(torch.zeros(2, 3, 448, 224))
        shapes.check_shape(out, (2, 2), who="CNN(n=4)(x[2, 3, 448, 224])")

A grader module names its assignment (``ASSIGNMENT = "shoes"``) and the questions a TA grades by
hand (``MANUAL = {"Q1a": (1, "why track men's and women's accuracy separately")}``).

Hidden checks live in modules under ``graders/hidden/`` (give them names of their own, e.g.
``test_shoes_hidden.py``). The folder, not a per-check marker, is what hides them: ``torchgrade release``
leaves the folder out of the students' copy, and a marked check in a released module would ship anyway.
Their checks get the ``hidden`` marker automatically (``pytest graders -m "not hidden"`` shows what
students see), and ``torchgrade export gradescope`` shows them to students only once grades are published.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import torchgrade
from torchgrade import errors
from torchgrade.engine.cache import GradeCache
from torchgrade.hidden import HIDDEN_DIR, is_hidden_check
from torchgrade.intake import notebook
from torchgrade.interface import NAME_TO_MODULE
from torchgrade.reporting import report

HELP_SUBMISSION = (
    "submission to grade: a folder of modules, or a notebook (.ipynb) or script (.py) whose "
    "definitions are extracted (env TORCHGRADE_SUBMISSION; default: student_template/ of the rootdir)"
)
HELP_ISOLATION = (
    "where student code runs: 'none' in this process (fast, debuggable), 'process' in a "
    "worker process (default when the CI variable is set)"
)
HELP_REPORT = "where to write the JSON report (default: torchgrade-report.json)"
HELP_CACHE = (
    "reuse results of expensive computations (training runs) across runs whose graded code is "
    "identical, keyed by a content hash; for the harness's own tests and the demo, never for official "
    "grading (env TORCHGRADE_CACHE)"
)
HELP_DATA_ROOT = (
    "folder with real data sets laid out as <root>/Cora/raw/ind.cora.* (Planetoid); graders read "
    "them offline and use synthetic stand-ins from fixtures/ when absent, or when the value is "
    "'synthetic' (env TORCHGRADE_DATA_ROOT; default: ../shared/data next to the assignment, if present)"
)
HELP_MARKER = (
    "points(n, question, assignment=None): the check is worth n points of the handout question; "
    "the assignment defaults to the module's ASSIGNMENT"
)
HELP_HIDDEN_MARKER = (
    f"hidden: set on every check whose module lives in graders/{HIDDEN_DIR}/ (kept out of the "
    "students' release); write no @pytest.mark.hidden yourself: move the module there"
)
MSG_HIDDEN_OUTSIDE = (
    "{nodeid}: @pytest.mark.hidden cannot hide a check whose module is released to students; "
    f"move the module to graders/{HIDDEN_DIR}/ instead"
)
ISOLATION_MODES = ("none", "process")
#: pytest-timeout's marker value is also the wall-clock limit of each call into student code.
DEFAULT_CHECK_TIMEOUT = 300.0

MSG_HARNESS_ERROR = "torchgrade internal error ({type}: {error}); this is not your fault, tell your instructor."


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchgrade", "torchgrade autograder")
    group.addoption("--submission", default=None, help=HELP_SUBMISSION)
    group.addoption("--isolation", default=None, choices=ISOLATION_MODES, help=HELP_ISOLATION)
    group.addoption("--report", default="torchgrade-report.json", help=HELP_REPORT)
    group.addoption("--grade-cache", default=None, help=HELP_CACHE)
    group.addoption("--data-root", default=None, help=HELP_DATA_ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", HELP_MARKER)
    config.addinivalue_line("markers", HELP_HIDDEN_MARKER)
    config.stash[_STATE] = _RunState(
        submission=_submission_path(config),
        isolation=config.getoption("isolation") or ("process" if os.environ.get("CI") else "none"),
        report_path=Path(config.getoption("report")),
        cache_dir=config.getoption("grade_cache") or os.environ.get("TORCHGRADE_CACHE"),
        started_at=_now(),
    )


def _submission_path(config: pytest.Config) -> Path:
    given = config.getoption("submission") or os.environ.get("TORCHGRADE_SUBMISSION")
    return Path(given).resolve() if given else config.rootpath / "student_template"


# -- run state ------------------------------------------------------------------------------------
@dataclass
class _CheckSpec:
    assignment: str
    question: str
    max_points: float


@dataclass
class _RunState:
    submission: Path
    isolation: str
    report_path: Path
    cache_dir: str | None
    started_at: str
    specs: dict[str, _CheckSpec] = field(default_factory=dict)
    manual: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy: Any = None
    #: For a notebook or script: the temporary folder of the code kept from it, and what was dropped.
    extracted_dir: Path | None = None
    extraction: report.Extraction | None = None


_STATE = pytest.StashKey[_RunState]()


def _state(config: pytest.Config) -> _RunState:
    return config.stash[_STATE]


# -- collection: points and questions ----------------------------------------------------------
@pytest.hookimpl(tryfirst=True)  # before -m deselects, so that -m "not hidden" sees the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_hidden_check(item.nodeid):
            item.add_marker(pytest.mark.hidden)
        elif item.get_closest_marker("hidden") is not None:
            raise pytest.UsageError(MSG_HIDDEN_OUTSIDE.format(nodeid=item.nodeid))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record the points of every selected check (after -k/-m deselection)."""
    state = _state(session.config)
    for item in session.items:
        marker = item.get_closest_marker("points")
        if marker is None:
            continue
        module = getattr(item, "module", None)
        default_assignment = getattr(module, "ASSIGNMENT", None)
        assignment = marker.kwargs.get("assignment", default_assignment)
        question = marker.kwargs.get("question")
        if not marker.args or question is None or assignment is None:
            raise pytest.UsageError(
                f"{item.nodeid}: write @pytest.mark.points(N, question='Q3a') in a module "
                f"with ASSIGNMENT = '...' (got args={marker.args}, kwargs={marker.kwargs})"
            )
        state.specs[item.nodeid] = _CheckSpec(str(assignment), str(question), float(marker.args[0]))
        for key, (pts, title) in getattr(module, "MANUAL", {}).items():
            # "Q1a" belongs to the module's ASSIGNMENT; ("uva-a2", "Q3.3") names another assignment.
            manual_assignment, qid = key if isinstance(key, tuple) else (default_assignment, key)
            state.manual[(str(manual_assignment), str(qid))] = (float(pts), title)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config):
    """The submission being graded, as a :class:`torchgrade.engine.proxy.Submission` (one per session)."""
    from torchgrade.engine.proxy import Submission

    state = _state(pytestconfig)
    folder = _graded_folder(state)
    if state.extraction is not None and state.extraction.error:
        # The student's file is unusable (invalid JSON, a binary...): every check fails with why.
        raise errors.CheckFailure(state.extraction.error)
    if not folder.is_dir():
        raise errors.TorchgradeError(f"submission {state.submission} does not exist")
    hidden = _hidden_paths(pytestconfig, folder) if state.isolation == "process" else None
    if state.extraction is None:
        proxy = Submission(folder, state.isolation, NAME_TO_MODULE, hidden)
    else:
        proxy = _extracted_submission(folder, state.isolation, state.extraction, hidden)
    state.proxy = proxy
    yield proxy
    proxy.close()


def _graded_folder(state: _RunState) -> Path:
    """The folder whose modules are graded: the submission folder itself or, for a notebook or script,
    a temporary folder of the code kept from it (converted once, from the AST alone, on this side)."""
    if not state.submission.is_file():
        return state.submission
    if state.extracted_dir is None:
        state.extracted_dir = Path(tempfile.mkdtemp(prefix="torchgrade-extracted-"))
        state.extraction = notebook.convert(state.submission, state.extracted_dir)
    return state.extracted_dir


def _hidden_paths(config: pytest.Config, folder: Path) -> list[Path]:
    """What the worker must not read: the assignment's reference, graders and samples, the report,
    the student's original file or folder and its neighbours (other submissions)."""
    from torchgrade.isolation import sandbox

    state = _state(config)
    hidden = sandbox.hidden_paths(state.submission, config.rootpath, state.report_path)
    extra = sandbox.hidden_paths(folder, None, None) if folder != state.submission else []
    return hidden + [path for path in extra if path not in hidden]


def _extracted_submission(folder: Path, isolation: str, extraction: report.Extraction, hidden: list[Path] | None):
    """A proxy whose missing-name failures speak of the notebook (the cell that defined the name and
    why it was left out) instead of modules the student never wrote. Built here because the proxy
    module, which imports torch, is imported only once a check needs the submission."""
    from torchgrade.engine.proxy import Submission

    class ExtractedSubmission(Submission):
        def lookup(self, name: str):
            try:
                return super().lookup(name)
            except errors.MissingName as exc:
                raise errors.MissingName(notebook.explain_missing(extraction, name, str(exc))) from None

    return ExtractedSubmission(folder, isolation, NAME_TO_MODULE, hidden)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.extracted_dir is not None:
        shutil.rmtree(state.extracted_dir, ignore_errors=True)


@pytest.fixture
def sub(submission, request: pytest.FixtureRequest):
    """The submission, seeded for this check (the seed is derived from the check's id, so a rerun
    and the other isolation mode see the same random numbers) and with this check's time limit."""
    submission.set_time_limit(None)
    submission.stop_background()  # a fork bomb left by a module fixture must not eat this check's time
    submission.seed(zlib.crc32(request.node.nodeid.encode()))  # also (re)starts the worker, not counted
    # Stop student code a second before pytest-timeout would, so the message names the call.
    spent = time.monotonic() - request.node.stash.get(_SETUP_STARTED, time.monotonic())
    submission.set_time_limit(max(0.5, _check_timeout(request.node) - 1.0 - spent))
    yield submission
    submission.set_time_limit(None)
    submission.stop_background()


def _check_timeout(item: pytest.Item) -> float:
    """pytest-timeout's limit for ``item``, with its precedence: marker, ``--timeout``, ini."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    try:
        given = item.config.getoption("timeout", None) or item.config.getini("timeout")
    except ValueError:  # pytest-timeout is not installed
        given = None
    return float(given) if given else DEFAULT_CHECK_TIMEOUT


class Parts:
    """Partial credit: each ``with parts.part(points, name):`` block earns its points if it passes.

    A failing part does not stop the check; the check fails at the end with every failing part's
    message, and earns the points of the parts that passed.
    """

    def __init__(self) -> None:
        self.results: list[report.PartResult] = []

    def part(self, points: float, name: str) -> _PartContext:
        return _PartContext(self, float(points), name)

    @property
    def earned(self) -> float:
        return sum(p.points for p in self.results)

    @property
    def failures(self) -> list[report.PartResult]:
        return [p for p in self.results if p.points < p.max_points]


def parts_message(parts: Parts) -> str:
    """One message for the failed parts of a check; its first line is the score table's reason."""
    failed = parts.failures
    messages = {p.message for p in failed}
    if len(messages) == 1 and len(failed) == len(parts.results):
        return failed[0].message  # e.g. every part hit "CNN(n=4) is not implemented yet"
    first = failed[0].message.splitlines()[0] if failed[0].message else ""
    head = (
        f"{len(failed)} of {len(parts.results)} parts failed ({parts.earned:g} points kept); {failed[0].name}: {first}"
    )
    return "\n".join([head] + [f"[{p.name}: 0/{p.max_points:g}] {p.message}" for p in failed])


class _PartContext:
    def __init__(self, parts: Parts, points: float, name: str) -> None:
        self.parts, self.points, self.name = parts, points, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.parts.results.append(report.PartResult(self.name, self.points, self.points))
            return False
        if isinstance(exc, AssertionError):
            self.parts.results.append(report.PartResult(self.name, 0.0, self.points, _message(exc)))
            return True  # the failure is recorded; the next part still runs
        return False


@pytest.fixture
def parts(request: pytest.FixtureRequest) -> Parts:
    """Partial credit for a check made of parts; see :class:`Parts`."""
    request.node.stash[_PARTS] = Parts()
    return request.node.stash[_PARTS]


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict the check fills with measurements for the report (accuracies, curves)."""
    request.node.stash[_EVIDENCE] = {}
    return request.node.stash[_EVIDENCE]


_PARTS = pytest.StashKey[Parts]()
_EVIDENCE = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def data_root(pytestconfig: pytest.Config) -> str | None:
    """The ``--data-root`` folder of real data sets (or TORCHGRADE_DATA_ROOT); None when not given."""
    return pytestconfig.getoption("data_root") or os.environ.get("TORCHGRADE_DATA_ROOT")


@pytest.fixture(scope="session")
def grade_cache(pytestconfig: pytest.Config) -> GradeCache:
    """The :class:`GradeCache` of this run (disabled unless ``--grade-cache`` is given)."""
    state = _state(pytestconfig)
    return GradeCache(state.cache_dir, _graded_folder(state))


# -- outcomes -------------------------------------------------------------------------------
_SETUP_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_SETUP_STARTED] = time.monotonic()  # when pytest-timeout's clock starts too


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    parts = item.stash.get(_PARTS, None)
    if parts is not None and parts.failures:
        raise errors.CheckFailure(parts_message(parts))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    rep = yield
    state = _state(item.config)
    spec = state.specs.get(item.nodeid)
    if spec is None:
        return rep
    entry = state.results.setdefault(item.nodeid, {"outcome": "passed", "message": "", "duration": 0.0})
    entry["duration"] += rep.duration
    if rep.skipped and entry["outcome"] == "passed":
        entry.update(outcome="skipped", message=_skip_reason(rep))
    elif rep.failed and entry["outcome"] in ("passed", "skipped"):
        outcome, message = _classify(call.excinfo)
        entry.update(outcome=outcome, message=message)
        if outcome == "failed":
            rep.longrepr = f"{message}\nReproduce: pytest {item.nodeid} --submission={state.submission}"
    if call.when == "teardown":
        parts = item.stash.get(_PARTS, None)
        entry["parts"] = tuple(parts.results) if parts else ()
        entry["data"] = item.stash.get(_EVIDENCE, {})
    return rep


def _classify(excinfo: pytest.ExceptionInfo | None) -> tuple[str, str]:
    """A failure is the student's when it is a CheckFailure/AssertionError or a timeout; anything
    else raised by grader code is a harness error."""
    if excinfo is None:
        return "error", "unknown failure"
    exc = excinfo.value
    if isinstance(exc, AssertionError):
        return "failed", _message(exc)
    if type(exc).__name__ == "Failed" and "Timeout" in str(exc):
        return "failed", str(exc).strip().splitlines()[0]
    return "error", MSG_HARNESS_ERROR.format(type=type(exc).__name__, error=exc)


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _skip_reason(rep: pytest.TestReport) -> str:
    longrepr = rep.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


# -- the end: report and score table ----------------------------------------------------------------
def build_report(state: _RunState) -> report.Report:
    """Turn the recorded outcomes into a :class:`torchgrade.reporting.report.Report`."""
    import sys

    import torch

    checks = []
    for nodeid, spec in state.specs.items():
        entry = state.results.get(nodeid, {"outcome": "skipped", "message": "not run", "duration": 0.0})
        parts = entry.get("parts", ())
        if entry["outcome"] == "passed":
            points = spec.max_points
        elif entry["outcome"] == "failed" and parts:
            points = sum(p.points for p in parts)
        else:
            points = 0.0
        checks.append(
            report.CheckResult(
                id=nodeid,
                assignment=spec.assignment,
                question=spec.question,
                points=points,
                max_points=spec.max_points,
                outcome=entry["outcome"],
                message=entry["message"],
                duration=round(entry["duration"], 4),
                parts=parts,
                data=_plain(entry.get("data", {})),
            )
        )
    questions = report.summarise_questions(checks, state.manual)
    notes = sorted(state.proxy.notes.values()) if state.proxy is not None else []
    backend = getattr(state.proxy, "backend", None)
    protections = tuple(backend.sandbox.protections()) if hasattr(backend, "sandbox") else ()
    output = report.StudentOutput(*backend.output) if getattr(backend, "output", ("", 0))[0] else None
    return report.Report(
        submission=str(state.submission),
        isolation=state.isolation,
        versions={
            "torchgrade": torchgrade.__version__,
            "torch": torch.__version__,
            "python": platform.python_version() or sys.version.split()[0],
        },
        started_at=state.started_at,
        finished_at=_now(),
        score=round(sum(c.points for c in checks), 6),
        max_score=round(sum(c.max_points for c in checks), 6),
        pending_max_score=round(sum(q.max_score for q in questions if q.manual), 6),
        harness_errors=sum(c.outcome == "error" for c in checks),
        questions=tuple(questions),
        checks=tuple(checks),
        notes=tuple(notes),
        extraction=state.extraction,
        sandbox=protections,
        student_output=output,
    )


def _plain(data: Any) -> Any:
    """Evidence goes into JSON: keep numbers, strings and containers of them."""
    return json.loads(json.dumps(data, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if not state.specs:
        return
    result = build_report(state)
    session.config.stash[_REPORT] = result
    try:
        report.write(result, state.report_path)
    except errors.TorchgradeError as exc:
        # Our bug, not the student's: keep the grades anyway, unvalidated, and say so loudly.
        report.write(result, state.report_path, strict=False)
        session.config.stash[_REPORT_PROBLEM] = f"the report failed its schema check and was written anyway: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    if result.harness_errors:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


_REPORT = pytest.StashKey[report.Report]()
_REPORT_PROBLEM = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(_REPORT, None)
    if result is None:
        return
    for line in score_table(result, _state(config).report_path):
        terminalreporter.write_line(line)
    if _REPORT_PROBLEM in config.stash:
        terminalreporter.write_line(f" torchgrade internal error: {config.stash[_REPORT_PROBLEM]}", red=True)


def score_table(result: report.Report, report_path: Path | None = None) -> list[str]:
    """The score table printed after a run: one row per question, failing checks under it."""
    width = 78
    lines = ["", f" torchgrade: {result.submission} ({result.isolation} isolation) ".center(width, "=")]
    by_question: dict[tuple[str, str], list[report.CheckResult]] = {}
    for check in result.checks:
        by_question.setdefault((check.assignment, check.question), []).append(check)
    for q in result.questions:
        if q.manual:
            continue
        mark = "ok" if q.score == q.max_score else "--"
        lines.append(f" {mark} {q.assignment:<8} {q.id:<6} {q.score:>5g} / {q.max_score:<4g}")
        for check in by_question.get((q.assignment, q.id), []):
            if check.outcome != "passed":
                name = check.id.split("::")[-1]
                first = check.message.splitlines()[0] if check.message else check.outcome
                lines.append(f"      {name}: {first}"[:200])
    pending = [q for q in result.questions if q.manual]
    if pending:
        lines.append(" pending TA review: " + ", ".join(f"{q.id} ({q.max_score:g})" for q in pending))
    lines.append(
        f" total: {result.score:g} / {result.max_score:g} auto-graded points"
        + (f"; {result.pending_max_score:g} points pending TA review" if pending else "")
    )
    lines += [f" note: {note}" for note in result.notes]
    if result.sandbox:
        lines.append(" " + "; ".join(result.sandbox[:1] + result.sandbox[2:]))  # the tier and what it protects
    if result.extraction is not None:
        lines += notebook.summary(result.extraction)
    if result.harness_errors:
        lines.append(f" {result.harness_errors} check(s) hit a torchgrade error: not the submission's fault.")
    if report_path is not None:
        lines.append(f" report: {report_path}")
    return lines


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
