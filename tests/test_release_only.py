"""``torchgrade release --only ID``: a release of one assignment holds its template modules (the other
assignments' names pruned from shared ones), its graders, fixtures and questions, a README of its own,
a .gitignore and the requirements it needs; a bare ``pytest`` in it grades that assignment alone."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import torchgrade
from torchgrade import assignments
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import cli, release
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
WHEEL = f"wheels/torchgrade-{torchgrade.__version__}-py3-none-any.whl"
#: Names of the other assignments that a shoe release must not mention (shared modules and graders
#: held them before pruning: answers.py, lstm.py, gnn.py, conftest.py).
FOREIGN_NAMES = (
    "GraphAttentionLayer",
    "beam_search",
    "conv2d_forward",
    "lstm_param_count",
    "message_passing",
    "mlp_gradients",
    "MoleculeGNN",
    "circulant_matrix",
    "linear_attention",
    "UNet",
    "citation_graph",
    "molecule_sets",
)


@pytest.fixture(scope="module")
def shoes_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release-only") / "shoes"
    release.release(out, assignment=ROOT, only="shoes", ci=("github",))
    return out


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_a_release_of_one_assignment_holds_its_files_only(shoes_release):
    shoes = assignments.load(ROOT).get("shoes")
    assert files_under(shoes_release) == (
        {f"student_template/{module}.py" for module in shoes.modules}
        | {f"graders/{name}" for name in shoes.graders}
        | {"graders/conftest.py", "fixtures/__init__.py"}
        | {f"fixtures/{name}" for name in shoes.fixtures}
        | {"pyproject.toml", "requirements.txt", "README.md", ".gitignore", "assignments.toml", WHEEL}
        | {".github/workflows/grade.yml"}
    )
    # The shoe modules hold nothing of another assignment: copied verbatim.
    for name in ("student_template/shoes.py", "graders/test_shoes.py", "graders/_shoes.py", "fixtures/shoes_data.py"):
        assert (shoes_release / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_no_name_of_another_assignment_is_shipped(shoes_release):
    texts = {name: (shoes_release / name).read_text() for name in files_under(shoes_release) if name != WHEEL}
    for name, text in texts.items():
        found = [word for word in FOREIGN_NAMES if re.search(rf"\b{word}\b", text)]
        assert not found, f"{name} mentions {found}"
    # ... while the full repository does (the pruning is what removed them)
    assert "beam_search" in (ROOT / "student_template/lstm.py").read_text()
    assert "lstm_param_count" in (ROOT / "student_template/answers.py").read_text()
    assert "citation_graph" in (ROOT / "graders/conftest.py").read_text()


def test_shared_template_modules_keep_exactly_the_assignments_names_and_import(shoes_release):
    repository = assignments.load(ROOT)
    others = {n for a in repository.assignments.values() if a.id != "shoes" for n in a.names}
    for module, names in repository.get("shoes").modules.items():
        path = shoes_release / "student_template" / f"{module}.py"
        defined = set(assignments.template_definitions(path))
        assert set(names) <= defined and not defined & others, (module, defined & others)
        spec = importlib.util.spec_from_file_location(f"_released_{module}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)  # the pruned module still imports
        assert all(callable(getattr(loaded, name)) for name in names)
    # answers.py lost the EECS 182 and UvA functions and nothing else
    original = set(assignments.template_definitions(ROOT / "student_template/answers.py"))
    pruned = set(assignments.template_definitions(shoes_release / "student_template/answers.py"))
    assert original - pruned == {n for n in others if n in original}


@pytest.mark.parametrize("assignment_id", ["eecs182", "uva-a2", "csc413-a4"])
def test_every_assignment_releases_alone(assignment_id, tmp_path):
    """Each assignment's release: its modules import and define its names and no other assignment's, its
    graders are its own, and its requirements list the graphs extra exactly where its code imports PyG."""
    out = tmp_path / assignment_id
    release.release(out, assignment=ROOT, only=assignment_id)
    repository = assignments.load(ROOT)
    mine = repository.get(assignment_id)
    others = {n for a in repository.assignments.values() if a.id != assignment_id for n in a.names} - set(mine.names)
    assert {p.stem for p in (out / "student_template").glob("*.py")} == set(mine.modules)
    for module, names in mine.modules.items():
        path = out / "student_template" / f"{module}.py"
        defined = set(assignments.template_definitions(path))
        assert set(names) <= defined and not defined & others, (module, defined & others)
        spec = importlib.util.spec_from_file_location(f"_released_{assignment_id}_{module}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert {p.name for p in (out / "graders").glob("*.py")} == {*mine.graders, "conftest.py"}
    assert assignments.load(out).ids == (assignment_id,)
    wheel_line = (out / "requirements.txt").read_text().splitlines()[-1]
    assert wheel_line == f"./{WHEEL}" + ("" if assignment_id == "eecs182" else "[graphs]")


def test_the_manifest_settings_and_requirements_are_the_assignments(shoes_release):
    full = tomllib.loads((ROOT / "assignments.toml").read_text())
    shipped = tomllib.loads((shoes_release / "assignments.toml").read_text())
    assert shipped == {"template": full["template"], "shoes": full["shoes"]}
    assert assignments.load(shoes_release).ids == ("shoes",)
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    theirs = tomllib.loads((shoes_release / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert theirs == {**ours, "testpaths": ["graders"], "addopts": [*ours["addopts"], "--only=shoes"]}
    requirements = [
        line for line in (shoes_release / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert requirements == ["torch>=2.13", f"./{WHEEL}"]  # core only: no graphs extra for shoes
    # The module's other tests run pytest in this release, whose imports leave bytecode the release never
    # shipped (__pycache__/*.pyc, which the scan rightly cannot read): scan what the release holds.
    for cache in list(shoes_release.rglob("__pycache__")):
        shutil.rmtree(cache)
    assert (
        release.find_leaks(shoes_release, reference_dir=ROOT / "reference", template_dir=ROOT / "student_template")
        == []
    )


def test_the_readme_is_the_assignments(shoes_release):
    shoes = assignments.load(ROOT).get("shoes")
    readme = (shoes_release / "README.md").read_text()
    assert readme.startswith(f"# {shoes.title}\n")
    for question in shoes.questions:
        assert f"| {question.id} | {question.points:g} | {question.title} |" in readme
    assert f"total: 0 / {shoes.auto_points:g} auto-graded points; {shoes.manual_points:g} points pending" in readme
    assert "pip install -r requirements.txt" in readme and "pytest graders" in readme
    assert "pytest graders/test_shoes.py::test_load_shoes " in readme  # an example check that the copy holds
    assert "def test_load_shoes(" in (shoes_release / "graders/test_shoes.py").read_text()
    ignored = (shoes_release / ".gitignore").read_text().splitlines()
    assert {".venv/", "__pycache__/", "torchgrade-report.json", ".pytest_cache/", "data/"} <= set(ignored)


def test_a_gradescope_release_of_one_assignment(tmp_path):
    out = tmp_path / "autograder"
    files = {p.as_posix() for p in release.release(out, assignment=ROOT, profile="gradescope", only="csc413-a4")}
    csc = assignments.load(ROOT).get("csc413-a4")
    assert files == (
        {f"student_template/{module}.py" for module in csc.modules}
        | {f"graders/{name}" for name in csc.graders}
        | {"graders/conftest.py", "fixtures/__init__.py"}
        | {f"fixtures/{name}" for name in csc.fixtures}
        | {"pyproject.toml", "requirements.txt", "assignments.toml", "setup.sh", "run_autograder", WHEEL}
    )
    gnn = (out / "student_template/gnn.py").read_text()
    assert "class GraphAttentionLayer" in gnn and "MoleculeGNN" not in gnn and "circulant" not in gnn
    conftest = (out / "graders/conftest.py").read_text()
    assert "def citation_graph" in conftest and "def shoe_folder" not in conftest and "molecule_sets" not in conftest
    assert f"./{WHEEL}[graphs,handouts,sandbox]" in (out / "requirements.txt").read_text()


def test_an_unknown_assignment_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(assignments.UnknownAssignment, match="known: csc413-a4, eecs182, shoes, uva-a2"):
        release.release(tmp_path / "out", assignment=ROOT, only="nope")
    assert not (tmp_path / "out").exists()


# -- the pruning, on its own -------------------------------------------------------------------------
PRUNED_SOURCE = '''\
"""Two assignments in one module.

