"""Importing one Python file by path (grader side, never the worker).

The harness's own tests, the benchmarks and ``torchgrade check`` read single files of an assignment
(``reference/answers.py``, ``fixtures/samples.py``) this way; graders never import the reference.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def import_file(path: str | Path, name: str) -> types.ModuleType:
    """Import the Python file at ``path`` as a module called ``name``, without putting its folder on
    ``sys.path``: how the harness's own tests, benchmarks and assignment check read one file of the
    reference or a sample (graders never import the reference). The module is registered in
    ``sys.modules`` under ``name``, where dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
