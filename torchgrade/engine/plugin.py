"""The pytest plugin that turns ``pytest graders`` into an autograder.

It owns every option, marker and fixture of torchgrade, and the hooks that turn test outcomes into
points, the score table printed at the end and the JSON report. Graders load it from
``graders/conftest.py`` with ``pytest_plugins = ["torchgrade.engine.plugin"]``. What the hooks
record is :mod:`torchgrade.engine.state`; partial credit is :mod:`torchgrade.engine.parts`; the
report is built by :mod:`torchgrade.engine.results` and printed by :mod:`torchgrade.reporting.table`.

A grader check is a test with a points marker (``tests/test_plugin.py`` grades this very example)::

    @pytest.mark.points(3, question="Q3a")
    def test_cnn_output_shape(sub):
        '''CNN(n=4) maps a batch of shoe pairs [B, 3, 448, 224] to two logits per pair.'''
        out = sub.CNN(n=4)(torch.zeros(2, 3, 448, 224))
        shapes.check_shape(out, (2, 2), who="CNN(n=4)(x[2, 3, 448, 224])")

A grader module names its assignment (``ASSIGNMENT = "shoes"``) and the questions a TA grades by
hand (``MANUAL = {"Q1a": (1, "why track men's and women's accuracy separately")}``). Where the repository
has a manifest (``assignments.toml``, :mod:`torchgrade.assignments`), it is the authority: every check's
question must be one of its assignment's, the points markers of a question must add up to the manifest's
points (a collection error naming both otherwise), manual questions and titles come from it, and
``--only ID`` grades one of its assignments.

Hidden checks live in modules under ``graders/hidden/`` (give them names of their own, e.g.
``test_shoes_hidden.py``). The folder, not a per-check marker, is what hides them: ``torchgrade release``
leaves the folder out of the students' copy, and a marked check in a released module would ship anyway.
Their checks get the ``hidden`` marker automatically (``pytest graders -m "not hidden"`` shows what
students see), and ``torchgrade export gradescope`` shows them to students only once grades are published.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchgrade import assignments, errors
from torchgrade.engine import results
from torchgrade.engine.cache import GradeCache
from torchgrade.engine.parts import Parts, parts_message
from torchgrade.engine.state import (
    EVIDENCE,
    PARTS,
    REPORT,
    REPORT_PROBLEM,
    SETUP_STARTED,
    STATE,
    CheckRecord,
    CheckSpec,
    RunState,
)
from torchgrade.hidden import HIDDEN_DIR, is_hidden_check
from torchgrade.intake import notebook
from torchgrade.isolation import sandbox
from torchgrade.reporting import report
from torchgrade.reporting.table import score_table

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
HELP_ONLY = (
    "grade one assignment of the manifest (assignments.toml): only its checks are collected and run, "
    "and its total is its own (env TORCHGRADE_ONLY)"
)
MSG_NOT_IN_MANIFEST = (
    "{nodeid}: its points marker names question {question!r} of assignment {assignment!r}, which {manifest} "
    "does not declare{hint}; add it to [{assignment}.questions] there (or fix the marker)"
)
MSG_POINTS_MISMATCH = (
    "{manifest}: [{assignment}.questions] gives {question} {declared:g} points, but its checks' points "
    "markers add up to {marked:g} ({nodeids}); make them agree"
)
MSG_MANUAL_MISMATCH = (
    "{module}: MANUAL gives {assignment} {question} {points:g} points, but {manifest} {declared}; make them agree"
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
#: A check's time when pytest-timeout gives none (no marker, no ``--timeout``, no ini ``timeout``).
DEFAULT_CHECK_TIMEOUT = 300.0
#: A check's pytest-timeout (marker, ``--timeout`` or ini ``timeout``) is its nominal time T: its
#: calls into student code get T seconds of CPU time (see ``Submission.set_cpu_budget``), and
#: pytest-timeout stops the check after TIMEOUT_BACKSTOP_FACTOR * T seconds of wall-clock time, a
#: backstop for hangs. Load slows a check in wall-clock time, not in CPU time: a factor of 4 leaves
#: a check slowed 3 times by other work (four busy processes beside a grading on two cores: 2.5 times)
#: a quarter of its time to spare, while a true hang is still stopped.
TIMEOUT_BACKSTOP_FACTOR = 4.0
#: The nominal time of a grader check (before the backstop factor), set at collection.
NOMINAL_TIMEOUT = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchgrade", "torchgrade autograder")
    group.addoption("--submission", default=None, help=HELP_SUBMISSION)
    group.addoption("--isolation", default=None, choices=ISOLATION_MODES, help=HELP_ISOLATION)
    group.addoption("--report", default="torchgrade-report.json", help=HELP_REPORT)
    group.addoption("--grade-cache", default=None, help=HELP_CACHE)
    group.addoption("--data-root", default=None, help=HELP_DATA_ROOT)
    group.addoption("--only", default=None, metavar="ID", help=HELP_ONLY)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", HELP_MARKER)
    config.addinivalue_line("markers", HELP_HIDDEN_MARKER)
    repository = _repository(config)
    only = config.getoption("only") or os.environ.get("TORCHGRADE_ONLY") or None
    if only is not None and repository.assignments and only not in repository.assignments:
        raise pytest.UsageError(assignments.unknown_message(only, repository.ids, repository.manifest))
    config.stash[PREVIOUS_REPOSITORY] = assignments.activate(repository)
    config.stash[STATE] = RunState(
        submission=_submission_path(config),
        isolation=config.getoption("isolation") or ("process" if os.environ.get("CI") else "none"),
        report_path=Path(config.getoption("report")),
        cache_dir=config.getoption("grade_cache") or os.environ.get("TORCHGRADE_CACHE"),
        started_at=results.now(),
        only=only,
        repository=repository,
    )


#: config.stash: the repository active before this run (restored when it ends).
PREVIOUS_REPOSITORY = pytest.StashKey[list]()


def _repository(config: pytest.Config) -> assignments.Repository:
    """The manifest of the graders' repository: at the rootdir or above, else above the paths given."""
    given = [config.rootpath / arg.split("::")[0] for arg in config.args]
    manifest = assignments.find_manifest(config.rootpath, *given)
    if manifest is None:
        return assignments.EMPTY
    try:
        return assignments.load(manifest)
    except errors.TorchgradeError as exc:
        raise pytest.UsageError(str(exc)) from None


