"""Naming the real cause of a student's exception when it is the grading environment's, not the code's.

Students write against the torch, NumPy and Colab of their course; torchgrade grades with torch 2.13
on a CPU. Some correct code of theirs fails here for that reason alone: ``x.view(...)`` of a
``channels_last`` tensor, ``ReduceLROnPlateau(..., verbose=True)``, ``torch.load`` of a pickled
model, ``np.float``, ``.cuda()``. The message of such a failure keeps the student's error and adds,
from one table (:data:`KNOWN`), what changed and what to write instead.

Grader side: :func:`explained` rewrites an error reply of the worker before it becomes a
:class:`~torchgrade.errors.CheckFailure` (``torchgrade.engine.proxy._failure``). It also strips
terminal escape codes from everything the worker sent (torch's own messages carry ANSI bold) and caps
what one message may hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: What stands between the student's error and the explanation, by kind of difference: of versions,
#: of machines (no GPU where grading runs), of installed packages.
INTRODUCTIONS = {
    "version": "This is a difference between versions: {explanation}",
    "machine": "This is a difference between machines: {explanation}",
    "package": "This is a difference between environments: {explanation}",
}
#: The longest text of a worker's error field kept in a message (a 74,589-character array repr was seen).
MAX_FIELD_CHARS = 4000
MSG_CUT = " [... {count:,} characters cut]"
#: Terminal escape sequences: colours and bold (CSI), and OSC sequences such as hyperlinks.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class Drift:
    """One known difference between the students' environment and the grader's.

    Attributes:
        pattern: searched for in the error's message.
        explanation: what changed and what to write instead; ``{0}``... are the pattern's groups.
        kind: of :data:`INTRODUCTIONS`: ``version``, ``machine`` (no GPU) or ``package`` (not installed).
        replaces: the student's error is torch's long advice, which the explanation says shorter:
            the message keeps only its first line.
    """

    pattern: re.Pattern[str]
    explanation: str
    kind: str = "version"
    replaces: bool = False

    def explain(self, match: re.Match[str]) -> str:
        return INTRODUCTIONS[self.kind].format(explanation=self.explanation.format(*match.groups()))


def _drift(pattern: str, explanation: str, **kwargs: Any) -> Drift:
    return Drift(re.compile(pattern), explanation, **kwargs)


#: The known differences, most specific first; the first match explains the error.
KNOWN: tuple[Drift, ...] = (
    _drift(
        r"view size is not compatible with input tensor's size and stride",
        "`.view` needs a tensor laid out in memory in the order of its dimensions, and the tensor here is not "
        "(a channels_last, permuted or transposed tensor, as newer torch versions return more often); the "
        "same code may have worked with the torch the course used. Use `.reshape(...)` (or "
        "`.contiguous().view(...)`), which gives the same values.",
    ),
    _drift(
        r"(\w*(?:LR|Plateau|Scheduler|LRScheduler)\w*)\.__init__\(\) got an unexpected keyword argument 'verbose'",
        "`verbose` was removed from {0} (and every torch.optim.lr_scheduler class) in torch 2.x; remove "
        "`verbose=...` from the call, and print `scheduler.get_last_lr()` yourself if you want to see the rate.",
    ),
    _drift(
        r"Weights only load failed",
        "since torch 2.6, `torch.load` reads only tensors and plain containers by default "
        "(`weights_only=True`), and this file holds a pickled object (a whole model, an optimizer, a "
        "custom class). Save and load the state dict instead: `torch.save(model.state_dict(), path)` "
        "and `model.load_state_dict(torch.load(path))`; for a file you wrote yourself, "
        "`torch.load(path, weights_only=False)` also works.",
        replaces=True,
    ),
    _drift(
        r"No module named 'torch\._six'",
        "`torch._six` was removed in torch 2.0: use `collections.abc` for container_abcs, `math.inf` for inf, "
        "and `str` for string_classes.",
    ),
    _drift(
        r"This function was deprecated since version 1\.9 and is now removed",
        "this torch function was removed in torch 2.x (torch.symeig, torch.eig, torch.lstsq, torch.solve, "
        "torch.matrix_rank); use its `torch.linalg` counterpart, as torch's message above says.",
    ),
    _drift(
        r"module 'numpy' has no attribute '(float|int|object|complex|str|unicode)'",
        "`np.{0}` was an alias of Python's `{0}`, removed in NumPy 1.24; write `{0}` or a sized type such as "
        "`np.float64` / `np.int64`.",
    ),
    _drift(
        r"module 'numpy' has no attribute '(product|cumproduct|in1d|trapz|msort|asfarray|find_common_type)'",
        "the grader runs NumPy 2, which removed `np.{0}` (use `np.prod`, `np.cumprod`, `np.isin`, "
        "`np.trapezoid`, `np.sort(a, axis=0)`, `np.asarray(a, dtype=float)` or `np.result_type` instead).",
    ),
    _drift(
        r"`np\.(\w+)` was removed in the NumPy 2\.0 release",
        "the grader runs NumPy 2, which removed `np.{0}`; NumPy's message above says what to write instead.",
    ),
    _drift(
        r"Torch not compiled with CUDA enabled|Found no NVIDIA driver|no CUDA GPUs are available|"
        r"CUDA driver initialization failed",
        "the grading machine has no GPU. Pick the device once, "
        "`device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')`, and use `.to(device)` "
        "rather than `.cuda()`.",
        kind="machine",
    ),
    _drift(
        r"No module named '(torch|numpy)\.([\w.]+)'",
        "`{0}.{1}` does not exist in the {0} the grader runs (torch 2.13, NumPy 2): it was moved or removed "
        "since the version the course used; look up where it went in {0}'s release notes.",
    ),
    _drift(
        r"No module named '(?!_tg_submission)([A-Za-z_]\w*)'",
        "'{0}' is not installed where grading runs, and the submission has no module of that name. Write this "
        "part with torch or numpy, or ask the instructor to install it.",
        kind="package",
    ),
    _drift(
        r"Attempting to deserialize object on a CUDA device but torch\.cuda\.is_available\(\) is False",
        "the file was saved on a GPU and the grading machine has none; load it with "
        "`torch.load(path, map_location='cpu')`.",
        kind="machine",
    ),
)


def explain(text: str) -> Drift | None:
    """The known difference that explains an error's text, if any."""
    for drift in KNOWN:
        if drift.pattern.search(text):
            return drift
    return None