* mine: ``mine`` and ``also_mine``.
* theirs: ``theirs`` and ``Theirs``,
  on two lines.

A paragraph about ``theirs`` stays.
"""

import math

LIMIT = 3
SHARED = 2


def mine(x):
    return _helper(x) + SHARED


def _helper(x):
    return x


# -- theirs: a section header that goes with it
def theirs(x):
    return _their_helper(x) * LIMIT


def _their_helper(x):
    return math.sqrt(x)


class Theirs:
    pass


def also_mine(x):
    return Needed()


class Needed:
    """Another assignment's, but a kept function uses it."""
'''


def test_prune_module_removes_the_names_and_what_only_they_use():
    pruned = release.prune_module(PRUNED_SOURCE, {"theirs", "Theirs", "Needed"}, keep={"mine", "also_mine"})
    namespace: dict = {}
    exec(compile(pruned, "pruned", "exec"), namespace)
    assert {"mine", "_helper", "SHARED", "also_mine", "Needed", "math"} <= set(namespace)
    assert not {"theirs", "_their_helper", "Theirs", "LIMIT"} & set(namespace)
    assert "section header" not in pruned and "\n\n\n\n" not in pruned
    assert "* mine:" in pruned and "* theirs" not in pruned and "on two lines" not in pruned  # its bullet goes
    assert "A paragraph about ``theirs`` stays." in pruned
    assert namespace["mine"](1) == 3


def test_manifest_of_keeps_one_assignments_tables_as_text():
    text = textwrap.dedent(
        """\
        # the preamble stays
        template = "student_template"

        [a]
        title = "A"  # a comment stays

        [a.questions]
        Q1 = { points = 1 }

        [b]
        title = "B"

        [b.questions]
        Q1 = { points = 2 }
        """
    )
    kept = release.manifest_of(text, "a")
    assert "# the preamble stays" in kept and "# a comment stays" in kept and "[b" not in kept
    assert tomllib.loads(kept) == {
        "template": "student_template",
        "a": {"title": "A", "questions": {"Q1": {"points": 1}}},
    }
    split = text + "\n[a.calls]\nf = {}\n"  # a table of a's after b's: still cut right
    assert tomllib.loads(release.manifest_of(split, "a"))["a"]["calls"] == {"f": {}}


# -- a toy of two assignments that share a module, a grader module and the conftest ----------------------
TWO = {
    "assignments.toml": """
        [one]
        modules = ["calc"]
        names = ["double"]
        graders = ["test_one.py"]
        fixtures = ["numbers_one.py"]
        [one.questions]
        Q1 = { points = 1 }
        Q2 = { points = 1 }

        [two]
        modules = ["calc", "other"]
        names = ["triple", "negate"]
        graders = ["test_two.py"]
        fixtures = ["numbers_two.py"]
        [two.questions]
        T1 = { points = 2 }
        T2 = { points = 1 }
    """,
    "student_template/calc.py": '''
        def double(x):
            """Twice x."""
            raise NotImplementedError


        def triple(x):
            """Three times x."""
            raise NotImplementedError
    ''',
    "student_template/other.py": '''
        def negate(x):
            """Minus x."""
            raise NotImplementedError
    ''',
    "reference/calc.py": "def double(x):\n    return 2 * x\n\n\ndef triple(x):\n    return 3 * x\n",
    "reference/other.py": "def negate(x):\n    return -x\n",
    "graders/conftest.py": """
        import pytest

        pytest_plugins = ["torchgrade.engine.plugin"]


        @pytest.fixture
        def one_numbers():
            from fixtures import numbers_one

            return numbers_one.NUMBERS


        @pytest.fixture
        def two_numbers():
            from fixtures import numbers_two

            return numbers_two.NUMBERS
    """,
    "graders/test_one.py": """
        import pytest

        ASSIGNMENT = "one"


        @pytest.mark.points(1, question="Q1")
        def test_double(sub, one_numbers):
            assert [sub.double(x) for x in one_numbers] == [2 * x for x in one_numbers]


        @pytest.mark.points(1, question="T2", assignment="two")
        def test_triple_in_one(sub, two_numbers):
            assert sub.triple(1) == 3
    """,
    "graders/test_two.py": """
        import pytest

        ASSIGNMENT = "two"


        @pytest.mark.points(2, question="T1")
        def test_triple(sub, two_numbers):
            assert [sub.triple(x) for x in two_numbers] == [3 * x for x in two_numbers]
    """,
    "graders/test_mixed.py": """
        import pytest

        ASSIGNMENT = "two"


        def _two_only():
            return -1


        @pytest.mark.points(1, question="Q2", assignment="one")
        def test_double_zero(sub):
            assert sub.double(0) == 0


        @pytest.mark.points(0, question="T2")
        def test_negate(sub):
            assert sub.negate(1) == _two_only()
    """,
    "graders/hidden/test_two_hidden.py": """
        import pytest

        ASSIGNMENT = "two"


        @pytest.mark.points(1, question="T1")
        def test_triple_hidden(sub):
            assert sub.triple(0) == 0
    """,
    "fixtures/__init__.py": "",
    "fixtures/numbers_one.py": "from ._base import BASE\n\nNUMBERS = [*BASE, 4]\n",
    "fixtures/_base.py": "BASE = [1, 2]\n",
    "fixtures/numbers_two.py": "NUMBERS = [5]\n",
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "--strict-markers -ra"\n',
}


@pytest.fixture
def two_assignments(tmp_path: Path) -> Path:
    root = tmp_path / "two"
    for name, text in TWO.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def test_one_of_two_assignments_is_cut_out_of_shared_modules(two_assignments, tmp_path):
    out = tmp_path / "one"
    files = {p.as_posix() for p in release.release(out, assignment=two_assignments, only="one")}
    assert files == {
        "assignments.toml",
        "student_template/calc.py",
        "graders/conftest.py",
        "graders/test_one.py",
        "graders/test_mixed.py",
        "fixtures/__init__.py",
        "fixtures/numbers_one.py",
        "fixtures/_base.py",  # imported by numbers_one
        "pyproject.toml",
        "requirements.txt",
        "README.md",
        ".gitignore",
        WHEEL,
    }
    calc = (out / "student_template/calc.py").read_text()
    assert "def double" in calc and "triple" not in calc
    test_one = (out / "graders/test_one.py").read_text()
    assert "def test_double" in test_one and "test_triple_in_one" not in test_one
    mixed = (out / "graders/test_mixed.py").read_text()
    assert "def test_double_zero" in mixed and "test_negate" not in mixed and "_two_only" not in mixed
    conftest = (out / "graders/conftest.py").read_text()
    assert "def one_numbers" in conftest and "two_numbers" not in conftest
    settings = tomllib.loads((out / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert settings["addopts"] == ["--strict-markers", "-ra", "--only=one"]  # a string addopts becomes a list
    assert "| Q1 | 1 |" in (out / "README.md").read_text() and "| T1 |" not in (out / "README.md").read_text()


def test_hidden_graders_of_another_assignment_stay_out_of_the_autograder(two_assignments, tmp_path):
    shutil.copytree(ROOT / "ci" / "gradescope", two_assignments / "ci" / "gradescope")
    one = {
        p.as_posix()
        for p in release.release(tmp_path / "rel-one", assignment=two_assignments, profile="gradescope", only="one")
    }
    two = {
        p.as_posix()
        for p in release.release(tmp_path / "rel-two", assignment=two_assignments, profile="gradescope", only="two")
    }
    assert "graders/hidden/test_two_hidden.py" in two and not any("hidden" in name for name in one)
    assert "student_template/other.py" in two and "student_template/other.py" not in one
    assert {"graders/test_two.py", "graders/test_mixed.py", "fixtures/numbers_two.py"} <= two
    assert "fixtures/_base.py" not in two  # only numbers_one imports it
    assert "def test_negate" in (tmp_path / "rel-two" / "graders/test_mixed.py").read_text()
    assert "test_double_zero" not in (tmp_path / "rel-two" / "graders/test_mixed.py").read_text()
    # as `pytest --only two` does, a module the manifest gives to another assignment only is left out whole
    assert "graders/test_one.py" not in two


def test_a_release_of_one_grades_it_alone(two_assignments, tmp_path):
    """The pruned copy of the toy runs: a bare ``pytest`` at its root grades assignment one's two checks."""
    out = tmp_path / "one"
    release.release(out, assignment=two_assignments, only="one")
    for module in ("calc",):  # the reference, copied in: full marks
        shutil.copy(two_assignments / "reference" / f"{module}.py", out / "student_template" / f"{module}.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TORCHGRADE_")) and k != "CI"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((out / "torchgrade-report.json").read_text())
    assert data["only"] == "one" and data["score"] == data["max_score"] == 2
    assert [a["id"] for a in data["assignments"]] == ["one"]


# -- the shoe release, graded -------------------------------------------------------------------------
def pytest_in(folder: Path, *args: str) -> dict:
    """The ``subprocess.run`` arguments of a ``pytest`` at ``folder``, with synthetic data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TORCHGRADE_")) and k != "CI"}
    env["TORCHGRADE_DATA_ROOT"] = "synthetic"
    return {
        "args": [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        "cwd": folder,
        "env": env,
        "capture_output": True,
        "text": True,
        "timeout": 300,
    }


def test_a_bare_pytest_in_a_shoe_release_grades_the_shoes_alone(shoes_release):
    """What a student types in their copy, on the untouched template: every shoe check, no other, and
    the shoe assignment's own total (about 10 s)."""
    result = subprocess.run(**pytest_in(shoes_release))
    output = result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 1, output  # the template fails its checks; nothing errors out of pytest
    data = json.loads((shoes_release / "torchgrade-report.json").read_text())
    report.validate(data)
    shoes = assignments.load(ROOT).get("shoes")
    assert data["only"] == "shoes" and data["complete"] is True
    assert [a["id"] for a in data["assignments"]] == ["shoes"]
    assert data["score"] == 0 and data["max_score"] == shoes.auto_points == 49
    assert {c["id"].split("::")[0] for c in data["checks"]} == {"graders/test_shoes.py", "graders/test_answers.py"}
    assert {c["assignment"] for c in data["checks"]} == {"shoes"} and len(data["checks"]) == 16
    assert f"total: 0 / {shoes.auto_points:g} auto-graded points" in result.stdout, output


def test_the_reference_earns_full_marks_in_a_shoe_release(shoes_release, tmp_path):
    """The reference's shoe modules copied into the release earn every point of a cheap selection, and the
    report still knows the assignment's own total (49) beside the selection's."""
    copy = tmp_path / "with-reference"
    shutil.copytree(shoes_release, copy)
    for module in assignments.load(ROOT).get("shoes").modules:
        shutil.copy(ROOT / "reference" / f"{module}.py", copy / "student_template" / f"{module}.py")
    result = subprocess.run(**pytest_in(copy, "-k", "receptive_field_1d or conv1d_forward or param_counts or test_cnn"))
    output = result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    data = json.loads((copy / "torchgrade-report.json").read_text())
    assert data["score"] == data["max_score"] > 0 and data["complete"] is False
    (shoes,) = data["assignments"]
    assert shoes["id"] == "shoes" and shoes["declared_max_score"] == 49
    assert "selected checks" in result.stdout, output


def test_the_cli_releases_one_assignment_and_refuses_an_unknown_one(tmp_path, capsys):
    out = tmp_path / "eecs"
    assert cli.main(["--assignment", str(ROOT), "release", "--out", str(out), "--only", "eecs182"]) == 0
    assert "release of assignment 'eecs182'" in capsys.readouterr().out
    assert not (out / "student_template/shoes.py").exists() and (out / "student_template/lstm.py").is_file()
    lstm = (out / "student_template/lstm.py").read_text()
    assert "def beam_search" in lstm and "class LSTM" not in lstm
    assert cli.main(["--assignment", str(ROOT), "release", "--out", str(tmp_path / "x"), "--only", "nope"]) == 2
    assert "unknown assignment 'nope'" in capsys.readouterr().err


def test_only_needs_a_manifest(tmp_path):
    (tmp_path / "a").mkdir()
    for needed in ("graders", "fixtures", "student_template"):
        (tmp_path / "a" / needed).mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    with pytest.raises(TorchgradeError, match="--only needs a manifest"):
        release.release(tmp_path / "out", assignment=tmp_path / "a", only="x")


def test_a_gradescope_autograder_of_one_assignment(tmp_path):
    """run_autograder in a simulated /autograder, from ``release --profile gradescope --only shoes``, cut down
    to graders/test_answers.py so that grading takes seconds: the student uploaded the reference's modules."""
    root = tmp_path / "autograder"
    release.release(root / "source", assignment=ROOT, profile="gradescope", only="shoes")
    (root / "source" / "graders" / "test_shoes.py").unlink()
    (root / "submission").mkdir()
    for module in ("shoes", "answers"):
        shutil.copy(ROOT / "reference" / f"{module}.py", root / "submission" / f"{module}.py")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TORCHGRADE_")) and k != "CI"},
        "AUTOGRADER_ROOT": str(root),
        "TORCHGRADE_SKIP_INSTALL": "1",
        "TORCHGRADE_PYTHON": sys.executable,
    }
    run = subprocess.run(
        [str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    extra = results["extra_data"]["torchgrade"]
    assert extra["only"] == "shoes" and [a["id"] for a in extra["assignments"]] == ["shoes"]
    assert results["score"] == extra["max_score"] > 0  # the reference's answers: every point of the selection
    assert all(test["name"].startswith("shoes ") for test in results["tests"])
