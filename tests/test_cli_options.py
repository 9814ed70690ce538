"""The ``torchgrade`` command line as a student or an instructor types it: ``--assignment`` before or
after the subcommand, and ``grade --help`` describes every option (issue 19)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from torchgrade.instructor import batch, cli, grading

ROOT = Path(__file__).resolve().parents[1]


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--assignment", "{root}", "grade", "{sub}"],
        ["grade", "{sub}", "--assignment", "{root}"],
        ["grade", "--assignment", "{root}", "{sub}"],
    ],
    ids=["before", "after", "between"],
)
def test_grade_takes_the_assignment_before_or_after_the_subcommand(monkeypatch, tmp_path, argv):
    calls = []
    monkeypatch.setattr(cli, "grade", lambda folder, **options: calls.append(options) or (0, None))
    argv = [a.format(root=ROOT, sub=tmp_path) for a in argv]
    assert cli.main(argv) == grading.EXIT_OK
    assert Path(calls[0]["assignment"]).resolve() == ROOT


def test_the_assignment_after_the_subcommand_wins_and_the_default_is_kept():
    parser = cli.build_parser()
    assert parser.parse_args(["--assignment", "a", "grade", "s", "--assignment", "b"]).assignment == Path("b")
    assert parser.parse_args(["grade", "s"]).assignment == Path.cwd()
    assert parser.parse_args(["export", "markdown", "r.json", "--assignment", "c"]).assignment == Path("c")


def test_every_subcommand_accepts_the_assignment():
    parser = cli.build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        if name == "batch":
            # It parses its own arguments after the subcommand (torchgrade.instructor.batch).
            assert "--assignment" in batch.build_parser()._option_string_actions
            continue
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        leaves = [_subparser(command, leaf) for leaf in nested[0].choices] if nested else [command]
        for leaf in leaves:
            assert "--assignment" in leaf._option_string_actions, name


def test_grade_help_describes_every_option(capsys):
    grade = _subparser(cli.build_parser(), "grade")
    for action in grade._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings or action.dest
    assert cli.main(["grade", "--help"]) == grading.EXIT_OK
    out = capsys.readouterr().out
    for action in grade._actions:
        assert (action.option_strings or [action.dest])[0] in out


def test_batch_takes_the_assignment_after_the_subcommand_too(monkeypatch, tmp_path):
    seen = {}

    def fake_run_batch(submissions, *, assignment, **options):
        seen["assignment"] = assignment
        raise batch.BatchUsageError("stopped by the test")

    monkeypatch.setattr(batch, "run_batch", fake_run_batch)
    monkeypatch.setattr(batch.grading, "only_args", lambda assignment, only: [])
    argv = ["--assignment", "a", "batch", str(tmp_path), "--out", str(tmp_path / "o"), "--assignment", "b"]
    assert cli.main(argv) == grading.EXIT_USAGE
    assert seen["assignment"] == Path("b")
