"""Shared set-up of the harness's own tests, and the line between the two lanes.

``tox -e fast`` runs every test that starts no pytest run, worker process, sandbox or batch (under a
minute); ``tox -e py`` runs everything. Nobody writes the ``e2e`` marker by hand: a test gets it when
its code, or the code of a fixture it uses, names something that starts a process (:data:`E2E_NAMES`),
grades with process isolation (the string ``"process"``) or uses ``pytester``. A test left in the fast
lane that starts a process anyway fails at once and says how to fix it, so the lanes stay honest.
"""

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]
TESTS = Path(__file__).resolve().parent

#: Names whose call starts a pytest run, a worker, a sandbox, a batch or a browser: a test that names one is e2e.
E2E_NAMES = frozenset(
    {
        "Popen",
        "run",
        "check_call",
        "check_output",
        "runpytest",
        "runpytest_subprocess",
        "inline_run",
        "grade",
        "grade_one",
        "run_batch",
        "check_assignment",
        "main",
        "chromium",
        "choose",
        "available",
        "LocalCluster",
        "ProcessBackend",
    }
)
#: Fixtures that start one through code this module does not read (pytest's own).
E2E_FIXTURES = frozenset({"pytester", "testdir"})
MSG_UNMARKED_PROCESS = (
    "{nodeid} started a process ({argv}) but is in the fast lane: start it through a name of E2E_NAMES in "
    "tests/conftest.py (or add the name there), so that the test is marked e2e"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "grades(*pairs): the (sample, isolation) gradings a test reads "
        "(tests/test_samples.py runs them up front, in parallel)",
    )


def _code_names(code: types.CodeType) -> set[str]:
    """The global and attribute names and the string constants of ``code`` and of the functions in it."""
    names = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _ours(function) -> bool:
    code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
    return code is not None and Path(code.co_filename).is_relative_to(TESTS)


def _starts_processes(item: pytest.Item) -> bool:
    """Whether a test, or a fixture it uses, starts a pytest run, a worker, a sandbox or a batch."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None or item.get_closest_marker("slow") is not None:  # slow: grades whole samples
        return info is not None
    if E2E_FIXTURES & set(info.names_closure):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "process" in map(str, callspec.params.values()):
        return True
    functions = [getattr(item, "function", None)]
    for name in info.names_closure:  # the fixtures of the harness's tests; pytest's own and the guard are not read
        if name != _fast_lane_starts_no_process.__name__:
            functions += [fixture.func for fixture in info.name2fixturedefs.get(name, ()) if _ours(fixture.func)]
    for function in functions:
        code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
        if code is not None and (names := _code_names(code)) and (E2E_NAMES & names or "process" in names):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _fast_lane_starts_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A test outside the e2e lane must not start a process: it fails, saying how to fix it."""
    if request.node.get_closest_marker("e2e") is None:

        def refuse(self, args, *more, **kwargs):
            pytest.fail(MSG_UNMARKED_PROCESS.format(nodeid=request.node.nodeid, argv=args), pytrace=False)

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # fixtures/ and the sample builder


@pytest.fixture(scope="module")
def single_thread():
    """Run tiny models on one intra-op thread: at this size thread synchronisation dominates (the
    check/answer test files took 19.6 s with torch's default threads and 2.7 s with one, on 2 shared
    cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def processes_with():
    """A function: the pids of the processes on this machine whose command line contains a marker.
    How the tests see what a submission left running; give the submission a marker of the test's
    own, so that an unrelated ``sleep`` elsewhere on the machine is never taken for its process."""

    def find(marker: str) -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                    found.append(int(proc.name))
            except OSError:  # the process ended while we looked
                continue
        return found

    return find
