"""``torchgrade new DIR``: a small but real assignment to start one's own from.

The scaffold is the worked example of ``docs/authoring.md``: a manifest (``assignments.toml``) with one
assignment of four questions (one graded by hand), a module ``classifier.py`` holding a function
(``standardise``), an ``nn.Module`` (``MLP``) and a training loop (``train_classifier``) in
``student_template/`` and ``reference/``, a grader module with a shape check, an exact check and a
short training check (``graders/test_classifier.py``, its helpers in ``graders/_classifier.py``), the
data generator (``fixtures/rings.py``), one buggy sample and one correct variant as TOML edits of the
reference (``fixtures/submissions/``, ``fixtures/variants/``), the calibration script of the training
check's threshold (``benchmarks/calibrate.py``), the CI files a release can ship (``ci/``) and a
README for the instructor. ``torchgrade --assignment DIR check`` passes on it as written: the reference
earns every auto-graded point, the template none, the buggy sample loses exactly its question's.

The files are package data (``scaffold_files/``, each named with a ``.tmpl`` suffix so that neither
pytest nor the linters take them for torchgrade's own modules); ``__ID__`` and ``__TITLE__`` in them
become the assignment's id and title. A student release's torchgrade wheel leaves them out: they hold
a reference solution.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from torchgrade.errors import TorchgradeError

#: The package data the scaffold is written from.
FILES = "scaffold_files"
SUFFIX = ".tmpl"
#: Files written executable (Gradescope runs them).
EXECUTABLE = ("ci/gradescope/setup.sh", "ci/gradescope/run_autograder")
#: An assignment id: a TOML bare key that reads well in ``--only ID`` and in file names.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DEFAULT_TITLE = "Standardising features and training an MLP"
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n.torchgrade-cache/\ntorchgrade-report.json\nresults.json\n"


def default_id(folder: Path) -> str:
    """An id from the folder's name: lower case, runs of other characters made one ``-``."""
    slug = re.sub(r"[^a-z0-9_]+", "-", folder.resolve().name.lower()).strip("-_")
    return slug if slug and slug[0].isalnum() else "assignment"


def scaffold_files() -> dict[str, str]:
    """The scaffold's files: relative path (without :data:`SUFFIX`) -> its text, placeholders unfilled.

    Raises:
        TorchgradeError: this torchgrade was packed without them (a release's wheel leaves them out).
    """
    root = resources.files("torchgrade.instructor").joinpath(FILES)
    if not root.is_dir():
        raise TorchgradeError(
            "this torchgrade has no scaffold files (a release's wheel leaves them out); "
            "install torchgrade itself to run torchgrade new"
        )
    found: dict[str, str] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
            elif entry.name.endswith(SUFFIX):
                found[prefix + entry.name[: -len(SUFFIX)]] = entry.read_text(encoding="utf-8")
    return dict(sorted(found.items()))


def render(text: str, path: str, assignment_id: str, title: str) -> str:
    """Fill the placeholders of one file: in the manifest the title becomes a TOML string."""
    if path == "assignments.toml":
        text = text.replace('"__TITLE__"', json.dumps(title))
    else:  # a docstring or Markdown: no quotes or backslashes to break it
        text = text.replace("__TITLE__", title.replace("\\", "/").replace('"', "'"))
    return text.replace("__ID__", assignment_id)


def new(folder: str | Path, *, assignment_id: str | None = None, title: str | None = None) -> list[Path]:
    """Write the scaffold into ``folder`` (created; it must not exist or be empty).

    Args:
        folder: where the assignment goes.
        assignment_id: its id in the manifest (default: from the folder's name, :func:`default_id`).
        title: its title (default :data:`DEFAULT_TITLE`).

    Returns:
        The written files, relative to ``folder``.

    Raises:
        TorchgradeError: the folder holds files already, or the id or title is unusable.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TorchgradeError(f"{folder} exists and is not an empty folder; choose a new one")
    assignment_id = assignment_id or default_id(folder)
    if not ID_PATTERN.fullmatch(assignment_id):
        raise TorchgradeError(
            f"assignment id {assignment_id!r}: use letters, digits, '-' and '_', starting with a letter or digit"
        )
    title = (title or DEFAULT_TITLE).strip()
    if not title or "\n" in title:
        raise TorchgradeError("the title must be one non-empty line")
    files = scaffold_files()
    written = []
    for rel, text in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(text, rel, assignment_id, title), encoding="utf-8")
        if rel in EXECUTABLE:
            target.chmod(0o755)
        written.append(Path(rel))
    (folder / ".gitignore").write_text(GITIGNORE)
    written.append(Path(".gitignore"))
    return sorted(written)
