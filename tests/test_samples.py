"""The graders on the sample submissions: the reference earns every auto point, the template
none, each buggy sample loses exactly the points its TOML file names, and both isolation modes
give the same verdicts.

The samples are graded by the sample engine that ``torchgrade demo`` and ``torchgrade check`` use
(:class:`torchgrade.instructor.samples.SampleGrader`: the real entry point, a fresh pytest process
each). The reference and the template are graded by every grader; a buggy sample only by the grader
modules that mention a name of a module it edits (``graders_for``): every other grader sees the
reference's code byte for byte, so its verdicts are the reference's, and grading them again cost most
of this file's time.
Graphs are the synthetic citation graph everywhere (``--data-root synthetic``), as in CI, where
the Planetoid files are absent. Training results are shared through a grade cache keyed by the
content of the graded code, so samples whose training code is the reference's reuse its runs; the
reference is graded in process isolation with a cache of its own, so it trains twice: once per
mode, which also shows that grading twice gives the same verdicts and the same measured accuracies.

The gradings the selected tests need (each test names them with a ``grades`` marker) run up front,
``JOBS`` at a time on one torch thread each (training checks pin one thread anyway): the reference in
process first, alongside its process-isolated twin, then the rest. On CI's 2 cores this halves the
file's time (17 min one at a time).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from fixtures import samples
from torchgrade.instructor import grading as entry
from torchgrade.instructor import samples as engine
from torchgrade.instructor.samples import SampleGrader
from torchgrade.reporting import report

ROOT = Path(__file__).resolve().parents[1]
ALL = samples.all_samples()
BUGS = [s for s in ALL if s.name not in ("reference", "template")]
#: Samples also graded with process isolation, compared check by check with in-process grading: one
#: or two per unit in CI; every sample with TORCHGRADE_ALL_MODES=1 (about 10 more minutes on 2 cores).
MODE_SAMPLES = (
    [s.name for s in ALL]
    if os.environ.get("TORCHGRADE_ALL_MODES") == "1"
    else [
        "reference",
        "template",
        "labels_swapped",
        "stacked_on_width",
        "gat_unmasked",
        "maxpool_backward_spread",
        "lstm_sample_recomputes",
    ]
)
#: Gradings run at once, each on one torch thread.
JOBS = max(1, min(2, os.cpu_count() or 1))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def grades(*pairs: tuple[str, str]) -> pytest.MarkDecorator:
    """Mark a test with the gradings ``(sample, isolation)`` it reads, so they run up front."""
    return pytest.mark.grades(*pairs)


@pytest.fixture(scope="session")
def grading(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """grading(name, isolation) -> the report's JSON, graded once per session and memoised."""
    planned = [pair for item in request.session.items for mark in item.iter_markers("grades") for pair in mark.args]
    with SampleGrader(
        ROOT,
        workdir=tmp_path_factory.mktemp("samples"),
        jobs=JOBS,
        threads=1,
        select_graders=True,
        pytest_args=("--data-root", "synthetic"),
    ) as grader:
        # The reference in process isolation trains afresh: that run, compared with the in-process
        # one, shows that both modes and two runs agree.
        grader.grade_all(planned, own_cache=[("reference", "process")])

        def grade(name: str, isolation: str = "none") -> dict:
            graded = grader.grade(name, isolation).result()
            data, code = graded.report, graded.exit_code
            assert graded.problem is None, f"{name}: {graded.problem}"
            assert data is not None, f"{name}: no report was written (exit code {code})"
            report.validate(data)
            assert data["harness_errors"] == 0, [c["message"] for c in data["checks"] if c["outcome"] == "error"]
            assert code == (entry.EXIT_OK if data["score"] == data["max_score"] else entry.EXIT_FAILED)
            return data

        yield grade


def lost_points(data: dict) -> dict[str, float]:
    return {
        q["id"]: round(q["max_score"] - q["score"], 6)
        for q in data["questions"]
        if not q["manual"] and q["score"] != q["max_score"]
    }


@grades(("reference", "none"))
def test_reference_earns_every_auto_point(grading):
    data = grading("reference")
    assert lost_points(data) == {}
    assert all(c["outcome"] == "passed" for c in data["checks"])
    assert data["max_score"] == 175 and data["pending_max_score"] == 53


@grades(("template", "none"))
def test_template_earns_nothing_and_says_not_implemented(grading):
    data = grading("template")
    assert data["score"] == 0
    assert all(c["outcome"] == "failed" for c in data["checks"])
    not_implemented = [c["id"] for c in data["checks"] if "not implemented yet" in c["message"]]
    assert len(not_implemented) == len(data["checks"]), [c["message"] for c in data["checks"]]


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.name, marks=grades((s.name, "none"))) for s in BUGS])
def test_buggy_sample_loses_exactly_its_points(grading, sample):
    data = grading(sample.name)
    assert lost_points(data) == sample.lost, sample.description


def test_samples_are_graded_by_the_graders_of_what_they_edit():
    """Whatever files the graders are split into: a sample that edits nothing is graded by every
    grader; a buggy sample by exactly the grader modules that mention, themselves or through a private
    module they import, a name of the module it edits (here GAT for gnn.py, UNet for unet.py)."""
    sources = engine.grader_sources(ROOT / "graders")

    def mentioning(*names: str) -> set[str]:
        return {module for module, text in sources.items() if any(re.search(rf"\b{n}\b", text) for n in names)}

    def selection(name: str) -> set[str] | None:
        chosen = engine.graders_for(samples.load(name), ROOT / "graders")
        return None if chosen is None else set(chosen.split(" or "))

    assert selection("reference") is None
    assert mentioning("GAT") <= selection("gat_unmasked") < set(sources)
    assert mentioning("UNet") <= selection("unet_flag_ignored") < set(sources)
    assert not mentioning("UNet") & selection("labels_swapped")
    assert mentioning("CNN", "train_model") <= selection("labels_swapped")


@pytest.mark.parametrize("name", [pytest.param(n, marks=grades((n, "process"), (n, "none"))) for n in MODE_SAMPLES])
def test_isolation_modes_give_identical_verdicts(grading, name):
    def verdicts(data):
        return {c["id"]: (c["outcome"], c["points"], c.get("data")) for c in data["checks"]}

    assert verdicts(grading(name, "process")) == verdicts(grading(name, "none"))
