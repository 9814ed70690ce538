"""reference/ and student_template/ expose the same public names with the same signatures."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from torchgrade.interface import MODULES

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILES = sorted(p.name for p in (ROOT / "reference").glob("*.py"))


def load(folder: str, filename: str):
    spec = importlib.util.spec_from_file_location(f"_interface_{folder}_{filename[:-3]}", ROOT / folder / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_api(module) -> dict[str, str]:
    """Public functions and classes defined in the module -> their signatures (and methods')."""
    api = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            api[name] = str(inspect.signature(obj))
        elif inspect.isclass(obj):
            api[name] = str(inspect.signature(obj))
            for method_name, method in vars(obj).items():
                if inspect.isfunction(method) and (not method_name.startswith("_") or method_name == "__init__"):
                    api[f"{name}.{method_name}"] = str(inspect.signature(method))
    return api


def test_same_module_files():
    assert MODULE_FILES == sorted(p.name for p in (ROOT / "student_template").glob("*.py"))


@pytest.mark.parametrize("filename", MODULE_FILES)
def test_same_public_names_and_signatures(filename):
    reference, template = public_api(load("reference", filename)), public_api(load("student_template", filename))
    assert reference == template


@pytest.mark.parametrize("module", sorted(MODULES))
def test_interface_names_are_defined(module):
    for folder in ("reference", "student_template"):
        api = public_api(load(folder, f"{module}.py"))
        missing = [name for name in MODULES[module] if name not in api]
        assert not missing, f"{folder}/{module}.py lacks {missing}"
