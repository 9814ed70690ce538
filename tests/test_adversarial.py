"""The hostile corpus (fixtures/adversarial/): each submission is graded in process isolation by the
real entry point, and must lose exactly its ``[lost]`` points with its message, keep every other
point, get a valid report, and finish within its bound; none may change the assignment, leave a
process behind or reach the network.

The cases are graded against a copy of the assignment (graders, reference, fixtures), two at a
time: a case that would damage the assignment where the sandbox cannot hide it (the rlimits tier)
is not run there, and the test checks instead that the report says the protection is missing. A case
whose submission cannot be made on this machine (a hard link to another file system) is skipped, with why.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fixtures import adversarial
from torchgrade.instructor import grading
from torchgrade.isolation import sandbox
from torchgrade.isolation.transport import OUTPUT_CAP
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
NAMES = adversarial.names()
JOBS = max(1, min(2, os.cpu_count() or 1))
SLEEPER = "torchgrade-adversarial-sleeper"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def in_force(protection: str) -> bool:
    return any(line.startswith(adversarial.PROTECTIONS[protection]) for line in sandbox.choose().protections())


def digest(folder: Path) -> str:
    """A hash of every file's path and bytes under ``folder``."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def copy_assignment(destination: Path) -> Path:
    """The parts of the assignment that grading reads, copied to ``destination``."""
    for part in ("graders", "reference", "fixtures", "student_template"):
        shutil.copytree(ROOT / part, destination / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "assignments.toml"):  # the pytest settings; the manifest (assignments are data)
        shutil.copy2(ROOT / name, destination / name)
    return destination


class AnswerServer:
    """A TCP server on the grader's machine that hands out the right answer: the network case
    scores if, and only if, it can reach it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            with client:
                kernel_size, n_layers = map(int, client.recv(64).split())
                client.sendall(str(1 + (n_layers - 1) * (kernel_size - 1)).encode())

    def close(self) -> None:
        self.socket.close()


def selected_cases(session: pytest.Session) -> list[str]:
    """The cases whose outcome test this run selected (``-k probe_`` grades only those); all when none is."""
    chosen = {
        item.callspec.params["name"]
        for item in session.items
        if getattr(item, "originalname", "") == "test_hostile_submission_loses_only_what_it_breaks"
    }
    return sorted(chosen) or NAMES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """Grade every selected case; returns {name: (exit code, report JSON, seconds)} and the arena's facts."""
    arena = tmp_path_factory.mktemp("arena")
    assignment = copy_assignment(arena / "assignment")
    server = AnswerServer()
    folders, reports = arena / "submissions", arena / "reports"
    reports.mkdir()
    cases = {name: adversarial.load(name) for name in selected_cases(request.session)}
    unavailable = {}  # name -> why its submission cannot be made here (a hard link across file systems)
    for case in cases.values():
        try:
            adversarial.materialise(
                case,
                folders,
                {
                    "ASSIGNMENT": str(assignment),
                    "SUBMISSIONS": str(folders),
                    "REPORT": str(reports / f"{case.name}.json"),
                    "PORT": str(server.port),
                },
            )
        except adversarial.Unavailable as exc:
            unavailable[case.name] = str(exc)
    before = {"assignment": digest(assignment), "submissions": digest(folders)}

    def grade(case: adversarial.Case):
        started = time.monotonic()
        code, data = grading.grade(
            folders / case.name,
            assignment=assignment,
            isolation="process",
            report=reports / f"{case.name}.json",
            extra_env={"OMP_NUM_THREADS": "1"},
            extra_args=("-k", case.graders, "--timeout", str(case.timeout)),
        )
        return code, data, time.monotonic() - started

    runnable = [c for c in cases.values() if c.name not in unavailable and (c.requires is None or in_force(c.requires))]
    with ThreadPoolExecutor(JOBS) as pool:
        results = dict(zip([c.name for c in runnable], pool.map(grade, runnable), strict=True))
    server.close()
    yield {
        "results": results,
        "cases": cases,
        "unavailable": unavailable,
        "server": server,
        "before": before,
        "after": {"assignment": digest(assignment), "submissions": digest(folders)},
    }


