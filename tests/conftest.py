"""Shared set-up of the harness's own tests."""

import sys
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

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
