"""``torchgrade check``: the verdict rules on hand-built reports, and one run of the command on a copy
of this assignment with a sample whose TOML file is wrong, which must come out as a mismatch. Also the
wiring of the sample engine (torchgrade.instructor.samples) under ``torchgrade demo`` and ``check``,
and its choice of the graders that grade a buggy sample."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
import types
from pathlib import Path

import pytest

from torchgrade.instructor import check, cli, grading, samples

ROOT = Path(__file__).resolve().parents[1]


def graded(
    lost: dict[str, float], *, kept: dict[str, float] | None = None, manual: tuple[str, ...] = ("Q9",), errors: int = 0
) -> dict:
    """A report's JSON with the given points lost (and kept, of questions that lost nothing)."""
    questions = [
        {"assignment": "shoes", "id": q, "score": 2 - p, "max_score": 2, "manual": False, "status": "graded"}
        for q, p in lost.items()
    ]
    questions += [
        {"assignment": "shoes", "id": q, "score": p, "max_score": p, "manual": False, "status": "graded"}
        for q, p in (kept or {}).items()
    ]
    questions += [
        {"assignment": "shoes", "id": q, "score": None, "max_score": 1, "manual": True, "status": "pending"}
        for q in manual
    ]
    score = sum(q["score"] for q in questions if not q["manual"])
    checks = [
        {"id": f"graders/t.py::test_{q['id']}", "outcome": "passed" if q["score"] == q["max_score"] else "failed"}
        for q in questions
        if not q["manual"]
    ]
    return {
        "score": score,
        "max_score": sum(q["max_score"] for q in questions if not q["manual"]),
        "harness_errors": errors,
        "questions": questions,
        "checks": checks,
    }


def test_a_bug_must_lose_exactly_its_points_on_the_graded_questions():
    assert check.judge("bug", {"Q2d": 2}, graded({"Q2d": 2}, kept={"Q2a": 2})) == (check.OK, "Q2d 2", "Q2d 2")
    assert check.judge("bug", {"Q2d": 2}, graded({"Q2d": 1}))[0] == check.MISMATCH
    assert check.judge("bug", {"Q2d": 2}, graded({"Q2d": 2, "Q2a": 1})) == (check.MISMATCH, "Q2d 2", "Q2d 2, Q2a 1")
    assert check.judge("bug", {}, graded({}, kept={"Q2a": 2}))[0] == check.OK  # a bug that must cost nothing


def test_a_selection_narrows_the_expectation_and_never_passes_an_ungraded_bug():
    status, expected, got = check.judge("bug", {"Q3b": 2, "Q3d": 1}, graded({"Q3d": 1}, kept={"Q2a": 2}))
    assert (status, expected, got) == (check.OK, "Q3d 1 (of Q3b 2, Q3d 1)", "Q3d 1")
    assert check.judge("bug", {"Q4b": 2}, graded({}, kept={"Q2a": 2})) == (
        check.NOT_SELECTED,
        "Q4b 2",
        "its questions were not graded",
    )


def test_reference_template_and_errors():
    assert check.judge("reference", {}, graded({}, kept={"Q2a": 2}))[0] == check.OK
    assert check.judge("reference", {}, graded({"Q2a": 1}))[0] == check.MISMATCH
    assert check.judge("template", None, graded({"Q2a": 2, "Q2d": 2})) == (check.OK, "everything (4)", "everything (4)")
    assert check.judge("template", None, graded({"Q2a": 2}, kept={"Q2d": 2}))[0] == check.MISMATCH
    assert check.judge("bug", {"Q2d": 2}, None)[0] == check.ERROR
    assert check.judge("bug", {"Q2d": 2}, graded({"Q2d": 2}, errors=1))[0] == check.ERROR


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([check.OK, check.NOT_SELECTED], grading.EXIT_OK),
        ([check.OK, check.MISMATCH], grading.EXIT_FAILED),
        ([check.MISMATCH, check.ERROR], grading.EXIT_INTERNAL),
    ],
)
def test_exit_code(statuses, code):
    assert check.exit_code([check.SampleVerdict("s", status, "", "", 0.0) for status in statuses]) == code


