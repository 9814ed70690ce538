"""A release installs where only the package registry is reachable: ``requirements.txt`` names torch's
range and torchgrade's own wheel, shipped in the release (``wheels/``), with the extras the release's
code imports; a bare ``pytest`` at the release's root runs the graders."""

from __future__ import annotations

import base64
import email.parser
import hashlib
import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

import torchgrade
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import release

ROOT = Path(__file__).resolve().parents[1]
WHEEL = f"wheels/torchgrade-{torchgrade.__version__}-py3-none-any.whl"
#: Two cheap checks of graders/test_answers.py.
SELECTION = ("-k", "receptive_field_1d or conv1d_forward")


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A one-check assignment whose code imports nothing beyond torchgrade's core."""
    root = tmp_path / "toy"
    for name, text in {
        "graders/conftest.py": 'pytest_plugins = ["torchgrade.engine.plugin"]\n',
        "graders/test_toy.py": 'import pytest\n\n\n@pytest.mark.points(1, question="Q1")\ndef test_one(sub):\n'
        "    assert sub.one() == 1\n",
        "reference/toy.py": 'def one():\n    """One."""\n    value = 1\n    assert value > 0\n    return value\n',
        "student_template/toy.py": 'def one():\n    """One."""\n    raise NotImplementedError\n',
        "fixtures/__init__.py": "",
        "pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["--strict-markers"]\n',
        "ci/gradescope/setup.sh": "#!/usr/bin/env bash\n",
        "ci/gradescope/run_autograder": "#!/usr/bin/env bash\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def requirement_lines(folder: Path) -> list[str]:
    return [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]


def test_a_release_carries_torchgrade_as_a_wheel_and_requires_only_the_core(toy, tmp_path):
    out = tmp_path / "out"
    release.release(out, assignment=toy)
    assert requirement_lines(out) == ["torch>=2.13", f"./{WHEEL}"]  # no torchgrade==, which no index has
    with zipfile.ZipFile(out / WHEEL) as wheel:
        names = set(wheel.namelist())
        info = f"torchgrade-{torchgrade.__version__}.dist-info"
        assert {"torchgrade/__init__.py", "torchgrade/engine/plugin.py", f"{info}/METADATA", f"{info}/RECORD"} <= names
        assert "torchgrade/reporting/schema/report.schema.json" in names  # package data
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        assert "torch>=2.13" in metadata.get_all("Requires-Dist")
        assert {"batch", "graphs", "sandbox", "handouts"} <= set(metadata.get_all("Provides-Extra"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        assert "[console_scripts]\ntorchgrade = torchgrade.instructor.cli:main" in entry_points
        for line in wheel.read(f"{info}/RECORD").decode().splitlines():  # what pip checks on install
            name, digest, size = line.rsplit(",", 2)
            if digest:
                data = wheel.read(name)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, int(size)) == (f"sha256={expected}", len(data)), name


def test_extras_follow_what_the_release_imports_and_its_profile(toy, tmp_path):
    (toy / "graders" / "_stats.py").write_text("def pvalue(x):\n    from scipy import stats\n\n    return stats\n")
    release.release(tmp_path / "student", assignment=toy)
    assert requirement_lines(tmp_path / "student")[1] == f"./{WHEEL}[graphs]"
    (toy / "student_template" / "toy.py").write_text(
        "import pandas as pd\n" + (toy / "reference" / "toy.py").read_text()
    )
    release.release(tmp_path / "pandas", assignment=toy)
    assert requirement_lines(tmp_path / "pandas")[1] == f"./{WHEEL}[graphs,handouts]"
    release.release(tmp_path / "gradescope", assignment=toy, profile="gradescope")
    assert requirement_lines(tmp_path / "gradescope")[1] == f"./{WHEEL}[graphs,handouts,sandbox]"
    assert (tmp_path / "gradescope" / WHEEL).is_file()


def test_the_instructors_requirement_replaces_the_wheel(toy, tmp_path):
    line = "torchgrade[graphs] @ git+https://example.org/torchgrade@v0.1.0"
    release.release(tmp_path / "out", assignment=toy, torchgrade_requirement=line)
    assert requirement_lines(tmp_path / "out") == ["torch>=2.13", line]
    assert not (tmp_path / "out" / "wheels").exists()


def test_the_leak_scan_reads_inside_the_wheel(toy, tmp_path):
    wheel = release.build_wheel(tmp_path / "scanned" / "wheels")
    with zipfile.ZipFile(wheel, "a") as archive:  # reference code that slipped into torchgrade's own files
        archive.writestr("torchgrade/solution.py", (toy / "reference" / "toy.py").read_text().replace("one", "two"))
    leaks = release.find_leaks(
        tmp_path / "scanned", reference_dir=toy / "reference", template_dir=toy / "student_template"
    )
    assert [(leak.path, leak.what) for leak in leaks] == [
        (f"{WHEEL}/torchgrade/solution.py", "two's body is that of reference/toy.py:one")
    ]


def test_a_stale_editable_install_is_refused(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "torchgrade"\ndependencies = ["torch==2.12.0"]\n')
    with pytest.raises(TorchgradeError, match="installed metadata is older than"):
        release._check_metadata_is_current(release._distribution(), pyproject)


@pytest.mark.parametrize("only", [None, "shoes"])
def test_a_release_installs_offline_and_a_bare_pytest_grades_the_template(tmp_path, only):
    """``pip install -r requirements.txt`` into a fresh virtual environment, with no index: what the
    release names must come from the release itself or be installed already. The already installed
    packages (torch and the rest) are this environment's, seen through a .pth file, without torchgrade:
    torchgrade comes from the release's wheel. Then a bare ``pytest`` at the release's root. Also for a
    release of one assignment (``--only shoes``), which grades the shoes alone."""
    out = tmp_path / "release"
    release.release(out, assignment=ROOT, only=only)
    site = Path(torch_site := __import__("torch").__file__).parents[1]
    others = tmp_path / "others"  # this environment's packages, torchgrade left out
    others.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("torchgrade", "__editable__", "_virtualenv")) and entry.suffix != ".pth":
            (others / entry.name).symlink_to(entry)
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    (Path(purelib) / "others.pth").write_text(f"{others}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTEST_", "TORCHGRADE_")) and k != "CI"}
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-index",
            "--no-input",
            "-r",
            "requirements.txt",
        ],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert "does not provide the extra" not in install.stderr, install.stderr
    where = subprocess.run(
        [python, "-c", "import torchgrade; print(torchgrade.__file__)"], cwd=out, capture_output=True, text=True
    )
    assert Path(where.stdout.strip()).is_relative_to(purelib), (where.stdout, where.stderr, torch_site)
    result = subprocess.run(
        [python, "-m", "pytest", *SELECTION, "-p", "no:cacheprovider"],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 1, output  # the template fails its checks; nothing errors
    assert "2 failed" in result.stdout and "0 / 4 auto-graded points" in result.stdout, output
    if only is not None:  # the selection's total beside the assignment's own
        assert "a selection, not the total of shoes (49 points)" in result.stdout, output


def test_without_testpaths_a_bare_pytest_fails_on_the_graders_conftest(tmp_path):
    """Why the release adds ``testpaths``: a ``graders/conftest.py`` that names ``pytest_plugins`` is
    refused when pytest finds it during collection instead of loading it first."""
    (tmp_path / "graders").mkdir()
    (tmp_path / "graders" / "conftest.py").write_text('pytest_plugins = ["torchgrade.engine.plugin"]\n')
    (tmp_path / "graders" / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('[tool.pytest.ini_options]\naddopts = ["-q"]\n'))
    command = [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider"]
    bare = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "non-top-level conftest" in bare.stdout + bare.stderr
    (tmp_path / "pyproject.toml").write_text(release.pytest_settings(tmp_path / "pyproject.toml", testpaths=True))
    fixed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0 and "test_nothing" in fixed.stdout, fixed.stdout + fixed.stderr
