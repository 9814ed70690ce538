"""Partial credit: a check made of parts, each earning its points if it passes.

A grader asks for the ``parts`` fixture of :mod:`torchgrade.engine.plugin`::

    with parts.part(1, "n=4"):
        shapes.check_shape(sub.CNN(n=4)(x), (2, 2), who="CNN(n=4)(x)")
"""

from __future__ import annotations

from types import TracebackType

from torchgrade import errors
from torchgrade.reporting import report


class Parts:
    """Partial credit: each ``with parts.part(points, name):`` block earns its points if it passes.

    A failing part does not stop the check; the check fails at the end with every failing part's
    message (:func:`parts_message`), and earns the points of the parts that passed.
    """

    def __init__(self) -> None:
        self.results: list[report.PartResult] = []

    def part(self, points: float, name: str) -> _PartContext:
        return _PartContext(self, float(points), name)

    @property
    def earned(self) -> float:
        return sum(p.points for p in self.results)

    @property
    def failures(self) -> list[report.PartResult]:
        return [p for p in self.results if p.points < p.max_points]


def parts_message(parts: Parts) -> str:
    """One message for the failed parts of a check, each message once; its first line is the score
    table's reason.

    Failed parts with the same message share one line (``[name: 0/2; other: 0/1] message``); the head
    says how many failed and carries the first such line, so that no part's message is written twice.
    """
    failed = parts.failures
    groups: dict[str, list[report.PartResult]] = {}
    for p in failed:
        groups.setdefault(p.message, []).append(p)
    if len(groups) == 1 and len(failed) == len(parts.results):
        return failed[0].message  # e.g. every part hit "CNN(n=4) is not implemented yet"
    lines = [
        "[" + "; ".join(f"{p.name}: {p.points:g}/{p.max_points:g}" for p in group) + "] " + message
        for message, group in groups.items()
    ]
    head = f"{len(failed)} of {len(parts.results)} parts failed ({parts.earned:g} points kept); "
    return "\n".join([head + lines[0], *lines[1:]])


class _PartContext:
    def __init__(self, parts: Parts, points: float, name: str) -> None:
        self.parts, self.points, self.name = parts, points, name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            self.parts.results.append(report.PartResult(self.name, self.points, self.points))
            return False
        if isinstance(exc, AssertionError):
            self.parts.results.append(report.PartResult(self.name, 0.0, self.points, errors.failure_text(exc)))
            return True  # the failure is recorded; the next part still runs
        return False
