"""What process isolation costs: worker starts, a 36 MB round trip, and the overhead on the reference.

    python benchmarks/isolation.py [--repeat 5] [--units test_answers.py,test_shoes.py] [--skip-grading]

1. Worker start in the sandbox tier this machine offers (named in the output): cold (a new worker
   that imports torch), a first restart after a crash (cold too), and a later restart, which takes
   the spare worker started after the first one (torch already imported).
2. Per-call round trip of a [60, 3, 224, 224] float32 batch (36 MB) sent to the submission and
   back, in-process and in a worker.
3. The reference graded by each grader module (a unit) with ``--isolation none`` and
   ``--isolation process`` through the real entry point, without the grade cache, on the synthetic
   graph: wall time per mode and the overhead.

A benchmark, not a test: it asserts nothing. Targets (issue 6): under 100 ms per extra worker start
once warm, under 15% overhead of process isolation over in-process grading.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from grade_time import grade_timed  # noqa: E402

from fixtures import samples  # noqa: E402
from torchgrade import errors  # noqa: E402
from torchgrade.engine.proxy import Submission  # noqa: E402
from torchgrade.isolation import sandbox  # noqa: E402

PROBE = """
import os


def echo(x):
    return x


def crash():
    os._exit(3)
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def worker_starts(folder: Path, repeat: int) -> None:
    print(f"sandbox: {sandbox.choose().tier}; {'; '.join(sandbox.choose().protections()[2:])}")
    cold, first, warm = [], [], []
    for _ in range(repeat):
        sub = Submission(folder, "process", {}, hidden=sandbox.hidden_paths(folder, ROOT, None))
        cold.append(timed(lambda: sub.lookup("echo")))  # noqa: B023 - called at once
        for times in (first, warm):
            try:
                sub.lookup("crash")()
            except errors.WorkerCrashed:
                pass
            time.sleep(3)  # the checks in between: the spare imports torch meanwhile
            times.append(timed(lambda: sub.lookup("echo")))  # noqa: B023
        sub.close()
    for name, values in (
        ("cold start", cold),
        ("first restart (no spare yet)", first),
        ("later restart (the spare)", warm),
    ):
        print(f"  {name:<30} median {statistics.median(values) * 1000:8.1f} ms  (min {min(values) * 1000:.1f})")


def round_trip(folder: Path, repeat: int) -> None:
    batch = torch.randn(60, 3, 224, 224)
    print(f"round trip of a {list(batch.shape)} float32 batch ({batch.numel() * 4 / 1e6:.0f} MB) to echo(x) and back:")
    for isolation in ("none", "process"):
        sub = Submission(folder, isolation, {}, hidden=sandbox.hidden_paths(folder, ROOT, None))
        echo = sub.lookup("echo")
        echo(batch)  # the first call starts the worker
        times = [timed(lambda: echo(batch)) for _ in range(repeat)]  # noqa: B023
        sub.close()
        print(f"  {isolation:<8} median {statistics.median(times) * 1000:8.1f} ms  (min {min(times) * 1000:.1f})")


def grading_overhead(units: list[str]) -> None:
    print("the reference, graded per unit without the grade cache (synthetic graph):")
    print(f"  {'unit':<24} {'none s':>8} {'process s':>10} {'overhead':>9}")
    totals = {"none": 0.0, "process": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = samples.materialise(samples.load("reference"), Path(tmp))
        for unit in units:
            walls = {
                mode: grade_timed(folder, mode, Path(tmp), ("--data-root", "synthetic", "-k", unit))[0]
                for mode in ("none", "process")
            }
            for mode, wall in walls.items():
                totals[mode] += wall
            print(
                f"  {unit:<24} {walls['none']:8.1f} {walls['process']:10.1f} "
                f"{(walls['process'] / walls['none'] - 1) * 100:8.1f}%"
            )
    print(
        f"  {'all':<24} {totals['none']:8.1f} {totals['process']:10.1f} "
        f"{(totals['process'] / totals['none'] - 1) * 100:8.1f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (medians are printed)")
    parser.add_argument("--units", help="comma-separated grader modules (default: every graders/test_*.py)")
    parser.add_argument("--skip-grading", action="store_true", help="only the worker starts and the round trip")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "probe"
        folder.mkdir()
        (folder / "probe.py").write_text(PROBE)
        worker_starts(folder, args.repeat)
        round_trip(folder, args.repeat)
    if not args.skip_grading:
        units = args.units.split(",") if args.units else sorted(p.name for p in (ROOT / "graders").glob("test_*.py"))
        grading_overhead(units)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
