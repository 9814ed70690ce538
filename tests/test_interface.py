"""reference/ and student_template/ expose the same public names with the same signatures, and exactly
the names the manifest (assignments.toml) declares."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from torchgrade import assignments
from torchgrade.assignments import REQUIRED
from torchgrade.importfile import import_file

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILES = sorted(p.name for p in (ROOT / "reference").glob("*.py"))
REPOSITORY = assignments.load(ROOT)
MODULES = REPOSITORY.modules()
NAME_TO_MODULE = REPOSITORY.name_to_module()
HANDOUT_PARAMETERS = REPOSITORY.calls()


def load(folder: str, filename: str):
    return import_file(ROOT / folder / filename, f"_interface_{folder}_{filename[:-3]}")


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


def test_the_manifest_s_modules_are_the_template_s():
    assert sorted(f"{module}.py" for module in MODULES) == MODULE_FILES


@pytest.mark.parametrize("folder", ["reference", "student_template"])
@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_module_defines_exactly_the_manifest_s_names(folder, module):
    """Every public function and class of a module is a name of the manifest, and the other way round:
    an unlisted one would be neither graded, released to its assignment, nor pruned from others'."""
    defined = {name for name in public_api(load(folder, f"{module}.py")) if "." not in name}
    assert defined == set(MODULES[module]), f"{folder}/{module}.py: {sorted(defined ^ set(MODULES[module]))}"


def test_the_graders_files_exist_and_each_belongs_to_one_assignment():
    seen: dict[str, str] = {}
    for assignment in REPOSITORY.assignments.values():
        for grader in assignment.graders:
            assert (ROOT / "graders" / grader).is_file(), f"{assignment.id}: graders/{grader}"
            assert grader not in seen, f"graders/{grader} is listed by {seen.get(grader)} and {assignment.id}"
            seen[grader] = assignment.id
        for fixture in assignment.fixtures:
            assert (ROOT / "fixtures" / fixture).is_file(), f"{assignment.id}: fixtures/{fixture}"
    assert set(seen) == {p.name for p in (ROOT / "graders").glob("*.py")} - {"conftest.py"}


@pytest.mark.parametrize("filename", MODULE_FILES)
def test_every_template_function_raises_not_implemented(filename):
    """The template scores zero by raising, never by returning a plausible value."""
    template = load("student_template", filename)
    functions = {
        name: obj
        for name, obj in vars(template).items()
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == template.__name__
    }
    answering = []
    for name, stub in functions.items():
        try:
            stub(*[object()] * len(inspect.signature(stub).parameters))
        except NotImplementedError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other outcome is the failure reported
            answering.append(f"{name} raised {type(exc).__name__}")
        else:
            answering.append(f"{name} returned")
    assert functions and not answering


#: Modules whose template docstrings are the handout's contract, word for word, and whose reference
#: keeps that text and adds its formula after it.
DOCSTRING_CONTRACT = ("answers.py", "conv_numpy.py", "robustness.py", "shoes.py")


@pytest.mark.parametrize("filename", DOCSTRING_CONTRACT)
def test_reference_docstrings_start_with_the_templates(filename):
    reference, template = load("reference", filename), load("student_template", filename)
    for name in public_api(template):
        if "." not in name:
            stub, fn = getattr(template, name), getattr(reference, name)
            assert (inspect.getdoc(fn) or "").startswith(inspect.getdoc(stub) or ""), name


@pytest.mark.parametrize("name", sorted(HANDOUT_PARAMETERS))
def test_handout_parameters_are_the_template_s(name):
    """The parameters graders bind calls by (names, order, defaults) are those of student_template/."""
    template = load("student_template", f"{NAME_TO_MODULE[name]}.py")
    signature = inspect.signature(getattr(template, name))
    got = [(p.name, REQUIRED if p.default is p.empty else p.default) for p in signature.parameters.values()]
    assert got == [(p.name, p.default) for p in HANDOUT_PARAMETERS[name]]
