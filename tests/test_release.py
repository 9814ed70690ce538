"""``torchgrade release``: the students' copy holds nothing of the reference, nothing hidden, and
grades the template out of the box; hidden checks are a folder, marked and kept out of it."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import torchgrade
from torchgrade.engine.plugin import MSG_HIDDEN_OUTSIDE
from torchgrade.instructor import cli, grading, release
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
#: torchgrade itself, as every release carries it.
WHEEL = f"wheels/torchgrade-{torchgrade.__version__}-py3-none-any.whl"
#: Two cheap checks of graders/test_answers.py: enough to show the copy grades, in about 4 s.
SELECTION = ("-k", "receptive_field_1d or conv1d_forward")


@pytest.fixture(scope="module")
def student_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release") / "shoes"
    assert cli.main(["--assignment", str(ROOT), "release", "--out", str(out), "--ci", "github", "gitlab"]) == 0
    return out


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def released_texts(folder: Path) -> dict[str, str]:
    """Each released file's text; for torchgrade's wheel, each of its files' (``WHEEL/torchgrade/...``)."""
    texts = {}
    for name in files_under(folder):
        if name.endswith(".whl"):
            with zipfile.ZipFile(folder / name) as wheel:
                texts |= {f"{name}/{member}": wheel.read(member).decode() for member in wheel.namelist()}
        else:
            texts[name] = (folder / name).read_text()
    return texts


def test_release_holds_the_student_files_and_nothing_of_the_instructor(student_release):
    released = files_under(student_release)
    expected = (
        {f"student_template/{p.name}" for p in (ROOT / "student_template").glob("*.py")}
        | {f"graders/{p.name}" for p in (ROOT / "graders").glob("*.py")}
        | {
            f"fixtures/{p.relative_to(ROOT / 'fixtures').as_posix()}"
            for p in (ROOT / "fixtures").rglob("*.py")
            if not set(p.relative_to(ROOT / "fixtures").parts) & set(release.FIXTURES_EXCLUDED)
        }
        | {"pyproject.toml", "requirements.txt", "README.md", ".github/workflows/grade.yml", ".gitlab-ci.yml"}
        | {WHEEL, "assignments.toml", ".gitignore"}
    )
    assert released == expected
    sources = {released_as: source for source, released_as in release.CI_FILES.values()}
    for name in expected - {"pyproject.toml", "requirements.txt", "README.md", WHEEL, ".gitignore"}:  # verbatim
        assert (student_release / name).read_bytes() == (ROOT / sources.get(name, name)).read_bytes(), name


def test_no_reference_code_is_in_the_release(student_release):
    assert (
        release.find_leaks(student_release, reference_dir=ROOT / "reference", template_dir=ROOT / "student_template")
        == []
    )
    # The same claim, measured differently: no reference function's code (docstring left out,
    # whitespace collapsed) is a substring of a released file, unless the template has it too.
    released = {name: " ".join(text.split()) for name, text in released_texts(student_release).items()}
    template = " ".join(" ".join(p.read_text().split()) for p in (ROOT / "student_template").glob("*.py"))
    checked = 0
    for path in (ROOT / "reference").glob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                code = " ".join(" ".join(ast.get_source_segment(text, s).split()) for s in body)
                if len(code) < 30 or code in template:
                    continue
                checked += 1
                assert not [name for name, content in released.items() if code in content], (path.name, node.name)
    assert checked > 50


def test_the_leak_scan_finds_pasted_reference_code(student_release, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(student_release, leaky)
    answers = (ROOT / "reference" / "answers.py").read_text()
    function = next(
        n for n in ast.parse(answers).body if isinstance(n, ast.FunctionDef) and n.name == "receptive_field_1d"
    )
    # The whole function, re-indented into a class of a grader: its body is the reference's.
    pasted = textwrap.indent(ast.get_source_segment(answers, function), "    ")
    (leaky / "graders" / "test_answers.py").write_text(
        (leaky / "graders" / "test_answers.py").read_text() + "\n\nclass Helper:\n" + pasted + "\n"
    )
    # Two statements from the middle of a long function (not a whole body) in the student's template.
    shoes = (ROOT / "reference" / "shoes.py").read_text()
    train = next(n for n in ast.parse(shoes).body if getattr(n, "name", "") == "train_model")
    middle = [ast.get_source_segment(shoes, s) for s in train.body if isinstance(s, ast.Assign)][2:4]
    (leaky / "student_template" / "extra.py").write_text("def f():\n" + "\n".join(middle) + "\n")
    # A notebook: code inside JSON strings.
    cell = {
        "cell_type": "code",
        "metadata": {},
        "outputs": [],
        "execution_count": None,
        "source": ast.get_source_segment(shoes, train).splitlines(keepends=True),
    }
    (leaky / "fixtures" / "example.ipynb").write_text(
        json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)
    )
    (leaky / "fixtures" / "reference").mkdir()
    (leaky / "fixtures" / "reference" / "notes.txt").write_text("nothing")

    found = {
        (leak.path, leak.what.split(":")[0])
        for leak in release.find_leaks(leaky, reference_dir=ROOT / "reference", template_dir=ROOT / "student_template")
    }
    assert ("graders/test_answers.py", "Helper.receptive_field_1d's body is that of reference/answers.py") in found
    assert ("student_template/extra.py", "the code of reference/shoes.py") in found
    assert ("fixtures/example.ipynb", "train_model's body is that of reference/shoes.py") in found
    assert ("fixtures/reference/notes.txt", "a path named reference") in found


