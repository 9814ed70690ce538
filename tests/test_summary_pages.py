"""The summary's "what the class got wrong" groups, the worker start-up shown apart, and the page of
each submission (issue 19, part 3), from report JSONs written here: no grading runs.

What a person sees in a browser is tested in ``test_summary_browser.py``; these tests pin the
grouping rules and the page's content."""

from __future__ import annotations

import pytest

from torchgrade.reporting import report, submission_page, summary


def check(question: str, outcome: str, message: str = "", points: float = 0, name: str = "test_x") -> dict:
    return {
        "id": f"graders/test_a.py::{name}",
        "assignment": "a",
        "question": question,
        "points": points if outcome != "passed" else 1,
        "max_points": 1,
        "outcome": outcome,
        "message": message,
        "duration": 0.5,
    }


def make_report(*checks: dict, **extra) -> dict:
    questions = {}
    for c in checks:
        q = questions.setdefault(c["question"], {"assignment": "a", "id": c["question"], "score": 0, "max_score": 0})
        q["score"] += c["points"]
        q["max_score"] += c["max_points"]
    data = {
        "schema_version": 1,
        "submission": "/tmp/sub",
        "isolation": "process",
        "versions": {"torchgrade": "0", "torch": "2.13.0", "python": "3.11"},
        "started_at": "2026-12-02T10:00:00+00:00",
        "finished_at": "2026-12-02T10:00:30+00:00",
        "score": sum(c["points"] for c in checks),
        "max_score": sum(c["max_points"] for c in checks),
        "pending_max_score": 0,
        "harness_errors": sum(c["outcome"] == "error" for c in checks),
        "questions": [{**q, "manual": False, "status": "graded"} for q in questions.values()],
        "checks": list(checks),
        "notes": [],
    }
    data.update(extra)
    report.validate(data)
    return data


SHAPE = "forward(x) returned shape ({}, 10); expected ({}, 2) for a batch of {}."
CLASS = {
    "ann": make_report(check("Q1", "failed", SHAPE.format(2, 2, 2)), check("Q2", "passed")),
    "bob": make_report(check("Q1", "failed", SHAPE.format(3, 3, 3)), check("Q2", "failed", "accuracy 0.12 < 0.9")),
    "cy": make_report(check("Q1", "failed", SHAPE.format(4, 4, 4)), check("Q2", "failed", "accuracy 0.3 < 0.9")),
    "dee": make_report(check("Q1", "failed", "forward(x) raised KeyError: 'x'"), check("Q2", "passed")),
    "eve": make_report(check("Q1", "passed"), check("Q2", "error", "torchgrade error: grader bug")),
    "fay": make_report(
        check("Q1", "failed", "could not be graded: no module"),
        check("Q2", "failed", "could not be graded: no module"),
        status="unreadable",
        reason="the notebook does not parse",
    ),
}


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        (SHAPE.format(2, 2, 2), "forward(x) returned shape (#, …); expected (#, …) for a batch of #."),
        ("load_shoes('/tmp/torchgrade-scratch-ab12/data') raised ValueError", "load_shoes('<path>') raised ValueError"),
        ("fc1 has 1.5e-3 too many; Q4b at 0x7f3a2b", "fc1 has # too many; Q4b at #"),
        ("loss nan after -3 steps\nline two differs: 7", "loss # after # steps"),
        ("tensor([0.1, 0.2, -0.3]) or tensor([1., 2.])", "tensor([#, …]) or tensor([#, …])"),
        ("", ""),
    ],
)
def test_a_message_pattern_abstracts_numbers_paths_and_values(message, pattern):
    assert summary.message_pattern(message) == pattern


def test_failures_are_grouped_per_question_by_message_largest_first():
    groups = summary.failure_groups(CLASS)
    assert list(groups) == [("a", "Q1"), ("a", "Q2")]  # handout order
    q1 = groups[("a", "Q1")]
    assert [(g.count, g.submissions) for g in q1] == [(3, ("ann", "bob", "cy")), (1, ("dee",))]
    assert q1[0].pattern == "forward(x) returned shape (#, …); expected (#, …) for a batch of #."
    assert q1[0].example in {SHAPE.format(n, n, n) for n in (2, 3, 4)}  # one real message, in full
    # A torchgrade error is not the class's failure, and an unreadable submission is listed apart.
    assert [(g.pattern, g.submissions) for g in groups[("a", "Q2")]] == [("accuracy # < #", ("bob", "cy"))]


def test_the_summary_shows_the_groups_and_links_each_submission_to_its_page(tmp_path, monkeypatch):
    for plot in ("plot_histogram", "plot_pass_rates", "plot_slowest"):  # the page, not matplotlib
        monkeypatch.setattr(summary, plot, lambda data, path: path)
    files = {name: f"{name}.json" for name in CLASS}
    page = summary.write(CLASS, tmp_path, report_files=files).read_text()
    assert "<h2>What the class got wrong</h2>" in page
    assert "<h3>a Q1: 1 of 6 with full marks</h3>" in page
    assert '<td class="num">3</td><td><details><summary>forward(x) returned shape (#, …)' in page
    assert '<a href="pages/ann.html">ann</a>, <a href="pages/bob.html">bob</a>, <a href="pages/cy.html">cy</a>' in page
    assert page.index("What the class got wrong") < page.index("<h2>Submissions</h2>")
    assert '<a href="pages/fay.html">fay</a> (unreadable): the notebook does not parse' in page  # needs a look
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == sorted(f"{n}.html" for n in CLASS)
    # A submission no longer in the batch loses its page.
    summary.write({"ann": CLASS["ann"]}, tmp_path, report_files={"ann": "ann.json"})
    assert [p.name for p in (tmp_path / "pages").iterdir()] == ["ann.html"]


