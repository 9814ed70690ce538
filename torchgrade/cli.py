"""The ``torchgrade`` command: a thin layer over pytest and the library.

Commands:
    grade SUBMISSION     grade one submission with the assignment's graders; print its score table
    demo                 grade the bundled sample submissions (reference, template, buggy samples)

Exit codes:
    0  every auto-graded check passed
    1  some checks failed (the submission lost points)
    2  usage error (bad arguments, missing folders)
    3  internal error (a torchgrade bug or a broken set-up; never the student's fault)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
#: Samples the demo grades unless --all is given: the extremes and one bug of each kind.
DEMO_SAMPLES = ("reference", "template", "fc1_formula", "pairs_across_students", "labels_swapped",
                "stacked_on_width")


def grade(submission: Path, *, assignment: Path, isolation: str = "process", report: Path | None = None,
          extra_args: tuple[str, ...] = (), quiet: bool = True) -> tuple[int, dict | None]:
    """Grade one submission folder in a fresh pytest process.

    pytest runs with the assignment's own configuration, rooted at the assignment (``--rootdir``,
    ``-c``), and ``PYTEST_ADDOPTS`` is dropped, so nothing in the submission or the environment
    changes how it is graded.

    Returns:
        The exit code (see the module docstring) and the report's JSON (None if none was written).
    """
    assignment = assignment.resolve()
    report = (report or Path(tempfile.mkstemp(prefix="torchgrade-", suffix=".json")[1])).resolve()
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", str(assignment / "graders"), f"--rootdir={assignment}",
               "-c", str(assignment / "pyproject.toml"), "-p", "no:cacheprovider", f"--submission={submission}",
               f"--isolation={isolation}", f"--report={report}", *extra_args]
    if quiet:
        command += ["-q", "--tb=no", "--no-header", "-rN"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    code = subprocess.run(command, cwd=assignment, env=env).returncode
    data = json.loads(report.read_text()) if report.is_file() else None
    if data is None or code not in (0, 1):
        return EXIT_INTERNAL, data
    return (EXIT_OK if data["score"] == data["max_score"] else EXIT_FAILED), data


def _cmd_grade(args: argparse.Namespace) -> int:
    if not args.submission.is_dir():
        print(f"torchgrade: submission folder {args.submission} does not exist", file=sys.stderr)
        return EXIT_USAGE
    code, _ = grade(args.submission.resolve(), assignment=args.assignment, isolation=args.isolation,
                    report=args.report, quiet=not args.verbose)
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(args.assignment.resolve()))
    from fixtures import samples

    names = [s.name for s in samples.all_samples()] if args.all else list(DEMO_SAMPLES)
    worst = EXIT_OK
    with tempfile.TemporaryDirectory(prefix="torchgrade-demo-") as tmp:
        rows = []
        for name in names:
            sample = samples.load(name)
            print(f"\n### {name}: {sample.description}", flush=True)
            folder = samples.materialise(sample, Path(tmp))
            code, data = grade(folder, assignment=args.assignment, isolation=args.isolation,
                               report=Path(tmp) / f"{name}.json")
            worst = max(worst, EXIT_INTERNAL if code == EXIT_INTERNAL else EXIT_OK)
            rows.append((name, data))
        print("\n### summary")
        for name, data in rows:
            score = f"{data['score']:g} / {data['max_score']:g}" if data else "no report (internal error)"
            print(f"  {name:<28} {score}")
    return worst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchgrade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", type=Path, default=Path.cwd(),
                        help="folder holding graders/, fixtures/ and pyproject.toml (default: the current folder)")
    sub = parser.add_subparsers(dest="command", required=True)
    grade_parser = sub.add_parser("grade", help="grade one submission folder")
    grade_parser.add_argument("submission", type=Path)
    grade_parser.add_argument("--isolation", choices=("none", "process"), default="process")
    grade_parser.add_argument("--report", type=Path, default=Path("torchgrade-report.json"))
    grade_parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's failure details")
    grade_parser.set_defaults(func=_cmd_grade)
    demo_parser = sub.add_parser("demo", help="grade the bundled sample submissions")
    demo_parser.add_argument("--all", action="store_true", help="grade every buggy sample, not a selection")
    demo_parser.add_argument("--isolation", choices=("none", "process"), default="process")
    demo_parser.set_defaults(func=_cmd_demo)
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
