"""Exceptions of the harness.

Two families that must never be confused:

* :class:`CheckFailure` -- the submission loses the points of a check. Its message is written for
  the student: what was called, with what, what came back, what was expected. It subclasses
  ``AssertionError`` so that a plain ``assert`` in a grader means the same thing.
* :class:`TorchgradeError` -- our bug or a broken set-up. It is never a silent zero: the run is
  marked as a harness error and exits with its own code.
"""

from __future__ import annotations


class TorchgradeError(Exception):
    """A harness error: something is wrong with torchgrade or its configuration, not the submission."""


class CheckFailure(AssertionError):
    """The submission failed a check; the message explains it to the student."""


class StudentError(CheckFailure):
    """Student code raised an exception; the message carries their traceback, trimmed to their frames.

    Attributes:
        exc_type: the name of the exception type raised in student code.
    """

    def __init__(self, message: str, exc_type: str = "Exception") -> None:
        super().__init__(message)
        self.exc_type = exc_type


class NotImplementedYet(StudentError):
    """Student code raised ``NotImplementedError``: the template's stub is still there."""


class MissingName(CheckFailure):
    """The submission lacks a module or a name that the grader needs."""


class SignatureMismatch(CheckFailure):
    """A submitted function or class cannot be called with the arguments the handout specifies.

    Attributes:
        parameters: the submitted callable's parameters, validated
            (``torchgrade.engine.binding.SubmittedParameter``), or None when they are not known.
    """

    def __init__(self, message: str, parameters: tuple | None = None) -> None:
        super().__init__(message)
        self.parameters = parameters


class StudentTimeout(CheckFailure):
    """A check's calls into student code spent their CPU budget, or outlived the generous wall-clock
    backstop (a call that sleeps or blocks); the worker was stopped. Load never triggers the first."""


class WorkerCrashed(CheckFailure):
    """The worker process running student code died (``os._exit``, a segfault, the OOM killer...)."""


def failure_text(exc: BaseException) -> str:
    """The message of a failure as a report shows it: its text, or its type when it has none."""
    text = str(exc).strip()
    return text or type(exc).__name__