def test_the_roster_s_missing_and_unmatched_are_listed(tmp_path, monkeypatch):
    for plot in ("plot_histogram", "plot_pass_rates", "plot_slowest"):
        monkeypatch.setattr(summary, plot, lambda data, path: path)
    reports = {"ann-gh": CLASS["ann"], "stranger": CLASS["bob"]}
    page = summary.write(
        reports,
        tmp_path,
        report_files={"ann-gh": "ann-gh.json", "stranger": "stranger.json"},
        students={"ann-gh": "Ann Lee (1001)"},
        missing=["Zed Q (1009)", "Yu P (1008)"],
        unmatched=["stranger"],
    ).read_text()
    assert '<tr><th>missing</th><td class="num">2</td></tr>' in page
    assert "2 student(s) on the roster submitted nothing (missing): Zed Q (1009), Yu P (1008)" in page
    assert '1 submission(s) match no student on the roster: <a href="pages/stranger.html">stranger</a>' in page
    assert "<th>student</th>" in page and "<td>Ann Lee (1001)</td>" in page
    assert "<h1>ann-gh (Ann Lee (1001))</h1>" in (tmp_path / "pages" / "ann-gh.html").read_text()


def test_worker_start_up_is_shown_apart_from_the_checks_times(tmp_path, monkeypatch):
    for plot in ("plot_histogram", "plot_pass_rates", "plot_slowest"):
        monkeypatch.setattr(summary, plot, lambda data, path: path)
    reports = {
        "ann": make_report(check("Q1", "passed"), worker_startup={"seconds": 2.5, "starts": 1}),
        "bob": make_report(check("Q1", "passed"), worker_startup={"seconds": 4.0, "starts": 2}),
    }
    assert summary.startup_times(reports) == [2.5, 4.0]
    page = summary.write(reports, tmp_path, report_files={}).read_text()
    assert "not counted in the checks' times: mean 3.25 s, at most 4.00 s per submission (2 submissions)" in page


def test_a_submission_page_shows_scores_messages_cells_left_out_and_output():
    data = make_report(
        check("Q1", "failed", "forward(x) returned <b>bold</b> shape (2, 10)", name="test_shape"),
        check("Q2", "passed", name="test_train"),
        complete=False,
        extraction={
            "source": "hw.ipynb",
            "kind": "notebook",
            "modules": ["shoes"],
            "defined": ["CNN"],
            "dropped": [
                {
                    "cell": 7,
                    "lines": [1, 2],
                    "excerpt": "drive.mount('/content/drive')",
                    "reason": "mounts Google Drive",
                    "names": [],
                }
            ],
        },
        student_output={"text": "epoch 1 loss 0.5\n<script>alert(1)</script>", "dropped_bytes": 1200},
        worker_startup={"seconds": 2.25, "starts": 1},
        notes=["`CNN` was found in model.py instead of shoes.py"],
    )
    page = submission_page.render(data, name="<i>ann</i>", student="Ann", report_file="ann.json")
    assert "<h1>&lt;i&gt;ann&lt;/i&gt; (Ann)</h1>" in page  # a name is text, never markup
    assert '<a href="../summary.html">Back to the summary</a>' in page and '<a href="../ann.json">' in page
    assert "graded</span>: 1 / 2 auto-graded points of the selected checks only" in page
    assert '<tr class="lost"><td class="q">a Q1</td><td class="num">0 / 1</td>' in page  # no titles: no column
    assert "test_shape: forward(x) returned &lt;b&gt;bold&lt;/b&gt; shape (2, 10)</td>" in page  # in the table too
    manual = {**data, "questions": [{**data["questions"][0], "id": "Q0", "manual": True}, *data["questions"]]}
    manual["questions"][0].update(score=None, status="pending")
    after_manual = submission_page.render(manual, name="ann")  # a manual question first in its loop
    assert 'class="name">test_shape: forward(x) returned' in after_manual
    assert "<h3>a Q1: test_shape (0 / 1, failed)</h3>" in page and "test_train (" not in page
    assert "Reproduce: <code>pytest graders/test_a.py::test_shape --submission=FOLDER</code>" in page
    assert "<td>cell 7, lines 1-2</td><td>mounts Google Drive</td>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "(1200 more bytes were left out)" in page
    assert "2.25 s in 1 start(s), not in the checks&#x27; times" in page
    assert "was found in model.py instead of shoes.py" in page


def test_a_page_for_a_submission_that_was_not_graded_says_why():
    page = submission_page.render(CLASS["fay"], name="fay")
    assert '<span class="status">unreadable</span>: the notebook does not parse</p>' in page
    assert 'href="../' in page and "the JSON report" not in page  # no report file given: no link


def test_a_check_of_parts_is_grouped_by_each_part_it_failed():
    def parted(steps: int, order_points: float) -> dict:
        c = check("Q4", "failed", f"1 of 2 parts failed; each pair once: {steps} steps", points=1, name="test_loop")
        c["max_points"] = 3
        c["parts"] = [
            {"name": "labels", "points": 1, "max_points": 1, "message": ""},
            {"name": "each pair once", "points": order_points, "max_points": 2, "message": f"{steps} steps"},
        ]
        return make_report(c)

    groups = summary.failure_groups(
        {"ann": parted(4, 0), "bob": parted(9, 0), "cy": make_report(check("Q4", "passed"))}
    )
    assert [(g.pattern, g.example, g.submissions, g.parts) for g in groups[("a", "Q4")]] == [
        ("# steps", "4 steps", ("ann", "bob"), ("each pair once",))
    ]
