"""What several tests share, defined once: how they import a grader's helper module."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

GRADERS = Path(__file__).resolve().parents[1] / "graders"


def graders_module(name: str) -> ModuleType:
    """The module ``graders/<name>.py``, imported as the graders import each other (by its bare name,
    with graders/ on the path while it loads)."""
    sys.path.insert(0, str(GRADERS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(GRADERS))