def clean(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` without terminal escape codes, cut to ``limit`` characters with how many were cut."""
    text = ANSI.sub("", text)
    if len(text) <= limit:
        return text
    return text[:limit] + MSG_CUT.format(count=len(text) - limit)


def explained(error: dict[str, Any]) -> dict[str, Any]:
    """An error reply of the worker, its text fields cleaned (:func:`clean`) and, where a known
    difference of versions or machines explains it, its message followed by the explanation.

    The student's own error stays in the message (it is what they search for), except where
    :attr:`Drift.replaces` says torch's text is long advice the explanation gives shorter: then its
    first line stays, and the traceback keeps the student's frames only.
    """
    error = {key: clean(value) if isinstance(value, str) else value for key, value in error.items()}
    message = error.get("message", "")
    if error.get("kind") not in ("exception", "missing") or not isinstance(message, str):
        return error
    found = None
    for drift in KNOWN:
        found = drift.pattern.search(message)
        if found:
            break
    if not found:
        return error
    if drift.replaces:
        # Keep the lines up to the one torch's advice starts on, that one shortened.
        end = message.find("\n", found.start())
        head, _, line = message[: end if end >= 0 else len(message)].rpartition("\n")
        line = line if len(line) <= 200 else line[:197] + "..."
        message = f"{head}\n{line}" if head else line
        traceback = error.get("traceback")
        if isinstance(traceback, str):
            kept = traceback.splitlines()
            frames = [i for i, text in enumerate(kept) if text.startswith("  ")]
            error["traceback"] = "\n".join(kept[: frames[-1] + 1]) if frames else ""
    error["message"] = f"{message}\n{drift.explain(found)}"
    return error
