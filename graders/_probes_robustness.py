"""Probes of ``test_robustness.py``: image corruptions (UvA DL1 A2, question 1.2). Worker side.

Run next to the submission through ``sub.apply`` (a probe module, sent there as source):
:func:`call_keeping_input`, which also returns the input as the call left it (a corruption that
writes into its input corrupts the clean test set), and :func:`noise_with_generators`, which calls a
noise corruption with ``torch.Generator`` objects (they cannot cross the process boundary, seeds
can). Both return the outputs as plain data; the grader measures them (``_robustness.py``). Imports
only torch and the standard library.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

__torchgrade_probes__ = True


def call_keeping_input(fn: Callable[..., Any], image: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``{"output": fn(image, *args, **kwargs), "input_after": image as the call left it}``."""
    output = fn(image, *args, **kwargs)
    return {"output": output, "input_after": image}


def noise_with_generators(
    fn: Callable[..., Any], image: torch.Tensor, severity: int, seeds: Sequence[int]
) -> dict[str, Any]:
    """Call ``fn(image, severity, generator)`` once per seed, each with a fresh ``torch.Generator``
    seeded so, and with torch's global generator put in a different state before every call (a
    corruption that ignores its generator then gives different noise for equal seeds).

    The generator is passed as the keyword ``generator`` when ``fn`` has that parameter, else as
    the third positional argument; the global generator's state is restored afterwards.

    Returns:
        ``{"outputs": [one output per seed], "how": how the generator was passed}``.

    Raises:
        TypeError: ``fn`` takes neither a ``generator`` keyword nor a third argument.
    """
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        parameters = {}
    if "generator" in parameters:
        how = "generator=torch.Generator()"
    elif len([p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 3:
        how = "a torch.Generator as the third argument"
    else:
        raise TypeError(
            f"{getattr(fn, '__name__', 'the corruption')}{_signature(fn)} takes no generator; "
            f"expected a parameter `generator` (a torch.Generator)"
        )
    outputs = []
    with torch.random.fork_rng(devices=[]):
        for i, seed in enumerate(seeds):
            torch.manual_seed(7919 * (i + 1))
            generator = torch.Generator().manual_seed(int(seed))
            args = (image.clone(), severity)
            outputs.append(fn(*args, generator=generator) if how.startswith("generator") else fn(*args, generator))
    return {"outputs": outputs, "how": how}


def _signature(fn: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"