#: The off-by-one receptive field of fixtures/submissions/rf_off_by_one.toml, with the wrong question.
WRONG_CLAIM = """
description = "rf_off_by_one's bug, but its TOML file blames the wrong question"

[lost]
Q2a = 2

[[edit]]
file = "answers.py"
old = "    return 1 + (n_layers - 1) * (kernel_size - 1)\\n"
new = "    return 1 + n_layers * (kernel_size - 1)\\n"
"""
STALE_EDIT = """
description = "an edit of code the reference no longer has"

[lost]
Q2a = 2

[[edit]]
file = "answers.py"
old = "this line is not in the reference\\n"
new = "x\\n"
"""


@pytest.fixture(scope="module")
def assignment_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This assignment with one grader module (and the private helper modules) and two extra samples: one
    mis-described, one stale."""
    root = tmp_path_factory.mktemp("check") / "assignment"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("reference", "student_template", "fixtures"):
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    (root / "graders").mkdir()
    for path in [ROOT / "graders" / "conftest.py", ROOT / "graders" / "test_answers.py"]:
        shutil.copy2(path, root / "graders" / path.name)
    for path in (ROOT / "graders").glob("_*.py"):  # the graders' private helper modules
        shutil.copy2(path, root / "graders" / path.name)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "fixtures" / "submissions" / "wrong_claim.toml").write_text(textwrap.dedent(WRONG_CLAIM))
    (root / "fixtures" / "submissions" / "stale_edit.toml").write_text(textwrap.dedent(STALE_EDIT))
    return root


def test_check_command_prints_a_table_and_fails_on_a_mismatch(assignment_copy, tmp_path, capsys):
    """Three gradings of two checks each (about 10 s): the reference, the template, wrong_claim."""
    code = cli.main(
        [
            "check",
            str(assignment_copy),
            "--samples",
            "reference",
            "template",
            "wrong_claim",
            "stale_edit",
            "-k",
            "receptive_field_1d or conv1d_forward",
            "--reports",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == grading.EXIT_FAILED, out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("torchgrade")}
    assert out.splitlines()[0] == check.HEADER
    assert rows["reference"].split()[1] == check.OK
    assert rows["template"].split()[1:4] == [check.OK, "everything", "(4)"]
    assert rows["wrong_claim"].split()[1:6] == [check.MISMATCH, "Q2a", "2", "Q2d", "2"]
    assert rows["stale_edit"].split()[1] == check.MISMATCH and "its edit no longer applies" in rows["stale_edit"]
    assert out.splitlines()[-1] == "torchgrade check: 2 ok, 2 MISMATCH (exit 1)"
    kept = json.loads((tmp_path / "wrong_claim.json").read_text())
    assert check.lost_points(kept) == {"Q2d": 2}
    assert "receptive_field_1d" in (tmp_path / "wrong_claim.log").read_text()  # pytest's output, out of the table


def test_unknown_sample_or_folder_is_a_usage_error(assignment_copy, tmp_path, capsys):
    assert cli.main(["check", str(assignment_copy), "--samples", "no_such_bug"]) == grading.EXIT_USAGE
    assert "no sample called 'no_such_bug'; choose from reference, template," in capsys.readouterr().err
    assert cli.main(["check", str(tmp_path)]) == grading.EXIT_USAGE
    assert "it has no graders/ folder" in capsys.readouterr().err


@pytest.mark.parametrize("fresh", [False, True])
def test_demo_shares_training_runs_between_samples_unless_fresh(monkeypatch, capsys, fresh):
    """The demo's wiring, with grading replaced: every sample of the selection is graded once, in
    order, all with one grade cache (or none with --fresh), and the summary lists each score."""
    calls = []

    def fake_grade(folder, *, assignment, isolation, report, extra_args=(), **options):
        calls.append((folder.name, isolation, extra_args))
        return grading.EXIT_OK, {"score": 1, "max_score": 2}

    monkeypatch.setattr(grading, "grade", fake_grade)
    argv = ["--assignment", str(ROOT), "demo"] + (["--fresh"] if fresh else [])
    assert cli.main(argv) == grading.EXIT_OK
    out = capsys.readouterr().out
    assert [name for name, _, _ in calls] == list(cli.DEMO_SAMPLES)
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("### ")][:-1] == [
        f"### {name}" for name in cli.DEMO_SAMPLES
    ]
    assert {isolation for _, isolation, _ in calls} == {"process"}
    caches = {extra for _, _, extra in calls}
    assert len(caches) == 1
    (extra,) = caches
    assert extra == () if fresh else extra[0] == "--grade-cache"
    assert (cli.DEMO_SHARED in out) != fresh
    assert out.splitlines()[-1].split() == [cli.DEMO_SAMPLES[-1], "1", "/", "2"]


def test_check_grades_side_by_side_with_one_cache_and_prints_rows_in_order(monkeypatch, capsys, tmp_path):
    """``check --jobs 2``, with grading replaced: the reference first and alone (its training runs fill
    the cache), then the rest two at a time on one torch thread each; rows in the samples' order."""
    calls, running, most = [], [], []

    def fake_grade(folder, *, assignment, isolation, report, extra_args=(), extra_env=None, **options):
        running.append(folder.name)
        most.append((folder.name, len(running)))
        time.sleep(0.05 if folder.name == "reference" else 0.2 if folder.name == "template" else 0.01)
        calls.append((folder.name, extra_args, extra_env))
        running.remove(folder.name)
        lost = {"reference": {}, "template": None}.get(folder.name, {"Q2a": 2})
        questions = [{"id": "Q2a", "manual": False, "max_score": 2, "score": 0 if lost is None or lost else 2}]
        checks = [{"outcome": "passed" if questions[0]["score"] == 2 else "failed"}]
        data = {"score": questions[0]["score"], "max_score": 2, "harness_errors": 0}
        return grading.EXIT_OK, data | {"questions": questions, "checks": checks}

    monkeypatch.setattr(grading, "grade", fake_grade)
    names = ["template", "reference", "rf_off_by_one"]
    argv = ["check", str(ROOT), "--samples", *names, "--jobs", "2", "-k", "answers", "--reports", str(tmp_path)]
    cli.main(argv)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == names
    assert calls[0][0] == "reference" and dict(most)["reference"] == 1
    assert max(n for _, n in most) == 2  # template and rf_off_by_one side by side
    assert len({extra_args[1] for _, extra_args, _ in calls}) == 1  # one shared cache
    assert all(extra_args[2:] == ("-k", "(answers)") for _, extra_args, _ in calls)
    assert all(env == {"OMP_NUM_THREADS": "1"} for _, _, env in calls)


