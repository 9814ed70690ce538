"""The CI templates of ``ci/``, as far as they can be tested without the platforms: the workflow files
parse and call torchgrade commands that exist, with the torch pin of pyproject.toml, on files a
student release has; the Gradescope autograder runs in a simulated ``/autograder`` and writes a
results.json that matches Gradescope's schema."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from fixtures import samples
from torchgrade.instructor import cli, release
from torchgrade.reporting import export

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "ci"
TORCH_PIN = next(
    d
    for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if d.startswith("torch>=")
)


def load_yaml(path: Path) -> dict:
    import yaml  # PyYAML: the "test" extra of pyproject.toml

    return yaml.safe_load(path.read_text())


def github_commands() -> list[str]:
    workflow = load_yaml(CI / "github-classroom.yml")
    assert workflow.get("on", workflow.get(True)) == ["push", "workflow_dispatch"]  # YAML 1.1 reads `on` as True
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def gitlab_commands() -> list[str]:
    return load_yaml(CI / "gitlab-ci.yml")["grade"]["script"]


def command_lines(scripts: list[str]) -> list[list[str]]:
    """Every simple command of the scripts, split like a shell would (operators and comments dropped)."""
    commands = []
    for script in scripts:
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            current: list[str] = []
            for token in [*lexer, ";"]:
                if token in (";", "||", "&&", "|", ">", ">>"):
                    commands.append(current) if current else None
                    current = []
                else:
                    current.append(token)
    return commands


@pytest.mark.parametrize("platform", ["github", "gitlab"])
def test_workflow_calls_existing_torchgrade_commands_with_the_pinned_torch(platform):
    commands = command_lines(github_commands() if platform == "github" else gitlab_commands())
    torchgrade = [c[1:] for c in commands if c[0] == "torchgrade"]
    assert [c[0] for c in torchgrade] == ["grade", "export"], torchgrade
    for argv in torchgrade:
        args = cli.build_parser().parse_args(argv)  # exits (fails the test) on an unknown command or option
        assert args.func.__name__ in ("_cmd_grade", "_cmd_export")
    grade = cli.build_parser().parse_args(torchgrade[0])
    assert (grade.isolation, grade.submission) == ("process", Path("student_template"))
    installs = [c for c in commands if c[:4] == ["python", "-m", "pip", "install"]]
    assert installs[0][4:] == [TORCH_PIN, "--index-url", release.TORCH_CPU_INDEX]
    assert installs[1][4:] == ["-r", "requirements.txt"]


def test_workflows_land_where_the_platforms_look_and_find_their_files(tmp_path):
    release.release(tmp_path / "out", assignment=ROOT, ci=("github", "gitlab"))
    assert load_yaml(tmp_path / "out" / ".github" / "workflows" / "grade.yml")["jobs"]["grade"]["steps"]
    assert load_yaml(tmp_path / "out" / ".gitlab-ci.yml")["grade"]["script"]
    assert (tmp_path / "out" / "requirements.txt").is_file() and (tmp_path / "out" / "student_template").is_dir()
    assert TORCH_PIN in (tmp_path / "out" / "requirements.txt").read_text().splitlines()


def test_gitlab_coverage_regex_reads_the_score_of_the_markdown_export():
    pattern = load_yaml(CI / "gitlab-ci.yml")["grade"]["coverage"]
    assert pattern.startswith("/") and pattern.endswith("/")
    data = {"questions": [], "checks": [], "score": 17, "max_score": 22, "pending_max_score": 0, "harness_errors": 0}
    match = re.search(pattern[1:-1], export.to_markdown(data), re.MULTILINE)
    assert match and float(match.group(1)) == pytest.approx(100 * 17 / 22, abs=0.01)


def test_gradescope_scripts_are_executable_bash_with_the_torch_pin():
    for name in ("setup.sh", "run_autograder"):
        script = CI / "gradescope" / name
        assert os.access(script, os.X_OK), f"{script} must be executable: Gradescope runs it as a program"
        assert script.read_text().startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert f'TORCH_REQUIREMENT="{TORCH_PIN}"' in (CI / "gradescope" / "setup.sh").read_text()


#: A hidden check, as an instructor adds them: in graders/hidden/, shipped in the autograder only.
#: The reference gives 3; the off-by-one sample 5.
HIDDEN_GRADER = """
import pytest

ASSIGNMENT = "shoes"


@pytest.mark.points(1, question="Q2d")
def test_receptive_field_of_two_layers(sub):
    got = sub.receptive_field_1d(3, 2)
    assert got == 3, f"receptive_field_1d(3, 2) returned {got}; expected 3."
"""


def test_gradescope_autograder_in_a_simulated_autograder_folder(tmp_path):
    """setup.sh and run_autograder against a temp folder laid out like /autograder, with this venv
    (TORCHGRADE_SKIP_INSTALL=1). The zip's content comes from ``release --profile gradescope``, cut
    down to graders/test_answers.py and one hidden check so that grading takes seconds; the student
    uploaded a whole repository, with the modules in student_template/."""
    root = tmp_path / "autograder"
    release.release(root / "source", assignment=ROOT, profile="gradescope")
    for grader in (root / "source" / "graders").glob("test_*.py"):
        if grader.name != "test_answers.py":
            grader.unlink()
    (root / "source" / "graders" / "hidden").mkdir(exist_ok=True)
    (root / "source" / "graders" / "hidden" / "test_answers_hidden.py").write_text(textwrap.dedent(HIDDEN_GRADER))
    sample = samples.materialise(samples.load("rf_off_by_one"), tmp_path)
    shutil.copytree(sample, root / "submission" / "student_template")
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "CI")},
        "AUTOGRADER_ROOT": str(root),
        "TORCHGRADE_SKIP_INSTALL": "1",
        "TORCHGRADE_PYTHON": sys.executable,
    }

    setup = subprocess.run(
        ["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert setup.returncode == 0 and setup.stdout.startswith("torchgrade "), setup.stdout + setup.stderr
    run = subprocess.run(
        [str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    results = json.loads((root / "results" / "results.json").read_text())
    export.validate_gradescope(results)
    data = json.loads((root / "results" / "torchgrade-report.json").read_text())
    assert data["isolation"] == "process" and data["submission"] == str(root / "submission" / "student_template")
    assert results["score"] == data["score"] == data["max_score"] - 3  # Q2d: 2 visible points, 1 hidden
    tests = {t["name"]: t for t in results["tests"]}
    hidden = tests["shoes Q2d: test_receptive_field_of_two_layers"]
    assert (hidden["score"], hidden["visibility"], hidden["status"]) == (0, "after_published", "failed")
    assert hidden["output"].startswith("receptive_field_1d(3, 2) returned 5; expected 3.")
    assert tests["shoes Q2d: test_receptive_field_1d"]["visibility"] == "visible"
    assert "torchgrade: " in run.stdout  # the score table, for the instructor's eyes (stdout_visibility hidden)


def test_gradescope_autograder_without_a_report_fails_loudly(tmp_path):
    """No graders to run: no report, no results.json, and a non-zero exit instead of a made-up zero."""
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TORCHGRADE_PYTHON": sys.executable}
    run = subprocess.run(
        [str(CI / "gradescope" / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 3
    assert "no report was written" in run.stderr
    assert not (root / "results" / "results.json").exists()
