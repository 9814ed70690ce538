"""Messages name the real cause (issue 17, item 9): a difference of torch versions said as such, no
terminal escape codes, and no value's text running to tens of thousands of characters."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchgrade import errors
from torchgrade.engine import explain, results
from torchgrade.engine.proxy import _failure
from torchgrade.worker import tracebacks
from torchgrade.worker.session import WorkerSession


def raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - what the student's code would raise
        return exc
    raise AssertionError("did not raise")


def channels_last_view() -> None:
    torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last).view(2, -1)


def plateau_verbose() -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, verbose=True)


def load_pickled_model(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pk")
    torch.load(tmp_path / "model.pk")


def numpy_float() -> None:
    np.float  # noqa: B018 - removed in NumPy 1.24, as students still write it


def numpy_product() -> None:
    np.product([1, 2])


def numpy_nan() -> None:
    np.NaN  # noqa: B018


def torch_symeig() -> None:
    torch.symeig(torch.eye(2))


def import_in_a_function() -> None:
    import torchgrade_missing_pkg  # noqa: F401


def torch_submodule() -> None:
    import torch.no_such_module  # noqa: F401


# -- version drift: the student's error as torch 2.13 really raises it, and its explanation --------------
@pytest.mark.parametrize(
    ("make", "says"),
    [
        (channels_last_view, "use `.reshape(...)`"),
        (plateau_verbose, "`verbose` was removed from ReduceLROnPlateau"),
        (numpy_float, "`np.float` was an alias of Python's `float`, removed in NumPy 1.24"),
        (numpy_product, "which removed `np.product` (use `np.prod`"),
        (numpy_nan, "the grader runs NumPy 2, which removed `np.NaN`"),
        (torch_symeig, "use its `torch.linalg` counterpart"),
        (torch_submodule, "`torch.no_such_module` does not exist in the torch the grader runs"),
        (import_in_a_function, "'torchgrade_missing_pkg' is not installed where grading runs"),
    ],
)
def test_a_known_version_difference_is_named_and_the_error_kept(make, says: str) -> None:
    exc = raised(make)
    error = {"kind": "exception", "type": type(exc).__name__, "message": str(exc), "traceback": ""}
    failure = _failure("train_model(model)", error)
    assert isinstance(failure, errors.StudentError)
    text = str(failure)
    assert text.startswith(f"train_model(model) raised {type(exc).__name__}: {exc}\n")  # the student's own error
    assert "This is a difference between " in text and says.lower() in text.lower()


def test_an_unknown_error_is_left_as_it_is() -> None:
    error = {"kind": "exception", "type": "ValueError", "message": "shapes differ", "traceback": "tb"}
    assert explain.explained(error) == error
    assert explain.explain("shapes differ") is None
    assert explain.explain("No module named '_tg_submission.helpers'") is None  # a file the student left out


def test_torch_load_of_a_pickled_model_reads_as_advice_without_escape_codes(tmp_path: Path) -> None:
    exc = raised(lambda: load_pickled_model(tmp_path))
    assert "\x1b[" in str(exc)  # torch's own message is in bold on a terminal
    session = WorkerSession()
    error = session._student_error(exc)
    assert "\x1b" not in error["message"] and "\x1b" not in error["traceback"]
    text = str(_failure("train_model(model)", error))
    assert "\x1b" not in text
    assert "since torch 2.6, `torch.load` reads only tensors" in text
    assert "model.load_state_dict(torch.load(path))" in text
    assert "(1) In PyTorch 2.6" not in text  # torch's long advice, said shorter
    assert text.startswith("train_model(model) raised UnpicklingError: Weights only load failed.")


def test_the_explanation_also_reaches_a_module_that_fails_to_import() -> None:
    message = (
        'shoes.py could not be imported:\n  File "shoes.py", line 1\n'
        "AttributeError: module 'numpy' has no attribute 'float'"
    )
    failure = _failure("CNN", {"kind": "missing", "type": "missing", "message": message})
    assert isinstance(failure, errors.MissingName)
    assert str(failure).startswith(message) and "removed in NumPy 1.24" in str(failure)


def test_the_table_is_one_place_and_every_entry_explains() -> None:
    assert all(drift.explanation and drift.pattern.pattern for drift in explain.KNOWN)
    assert explain.explain("Torch not compiled with CUDA enabled").kind == "machine"


# -- text from the worker: escape codes stripped, lengths capped ----------------------------------------
def test_escape_codes_are_stripped_and_long_text_cut() -> None:
    assert tracebacks.clean_text("a\x1b[1mbold\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07") == "abold link"
    text = tracebacks.clean_text("x" * 5000)
    assert text == "x" * tracebacks.MAX_MESSAGE_CHARS + tracebacks.MSG_CUT.format(count=3000)
    cleaned = explain.explained({"kind": "exception", "type": "E", "message": "\x1b[31m" + "y" * 10_000})
    assert cleaned["message"] == "y" * explain.MAX_FIELD_CHARS + explain.MSG_CUT.format(count=6000)


def test_a_student_exception_holding_an_arrays_repr_stays_short(tmp_path: Path) -> None:
    np.set_printoptions(threshold=sys.maxsize)
    try:
        exc = raised(lambda: (_ for _ in ()).throw(ValueError(f"bad value {np.arange(20_000)!r}")))
    finally:
        np.set_printoptions(threshold=1000)
    assert len(str(exc)) > 70_000
    error = WorkerSession()._student_error(exc)
    assert len(error["message"]) < tracebacks.MAX_MESSAGE_CHARS + 50
    assert all(len(line) < tracebacks.MAX_LINE_CHARS + 50 for line in error["traceback"].splitlines())
    failure = str(_failure("f(x)", error))
    assert len(failure) < 12_000  # each part capped; the report caps the whole (below)
    assert len(results.capped(failure)) < results.MAX_MESSAGE_CHARS + 50


def test_a_student_exception_whose_str_raises_still_gives_a_message() -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = WorkerSession()._student_error(raised(lambda: (_ for _ in ()).throw(Hostile())))
    assert error["message"] == "<its message could not be shown: RuntimeError>"
    assert error["traceback"].splitlines()[-1].endswith("Hostile: <exception str() failed>")  # Python's own words


def test_the_report_keeps_at_most_max_message_chars_head_and_tail() -> None:
    message = "called f(x)\n" + "z" * 10_000 + "\nValueError: the end"
    kept = results.capped(message)
    assert len(kept) < results.MAX_MESSAGE_CHARS + 50
    assert kept.startswith("called f(x)\n") and kept.endswith("ValueError: the end")
    assert results.MSG_CUT.format(count=len(message) - results.MAX_MESSAGE_CHARS) in kept
    assert results.capped("short") == "short"


def test_classify_caps_a_check_failures_message() -> None:
    with pytest.raises(errors.CheckFailure) as info:
        raise errors.CheckFailure("m" * 100_000)
    outcome, message = results.classify(info)
    assert outcome == "failed" and len(message) < results.MAX_MESSAGE_CHARS + 50
