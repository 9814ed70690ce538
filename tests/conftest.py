"""Shared set-up of the harness's own tests."""

import sys
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "grades(*pairs): the (sample, isolation) gradings a test reads "
        "(tests/test_samples.py runs them up front, in parallel)",
    )


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
