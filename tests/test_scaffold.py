"""``torchgrade new``: an instructor's own assignment, with no change to torchgrade (issue 18, part 5).

The scaffold is written into a temporary folder once (module fixture) and driven through the real
command line: ``check`` in both isolation modes (the reference earns every point, the template none,
the buggy sample exactly its question's), ``grade``, both release profiles (no reference code in
them), ``batch`` over two submissions and ``export gradescope``. The fast tests read the scaffold's
files without running anything.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from torchgrade import assignments
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import cli, grading, release, scaffold

ROOT = Path(__file__).resolve().parents[1]
ID = "my-course-a1"


# -- fast: the files ---------------------------------------------------------------------------------------
def test_new_writes_an_assignment_whose_manifest_and_interface_load(tmp_path):
    files = scaffold.new(tmp_path / "a", assignment_id=ID, title='A "quoted" title')
    names = {f.as_posix() for f in files}
    for needed in (
        "assignments.toml",
        "pyproject.toml",
        "README.md",
        "reference/classifier.py",
        "student_template/classifier.py",
        "graders/conftest.py",
        "graders/test_classifier.py",
        "graders/_classifier.py",
        "fixtures/rings.py",
        "fixtures/samples.py",
        "fixtures/submissions/unbiased_variance.toml",
        "fixtures/submissions/mlp_without_relu.toml",
        "benchmarks/calibrate.py",
        "ci/gradescope/run_autograder",
    ):
        assert needed in names
    assert not any(name.endswith(scaffold.SUFFIX) for name in names)
    repo = assignments.load(tmp_path / "a")
    assignment = repo.get(ID)
    assert assignment.title == 'A "quoted" title'
    assert [(q.id, q.points, q.manual) for q in assignment.questions] == [
        ("Q1", 2, False),
        ("Q2", 3, False),
        ("Q3", 3, False),
        ("Q4", 2, True),
    ]
    assert repo.name_to_module() == {"standardise": "classifier", "MLP": "classifier", "train_classifier": "classifier"}
    assert 'ASSIGNMENT = "my-course-a1"' in (tmp_path / "a" / "graders" / "test_classifier.py").read_text()
    assert (tmp_path / "a" / "ci" / "gradescope" / "run_autograder").stat().st_mode & 0o111


def test_new_refuses_a_folder_with_files_and_a_bad_id(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.py").write_text("")
    with pytest.raises(TorchgradeError, match="not an empty folder"):
        scaffold.new(tmp_path / "full")
    with pytest.raises(TorchgradeError, match="assignment id"):
        scaffold.new(tmp_path / "b", assignment_id="no spaces")
    assert not (tmp_path / "b").exists()
    assert scaffold.default_id(Path("/x/CSC 421 A1")) == "csc-421-a1"


def test_the_scaffolds_copies_of_the_repositorys_generic_files_are_current():
    """fixtures/samples.py and the CI files are the repository's own; the scaffold carries a copy."""
    files = scaffold.scaffold_files()
    for rel in ("fixtures/samples.py", *(path for path, _ in release.CI_FILES.values()), *release.GRADESCOPE_FILES):
        assert files[rel] == (ROOT / rel).read_text(), f"copy {rel} into torchgrade/instructor/scaffold_files/"


def test_the_scaffolds_graders_read_like_the_repositorys(tmp_path):
    """The rules of tests/test_grader_modules.py: checks first, each with a docstring; one assignment;
    no file cited that a student's copy lacks."""
    import ast

    from test_grader_modules import INSTRUCTOR_ONLY, graded_checks, module_constant

    scaffold.new(tmp_path / "a", assignment_id=ID)
    graders = tmp_path / "a" / "graders"
    tree = ast.parse((graders / "test_classifier.py").read_text())
    checks = graded_checks(tree)
    definitions = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    assert len(checks) == 3 and definitions == checks and all(ast.get_docstring(check) for check in checks)
    assert ast.literal_eval(module_constant(tree, "ASSIGNMENT")) == ID
    for path in graders.glob("*.py"):
        assert INSTRUCTOR_ONLY.findall(path.read_text()) == [], path.name


def test_the_lent_mlp_probe_is_a_relu_mlp_that_leaves_the_random_stream_alone():
    """probes.training.relu_mlp, which the scaffold's Q3 lends when a submitted MLP fails Q2."""
    import torch

    from torchgrade.probes import params, training

    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    model = training.relu_mlp([2, 32, 32, 3], seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert params.count_parameters(model) == 3 * 32 + 33 * 32 + 33 * 3
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    again = training.relu_mlp([2, 32, 32, 3], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    with pytest.raises(ValueError):
        training.relu_mlp([4], seed=0)


# -- e2e: the commands on one scaffold -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scaffold") / "course"
    assert cli.main(["new", str(folder), "--id", ID, "--title", "My first assignment"]) == grading.EXIT_OK
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_check_passes_out_of_the_box(made, isolation, capsys):
    code = cli.main(["--assignment", str(made), "check", str(made), "--isolation", isolation, "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == grading.EXIT_OK, out
    assert "4 ok" in out and "unbiased_variance" in out and "mlp_without_relu" in out


@pytest.mark.slow
def test_grade_gives_the_reference_every_point_and_the_template_none(made, tmp_path):
    report = tmp_path / "reference.json"
    code = cli.main(["--assignment", str(made), "grade", str(made / "reference"), "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == grading.EXIT_OK and data["score"] == data["max_score"] == 8 and data["pending_max_score"] == 2
    template = tmp_path / "template.json"
    args = ["grade", str(made / "student_template"), "--report", str(template), "--isolation", "none"]
    assert cli.main(["--assignment", str(made), *args]) == grading.EXIT_FAILED
    assert json.loads(template.read_text())["score"] == 0
    results = tmp_path / "results.json"
    assert cli.main(["export", "gradescope", str(report), "--out", str(results)]) == grading.EXIT_OK
    exported = json.loads(results.read_text())
    assert sum(t.get("score", 0) for t in exported["tests"]) == exported["score"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("profile", release.PROFILES)
def test_release_holds_no_reference_code(made, tmp_path, profile):
    out = tmp_path / profile
    code = cli.main(["--assignment", str(made), "release", "--out", str(out), "--profile", profile])
    assert code == grading.EXIT_OK
    paths = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "student_template/classifier.py" in paths and "graders/test_classifier.py" in paths
    instructor_only = ("reference/", "benchmarks/", "fixtures/submissions/", "fixtures/variants/")
    assert not any(p.startswith(instructor_only) for p in paths)
    assert release.find_leaks(out, reference_dir=made / "reference", template_dir=made / "student_template") == []
    (wheel,) = out.glob(f"{release.WHEELS_DIR}/*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not [name for name in archive.namelist() if scaffold.FILES in name]  # they hold a reference


@pytest.mark.slow
def test_batch_grades_two_submissions_into_a_gradebook(made, tmp_path):
    subs = tmp_path / "submissions"
    for name, folder in (("alice", "reference"), ("bob", "student_template")):
        (subs / name).mkdir(parents=True)
        (subs / name / "classifier.py").write_text((made / folder / "classifier.py").read_text())
    out = tmp_path / "graded"
    code = cli.main(["--assignment", str(made), "batch", str(subs), "--out", str(out), "--jobs", "2", "--no-progress"])
    assert code in (grading.EXIT_OK, grading.EXIT_FAILED)
    with open(out / "gradebook.csv", newline="") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    assert float(rows["alice"]["total"]) == 8 and float(rows["bob"]["total"]) == 0
    assert float(rows["alice"]["max"]) == float(rows["bob"]["max"]) == 8