def test_check_trains_afresh_with_fresh_and_refuses_zero_jobs(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(grading, "grade", lambda folder, **options: calls.append(options) or (3, None))
    assert cli.main(["check", str(ROOT), "--samples", "reference", "--fresh", "--jobs", "1"]) == grading.EXIT_INTERNAL
    assert calls[0]["extra_args"] == () and calls[0]["extra_env"] == {}
    assert cli.main(["check", str(ROOT), "--jobs", "0"]) == grading.EXIT_USAGE
    assert "--jobs must be at least 1 (got 0)" in capsys.readouterr().err


# -- which graders grade a sample --------------------------------------------------------------------
def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_a_sample_is_graded_by_the_modules_that_mention_what_it_edits_or_import_a_helper_that_does(tmp_path):
    """A grader module is selected when it, or a private module it imports (directly or through
    another), mentions a public name of an edited module; private names of that module do not count."""
    base = write(
        tmp_path / "reference", {"gnn.py": "def GAT(): ...\ndef _helper(): ...\n", "unet.py": "class UNet: ..."}
    )
    graders = write(
        tmp_path / "graders",
        {
            "conftest.py": "GAT = None\n",
            "_gat.py": "from _common import x\n",
            "_common.py": "def x(sub):\n    return sub.GAT\n",
            "_helper_only.py": "def _helper(): ...\n",
            "test_gat_direct.py": "def test_it(sub):\n    sub.GAT()\n",
            "test_gat_helper.py": "from _gat import x\n",
            "test_gat_package.py": "from graders import _common\n",
            "test_unet.py": "def test_it(sub):\n    sub.UNet()  # not GATE, not GATs\n",
            "test_private.py": "import _helper_only\n",
        },
    )
    sample = types.SimpleNamespace(edits=(("gnn.py", "old", "new"),), base=base)
    assert samples.graders_for(sample, graders) == "test_gat_direct.py or test_gat_helper.py or test_gat_package.py"
    unet = types.SimpleNamespace(edits=(("unet.py", "a", "b"),), base=base)
    assert samples.graders_for(unet, graders) == "test_unet.py"
    conftest_only = types.SimpleNamespace(edits=(("conftest.py", "", "x = 1\n"),), base=base)
    assert samples.graders_for(conftest_only, graders) is None
