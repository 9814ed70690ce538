"""The CPU time the reference uses under each budget of the graders, and the margin left.

Budgets count CPU time, not wall-clock time (``Submission.set_cpu_budget``): load never costs a point,
but a budget too tight for a correct submission would. This grades the reference once, with the real
plugin and (by default) process isolation, and records every budget set while it runs: the graders'
own (``set_cpu_budget(55)`` around a training run) and each check's (its pytest-timeout, the nominal
time, set by the plugin's ``sub`` fixture). For each it prints the CPU seconds charged, the wall-clock
seconds the section took, and the margin (budget / CPU used)::

    python benchmarks/budget_margins.py --data-root synthetic
    python benchmarks/budget_margins.py -k "molecule or gat_accuracy" --isolation none

Heavy (every check of the suite: 9 min on 2 cores shared at a load of ~10): run it alone, on an idle
machine where you can. Measured at a load of 10-25 on 2 cores, the tightest margins were the molecule
GNN (25.7 CPU s of 55, 2.1x; 77 s of wall-clock time), the memorisation check (55 of 150, 2.7x) and the
molecule MLP (19.5 of 55, 2.8x); at a load of ~8 the molecule GNN used 16.1 CPU s: CPU time grows
somewhat with contention too (caches, a shared host), so budgets keep a margin of 2 or more.
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Section:
    """One budget: from one ``set_cpu_budget(seconds)`` to the next call on the same submission."""

    check: str
    where: str
    seconds: float
    budget: object  # torchgrade.isolation.transport.CpuBudget, charged while the section runs
    started: float
    ended: float | None = None

    @property
    def cpu(self) -> float:
        return self.budget.spent

    @property
    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass
class Recorder:
    """A pytest plugin object that wraps ``Submission.set_cpu_budget`` to record each budget."""

    sections: list[Section] = field(default_factory=list)
    current: str = ""
    _open: dict[int, Section] = field(default_factory=dict)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        self.current = item.nodeid.split("::")[-1]
        return (yield)

    def install(self) -> None:
        from torchgrade.engine.proxy import Submission

        original = Submission.set_cpu_budget
        recorder = self

        def set_cpu_budget(sub, seconds, *, backstop=None):
            original(sub, seconds, backstop=backstop)
            previous = recorder._open.pop(id(sub), None)
            if previous is not None:
                previous.ended = time.monotonic()
            if seconds is None:
                return
            caller = inspect.stack()[1]
            where = "the check (plugin)" if backstop is not None else f"{Path(caller.filename).name}:{caller.lineno}"
            section = Section(recorder.current, where, float(seconds), sub.channel.budget, time.monotonic())
            recorder.sections.append(section)
            recorder._open[id(sub)] = section

        Submission.set_cpu_budget = set_cpu_budget


def table(sections: list[Section], checks: int) -> list[str]:
    """The graders' own budgets, then the ``checks`` checks that used most of their nominal time."""
    own = [s for s in sections if s.where != "the check (plugin)"]
    whole = sorted((s for s in sections if s.where == "the check (plugin)"), key=lambda s: -s.cpu / s.seconds)
    lines = [
        f"{'check':<36} {'budget set at':<18} {'budget s':>8} {'CPU s':>7} {'wall s':>7} {'margin':>7}",
    ]
    for s in own + whole[:checks]:
        margin = s.seconds / s.cpu if s.cpu > 0 else float("inf")
        lines.append(f"{s.check[:36]:<36} {s.where:<18} {s.seconds:>8g} {s.cpu:>7.1f} {s.wall:>7.1f} {margin:>6.1f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isolation", default="process", choices=("none", "process"))
    parser.add_argument("--data-root", default="synthetic", help="as the graders' --data-root")
    parser.add_argument("-k", default=None, help="only the checks this pytest -k expression selects")
    parser.add_argument("--checks", type=int, default=5, help="how many whole checks to list (most used first)")
    args = parser.parse_args()

    recorder = Recorder()
    recorder.install()
    report = Path(tempfile.mkdtemp(prefix="torchgrade-margins-")) / "report.json"
    argv = [
        str(ROOT / "graders"),
        f"--rootdir={ROOT}",
        "-c",
        str(ROOT / "pyproject.toml"),
        f"--confcutdir={ROOT / 'graders'}",
        "-p",
        "no:cacheprovider",
        f"--submission={ROOT / 'reference'}",
        f"--isolation={args.isolation}",
        f"--report={report}",
        f"--data-root={args.data_root}",
        "-q",
        "--tb=line",
    ]
    if args.k:
        argv += ["-k", args.k]
    started = time.monotonic()
    code = pytest.main(argv, plugins=[recorder])
    print(f"\nreference graded in {time.monotonic() - started:.0f} s ({args.isolation} isolation, exit code {code})")
    print("CPU seconds charged to each budget (user+system, worker and children) and the margin budget/CPU:")
    for line in table(recorder.sections, args.checks):
        print(line)


if __name__ == "__main__":
    main()
