"""The CI templates of ``ci/``, as far as they can be tested without the platforms: the workflow files
parse and call torchgrade commands that exist, with the torch pin of pyproject.toml, on files a
student release has; each platform's reading of what the template prints is simulated as the platform
documents (and codes) it: GitLab's coverage regex over a job log, GitHub Classroom's reporter over the
runner result the workflow writes, Gradescope's ``/autograder`` folder (one upload a repository, one
two notebooks) with a results.json that matches Gradescope's schema."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import nbformat
import pytest

from fixtures import samples
from fixtures.notebooks import colab
from torchgrade.instructor import cli, release
from torchgrade.reporting import export

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "ci"
CI_SCRIPT = CI / "gradescope" / "run_autograder"
TORCH_PIN = next(
    d
    for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if d.startswith("torch>=")
)


def load_yaml(path: Path) -> dict:
    import yaml  # PyYAML: the "test" extra of pyproject.toml

    return yaml.safe_load(path.read_text())


def github_steps() -> list[dict]:
    workflow = load_yaml(CI / "github-classroom.yml")
    # YAML 1.1 reads `on` as True; repository_dispatch: Classroom's own trigger for a rerun of the tests.
    assert workflow.get("on", workflow.get(True)) == ["push", "workflow_dispatch", "repository_dispatch"]
    return workflow["jobs"]["run-autograding-tests"]["steps"]


def github_commands() -> list[str]:
    return [step["run"] for step in github_steps() if "run" in step]


def gitlab_commands() -> list[str]:
    return load_yaml(CI / "gitlab-ci.yml")["grade"]["script"]


def command_lines(scripts: list[str]) -> list[list[str]]:
    """Every simple command of the scripts, split like a shell would (operators and comments dropped)."""
    commands = []
    for script in scripts:
        heredoc = None
        for line in script.splitlines():
            if heredoc is not None:  # a here-document's body is another program's input: not commands
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            if found := re.search(r"<<-?'?(\w+)'?", line):
                heredoc = found.group(1)
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
    assert load_yaml(tmp_path / "out" / ".github" / "workflows" / "grade.yml")["jobs"]["run-autograding-tests"]["steps"]
    assert load_yaml(tmp_path / "out" / ".gitlab-ci.yml")["grade"]["script"]
    assert (tmp_path / "out" / "requirements.txt").is_file() and (tmp_path / "out" / "student_template").is_dir()
    assert TORCH_PIN in (tmp_path / "out" / "requirements.txt").read_text().splitlines()


def gitlab_coverage(pattern: str, log: str, *, whole_match: bool = False) -> str | None:
    """The coverage GitLab records from a job log, as ``extract_coverage`` of GitLab's
    lib/gitlab/ci/trace/stream.rb codes the rule of https://docs.gitlab.com/ci/yaml/#coverage: the log
    from its last line up; on the first line the regex matches, its matches flattened (the capture
    groups when it has any, else the whole match) and the last taken; the first number of that
    fragment. ``whole_match``: the docs' wording read literally (the first number of the whole
    matched text), which a template must survive too."""
    regex = re.compile(pattern[1:-1])
    for line in reversed(log.splitlines()):
        matches = list(regex.finditer(line))
        if not matches:
            continue
        last = matches[-1]
        fragment = last.group(0) if whole_match or not regex.groups else last.groups()[-1]
        number = re.search(r"\d+(\.\d+)?", fragment or "")
        if number:
            return number.group(0)
    return None


def test_gitlab_coverage_records_the_percentage_as_gitlab_reads_the_job_log(tmp_path):
    """The job's log as GitLab keeps it (the runner echoes each command with ``$``, the score table,
    the job's failure at the end), made by the template's own commands; GitLab's reading of it gives
    the percentage of auto-graded points, not the points (``torchgrade score: 4 / 27 (14.81%)``)."""
    job = load_yaml(CI / "gitlab-ci.yml")["grade"]
    pattern = job["coverage"]
    assert pattern.startswith("/") and pattern.endswith("/")
    assert not re.search(r"\(\?<?[=!]|\\K", pattern), "RE2 (GitLab's engine) has no look-around"
    data = {"questions": [], "checks": [], "score": 4, "max_score": 27, "pending_max_score": 0, "harness_errors": 0}
    (tmp_path / "torchgrade-summary.md").write_text(export.to_markdown(data))
    assert "torchgrade score: 4 / 27 (14.81%)" in export.to_markdown(data)
    log = ["$ python -m pip install -r requirements.txt", "Successfully installed torchgrade-1.0 (100%)"]
    for command in job["script"][job["script"].index("cat torchgrade-summary.md") :]:
        if command.startswith("exit"):
            continue
        log.append(f"$ {command.strip()}")
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True)
        log += done.stdout.splitlines()
    log += ["Uploading artifacts for failed job", "ERROR: Job failed: exit code 1"]
    text = "\n".join(log)
    assert gitlab_coverage(pattern, text) == "14.81"
    assert gitlab_coverage(pattern, text, whole_match=True) == "14.81"
    # The old regex, read literally, recorded the points: what this test exists to catch.
    assert gitlab_coverage(r"/torchgrade score: .* \((\d+(?:\.\d+)?)%\)/", text, whole_match=True) == "4"
    (tmp_path / "torchgrade-summary.md").write_text(export.to_markdown({**data, "score": 27}))
    line = subprocess.run(["bash", "-c", job["script"][-2]], cwd=tmp_path, capture_output=True, text=True).stdout
    assert gitlab_coverage(pattern, line) == "100.00"


#: Two checks of a report, as ``torchgrade grade --report`` writes them (the fields the workflow reads).
REPORT = {
    "score": 3.5,
    "max_score": 6,
    "checks": [
        {
            "id": "graders/test_answers.py::test_conv1d_forward",
            "assignment": "shoes",
            "question": "Q2a",
            "points": 1.5,
            "max_points": 4.0,
            "outcome": "failed",
            "message": "1 of 2 parts failed\n[details]",
        },
        {
            "id": "graders/test_answers.py::test_receptive_field_1d",
            "assignment": "shoes",
            "question": "Q2d",
            "points": 2.0,
            "max_points": 2.0,
            "outcome": "passed",
            "message": "",
        },
    ],
}


CLASSROOM_REPORTER = "classroom-resources/autograding-grading-reporter@"


def classroom_reporter_points(steps: list[dict], github_output: str) -> tuple[dict, float, float]:
    """What classroom-resources/autograding-grading-reporter reads: for each id of its ``runners``
    input, the environment variable ``<ID in capitals>_RESULTS`` holding the runner step's ``result``
    output, base64 of JSON (src/main.js, parseRunnerResults); the points it reports to Classroom are
    the tests' ``score`` summed over the runners' ``max_score`` (src/notify-classroom.js)."""
    reporter = next(s for s in steps if s.get("uses", "").startswith(CLASSROOM_REPORTER))
    outputs = dict(line.split("=", 1) for line in github_output.splitlines() if "=" in line)
    total = maximum = 0.0
    results = {}
    for runner in reporter["with"]["runners"].split(","):
        reference = reporter["env"][f"{runner.strip().upper()}_RESULTS"]
        step = next(s for s in steps if s.get("id") == runner.strip())
        assert reference.replace(" ", "") == "${{steps." + step["id"] + ".outputs.result}}"
        results = json.loads(base64.b64decode(outputs["result"]).decode("utf-8"))
        if results["max_score"]:
            maximum += results["max_score"]
            total += sum(test["score"] for test in results["tests"])
    return results, total, maximum


@pytest.mark.parametrize("graded", [True, False], ids=["report", "no-report"])
def test_github_classroom_reporter_gets_the_reports_points(tmp_path, graded):
    steps = github_steps()
    runner = next(s for s in steps if s.get("id") == "torchgrade")
    if graded:
        (tmp_path / "torchgrade-report.json").write_text(json.dumps(REPORT))
    env = {**os.environ, "GITHUB_OUTPUT": str(tmp_path / "github-output")}
    subprocess.run(["bash", "-e", "-c", runner["run"]], cwd=tmp_path, env=env, check=True)
    results, total, maximum = classroom_reporter_points(steps, (tmp_path / "github-output").read_text())
    if graded:
        assert (total, maximum) == (3.5, 6)  # partial points kept, as the report has them
        assert results["status"] == "fail"
        assert [(t["name"], t["status"], t["score"]) for t in results["tests"]] == [
            ("shoes Q2a: test_conv1d_forward", "fail", 1.5),
            ("shoes Q2d: test_receptive_field_1d", "pass", 2.0),
        ]
        assert results["tests"][0]["message"] == "1 of 2 parts failed"
    else:
        assert (results["status"], maximum) == ("error", 0)  # the reporter fails the job, reports no points
        assert "no report" in results["tests"][0]["message"]


def test_github_workflow_is_what_classroom_reads_on_current_actions():
    workflow = load_yaml(CI / "github-classroom.yml")
    assert workflow["name"] == "Autograding Tests" and list(workflow["jobs"]) == ["run-autograding-tests"]
    job = workflow["jobs"]["run-autograding-tests"]
    assert job["if"] == "github.actor != 'github-classroom[bot]'"
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    uses = {step["uses"].split("@")[0]: step["uses"].split("@")[1] for step in job["steps"] if "uses" in step}
    # The first majors on Node 24 (the runners' default since June 2026, Node 20 removed).
    node24 = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6}
    for action, major in node24.items():
        assert int(uses[action].lstrip("v")) >= major, f"{action}@{uses[action]} runs on Node 20"
    names = [step.get("name", step.get("uses")) for step in job["steps"]]
    runs = [step.get("run", "") for step in job["steps"]]
    sysctl = next(i for i, run in enumerate(runs) if "kernel.apparmor_restrict_unprivileged_userns=0" in run)
    grade = next(i for i, run in enumerate(runs) if "torchgrade grade" in run)
    assert sysctl < grade, names
    assert names[-2:] == ["Autograding Reporter", "Keep the report"]
    assert all(step.get("if") == "always()" for step in job["steps"][grade + 1 :])


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


def simulated_autograder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A temp folder laid out like /autograder, its source/ from ``release --profile gradescope`` cut
    down to graders/test_answers.py and one hidden check, and the environment that points the scripts
    at it and at this venv."""
    root = tmp_path / "autograder"
    release.release(root / "source", assignment=ROOT, profile="gradescope")
    for grader in (root / "source" / "graders").glob("test_*.py"):
        if grader.name != "test_answers.py":
            grader.unlink()
    (root / "source" / "graders" / "hidden").mkdir(exist_ok=True)
    (root / "source" / "graders" / "hidden" / "test_answers_hidden.py").write_text(textwrap.dedent(HIDDEN_GRADER))
    (root / "submission").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "CI", "TORCHGRADE_NOTEBOOK")},
        "AUTOGRADER_ROOT": str(root),
        "TORCHGRADE_SKIP_INSTALL": "1",
        "TORCHGRADE_PYTHON": sys.executable,
    }
    return root, env


