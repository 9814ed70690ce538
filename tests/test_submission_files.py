"""A submission's files are read safely: regular files only, never through a link, never blocking.

A link to the reference or to ``/dev/zero``, a dangling link, a link loop, a named pipe and a name
that is not UTF-8 are all things a zip from a student can hold; none may crash, hang or leak.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from torchgrade.engine.proxy import Submission
from torchgrade.instructor import batchjob
from torchgrade.isolation import sandbox
from torchgrade.submission_files import MAX_DEPTH, MAX_FILES, list_files, read_regular
from torchgrade.worker.loader import LoadedSubmission

NON_UTF8 = os.fsdecode(b"caf\xe9.txt")


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A submission with one real module and every kind of entry that is not a regular file."""
    secret = tmp_path / "secret.py"
    secret.write_text("ANSWER = 42\n")
    folder = tmp_path / "submission"
    (folder / "pkg").mkdir(parents=True)
    (folder / "shoes.py").write_text("VALUE = 1\n")
    (folder / "pkg" / "data.txt").write_text("x")
    (folder / "answers.py").symlink_to(secret)  # would be the reference, read as a module
    (folder / "zeros.py").symlink_to("/dev/zero")
    (folder / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    (folder / "loop.py").symlink_to(folder / "loop.py")
    (folder / "elsewhere").symlink_to(tmp_path)  # a folder link: never walked
    os.mkfifo(folder / "pipe.py")
    (folder / NON_UTF8).write_bytes(b"bytes")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "shoes.cpython-311.pyc").write_bytes(b"\0")
    return folder


def test_only_regular_files_are_listed_and_the_rest_says_why(hostile):
    listing = list_files(hostile)
    assert [relative for relative, _ in listing.files] == sorted([NON_UTF8, "pkg/data.txt", "shoes.py"])
    why = dict(listing.skipped)
    assert set(why) == {"answers.py", "zeros.py", "dangling.py", "loop.py", "elsewhere", "pipe.py"}
    assert why["pipe.py"] == "a named pipe" and why["answers.py"].startswith("a symbolic link")
    assert "pipe.py: a named pipe" in listing.note()


def test_caps_on_the_number_and_size_of_files(tmp_path):
    for index in range(3):
        (tmp_path / f"m{index}.py").write_text("x" * 10)
    assert [r for r, _ in list_files(tmp_path, max_files=2).files] == ["m0.py", "m1.py"]
    assert dict(list_files(tmp_path, max_files=2).skipped) == {"m2.py": "over the cap of 2 files"}
    assert len(list_files(tmp_path, max_bytes=25).files) == 2
    assert MAX_FILES >= 1000  # a real submission never comes near it


def test_read_regular_refuses_a_pipe_and_a_link_without_blocking(hostile):
    with pytest.raises(OSError):
        read_regular(hostile / "pipe.py")
    with pytest.raises(OSError):
        read_regular(hostile / "zeros.py")
    with pytest.raises(OSError, match="larger than"):
        read_regular(hostile / "shoes.py", limit=3)
    assert read_regular(hostile / "shoes.py") == b"VALUE = 1\n"


def test_the_scratch_copy_holds_only_the_regular_files(hostile):
    scratch = sandbox.Scratch.create(hostile, None)
    try:
        copied = sorted(p.relative_to(scratch.submission).as_posix() for p in scratch.submission.rglob("*"))
        assert copied == sorted([NON_UTF8, "pkg", "pkg/data.txt", "shoes.py"])
        assert not any(p.is_symlink() for p in scratch.submission.rglob("*"))
    finally:
        scratch.remove()


def test_the_loader_sees_the_same_modules_as_the_scratch_copy(hostile):
    assert LoadedSubmission(hostile).module_names == ["shoes"]


def test_hashing_and_packing_a_hostile_submission_neither_crash_nor_hang(hostile, tmp_path):
    before = batchjob.content_hash(hostile)
    (hostile / "another_link.py").symlink_to(hostile / "shoes.py")
    assert batchjob.content_hash(hostile) == before  # what is never read never changes the key
    with tarfile.open(fileobj=io.BytesIO(batchjob.pack(hostile)), mode="r:gz") as tar:
        names = sorted(member.name for member in tar.getmembers())
    assert names == sorted(["submission", f"submission/{NON_UTF8}", "submission/pkg/data.txt", "submission/shoes.py"])
    unpacked = batchjob.unpack(batchjob.pack(hostile), tmp_path / "unpacked")
    assert (unpacked / "shoes.py").read_text() == "VALUE = 1\n"


def test_a_hostile_folder_is_graded_in_process_isolation_with_what_it_holds(hostile):
    sub = Submission(hostile, "process", {"VALUE": "shoes"}, hidden=sandbox.hidden_paths(hostile, None, None))
    try:
        assert sub.VALUE == 1
        with pytest.raises(Exception, match="ANSWER"):
            sub.lookup("ANSWER")  # the linked module was never copied
    finally:
        sub.close()


def test_folders_nested_deeper_than_the_cap_are_skipped_and_said(tmp_path):
    (tmp_path / "main.py").write_text("x = 1\n")
    deep = tmp_path
    for _ in range(200):
        deep = deep / "d"
        deep.mkdir()
    (deep / "lost.py").write_text("y = 2\n")
    listing = list_files(tmp_path)
    assert [name for name, _ in listing.files] == ["main.py"]
    assert listing.skipped == (("/".join(["d"] * (MAX_DEPTH + 1)), f"nested deeper than {MAX_DEPTH} folders"),)
