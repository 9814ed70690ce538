"""The grade cache: results are reused only for identical graded code."""

from __future__ import annotations

import pytest

from torchgrade.engine.cache import GradeCache
from torchgrade.errors import StudentError

SHOES = "def load_shoes(folder):\n    return 1\n\ndef train_model():\n    return 2\n"


def make_cache(tmp_path, source: str) -> GradeCache:
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    (folder / "shoes.py").write_text(source)
    return GradeCache(str(tmp_path / "cache"), folder)


def test_identical_code_reuses_and_other_code_recomputes(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 0.9}

    args = ("memorise", ("shoes",), {"iters": 150})
    assert make_cache(tmp_path, SHOES).compute(*args, compute, ignore=("load_shoes",)) == {"accuracy": 0.9}
    # a fresh cache object on the same directory, code differing only in an ignored function: reused
    changed_loader = SHOES.replace("return 1", "return 3")
    assert make_cache(tmp_path, changed_loader).compute(*args, compute, ignore=("load_shoes",)) == {"accuracy": 0.9}
    assert len(calls) == 1
    # the training code changed: recomputed
    make_cache(tmp_path, SHOES.replace("return 2", "return 4")).compute(*args, compute, ignore=("load_shoes",))
    assert len(calls) == 2
    # other parameters: recomputed
    make_cache(tmp_path, SHOES).compute("memorise", ("shoes",), {"iters": 100}, compute, ignore=("load_shoes",))
    assert len(calls) == 3


def test_a_cached_failure_is_raised_again_with_its_type(tmp_path):
    def fail():
        raise StudentError("train_model(...) raised ValueError: bad", "ValueError")

    for _ in range(2):
        with pytest.raises(StudentError, match=r"^train_model\(\.\.\.\) raised ValueError: bad$"):
            make_cache(tmp_path, SHOES).compute("memorise", ("shoes",), {}, fail)


def test_without_a_directory_nothing_is_reused_across_runs(tmp_path):
    calls = []
    for _ in range(2):
        GradeCache(None, tmp_path).compute("x", (), {}, lambda: calls.append(1) or 1)
    assert len(calls) == 2


def test_a_module_that_is_a_link_never_shares_the_run_of_the_file_it_points_to(tmp_path):
    """A student's shoes.py linking to the reference's is not graded as the reference (the worker
    never follows the link), so it must not reuse the reference's cached training run either."""
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    reference = make_cache(tmp_path, SHOES)
    assert reference.compute("memorise", ("shoes",), {}, compute) == 1
    student = tmp_path / "student"
    student.mkdir()
    (student / "shoes.py").symlink_to(tmp_path / "sub" / "shoes.py")
    assert GradeCache(str(tmp_path / "cache"), student).compute("memorise", ("shoes",), {}, compute) == 2


def test_code_too_deep_to_parse_is_keyed_by_its_bytes(tmp_path):
    deep = "x = " + "(" * 5000 + ")" * 5000 + "\n" + "y = a" + ".b" * 5000 + "\n"
    cache = make_cache(tmp_path, deep)
    assert cache.compute("run", ("shoes",), {}, lambda: "done", ignore=("load_shoes",)) == "done"
