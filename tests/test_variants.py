"""The graders on the correct variants of ``fixtures/variants/``: the mirror image of the buggy samples.

A correct variant rewrites units of the reference the way real students write them (another
signature, another layout, another library call; the classes of issue 17) and must keep every point.
Each names the grader checks that exercise what it rewrites (``checks``): in CI a variant is graded by
those checks alone, in process, ``JOBS`` at a time with a grade cache of its own (the variants'
training code differs from the reference's, so there is nothing to share with ``test_samples.py``):
387 s one at a time on 2 quiet cores on 2026-12-02, so about 3.5 minutes two at a time.
With TORCHGRADE_ALL_VARIANTS=1 every check of every grader module that mentions a name of a module it
edits grades it (as ``test_samples.py`` grades a buggy sample; some 20 minutes on 2 cores).

The cheap tests (no grading) check the corpus itself: at least 30 variants, names apart from the
buggy samples', edits that apply and parse, checks that exist in the graders of what each edits, and
the ``-k`` expression that selects exactly the named checks.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

from fixtures import samples
from torchgrade.errors import TorchgradeError
from torchgrade.instructor import check as check_command
from torchgrade.instructor import samples as engine
from torchgrade.instructor.samples import SampleGrader
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
GRADERS = ROOT / "graders"
VARIANTS = samples.all_variants()
#: Grade every variant with every check of the graders of what it edits, not only the checks it names.
ALL_CHECKS = os.environ.get("TORCHGRADE_ALL_VARIANTS") == "1"
#: Gradings run at once, each on one torch thread.
JOBS = max(1, min(2, os.cpu_count() or 1))
#: Characters of a failed check's message quoted in an assertion.
MESSAGE_CHARS = 300


# -- the corpus (no grading) -----------------------------------------------------------------------
def test_the_corpus_has_thirty_correct_variants_apart_from_the_buggy_samples():
    assert len(VARIANTS) >= 30
    names = [v.name for v in VARIANTS]
    assert not set(names) & set(samples.bug_names()) and not {"reference", "template"} & set(names)
    for variant in VARIANTS:
        assert variant.variant and variant.lost == {} and variant.checks, variant.name
        assert samples.load(variant.name) == variant  # the samples' loader accepts a variant's name


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_variant_applies_to_the_reference_and_parses(variant, tmp_path):
    folder = samples.materialise(variant, tmp_path)
    changed = [m.name for m in sorted(folder.glob("*.py")) if m.read_text() != (samples.REFERENCE / m.name).read_text()]
    assert changed, f"{variant.name} changes no module of the reference"
    for name in changed:
        ast.parse((folder / name).read_text(), filename=f"{variant.name}/{name}")


@pytest.fixture(scope="module")
def known_checks() -> dict[str, str]:
    return engine.check_names(GRADERS)


@pytest.fixture(scope="module")
def selections() -> dict[str, set[str]]:
    """Variant name -> the grader modules ``graders_for`` picks for it (the graders' text read once)."""
    sources = engine.grader_sources(GRADERS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "grader_sources", lambda graders: sources)
        return {v.name: set(engine.graders_for(v, GRADERS).split(" or ")) for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_variant_checks_are_checks_of_the_graders_of_what_it_edits(variant, known_checks, selections):
    for check in variant.checks:
        assert check in known_checks, f"{variant.name}: {check} is no check of graders/"
        module = known_checks[check]
        assert module in selections[variant.name], f"{variant.name}: {check} ({module}) does not grade what it edits"


def test_check_accepts_variants_by_name_and_all_at_once():
    names = check_command.expand_names(["reference", "variants", "shoes_sequential"], samples)
    assert names == ["reference", *samples.variant_names()]
    verdict = check_command.judge("shoes_sequential", samples.load("shoes_sequential").lost, None)
    assert verdict[0] == check_command.ERROR


def test_replace_takes_a_whole_unit_by_name():
    source = samples.unit_source(samples.REFERENCE / "shoes.py", "generate_same_pair")
    assert source.startswith("def generate_same_pair(data):")
    assert source.endswith("    return stacked.reshape(-1, *stacked.shape[2:])\n")
    with pytest.raises(ValueError, match="no top-level function or class 'nowhere'"):
        samples.unit_source(samples.REFERENCE / "shoes.py", "nowhere")


def test_checks_expression_selects_exactly_the_named_checks(known_checks):
    """``-k`` matches substrings of a check's own name and of its module's: the expression still picks
    out one check among ``test_cnn``/``test_cnn_channel`` and ``test_gnn`` in ``test_gnn.py``."""
    known = known_checks

    def matcher(*names: str):
        return lambda word: any(word.lower() in name.lower() for name in names)

    def selected(expression: str) -> set[str]:
        compiled = Expression.compile(expression)
        return {check for check, module in known.items() if compiled.evaluate(matcher(check, module, "graders"))}

    for check in known:
        assert selected(engine.checks_expression([check], known)) == {check}
    assert selected(engine.checks_expression(["test_cnn", "test_gnn"], known)) == {"test_cnn", "test_gnn"}
    with pytest.raises(TorchgradeError, match="no check"):
        engine.checks_expression(["test_nothing_of_that_name"], known)


# -- grading ---------------------------------------------------------------------------------------
def training_checks() -> dict[str, float]:
    """The checks that train (those with a ``timeout`` marker of their own) -> that timeout, a rough
    measure of how long they take."""
    found = {}
    for path in GRADERS.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            for decorator in getattr(node, "decorator_list", ()):
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("mark.timeout"):
                    found[node.name] = float(ast.literal_eval(decorator.args[0]))
    return found


@pytest.fixture(scope="session")
def graded_variants(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """name -> the variant's grading; those of the selected tests start up front, ``JOBS`` at a time,
    those that train first (so that no long grading is left to run alone at the end)."""
    selected = {
        item.callspec.params["variant"].name
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_correct_variant_keeps_every_point"
    }
    training = training_checks()
    chosen = [v for v in VARIANTS if v.name in selected]
    order = sorted(chosen, key=lambda v: -sum(training.get(check, 0) for check in v.checks))
    with SampleGrader(
        ROOT,
        workdir=tmp_path_factory.mktemp("variants"),
        jobs=JOBS,
        threads=1,
        select_graders=True,
        select_checks=not ALL_CHECKS,
        pytest_args=("--data-root", "synthetic"),
    ) as grader:
        grader.grade_all([(variant.name, "none") for variant in order])
        yield lambda name: grader.grade(name).result()


def failures(data: dict) -> list[str]:
    """Every check that did not pass, with the start of its message."""
    return [
        f"{c['id']} ({c['outcome']}, {c['points']:g}/{c['max_points']:g}): {c['message'][:MESSAGE_CHARS]}"
        for c in data["checks"]
        if c["outcome"] != "passed"
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_correct_variant_keeps_every_point(graded_variants, variant):
    graded = graded_variants(variant.name)
    assert graded.problem is None, f"{variant.name}: {graded.problem}"
    data = graded.report
    assert data is not None, f"{variant.name}: no report was written (exit code {graded.exit_code})"
    report.validate(data)
    ran = {c["id"].rpartition("::")[2].partition("[")[0] for c in data["checks"]}
    assert set(variant.checks) <= ran, f"{variant.name}: its checks {sorted(set(variant.checks) - ran)} did not run"
    lost = "\n".join(failures(data))
    assert data["score"] == data["max_score"] and not lost, (
        f"{variant.name} ({variant.description}) lost {data['max_score'] - data['score']:g} of "
        f"{data['max_score']:g} points:\n{lost}"
    )
