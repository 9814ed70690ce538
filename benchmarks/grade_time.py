"""How long grading takes, per check, in both isolation modes.

    python benchmarks/grade_time.py [--submission reference] [--repeat 1] [--data-root synthetic] [-k gnn]

Grades the submission (default: the reference) with ``--isolation none`` and ``--isolation
process`` through the real entry point, without the grade cache, and prints the time of every
check in both modes, the harness's own overhead (pytest start-up, collection, the report: wall
time minus the checks' time), and the overhead of process isolation over in-process grading.
``-k`` selects checks as pytest's does; ``--data-root synthetic`` grades the graph checks on the
synthetic citation graph even where Cora is on disk. A check's time includes the training run it
starts (shared with later checks through a fixture), so the first check of a run carries it.
A benchmark, not a test: it asserts nothing. Targets on 2 cores: under 60 s for the whole
assignment, isolation overhead under 15%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures import samples  # noqa: E402
from torchgrade.instructor import grading  # noqa: E402


def grade_timed(folder: Path, isolation: str, out: Path, extra_args: tuple[str, ...]) -> tuple[float, dict]:
    start = time.perf_counter()
    _, data = grading.grade(
        folder, assignment=ROOT, isolation=isolation, report=out / f"{isolation}.json", extra_args=extra_args
    )
    return time.perf_counter() - start, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submission", default="reference", help="a sample name (see fixtures/samples.py)")
    parser.add_argument("--repeat", type=int, default=1, help="grade this many times per mode; the fastest counts")
    parser.add_argument("--data-root", help="passed to the graders: a folder with Cora/raw, or 'synthetic'")
    parser.add_argument("-k", dest="select", help="pytest's -k expression, e.g. 'gnn' for graders/test_gnn.py")
    args = parser.parse_args()
    extra_args = (
        *(("--data-root", args.data_root) if args.data_root else ()),
        *(("-k", args.select) if args.select else ()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = samples.materialise(samples.load(args.submission), Path(tmp))
        results = {}
        for isolation in ("none", "process"):
            runs = [grade_timed(folder, isolation, Path(tmp), extra_args) for _ in range(args.repeat)]
            results[isolation] = min(runs, key=lambda run: run[0])
    checks = {
        mode: {c["id"].split("::")[-1]: c["duration"] for c in data["checks"]} for mode, (_, data) in results.items()
    }
    print(f"{'check':<40} {'none s':>8} {'process s':>10}")
    for name in checks["none"]:
        print(f"{name:<40} {checks['none'][name]:>8.2f} {checks['process'].get(name, float('nan')):>10.2f}")
    for mode, (wall, data) in results.items():
        in_checks = sum(checks[mode].values())
        print(
            f"{mode:>8}: {wall:6.1f} s wall, {in_checks:6.1f} s in checks, "
            f"harness overhead {wall - in_checks:5.1f} s;"
            f" score {data['score']:g}/{data['max_score']:g}"
        )
    none_wall, process_wall = results["none"][0], results["process"][0]
    relative = (process_wall / none_wall - 1) * 100
    print(f"process isolation overhead: {process_wall - none_wall:+.1f} s ({relative:+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
