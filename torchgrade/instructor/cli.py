"""The ``torchgrade`` command: a thin layer over pytest and the library.

Commands:
    grade SUBMISSION     grade one submission with the assignment's graders; print its score table
    demo                 grade the bundled sample submissions (reference, template, buggy samples)
    export gradescope R  write Gradescope's results.json from report R (export markdown R: a score table)
    export canvas OUT --roster CSV
                         Canvas's gradebook import CSV from a batch's --out folder: a row per student on the
                         roster, a column per assignment (export lms: a generic LMS CSV)
    release --out DIR    build the students' copy of the assignment (--profile gradescope: the autograder zip's)
    check ASSIGNMENT     grade the assignment's samples: the reference earns every auto point, the template
                         none, each buggy sample loses what its TOML file says (exit 1 on any mismatch);
                         --jobs N at once, training runs of identical code shared unless --fresh
    new DIR              write a small but real assignment of one's own to start from (docs/authoring.md)
    batch SUBMISSIONS --out DIR
                         grade every submission (subfolder, .py or .ipynb) in parallel or on a Dask cluster
                         (--scheduler); resumable; writes a report and a page each, gradebook.csv, summary.html

Exit codes:
    0  every auto-graded check passed
    1  some checks failed (the submission lost points)
    2  usage error (bad arguments, missing folders)
    3  internal error (a torchgrade bug or a broken set-up; never the student's fault)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from torchgrade.errors import TorchgradeError
from torchgrade.instructor import batch, check
from torchgrade.instructor.grading import EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, HELP_ONLY, grade, only_args
from torchgrade.instructor.samples import SampleGrader

#: The optional packages the instructor's commands import on first use, and the extra that installs them
#: (pyproject.toml): the core install is what ``pytest graders`` needs.
EXTRA_OF_PACKAGE = {
    "distributed": "batch",
    "dask": "batch",
    "rich": "batch",
    "matplotlib": "batch",
    "psutil": "batch",
    "torch_geometric": "graphs",
    "scipy": "graphs",
}
MSG_MISSING_EXTRA = (
    "torchgrade: this command needs {package!r}, which the core install leaves out; install the extra that "
    "brings it: python -m pip install 'torchgrade[{extra}]'"
)

#: Samples the demo grades unless --all is given: the extremes and one bug of each kind.
DEMO_SAMPLES = ("reference", "template", "fc1_formula", "pairs_across_students", "labels_swapped", "stacked_on_width")
HELP_CHECK_JOBS = (
    "samples graded at once, each on one torch thread (default: the number of cores; 1 with -v, so that "
    "pytest's output stays readable)"
)
HELP_CHECK_FRESH = (
    "grade each sample from scratch instead of sharing the training runs of identical code "
    "(a grade cache in the check's temporary folder)"
)
HELP_ASSIGNMENT = (
    "folder holding assignments.toml, graders/, fixtures/ and pyproject.toml (default: the current folder); "
    "given before or after the subcommand"
)
HELP_GRADE_SUBMISSION = (
    "what to grade: a folder of modules, a .py script or a .ipynb notebook (the definitions the assignment "
    "grades are extracted from a script or notebook)"
)
HELP_GRADE_ISOLATION = (
    "where the student's code runs: 'process' (default) in a sandboxed worker process, 'none' in pytest's "
    "own process (faster, debuggable, for trusted code only)"
)
HELP_EXPORT_ONLY = "export only this assignment's checks and questions of the report, with its own total"
DEMO_SHARED = (
    "torchgrade demo: training runs of identical code are shared between the samples (--fresh retrains for each)"
)


def _cmd_grade(args: argparse.Namespace) -> int:
    if not args.submission.exists():
        print(
            f"torchgrade: submission {args.submission} does not exist (give a folder, a .py or a .ipynb)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        selection = only_args(args.assignment, args.only)
    except TorchgradeError as exc:
        print(f"torchgrade grade: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code, _ = grade(
        args.submission.resolve(),
        assignment=args.assignment,
        isolation=args.isolation,
        report=args.report,
        quiet=not args.verbose,
        extra_args=selection,
    )
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    def announce(name: str, description: str) -> None:
        print(f"\n### {name}: {description}", flush=True)

    worst = EXIT_OK
    with tempfile.TemporaryDirectory(prefix="torchgrade-demo-") as tmp:
        # The buggy samples differ from the reference in one module: a training run of code that is
        # byte for byte the reference's is computed once and reused (keyed by a content hash).
        if not args.fresh:
            print(DEMO_SHARED, flush=True)
        try:
            with SampleGrader(
                args.assignment,
                workdir=Path(tmp),
                isolation=args.isolation,
                cache=not args.fresh,
                logs=False,
                on_start=announce,
                pytest_args=only_args(args.assignment, args.only),
            ) as grader:
                names = grader.names() if args.all else list(DEMO_SAMPLES)
                names = check.samples_of(grader, names, args.only)
                grader.grade_all([(name, args.isolation) for name in names])
                rows = [(name, grader.grade(name).result()) for name in names]
        except TorchgradeError as exc:
            print(f"torchgrade demo: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print("\n### summary")
        for name, graded in rows:
            data = graded.report
            worst = max(worst, EXIT_INTERNAL if graded.exit_code in (EXIT_INTERNAL, None) else EXIT_OK)
            score = f"{data['score']:g} / {data['max_score']:g}" if data else "no report (internal error)"
            print(f"  {name:<28} {score}")
    return worst


def _cmd_export(args: argparse.Namespace) -> int:
    from torchgrade.reporting import export

    if args.format in ("canvas", "lms"):
        return _cmd_export_lms(args)
    try:
        if args.format == "gradescope":
            results = export.write_gradescope(
                args.report, args.out, hidden_visibility=args.hidden_visibility, only=args.only
            )
            print(f"torchgrade: wrote {args.out}: {results['score']:g} points in {len(results['tests'])} tests")
        else:
            text = export.write_markdown(args.report, args.out, only=args.only)
            if args.out is None:
                print(text, end="")
    except export.ReportInputError as exc:
        print(f"torchgrade export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TorchgradeError as exc:  # our output broke the platform's schema: a torchgrade bug
        print(f"torchgrade export: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


def _cmd_export_lms(args: argparse.Namespace) -> int:
    """``export canvas`` and ``export lms``: a batch's reports and a roster to an LMS's grade CSV."""
    from torchgrade.reporting import gradebook, lms, roster

    try:
        students = roster.read(args.roster)
        reports = lms.load_reports(args.reports)
        grades = lms.grades(reports, students, only=args.only, missing=args.missing)
        if args.format == "canvas":
            table = lms.canvas_rows(grades, args.canvas_id)
        else:
            table = lms.lms_rows(grades, students.columns)
    except (roster.RosterError, lms.ExportInputError) as exc:
        print(f"torchgrade export {args.format}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warnings = list(grades.warnings)
    if args.format == "canvas" and lms.name_only(grades):
        warnings.append(lms.MSG_NAME_ONLY.format(count=lms.name_only(grades)))
    for warning in warnings:
        print(f"torchgrade export {args.format}: {warning}", file=sys.stderr)
    gradebook.write_csv(table, args.out)
    columns = ", ".join(table[0][len(table[0]) - len(grades.assignments) :]) if args.format == "canvas" else ""
    print(
        f"torchgrade: wrote {args.out}: {len(grades.rows)} students, {len(grades.assignments)} assignment(s)"
        + (f" ({columns}); import it in Canvas's Gradebook: Grades, Import" if columns else "")
    )
    return EXIT_OK


def _cmd_release(args: argparse.Namespace) -> int:
    from torchgrade.instructor import release

    try:
        files = release.release(
            args.out,
            assignment=args.assignment,
            profile=args.profile,
            ci=tuple(args.ci),
            torchgrade_requirement=args.torchgrade_requirement,
            force=args.force,
            only=args.only,
        )
    except release.LeakFound as exc:
        print(f"torchgrade release: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TorchgradeError as exc:
        print(f"torchgrade release: {exc}", file=sys.stderr)
        return EXIT_USAGE
    of = f"assignment {args.only!r} of " if args.only else ""
    print(
        f"torchgrade: {args.profile} release of {of}{args.assignment.resolve()} in {args.out} ({len(files)} files); "
        "no reference code found in it"
    )
    if args.profile == "gradescope":
        print(f"torchgrade: upload a zip of its content to Gradescope: (cd {args.out} && zip -r ../autograder.zip .)")
    return EXIT_OK


def _cmd_new(args: argparse.Namespace) -> int:
    from torchgrade.instructor import scaffold

    try:
        files = scaffold.new(args.folder, assignment_id=args.id, title=args.title)
    except TorchgradeError as exc:
        print(f"torchgrade new: {exc}", file=sys.stderr)
        return EXIT_USAGE
    folder = shlex.quote(str(args.folder))
    print(
        f"torchgrade: wrote the assignment in {args.folder} ({len(files)} files); see its README.md, then:\n"
        f"  torchgrade --assignment {folder} check {folder}   # the reference earns every point, the template none"
    )
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    pytest_args = [*(("-m", args.m) if args.m else ()), *shlex.split(args.pytest_args or "")]
    print(check.HEADER, flush=True)
    try:
        verdicts = check.check_assignment(
            args.assignment_dir,
            samples=args.samples,
            isolation=args.isolation,
            keyword=args.k,
            pytest_args=tuple(pytest_args),
            only=args.only,
            reports=args.reports,
            verbose=args.verbose,
            jobs=args.jobs if args.jobs is not None else (1 if args.verbose else batch.cores()),
            fresh=args.fresh,
            progress=lambda verdict: print(check.format_row(verdict), flush=True),
        )
    except TorchgradeError as exc:
        print(f"torchgrade check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = check.exit_code(verdicts)
    counts = {
        status: sum(v.status == status for v in verdicts)
        for status in (check.OK, check.MISMATCH, check.NOT_SELECTED, check.ERROR)
    }
    print(
        "torchgrade check: "
        + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        + ("" if code == EXIT_OK else f" (exit {code})")
    )
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchgrade", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assignment", type=Path, default=Path.cwd(), help=HELP_ASSIGNMENT)
    sub = parser.add_subparsers(dest="command", required=True)
    grade_parser = sub.add_parser("grade", help="grade one submission: a folder, a .py script or a .ipynb notebook")
    grade_parser.add_argument("submission", type=Path, help=HELP_GRADE_SUBMISSION)
    grade_parser.add_argument("--isolation", choices=("none", "process"), default="process", help=HELP_GRADE_ISOLATION)
    grade_parser.add_argument(
        "--report",
        type=Path,
        default=Path("torchgrade-report.json"),
        help="where to write the JSON report (default: torchgrade-report.json)",
    )
    grade_parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show pytest's failure details (each failed check's "
        "message and the command that reproduces it), not only the score table",
    )
    grade_parser.add_argument("--only", metavar="ID", default=None, help=HELP_ONLY)
    grade_parser.set_defaults(func=_cmd_grade)
    demo_parser = sub.add_parser("demo", help="grade the bundled sample submissions")
    demo_parser.add_argument("--all", action="store_true", help="grade every buggy sample, not a selection")
    demo_parser.add_argument("--isolation", choices=("none", "process"), default="process")
    demo_parser.add_argument(
        "--fresh",
        action="store_true",
        help="grade each sample from scratch instead of sharing the training runs of "
        "identical code (a grade cache in the demo's temporary folder)",
    )
    demo_parser.add_argument("--only", metavar="ID", default=None, help=HELP_ONLY)
    demo_parser.set_defaults(func=_cmd_demo)
    _add_export_release_check(sub)
    new_parser = sub.add_parser("new", help="write a small but real assignment of one's own to start from")
    new_parser.add_argument("folder", type=Path, help="the folder to create (or an empty one)")
    new_parser.add_argument("--id", default=None, help="the assignment's id in assignments.toml (default: the folder)")
    new_parser.add_argument("--title", default=None, help="the assignment's title in reports")
    new_parser.set_defaults(func=_cmd_new)
    batch.add_parser(sub)
    _accept_assignment_anywhere(sub)
    return parser


def _accept_assignment_anywhere(sub: argparse._SubParsersAction) -> None:
    """``--assignment DIR`` after the subcommand too (``torchgrade grade SUB --assignment DIR``): every
    subcommand's parser accepts it, with no default of its own, so that one given before the subcommand
    is kept unless it is given again after it."""
    for command in set(sub.choices.values()):
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _accept_assignment_anywhere(action)
        if nested or "-" not in command.prefix_chars or "--assignment" in command._option_string_actions:
            continue  # batch parses its own arguments (torchgrade.instructor.batch.build_parser)
        command.add_argument("--assignment", type=Path, default=argparse.SUPPRESS, help=HELP_ASSIGNMENT)


def _add_export_release_check(sub) -> None:
    from torchgrade.instructor.release import CI_FILES, PROFILES
    from torchgrade.reporting.export import HELP_HIDDEN_VISIBILITY, HIDDEN_VISIBILITIES

    export_parser = sub.add_parser("export", help="export a report in a grading platform's format")
    formats = export_parser.add_subparsers(dest="format", required=True)
    gradescope = formats.add_parser("gradescope", help="Gradescope's results.json, validated against its schema")
    gradescope.add_argument("report", type=Path, help="a torchgrade report (JSON)")
    gradescope.add_argument("--only", metavar="ID", default=None, help=HELP_EXPORT_ONLY)
    gradescope.add_argument("--out", type=Path, default=Path("results.json"), help="default: results.json")
    gradescope.add_argument(
        "--hidden-visibility", choices=HIDDEN_VISIBILITIES, default=HIDDEN_VISIBILITIES[0], help=HELP_HIDDEN_VISIBILITY
    )
    markdown = formats.add_parser("markdown", help="the score table in Markdown (CI job summaries)")
    markdown.add_argument("report", type=Path, help="a torchgrade report (JSON)")
    markdown.add_argument("--only", metavar="ID", default=None, help=HELP_EXPORT_ONLY)
    markdown.add_argument("--out", type=Path, default=None, help="default: print it")
    _add_lms_exports(formats)
    export_parser.set_defaults(func=_cmd_export)

    release_parser = sub.add_parser("release", help="build the students' copy of the assignment (never reference/)")
    release_parser.add_argument("--out", type=Path, required=True, help="the folder to create")
    release_parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="student",
        help="student (default) or gradescope: the content of the autograder zip",
    )
    release_parser.add_argument(
        "--ci",
        nargs="+",
        choices=sorted(CI_FILES),
        default=[],
        help="add the CI file of these platforms to a student release",
    )
    release_parser.add_argument(
        "--torchgrade-requirement",
        default=None,
        help="the requirements.txt line that installs torchgrade (a version on an index, a git URL); "
        "default: this torchgrade's wheel, shipped in the release's wheels/ with the extras the release needs",
    )
    release_parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    release_parser.add_argument(
        "--only",
        metavar="ID",
        default=None,
        help="release only this assignment of the manifest (assignments.toml): its template modules (the other "
        "assignments' names pruned), graders, fixtures, questions and README; default: all of them",
    )
    release_parser.set_defaults(func=_cmd_release)

    check_parser = sub.add_parser("check", help="check that the graders grade the sample submissions as described")
    check_parser.add_argument("assignment_dir", type=Path)
    check_parser.add_argument("--samples", nargs="+", metavar="NAME", help="only these samples (default: all)")
    check_parser.add_argument("-k", metavar="EXPR", help="only checks matching EXPR (pytest -k)")
    check_parser.add_argument("-m", metavar="EXPR", help="only checks with these markers (pytest -m)")
    check_parser.add_argument(
        "--pytest-args", metavar="ARGS", help="more pytest arguments, e.g. '--data-root synthetic'"
    )
    check_parser.add_argument(
        "--isolation",
        choices=("none", "process"),
        default="none",
        help="default none: the samples are the instructor's own code",
    )
    check_parser.add_argument("--reports", type=Path, help="keep each sample's report and pytest log here")
    check_parser.add_argument("--jobs", "-j", type=int, default=None, help=HELP_CHECK_JOBS)
    check_parser.add_argument("--fresh", action="store_true", help=HELP_CHECK_FRESH)
    check_parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output instead of logging it")
    check_parser.add_argument("--only", metavar="ID", default=None, help=HELP_ONLY)
    check_parser.set_defaults(func=_cmd_check)


def _add_lms_exports(formats: argparse._SubParsersAction) -> None:
    """``export canvas`` and ``export lms``: from a batch's output folder and a roster."""
    from torchgrade.reporting.lms import CANVAS_DOC, DESCRIPTION, HELP_CANVAS_ID, HELP_MISSING, MISSING_CHOICES

    canvas = formats.add_parser(
        "canvas",
        help="Canvas's gradebook import CSV: a row per student on the roster, a column per assignment",
        description=f"Canvas's gradebook import CSV, as {CANVAS_DOC} documents it. {DESCRIPTION}",
    )
    lms = formats.add_parser(
        "lms",
        help="a generic LMS CSV: a row per student, score and max per assignment",
        description=f"A generic LMS CSV: the roster's columns, submission, score:ID and max:ID, status, reason. "
        f"{DESCRIPTION}",
    )
    for parser, default in ((canvas, "canvas.csv"), (lms, "grades.csv")):
        parser.add_argument("reports", type=Path, help="torchgrade batch's --out folder (its reports)")
        parser.add_argument(
            "--roster", type=Path, required=True, metavar="CSV", help="the class roster (see torchgrade batch --help)"
        )
        parser.add_argument("--out", type=Path, default=Path(default), help=f"default: {default}")
        parser.add_argument("--only", metavar="ID", default=None, help="export this assignment's column only")
        parser.add_argument("--missing", choices=MISSING_CHOICES, default=MISSING_CHOICES[0], help=HELP_MISSING)
    canvas.add_argument("--canvas-id", action="append", default=[], metavar="ASSIGNMENT=NUMBER", help=HELP_CANVAS_ID)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERNAL
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_PACKAGE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(MSG_MISSING_EXTRA.format(package=exc.name, extra=extra), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