def lost_points(data: dict) -> dict[str, float]:
    return {
        q["id"]: round(q["max_score"] - q["score"], 6)
        for q in data["questions"]
        if not q["manual"] and q["score"] != q["max_score"]
    }


@pytest.mark.parametrize("name", NAMES)
def test_hostile_submission_loses_only_what_it_breaks(corpus, name):
    case = corpus["cases"][name]
    if name in corpus["unavailable"]:
        pytest.skip(corpus["unavailable"][name])
    if name not in corpus["results"]:  # not run: it relies on a protection this sandbox lacks
        lines = sandbox.choose().protections()
        assert any(line.startswith("not in force") for line in lines), lines
        return
    code, data, seconds = corpus["results"][name]
    assert data is not None, f"{name}: no report was written (exit code {code})"
    report.validate(data)
    assert data["submission"].endswith(f"/{name}") and data["isolation"] == "process"
    assert data["harness_errors"] == 0, [c["message"] for c in data["checks"] if c["outcome"] == "error"]
    assert code == (grading.EXIT_OK if data["score"] == data["max_score"] else grading.EXIT_FAILED)
    assert seconds < case.within, f"{name} took {seconds:.0f} s"
    failures = [c["message"][:300] for c in data["checks"] if c["outcome"] != "passed"]
    assert lost_points(data) == case.sample.lost, failures
    for check in data["checks"]:
        if check["points"] < check["max_points"]:
            assert re.search(case.message, check["message"], re.DOTALL), check["message"][:500]
    if case.note:
        assert any(re.search(case.note, note) for note in data["notes"]), data["notes"]
    if case.printed:
        output = data["student_output"]
        assert len(output["text"].encode()) <= OUTPUT_CAP and output["dropped_bytes"] >= case.printed - OUTPUT_CAP


def test_the_corpus_has_every_kind_of_attack():
    assert len(NAMES) >= 20
    for required in (
        *("exit_at_import", "fork_bomb", "infinite_loop", "network", "read_reference", "edit_graders"),
        # issue 16: false passes, a channel the student writes on, links and pipes
        *("probe_replaced_gcn", "frame_walk_labels", "cross_entropy_patched", "eval_call_counting"),
        *("unet_cannot_learn", "probe_replaced_molecules", "request_loop_patched", "reply_pipe_forgery"),
        *("refusal_raised", "fs_link_to_reference", "fs_fifo", "fs_dev_zero"),
    ):
        assert required in NAMES


def test_no_case_changed_the_assignment_or_the_submissions(corpus):
    assert corpus["after"] == corpus["before"]


def test_no_process_outlives_its_grading(corpus, processes_with):
    alive = processes_with(SLEEPER)
    assert not alive, f"processes started by background_process still run: {alive}"


def test_no_case_reached_the_network(corpus):
    if in_force("network"):
        assert corpus["server"].connections == 0
    else:
        assert "network" in corpus["results"] or "not in force: network isolation" in " ".join(
            sandbox.choose().protections()
        )


def test_files_at_the_root_of_a_student_repository_change_nothing(tmp_path):
    """The student's repository is the assignment (GitHub Classroom): a conftest.py that passes every
    check, and a torch.py, numpy.py and sitecustomize.py that exit, at its root, are all ignored."""
    repository = copy_assignment(tmp_path / "repository")
    (repository / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(wrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    report = yield\n    report.outcome = 'passed'\n    return report\n"
    )
    for number, name in enumerate(("torch.py", "numpy.py", "sitecustomize.py"), start=5):
        (repository / name).write_text(f"import os\nos._exit({number})\n")
    code, data = grading.grade(
        repository / "student_template",
        assignment=repository,
        isolation="process",
        report=tmp_path / "report.json",
        extra_args=("-k", "test_receptive_field_1d"),
    )
    assert code == grading.EXIT_FAILED and data is not None
    assert data["score"] == 0 and data["max_score"] == 2
    assert "not implemented yet" in data["checks"][0]["message"]
