"""Load never costs a point: budgets count CPU time, wall-clock limits are only backstops for hangs.

A check's pytest-timeout is its nominal time T: its calls into student code get T seconds of CPU time
and pytest-timeout stops it only after ``TIMEOUT_BACKSTOP_FACTOR * T`` seconds of wall-clock time
(:mod:`torchgrade.engine.plugin`); the graders' training runs have CPU budgets of their own
(``Submission.set_cpu_budget``). The unit tests of the accounting itself are in tests/test_proxy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _toys import NAP_AND_BURN

from torchgrade.engine.plugin import TIMEOUT_BACKSTOP_FACTOR
from torchgrade.instructor import grading as entry
from torchgrade.isolation.transport import CLOCK_TICK, HAS_PROC, MSG_FINISHED
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
#: The training checks with CPU budgets that lost points to load: the molecule models (55 s budgets,
#: 13-16 s of CPU time each, up to 56 s of wall-clock time at a load of 8 on 2 cores) and the GCN and
#: GAT (14 s alone, past its old 55 s wall-clock limit beside a neighbour's 32 spinners).
BUDGETED = ("test_molecule_mlp", "test_molecule_gnn", "test_gcn_accuracy", "test_gat_accuracy")
#: Busy processes beside the grading: with 2 cores, the worker gets about 2/5 of one.
SPINNERS = 4


@contextmanager
def spinners(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` CPU-bound Python processes, stopped (by their own pid) on the way out."""
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_reference_keeps_every_point_of_the_budgeted_checks_beside_four_busy_processes(tmp_path: Path) -> None:
    started = time.monotonic()
    with spinners(SPINNERS) as busy:
        code, data = entry.grade(
            ROOT / "reference",
            assignment=ROOT,
            isolation="process",
            report=tmp_path / "report.json",
            extra_args=("-k", " or ".join(BUDGETED), "--data-root", "synthetic"),
        )
        spun = sum(cpu_seconds(p.pid) for p in busy) if HAS_PROC else None
    wall = time.monotonic() - started
    assert data is not None, f"no report (exit code {code})"
    report.validate(data)
    failed = {c["id"]: c["message"] for c in data["checks"] if c["outcome"] != "passed"}
    assert failed == {} and code == entry.EXIT_OK
    assert sorted(c["id"].split("::")[-1] for c in data["checks"]) == sorted(BUDGETED)
    if spun is not None:  # the load was real: the spinners ran beside the grading all along
        assert spun > 0.25 * wall, (spun, wall)


TOY_CHECKS = """
import time

import pytest

ASSIGNMENT = "toy"


# The checks with a default time (300 s) absorb what pytest-timeout counts and a 1 s check's backstop
# could not: importing torch, (re)starting the worker after a kill.
@pytest.mark.points(1, question="Q0")
def test_first(sub):
    assert sub.nap(0) == 0


@pytest.mark.points(1, question="Q1")
@pytest.mark.timeout(2)
def test_burns(sub):
    sub.burn(5)


@pytest.mark.points(1, question="Q2")
def test_after_burning(sub):
    assert sub.nap(0) == 0


@pytest.mark.points(1, question="Q3")
@pytest.mark.timeout(1)
def test_waits_past_its_nominal_time(sub):
    assert sub.nap(1.5) == 1.5  # wall-clock time, no CPU time: not charged


@pytest.mark.points(1, question="Q4")
@pytest.mark.timeout(1)
def test_grader_side_slow(sub):
    time.sleep(1.5)  # pytest-timeout's backstop is TIMEOUT_BACKSTOP_FACTOR times the nominal 1 s


@pytest.mark.points(1, question="Q5")
@pytest.mark.timeout(1)
def test_hangs(sub):
    sub.nap(60)


@pytest.mark.points(1, question="Q6")
def test_after_hanging(sub):
    assert sub.nap(0) == 0
"""
TOY_SUBMISSION = "import time\n\n" + NAP_AND_BURN


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_check_s_time_is_cpu_time_and_its_timeout_a_backstop(pytester: pytest.Pytester, isolation: str) -> None:
    """Waiting past the nominal time costs nothing; computing past it fails the check in both modes
    (stopped in a worker, failed once it returns in-process); a call that sleeps forever is stopped by
    the backstop (the call's in a worker, pytest-timeout's in-process)."""
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(test_toy=TOY_CHECKS)
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "toy.py").write_text(TOY_SUBMISSION)
    started = time.monotonic()
    pytester.runpytest_subprocess("--submission=sub", f"--isolation={isolation}", "--report=out.json")
    elapsed = time.monotonic() - started
    checks = {c["id"].split("::")[-1]: c for c in json.loads((pytester.path / "out.json").read_text())["checks"]}
    outcomes = {name: check["outcome"] for name, check in checks.items()}
    assert outcomes == {
        "test_first": "passed",
        "test_burns": "failed",
        "test_after_burning": "passed",
        "test_waits_past_its_nominal_time": "passed",
        "test_grader_side_slow": "passed",
        "test_hangs": "failed",
        "test_after_hanging": "passed",
    }, {name: check["message"] for name, check in checks.items()}
    burned = checks["test_burns"]["message"]
    if isolation == "none":
        assert burned.startswith("burn(5) timed out: the check's calls used ") and burned.endswith(MSG_FINISHED)
    elif "s of wall-clock time" not in burned:  # stopped by its budget (unless the machine ran it 3.5x slower)
        assert burned.startswith("burn(5) timed out: the check's calls used ") and "of a 2 s budget" in burned
    if isolation == "process":  # stopped a second before pytest-timeout would, by the call's backstop
        assert checks["test_hangs"]["message"].startswith(
            f"nap(60) timed out after {TIMEOUT_BACKSTOP_FACTOR - 1:.0f} s of wall-clock time, having used "
        )
    assert elapsed < 60  # the hang cost its backstop (4 s), not its 60 s