def _submission_path(config: pytest.Config) -> Path:
    given = config.getoption("submission") or os.environ.get("TORCHGRADE_SUBMISSION")
    return Path(given).resolve() if given else config.rootpath / "student_template"


def _state(config: pytest.Config) -> RunState:
    return config.stash[STATE]


# -- collection: points and questions ----------------------------------------------------------
@pytest.hookimpl(tryfirst=True)  # before -m deselects, so that -m "not hidden" sees the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timeouts = config.pluginmanager.hasplugin("timeout")
    for item in items:
        if is_hidden_check(item.nodeid):
            item.add_marker(pytest.mark.hidden)
        elif item.get_closest_marker("hidden") is not None:
            raise pytest.UsageError(MSG_HIDDEN_OUTSIDE.format(nodeid=item.nodeid))
        if item.get_closest_marker("points") is not None:
            _set_backstop(item, timeouts)
    state = _state(config)
    _check_manifest(state.repository, items)
    if state.only is not None:
        seen = {_assignment_of(item) for item in items} - {None}
        if not (state.repository and state.repository.assignments) and state.only not in seen:
            # No manifest to check the id against up front: the checks collected say which exist.
            raise pytest.UsageError(assignments.unknown_message(state.only, seen))
        kept = [item for item in items if _assignment_of(item) in (None, state.only)]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``--only``, the grader modules the manifest gives only to other assignments are not even
    imported (their imports, torch_geometric say, cost seconds); modules it does not list, or lists
    for this assignment too, are collected and their checks deselected by assignment."""
    state = config.stash.get(STATE, None)
    if state is None or state.only is None or state.repository is None or state.repository.root is None:
        return None
    repository = state.repository
    if state.only not in repository.assignments or collection_path.suffix != ".py":
        return None
    graders = repository.root / "graders"
    if graders not in collection_path.parents:
        return None
    name = collection_path.relative_to(graders).as_posix()
    mine = set(repository.assignments[state.only].graders)
    others = {g for a in repository.assignments.values() if a.id != state.only for g in a.graders}
    return True if name in others and name not in mine else None


def _assignment_of(item: pytest.Item) -> str | None:
    """The assignment of a check (its marker's ``assignment=``, else its module's ASSIGNMENT), or of a
    plain test in a grader module; None for an item of no assignment."""
    default = getattr(getattr(item, "module", None), "ASSIGNMENT", None)
    marker = item.get_closest_marker("points")
    assignment = marker.kwargs.get("assignment", default) if marker is not None else default
    return None if assignment is None else str(assignment)


def _check_manifest(repository: assignments.Repository | None, items: list[pytest.Item]) -> None:
    """Every collected check's question is its assignment's in the manifest, and a question's points
    markers add up to the manifest's points (checked where every grader module of the assignment was
    collected, since a run of one file sees only part of a question's checks). Hidden checks
    (``graders/hidden/``) must name a question of the manifest but are not counted in its points: the
    manifest ships to students, and the instructor's hidden checks add points it does not reveal."""
    if repository is None or not repository.assignments:
        return
    marked: dict[tuple[str, str], list[tuple[str, float]]] = {}
    files: dict[str, set[str]] = {}
    for item in items:
        marker = item.get_closest_marker("points")
        assignment = _assignment_of(item)
        if marker is None or assignment is None or not marker.args or "question" not in marker.kwargs:
            continue  # an unmarked test, or a malformed marker that collection_finish explains
        question = str(marker.kwargs["question"])
        declared = repository.assignments.get(assignment)
        entry = declared.question(question) if declared is not None else None
        if entry is None or entry.manual:
            hint = (
                " (it is one of its manual questions)"
                if entry is not None
                else f" (known assignments: {', '.join(repository.ids)})"
                if declared is None
                else ""
            )
            raise pytest.UsageError(
                MSG_NOT_IN_MANIFEST.format(
                    nodeid=item.nodeid,
                    question=question,
                    assignment=assignment,
                    manifest=repository.manifest,
                    hint=hint,
                )
            )
        if is_hidden_check(item.nodeid):
            continue  # the manifest travels to students: hidden checks add points it does not reveal
        marked.setdefault((assignment, question), []).append((item.nodeid, float(marker.args[0])))
        files.setdefault(assignment, set()).add(Path(str(item.path)).name)
    for (assignment, question), checks in marked.items():
        declared = repository.assignments[assignment]
        points = declared.question(question).points
        total = sum(p for _, p in checks)
        complete = {g for g in declared.graders if g.startswith("test_")} <= files[assignment]
        if total > points + 1e-9 or (complete and abs(total - points) > 1e-9):
            raise pytest.UsageError(
                MSG_POINTS_MISMATCH.format(
                    manifest=repository.manifest,
                    assignment=assignment,
                    question=question,
                    declared=points,
                    marked=total,
                    nodeids=", ".join(f"{n} ({p:g})" for n, p in checks),
                )
            )


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember the assignments that lost checks to a selection (not to ``--only``): their sums are partial."""
    if not items:
        return
    state = items[0].config.stash.get(STATE, None)
    if state is None:
        return
    for item in items:
        assignment = _assignment_of(item)
        if item.get_closest_marker("points") is not None and assignment is not None:
            if state.only is None or assignment == state.only:
                state.partial.add(assignment)


def _set_backstop(item: pytest.Item, timeouts: bool) -> None:
    """Record the check's nominal time and give pytest-timeout TIMEOUT_BACKSTOP_FACTOR times it
    (a marker of the item's own, which takes precedence over ``--timeout`` and the ini value)."""
    nominal = _check_timeout(item)
    item.stash[NOMINAL_TIMEOUT] = nominal
    if not timeouts or nominal <= 0:  # 0: pytest-timeout disabled by the user, left so
        return
    marker = item.get_closest_marker("timeout")
    args = marker.args[1:] if marker is not None else ()
    kwargs = {k: v for k, v in marker.kwargs.items() if k != "timeout"} if marker is not None else {}
    item.add_marker(pytest.mark.timeout(nominal * TIMEOUT_BACKSTOP_FACTOR, *args, **kwargs), append=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record the points of every selected check (after -k/-m deselection)."""
    state = _state(session.config)
    repository = state.repository or assignments.EMPTY
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
        state.specs[item.nodeid] = CheckSpec(str(assignment), str(question), float(marker.args[0]))
        for key, (pts, title) in getattr(module, "MANUAL", {}).items():
            # "Q1a" belongs to the module's ASSIGNMENT; ("uva-a2", "Q3.3") names another assignment.
            manual_assignment, qid = key if isinstance(key, tuple) else (default_assignment, key)
            _check_manual(repository, module, str(manual_assignment), str(qid), float(pts))
            state.manual[(str(manual_assignment), str(qid))] = (float(pts), title)
    # The manifest's manual questions of every assignment graded (its titles win over MANUAL's).
    graded = {spec.assignment for spec in state.specs.values()} | ({state.only} if state.only else set())
    for assignment in graded:
        if assignment in repository.assignments:
            for q in repository.assignments[assignment].questions:
                if q.manual:
                    state.manual[(assignment, q.id)] = (q.points, q.title)


def _check_manual(repository: assignments.Repository, module: Any, assignment: str, qid: str, points: float) -> None:
    declared = repository.assignments.get(assignment)
    if declared is None:
        return
    entry = declared.question(qid)
    if entry is None or not entry.manual or abs(entry.points - points) > 1e-9:
        said = (
            "has no such question"
            if entry is None
            else "grades it by checks"
            if not entry.manual
            else f"gives it {entry.points:g}"
        )
        raise pytest.UsageError(
            MSG_MANUAL_MISMATCH.format(
                module=getattr(module, "__file__", module),
                assignment=assignment,
                question=qid,
                points=points,
                manifest=repository.manifest,
                declared=said,
            )
        )


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config):
    """The submission being graded, as a :class:`torchgrade.engine.proxy.Submission` (one per session)."""
    # The proxies import torch: imported once a check needs the submission, not whenever pytest loads
    # the plugin (``pytest --help``, collection).
    from torchgrade.engine.proxy import Submission

    state = _state(pytestconfig)
    folder = _graded_folder(state)
    if state.extraction is not None and state.extraction.error:
        # The student's file is unusable (invalid JSON, a binary...): every check fails with why.
        raise errors.CheckFailure(state.extraction.error)
    if not folder.is_dir():
        raise errors.TorchgradeError(f"submission {state.submission} does not exist")
    hidden = None
    if state.isolation == "process":
        hidden = sandbox.hidden_paths(state.submission, pytestconfig.rootpath, state.report_path, graded=folder)
    # A notebook's missing name is explained by the cell that defined it, not by modules never written.
    explain = None if state.extraction is None else functools.partial(notebook.explain_missing, state.extraction)
    repository = state.repository or assignments.EMPTY
    proxy = Submission(
        folder,
        state.isolation,
        repository.name_to_module(),
        hidden=hidden,
        explain_missing=explain,
        calls=repository.calls(),
        aliases=repository.call_aliases(),
    )
    state.proxy = proxy
    yield proxy
    state.record = proxy.close()


def _graded_folder(state: RunState) -> Path:
    """The folder whose modules are graded: the submission folder itself or, for a notebook or script,
    a temporary folder of the code kept from it (converted once, from the AST alone, on this side)."""
    if not state.submission.is_file():
        return state.submission
    if state.extracted_dir is None:
        state.extracted_dir = Path(tempfile.mkdtemp(prefix="torchgrade-extracted-"))
        interface = (state.repository or assignments.EMPTY).interface_data()
        state.extraction = notebook.convert(state.submission, state.extracted_dir, interface)
    return state.extracted_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(PREVIOUS_REPOSITORY, None)
    if previous is not None:
        assignments.restore(previous)
    state = config.stash.get(STATE, None)
    if state is not None and state.extracted_dir is not None:
        shutil.rmtree(state.extracted_dir, ignore_errors=True)


@pytest.fixture
def sub(submission, request: pytest.FixtureRequest):
    """The submission, seeded for this check (the seed is derived from the check's id, so a rerun
    and the other isolation mode see the same random numbers) and with this check's budget: its
    nominal time (:data:`TIMEOUT_BACKSTOP_FACTOR`) in CPU seconds, which load does not consume."""
    submission.set_cpu_budget(None)
    submission.stop_background()  # a fork bomb left by a module fixture must not eat this check's time
    submission.seed(zlib.crc32(request.node.nodeid.encode()))  # also (re)starts the worker, not counted
    nominal = request.node.stash.get(NOMINAL_TIMEOUT, None)
    if nominal is None:  # a check without points: no backstop factor
        nominal = backstop = _check_timeout(request.node)
    else:
        backstop = nominal * TIMEOUT_BACKSTOP_FACTOR
    if nominal > 0:
        # Stop student code by wall-clock time a second before pytest-timeout would: the message names the call.
        spent = time.monotonic() - request.node.stash.get(SETUP_STARTED, time.monotonic())
        submission.set_cpu_budget(nominal, backstop=max(0.5, backstop - 1.0 - spent))
    yield submission
    submission.set_cpu_budget(None)
    submission.stop_background()


def _check_timeout(item: pytest.Item) -> float:
    """pytest-timeout's limit for ``item``, with its precedence: marker, ``--timeout``, ini."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        return float(marker.args[0] if marker.args else marker.kwargs["timeout"])
    try:
        given = item.config.getoption("timeout", None) or item.config.getini("timeout")
    except ValueError:  # pytest-timeout is not installed
        given = None
    return float(given) if given else DEFAULT_CHECK_TIMEOUT


@pytest.fixture
def parts(request: pytest.FixtureRequest) -> Parts:
    """Partial credit for a check made of parts; see :class:`torchgrade.engine.parts.Parts`."""
    request.node.stash[PARTS] = Parts()
    return request.node.stash[PARTS]


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict the check fills with measurements for the report (accuracies, curves)."""
    request.node.stash[EVIDENCE] = {}
    return request.node.stash[EVIDENCE]


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
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[SETUP_STARTED] = time.monotonic()  # when pytest-timeout's clock starts too


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    parts = item.stash.get(PARTS, None)
    if parts is not None and parts.failures:
        raise errors.CheckFailure(parts_message(parts))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    rep = yield
    state = _state(item.config)
    if item.nodeid not in state.specs:
        return rep
    entry = state.results.setdefault(item.nodeid, CheckRecord())
    # A worker (re)started during this phase is not the check's time: the report states it apart.
    started = state.proxy.startup_seconds if state.proxy is not None else 0.0
    spent, state.startup_counted = started - state.startup_counted, started
    entry.duration += max(0.0, rep.duration - spent)
    if rep.skipped and entry.outcome == "passed":
        entry.outcome, entry.message = "skipped", results.skip_reason(rep)
    elif rep.failed and entry.outcome in ("passed", "skipped"):
        entry.outcome, entry.message = results.classify(call.excinfo)
        if entry.outcome == "failed":
            rep.longrepr = StudentFailure(f"{entry.message}\nReproduce: {reproduce_command(item, state)}")
    if call.when == "teardown":
        parts = item.stash.get(PARTS, None)
        entry.parts = tuple(parts.results) if parts else ()
        entry.data = item.stash.get(EVIDENCE, {})
    return rep


def reproduce_command(item: pytest.Item, state: RunState) -> str:
    """The command that runs this one check again on the same submission with the same data: the
    node id, ``--submission``, and ``--only``/``--data-root``/``--isolation`` when this run was given
    them (the data root decides which data set a training check sees: without it the numbers differ)."""
    words = ["pytest", item.nodeid, f"--submission={shlex.quote(str(state.submission))}"]
    if state.only is not None:
        words.append(f"--only={shlex.quote(state.only)}")
    data = item.config.getoption("data_root")
    if data:
        words.append(f"--data-root={shlex.quote(str(data))}")
    if item.config.getoption("isolation"):
        words.append(f"--isolation={state.isolation}")
    return " ".join(words)


class StudentFailure:
    """What pytest prints for a check the student failed: the check's message, then the command that
    reproduces it. It has no ``reprcrash``, so pytest's short summary (``-ra``) names the check without
    repeating the message, and the score table names the check only: each message is printed once."""

    def __init__(self, text: str) -> None:
        self.text = text

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A student's failure raised while a check's fixtures were set up (a function left unimplemented
    that a fixture calls, an unreadable submission) is that check's failure, not a pytest error; a
    harness bug in a fixture stays an error (and the run's exit code says so)."""
    if report.when == "setup" and report.failed and isinstance(report.longrepr, StudentFailure):
        return "failed", "F", ("FAILED", {"red": True})
    return None


# -- the end: report and score table ----------------------------------------------------------------
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if not state.specs:
        return
    if state.record is None and state.proxy is not None:  # the fixture was not torn down (interrupted)
        state.record = state.proxy.close()
    result = results.build_report(state)
    session.config.stash[REPORT] = result
    try:
        report.write(result, state.report_path)
    except errors.TorchgradeError as exc:
        # Our bug, not the student's: keep the grades anyway, unvalidated, and say so loudly.
        report.write(result, state.report_path, strict=False)
        session.config.stash[REPORT_PROBLEM] = f"the report failed its schema check and was written anyway: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    if result.harness_errors:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(REPORT, None)
    if result is None:
        return
    # The failure sections above give each failed check's message; with --tb=no the table gives it.
    messages = config.getoption("tbstyle", "auto") == "no"
    for line in score_table(result, _state(config).report_path, messages=messages):
        terminalreporter.write_line(line)
    if REPORT_PROBLEM in config.stash:
        terminalreporter.write_line(f" torchgrade internal error: {config.stash[REPORT_PROBLEM]}", red=True)
