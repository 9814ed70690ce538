"""What several tests share, defined once: the code of toy submissions they write to disk
(tests/test_proxy.py, tests/test_load.py) and how they import a grader's helper module."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

GRADERS = Path(__file__).resolve().parents[1] / "graders"

#: ``nap(seconds)`` waits (wall-clock time, no CPU time) and ``burn(seconds)`` computes (CPU time) for
#: ``seconds`` seconds; both return ``seconds``. The module they go into imports ``time``.
NAP_AND_BURN = """
def nap(seconds):
    time.sleep(seconds)
    return seconds


def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return seconds
"""


def graders_module(name: str) -> ModuleType:
    """The module ``graders/<name>.py``, imported as the graders import each other (by its bare name,
    with graders/ on the path while it loads)."""
    sys.path.insert(0, str(GRADERS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(GRADERS))
