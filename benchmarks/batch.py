"""Throughput of ``torchgrade batch`` on this machine, and what each submission costs besides its checks.

    python benchmarks/batch.py [--count 4] [-k answers] [--jobs 1 2]

Materialises ``--count`` sample submissions (the reference, the template and buggy samples, in turn),
grades them with the real graders restricted by ``-k`` (default: the hand-computation checks, seconds
each, no training) on the synthetic citation graph, and prints:

* submissions per minute for each ``--jobs`` value, process isolation (the batch's default), every
  submission graded afresh (``force``);
* per submission: the wall time of its grading, the time its checks took, and the rest, which is the
  harness's fixed cost (pytest's start and collection, torch's import, the worker, the report; a batch
  job starts the grading pytest itself, with no Python process in between);
* the worker's share of that cost: the same batch with ``--isolation none`` (no worker at all), one
  at a time, compared with process isolation, one at a time.

A benchmark, not a test: it asserts nothing. On a shared machine the figures move with the load;
the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures import samples  # noqa: E402
from torchgrade.instructor import batch  # noqa: E402

#: Samples graded in turn; a buggy sample and the template keep the checks' times realistic.
SAMPLE_CYCLE = ("reference", "template", "fc1_formula", "rf_off_by_one")


def make_submissions(folder: Path, count: int) -> Path:
    for i in range(count):
        name = SAMPLE_CYCLE[i % len(SAMPLE_CYCLE)]
        sample = samples.load(name)
        built = samples.materialise(sample, folder / "tmp")
        built.rename(folder / f"{i:02d}-{name}")
    (folder / "tmp").rmdir()
    return folder


def timed_batch(submissions: Path, out: Path, *, jobs: int, isolation: str, extra_args: tuple[str, ...]) -> dict:
    """Grade every submission afresh; return the wall time and each grading's seconds and check time."""
    start = time.perf_counter()
    result = batch.run_batch(
        submissions,
        out=out,
        assignment=ROOT,
        jobs=jobs,
        isolation=isolation,
        extra_args=extra_args,
        force=True,
        progress=False,
    )
    wall = time.perf_counter() - start
    per = {}
    for name in result.graded:
        record = json.loads(batch.record_path(out, name).read_text())
        data = json.loads(batch.report_path(out, name).read_text())
        per[name] = (record["seconds"], sum(c["duration"] for c in data["checks"]))
    return {"wall": wall, "per": per, "statuses": result.statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=4, help="submissions per batch (default 4)")
    parser.add_argument("-k", dest="select", default="answers", help="pytest's -k expression (default: answers)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="--jobs values to time (default: 1 2)")
    args = parser.parse_args()
    extra_args = ("-k", args.select, "--data-root", "synthetic")
    print(
        f"{args.count} submissions, -k {args.select!r}, {os.cpu_count()} cores, "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="torchgrade-bench-") as tmp:
        submissions = make_submissions(Path(tmp) / "submissions", args.count)
        runs = {}
        for jobs in args.jobs:
            runs[("process", jobs)] = timed_batch(
                submissions, Path(tmp) / f"process-{jobs}", jobs=jobs, isolation="process", extra_args=extra_args
            )
        runs[("none", 1)] = timed_batch(
            submissions, Path(tmp) / "none-1", jobs=1, isolation="none", extra_args=extra_args
        )
    print(
        f"\n{'isolation':<10} {'jobs':>4} {'wall s':>8} {'subs/min':>9} {'s/sub':>7} {'checks s':>9} "
        f"{'rest s':>7}  statuses"
    )
    for (isolation, jobs), run in runs.items():
        seconds = [s for s, _ in run["per"].values()]
        checks = [c for _, c in run["per"].values()]
        print(
            f"{isolation:<10} {jobs:>4} {run['wall']:>8.1f} {60 * args.count / run['wall']:>9.1f} "
            f"{statistics.fmean(seconds):>7.2f} {statistics.fmean(checks):>9.2f} "
            f"{statistics.fmean(seconds) - statistics.fmean(checks):>7.2f}  "
            f"{sorted(set(run['statuses'].values()))}"
        )
    if ("process", 1) in runs:
        process = statistics.fmean(s for s, _ in runs[("process", 1)]["per"].values())
        none = statistics.fmean(s for s, _ in runs[("none", 1)]["per"].values())
        print(f"\nworker overhead per submission (process - none, one at a time): {process - none:.2f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
