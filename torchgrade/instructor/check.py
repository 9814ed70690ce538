"""``torchgrade check ASSIGNMENT_DIR``: does an assignment grade its own samples as it should?

Before an assignment goes to students, its graders must give the reference every auto-graded point,
the template none, and each buggy sample of ``fixtures/submissions/`` exactly the points its TOML
file says it loses, no more and no fewer. This grades those samples with the sample engine
(:class:`torchgrade.instructor.samples.SampleGrader`: the real entry point, a fresh pytest process
each, ``jobs`` at a time, training runs of identical code shared unless ``fresh``) and prints one row
per sample, in the samples' order.

A pytest selection (``-k``/``-m``) makes a check cheap, and narrows what it can prove: a sample is
then compared on the questions that the selection graded, and a buggy sample none of whose lost
questions was graded is reported as ``not selected``, never as a pass. Select whole questions (e.g.
``-k answers`` grades every question of ``graders/test_answers.py``): a selection that grades part of
a question can report a mismatch that is only the selection's.

The correct variants of ``fixtures/variants/`` (real student styles that must lose nothing) are graded
when named, one by one or all at once as ``variants`` (``--samples variants``); they are no part of
the default selection.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchgrade import assignments
from torchgrade.instructor import grading
from torchgrade.instructor.samples import SampleGrader, SampleGrading

OK, MISMATCH, NOT_SELECTED, ERROR = "ok", "MISMATCH", "not selected", "ERROR"


@dataclass(frozen=True)
class SampleVerdict:
    """How one sample was graded, against what its description says.

    Attributes:
        name: the sample (``reference``, ``template`` or a bug's TOML stem).
        status: :data:`OK`, :data:`MISMATCH`, :data:`NOT_SELECTED` or :data:`ERROR`.
        expected: what it should lose, in words.
        got: what it lost, in words.
        seconds: how long grading it took.
    """

    name: str
    status: str
    expected: str
    got: str
    seconds: float


def lost_points(data: dict[str, Any]) -> dict[str, float]:
    """Question id -> points lost, for every auto-graded question that lost some."""
    return {
        q["id"]: round(q["max_score"] - q["score"], 6)
        for q in data["questions"]
        if not q["manual"] and q["score"] != q["max_score"]
    }


def judge(name: str, expected_lost: dict[str, float] | None, data: dict[str, Any] | None) -> tuple[str, str, str]:
    """Compare one graded sample with what it should lose.

    Args:
        name: the sample's name (``reference`` must also pass every check).
        expected_lost: question id -> points the sample loses; None: it loses everything (the template).
        data: the report's JSON, or None when grading wrote none.

    Returns:
        (status, expected in words, got in words).
    """
    expected_text = "everything" if expected_lost is None else _points_text(expected_lost)
    if data is None:
        return ERROR, expected_text, "no report (torchgrade error)"
    if data["harness_errors"]:
        return ERROR, expected_text, f"{data['harness_errors']} check(s) hit a torchgrade error"
    lost = lost_points(data)
    if expected_lost is None:
        everything = f"everything ({data['max_score']:g})"
        got = everything if data["score"] == 0 else f"{_points_text(lost)}; kept {data['score']:g}"
        return (OK if data["score"] == 0 else MISMATCH), everything, got
    graded = {q["id"] for q in data["questions"] if not q["manual"]}
    expected = {q: p for q, p in expected_lost.items() if q in graded}
    if expected_lost and not expected:
        return NOT_SELECTED, expected_text, "its questions were not graded"
    if expected != expected_lost:  # say which expectations the selection left out
        expected_text = f"{_points_text(expected)} (of {expected_text})"
    failed_in_reference = name == "reference" and any(c["outcome"] != "passed" for c in data["checks"])
    status = OK if lost == expected and not failed_in_reference else MISMATCH
    return status, expected_text, _points_text(lost)


def _points_text(lost: dict[str, float]) -> str:
    return ", ".join(f"{q} {p:g}" for q, p in lost.items()) if lost else "nothing"


def check_assignment(
    assignment: str | Path,
    *,
    samples: list[str] | None = None,
    isolation: str = "none",
    keyword: str | None = None,
    pytest_args: tuple[str, ...] = (),
    reports: str | Path | None = None,
    verbose: bool = False,
    jobs: int = 1,
    fresh: bool = False,
    progress: Callable[[SampleVerdict], None] = lambda verdict: None,
    only: str | None = None,
) -> list[SampleVerdict]:
    """Grade the samples of an assignment and judge each one.

    Args:
        assignment: the assignment folder (``graders/``, ``fixtures/samples.py``, ``reference/``...).
        samples: sample names; default every sample (reference, template, each buggy sample). A correct
            variant may be named too, and ``variants`` stands for all of them (:func:`expand_names`).
        isolation: ``none`` (the default: the samples are the instructor's own code) or ``process``.
        keyword: only the checks matching this pytest ``-k`` expression.
        pytest_args: extra pytest arguments for every grading (``-m slow``, ``--data-root synthetic``).
        reports: a folder that keeps each sample's report (``<name>.json``) and pytest's output
            (``<name>.log``); default a temporary folder.
        verbose: show pytest's output as it runs instead of writing it to the log.
        jobs: gradings at once (each on one torch thread when more than one).
        fresh: train afresh for every sample instead of sharing the training runs of identical code.
        progress: called with each verdict, in the samples' order, as soon as it and those before it
            are graded.
        only: grade one assignment of the manifest (``--only``): its checks only, and of the samples
            (unless named) those that concern it (:func:`samples_of`).

    Raises:
        TorchgradeError: no such assignment or sample, or fewer than one job.
    """
    verdicts = []
    with (
        tempfile.TemporaryDirectory(prefix="torchgrade-check-") as tmp,
        SampleGrader(
            assignment,
            workdir=Path(tmp),
            isolation=isolation,
            jobs=jobs,
            cache=not fresh,
            keyword=keyword,
            pytest_args=(*grading.only_args(Path(assignment), only), *pytest_args),
            reports=Path(reports) if reports is not None else None,
            logs=not verbose,
        ) as grader,
    ):
        names = expand_names(samples, grader.module) if samples else samples_of(grader, grader.names(), only)
        chosen = [grader.sample(name) for name in names]  # unknown names stop it here
        grader.grade_all([(sample.name, isolation) for sample in chosen])
        for sample in chosen:
            verdict = _verdict(grader.grade(sample.name).result())
            verdicts.append(verdict)
            progress(verdict)
    return verdicts


def samples_of(grader: SampleGrader, names: list[str], only: str | None) -> list[str]:
    """Of ``names``, the samples that concern assignment ``only`` (all of them for None): the reference
    and the template, the buggy samples that lose points of its questions, and the correct variants
    that edit one of its modules."""
    if only is None:
        return names
    assignment = assignments.load(grader.assignment).get(only)
    questions = {q.id for q in assignment.questions}
    modules = {f"{module}.py" for module in assignment.modules}
    kept = []
    for name in names:
        sample = grader.sample(name)
        if sample.lost is None or name == "reference":
            kept.append(name)
        elif sample.lost:
            if set(sample.lost) & questions:
                kept.append(name)
        elif any(Path(file).name in modules for file, _, _ in sample.edits):
            kept.append(name)
    return kept


def expand_names(names: list[str], module: Any) -> list[str]:
    """``names`` with ``variants`` replaced by every correct variant of the samples ``module`` (the
    assignment's ``fixtures/samples.py``; none if it describes no variants), duplicates dropped."""
    expanded = []
    for name in names:
        expanded += getattr(module, "variant_names", list)() if name == "variants" else [name]
    return list(dict.fromkeys(expanded))


def _verdict(graded: SampleGrading) -> SampleVerdict:
    lost = graded.sample.lost
    if graded.problem is not None:
        expected = _points_text(lost) if lost is not None else "everything"
        return SampleVerdict(graded.name, MISMATCH, expected, graded.problem, graded.seconds)
    status, expected, got = judge(graded.name, lost, graded.report)
    return SampleVerdict(graded.name, status, expected, got, graded.seconds)


HEADER = f"{'sample':<28} {'verdict':<13} {'should lose':<34} {'lost':<34} {'time':>6}"


def format_row(verdict: SampleVerdict) -> str:
    return f"{verdict.name:<28} {verdict.status:<13} {verdict.expected:<34} {verdict.got:<34} {verdict.seconds:>5.1f}s"


def exit_code(verdicts: list[SampleVerdict]) -> int:
    """0: every sample graded as described (or not selected); 1: some mismatch; 3: a torchgrade error."""
    if any(v.status == ERROR for v in verdicts):
        return grading.EXIT_INTERNAL
    if any(v.status == MISMATCH for v in verdicts):
        return grading.EXIT_FAILED
    return grading.EXIT_OK