def test_gradescope_autograder_in_a_simulated_autograder_folder(tmp_path):
    """setup.sh and run_autograder against a temp folder laid out like /autograder, with this venv
    (TORCHGRADE_SKIP_INSTALL=1). The zip's content comes from ``release --profile gradescope``, cut
    down to graders/test_answers.py and one hidden check so that grading takes seconds; the student
    uploaded a whole repository, with the modules in student_template/."""
    root, env = simulated_autograder(tmp_path)
    sample = samples.materialise(samples.load("rf_off_by_one"), tmp_path)
    shutil.copytree(sample, root / "submission" / "student_template", dirs_exist_ok=True)

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


def test_gradescope_upload_of_two_notebooks_grades_the_newest_and_says_so(tmp_path):
    """An upload of two notebooks and no module (a draft kept beside the final one): the newest is
    graded, whichever name sorts first, and the log names it; TORCHGRADE_NOTEBOOK picks another."""
    root, env = simulated_autograder(tmp_path)
    final = colab.write_notebook(root / "submission", name="final.ipynb")  # the reference's code
    draft = root / "submission" / "a_draft.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), draft)
    os.utime(draft, (final.stat().st_mtime - 3600,) * 2)
    run = subprocess.run(
        [str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "grading the notebook final.ipynb: the newest of 2 notebooks" in run.stdout
    data = json.loads((root / "results" / "torchgrade-report.json").read_text())
    assert data["submission"] == str(final)
    assert data["score"] == data["max_score"] > 0  # the reference: every point, the hidden check included
    results = json.loads((root / "results" / "results.json").read_text())
    export.validate_gradescope(results)
    assert results["output"].startswith(  # what the student sees (stdout is the instructor's)
        "Graded the notebook final.ipynb: the newest of 2 notebooks, by modification time.\nVisible checks: "
    )

    picked = subprocess.run(
        ["bash", "-c", 'source <(sed -n "/^shopt -s nullglob/,/^fi$/p" "$0"); echo "$SUBMISSION"', str(CI_SCRIPT)],
        env={**env, "SUBMISSION": str(root / "submission"), "NOTEBOOK": "a_draft.ipynb"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert picked.stdout.splitlines() == [
        "run_autograder: grading the notebook a_draft.ipynb: TORCHGRADE_NOTEBOOK=a_draft.ipynb",
        str(draft),
    ]


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


def test_the_grading_log_says_which_sandbox_tier_ran_and_why(monkeypatch):
    """A CI machine where user namespaces are restricted (GitHub's ubuntu-24.04 runners without the
    sysctl step): bwrap and unshare fail their test start with what they print there; the report's
    sandbox line, which the score table prints, names the tier that ran, why not the stronger ones,
    and the documented fix."""
    from torchgrade.isolation import sandbox

    fake = Path(tempfile.mkdtemp(prefix="torchgrade-fake-userns-"))  # in /tmp: `nobody` runs them too
    try:
        fake.chmod(0o755)
        for name, said in (
            ("bwrap", "bwrap: setting up uid map: Permission denied"),
            ("unshare", "unshare: write failed /proc/self/uid_map: Operation not permitted"),
        ):
            (fake / name).write_text(f'#!/bin/sh\necho "{said}" >&2\nexit 1\n')
            (fake / name).chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("TORCHGRADE_SANDBOX", "auto")
        monkeypatch.setattr(sandbox, "bwrap_executable", lambda: fake / "bwrap")
        sandbox.available.cache_clear()
        sandbox.choose.cache_clear()
        lines = sandbox.choose().protections()
    finally:
        sandbox.available.cache_clear()
        sandbox.choose.cache_clear()
        shutil.rmtree(fake, ignore_errors=True)
    assert lines[0] == "sandbox: rlimits"
    shown = "; ".join(lines[:1] + lines[2:])  # the score table's sandbox line (torchgrade/reporting/table.py)
    assert shown.startswith(
        "sandbox: rlimits; why: bubblewrap does not work here (bwrap: setting up uid map: Permission denied); "
        "unshare does not work here (unshare: write failed /proc/self/uid_map: Operation not permitted)"
    )
    assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in shown