def test_released_copy_grades_the_template_with_zero_auto_points(student_release):
    """What a student types in their copy: ``pytest graders``, with its own settings and default submission."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "TORCHGRADE_SUBMISSION", "CI")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "graders", *SELECTION, "-p", "no:cacheprovider"],
        cwd=student_release,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((student_release / "torchgrade-report.json").read_text())
    report.validate(data)
    assert Path(data["submission"]) == student_release / "student_template"
    assert data["score"] == 0 and data["max_score"] == 4 and len(data["checks"]) == 2
    assert all("not implemented yet" in c["message"] for c in data["checks"]), [c["message"] for c in data["checks"]]
    assert f"rootdir: {student_release}" in result.stdout and "configfile: pyproject.toml" in result.stdout


def test_released_pytest_settings_are_the_instructors(student_release):
    import tomllib

    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    theirs = tomllib.loads((student_release / "pyproject.toml").read_text())
    # testpaths added: a bare `pytest` (and an IDE's discovery) runs the graders
    assert theirs == {"tool": {"pytest": {"ini_options": {**ours, "testpaths": ["graders"]}}}}
    requirements = (student_release / "requirements.txt").read_text().splitlines()
    # graders/_lstm.py imports scipy and the molecules' fixture torch_geometric: the graphs extra
    assert [line for line in requirements if not line.startswith("#")] == ["torch>=2.13", f"./{WHEEL}[graphs]"]


# -- hidden checks -----------------------------------------------------------------------------------
TOY_GRADER = """
import pytest

ASSIGNMENT = "toy"


@pytest.mark.points(1, question="Q1")
def test_double(sub):
    assert sub.double(2) == 4
"""
TOY_HIDDEN = """
import pytest

ASSIGNMENT = "toy"


@pytest.mark.points(2, question="Q1")
def test_double_negative(sub):
    assert sub.double(-2) == -4
"""
TOY_REFERENCE = '''
def double(x):
    """Twice x."""
    result = x + x
    assert isinstance(result, int | float), "double takes numbers"
    return result
'''
TOY_TEMPLATE = '''
def double(x):
    """Twice x."""
    raise NotImplementedError
'''


@pytest.fixture
def toy_assignment(tmp_path: Path) -> Path:
    """A small assignment with a hidden grader module."""
    root = tmp_path / "toy"
    for name, text in {
        "graders/conftest.py": 'pytest_plugins = ["torchgrade.engine.plugin"]\n',
        "graders/test_toy.py": TOY_GRADER,
        "graders/hidden/test_toy_hidden.py": TOY_HIDDEN,
        "reference/toy.py": TOY_REFERENCE,
        "student_template/toy.py": TOY_TEMPLATE,
        "fixtures/__init__.py": "",
        "fixtures/submissions/bug.toml": "lost = {}\n",
        "pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["--strict-markers"]\n',
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_hidden_checks_are_marked_and_left_out_of_the_student_release(toy_assignment, tmp_path):
    def grade(*args: str) -> dict:
        code, data = grading.grade(
            toy_assignment / "reference",
            assignment=toy_assignment,
            isolation="none",
            report=tmp_path / "r.json",
            extra_args=args,
        )
        assert code == grading.EXIT_OK, code
        return {c["id"]: c["points"] for c in data["checks"]}

    assert grade() == {
        "graders/hidden/test_toy_hidden.py::test_double_negative": 2,
        "graders/test_toy.py::test_double": 1,
    }
    assert grade("-m", "not hidden") == {"graders/test_toy.py::test_double": 1}

    files = release.release(tmp_path / "out", assignment=toy_assignment)
    assert sorted(p.as_posix() for p in files) == [
        ".gitignore",
        "README.md",
        "fixtures/__init__.py",
        "graders/conftest.py",
        "graders/test_toy.py",
        "pyproject.toml",
        "requirements.txt",
        "student_template/toy.py",
        WHEEL,
    ]
    assert release.MSG_README_HIDDEN in (tmp_path / "out" / "README.md").read_text()


def test_a_hidden_marker_outside_the_hidden_folder_is_refused(toy_assignment, tmp_path):
    grader = toy_assignment / "graders" / "test_toy.py"
    grader.write_text(grader.read_text().replace("@pytest.mark.points", "@pytest.mark.hidden\n@pytest.mark.points"))
    command = [sys.executable, "-m", "pytest", "graders", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=toy_assignment, capture_output=True, text=True, timeout=120)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert MSG_HIDDEN_OUTSIDE.format(nodeid="graders/test_toy.py::test_double") in result.stderr


def test_a_release_that_would_leak_is_refused_and_removed(toy_assignment, tmp_path):
    # A grader that "computes the expected value" with the reference's own code.
    grader = toy_assignment / "graders" / "test_toy.py"
    grader.write_text(grader.read_text() + textwrap.dedent(TOY_REFERENCE).replace("def double", "def expected"))
    with pytest.raises(release.LeakFound, match=r"graders/test_toy.py:\d+: the code of reference/toy.py:\d+"):
        release.release(tmp_path / "out", assignment=toy_assignment)
    assert not (tmp_path / "out").exists()
    assert (
        cli.main(["--assignment", str(toy_assignment), "release", "--out", str(tmp_path / "out")])
        == grading.EXIT_FAILED
    )


def test_release_refuses_to_overwrite_or_to_nest(toy_assignment, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert cli.main(["--assignment", str(toy_assignment), "release", "--out", str(tmp_path / "taken")]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert cli.main(["--assignment", str(toy_assignment), "release", "--out", str(toy_assignment / "dist")]) == 2
    assert "must lie outside the assignment" in capsys.readouterr().err
    assert cli.main(["--assignment", str(toy_assignment), "release", "--out", str(tmp_path), "--force"]) == 2
    assert "and not hold it" in capsys.readouterr().err and toy_assignment.is_dir()
