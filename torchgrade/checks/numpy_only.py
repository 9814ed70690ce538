"""Judging a NumPy-only rule (a handout that forbids torch in some functions). Grader side.

The submitted functions are read and traced where they live by
:func:`torchgrade.probes.numpy_only.audit`, which returns what it found as plain data; this module
turns that data into the findings a check fails on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def torch_findings(audit: dict[str, Any], names: Sequence[str]) -> list[str]:
    """What says that the functions ``names`` use torch, from an audit's findings.

    Args:
        audit: ``{"static": {name: [finding, ...]}, "runtime": {name: {"calls": [...], ...}}}`` as
            :func:`torchgrade.probes.numpy_only.audit` returns it (names it has no entry for have
            no findings).
        names: the functions to judge, in the order to report them.

    Returns:
        One sentence per finding, the reading's first, e.g. ``["conv2d_forward uses F
        (torch.nn.functional)", "conv2d_forward called torch.conv2d when run"]``; empty when none
        of the functions uses torch.
    """
    findings: list[str] = []
    for name in names:
        findings += audit.get("static", {}).get(name, [])
        calls = audit.get("runtime", {}).get(name, {}).get("calls", [])
        if calls:
            findings.append(f"{name} called {', '.join(calls)} when run")
    return findings
