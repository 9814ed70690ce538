"""``torchgrade release``: the copies of an assignment that leave the instructor's hands.

Each profile is an allowlist: what it does not name is not copied, so a new instructor-only folder
never leaks by default.

* ``student`` (``torchgrade release --out DIR``), what students clone or download:
  ``student_template/`` (the folder they fill in; ``pytest graders`` grades it by default), the
  graders without ``graders/hidden/``, ``fixtures/`` without the sample submissions (they are made
  from the reference), a ``pyproject.toml`` holding only the pytest
  settings the graders run under, ``requirements.txt``, a README for students and, on request, the
  CI file of their platform (``--ci github`` / ``--ci gitlab``).
* ``gradescope`` (``--profile gradescope``), the content of a Gradescope autograder zip:
  ``setup.sh`` and ``run_autograder`` at the root, every grader (hidden ones included), the same
  fixtures and ``pyproject.toml``, and torchgrade's own source in ``torchgrade-src/`` for ``setup.sh``
  to install. No ``student_template/``: Gradescope grades the student's upload.

Never copied: ``reference/``, the sample submissions (``fixtures/submissions/``, ``fixtures/samples.py``,
``fixtures/notebooks/``), the correct variants (``fixtures/variants/``: solutions), the hostile corpus
(``fixtures/adversarial/``), ``benchmarks/``
(calibration scripts import the reference), ``tests/``, caches and bytecode. After copying,
:func:`find_leaks` scans the copy, and a release holding any reference code is deleted and refused.
"""

from __future__ import annotations

import ast
import json
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torchgrade
from torchgrade.errors import TorchgradeError
from torchgrade.hidden import HIDDEN_DIR

PROFILES = ("student", "gradescope")
CI_FILES = {
    "github": ("ci/github-classroom.yml", ".github/workflows/grade.yml"),
    "gitlab": ("ci/gitlab-ci.yml", ".gitlab-ci.yml"),
}
GRADESCOPE_FILES = ("ci/gradescope/setup.sh", "ci/gradescope/run_autograder")
#: Folder of the gradescope profile that holds torchgrade's source (setup.sh installs it).
TORCHGRADE_SRC = "torchgrade-src"
#: Instructor material inside fixtures/: sample submissions, made from the reference (the buggy samples
#: are text edits of it, the notebooks are built from it) and useless without it; the correct variants
#: (complete solutions written other ways); the hostile corpus.
FIXTURES_EXCLUDED = ("submissions", "samples.py", "notebooks", "variants", "adversarial")
JUNK = ("__pycache__", ".pytest_cache", ".ruff_cache", ".torchgrade-cache")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTEST_TABLE = "[tool.pytest.ini_options]"
#: Binary files a release may hold (shipped data); any other binary is a finding: it cannot be scanned.
DATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".npz", ".gz")
#: Consecutive code lines that make a block of reference code, and the fewest characters it needs to
#: count. Measured on this repository: graders/, fixtures/, torchgrade/ and tests/ share no block of
#: 2 lines and 60+ characters with reference/, while 40 characters flagged a common idiom
#: (``was_training = model.training`` / ``model.eval()``); the second half of each reference function
#: pasted alone is still found, except for two of 4-5 lines, whose whole bodies the AST comparison finds.
LEAK_BLOCK_LINES, MIN_LEAK_BLOCK_CHARS = 2, 60
#: A reference function body with fewer AST nodes than this is too small to mean a leak.
MIN_LEAK_BODY_NODES = 12


class LeakFound(TorchgradeError):
    """The release held reference code (it was deleted); the message lists the findings."""


@dataclass(frozen=True)
class Leak:
    """Something of the reference found in a release.

    Attributes:
        path: the file, relative to the release.
        line: where in it (1-based; 0 for the path itself).
        what: what was found, naming its place in ``reference/``.
    """

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def release(
    out: str | Path,
    *,
    assignment: str | Path,
    profile: str = "student",
    ci: tuple[str, ...] = (),
    torchgrade_requirement: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Build a release of ``assignment`` in ``out`` and prove that it holds no reference code.

    Args:
        out: the folder to create; it must not exist unless ``force``, which replaces it.
        assignment: the instructor's assignment (``graders/``, ``fixtures/``, ``reference/``, ...).
        profile: one of :data:`PROFILES`.
        ci: platforms of :data:`CI_FILES` whose CI file goes into a student release.
        torchgrade_requirement: the line of ``requirements.txt`` that installs torchgrade in a
            student release (a version pin, a wheel or git URL); default ``torchgrade==<this version>``.
        force: replace ``out`` if it exists.

    Returns:
        The released files, relative to ``out``.

    Raises:
        LeakFound: reference code was found in the release (``out`` is deleted).
        TorchgradeError: a bad argument or assignment.
    """
    source, out = Path(assignment).resolve(), Path(out).resolve()
    if profile not in PROFILES:
        raise TorchgradeError(f"unknown release profile {profile!r}; choose from {', '.join(PROFILES)}")
    unknown = sorted(set(ci) - set(CI_FILES))
    if unknown:
        raise TorchgradeError(f"unknown CI platform {', '.join(unknown)}; choose from {', '.join(CI_FILES)}")
    if ci and profile != "student":
        raise TorchgradeError("CI files go into a student release only (--profile student)")
    for needed in ("graders", "fixtures", "pyproject.toml") + (("student_template",) if profile == "student" else ()):
        if not (source / needed).exists():
            raise TorchgradeError(f"{source} is not an assignment: it has no {needed}")
    if out == source or source in out.parents or out in source.parents:  # --force would delete the assignment
        raise TorchgradeError(f"the release folder {out} must lie outside the assignment {source}, and not hold it")
    if out.exists():
        if not force:
            raise TorchgradeError(f"{out} exists; choose a new folder or pass --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        _copy_tree(
            source / "graders", out / "graders", skip=lambda rel: profile == "student" and rel.parts[0] == HIDDEN_DIR
        )
        _copy_tree(source / "fixtures", out / "fixtures", skip=lambda rel: rel.parts[0] in FIXTURES_EXCLUDED)
        (out / "pyproject.toml").write_text(pytest_settings(source / "pyproject.toml"))
        if profile == "student":
            _copy_tree(source / "student_template", out / "student_template")
            requirement = torchgrade_requirement or f"torchgrade=={torchgrade.__version__}"
            (out / "requirements.txt").write_text(_requirements(source, requirement))
            (out / "README.md").write_text(student_readme(source))
            for platform in ci:
                _copy_file(source / CI_FILES[platform][0], out / CI_FILES[platform][1])
        else:
            _gradescope_files(source, out)
        leaks = find_leaks(out, reference_dir=source / "reference", template_dir=source / "student_template")
        if leaks:
            findings = "\n".join(f"  {leak}" for leak in leaks[:20])
            raise LeakFound(f"the release holds reference code and was deleted ({len(leaks)} finding(s)):\n{findings}")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def _gradescope_files(source: Path, out: Path) -> None:
    for name in GRADESCOPE_FILES:
        _copy_file(source / name, out / Path(name).name)
    project = tomllib.loads((source / "pyproject.toml").read_text()).get("project", {})
    if project.get("name") != "torchgrade" or not (source / "torchgrade").is_dir():
        raise TorchgradeError(
            f"the gradescope profile bundles torchgrade's source, but {source} is not a torchgrade "
            "checkout (no pyproject.toml of project 'torchgrade' next to torchgrade/)"
        )
    _copy_tree(source / "torchgrade", out / TORCHGRADE_SRC / "torchgrade")
    for name in ("pyproject.toml", "README.md"):  # what pip needs to build the package
        _copy_file(source / name, out / TORCHGRADE_SRC / name)
    (out / "requirements.txt").write_text(_requirements(source, f"./{TORCHGRADE_SRC}"))


def _copy_tree(src: Path, dst: Path, *, skip=lambda rel: False) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in JUNK for part in rel.parts) or path.suffix in (".pyc", ".pyo") or skip(rel):
            continue
        if path.is_symlink():  # it could point at reference/; copying what it points at would hide that
            raise TorchgradeError(f"{path} is a symbolic link; a release copies plain files only")
        if path.is_file():
            _copy_file(path, dst / rel)


def _copy_file(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise TorchgradeError(f"{src} is missing from the assignment")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def pytest_settings(pyproject: Path) -> str:
    """A pyproject.toml with only the ``[tool.pytest.ini_options]`` table of ``pyproject``, verbatim.

    The graders must run under the very settings they were calibrated under (``filterwarnings =
    error``, the timeout, strict markers), so the table is copied as text, comments included, and
    checked to parse to the same settings.
    """
    text = pyproject.read_text()
    settings = tomllib.loads(text).get("tool", {}).get("pytest", {}).get("ini_options")
    if settings is None:
        raise TorchgradeError(f"{pyproject} has no {PYTEST_TABLE} table for the graders")
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("["):
            inside = line.strip() == PYTEST_TABLE
        if inside:
            lines.append(line)
    table = "\n".join(lines).rstrip() + "\n"
    if tomllib.loads(table).get("tool", {}).get("pytest", {}).get("ini_options") != settings:
        raise TorchgradeError(f"could not copy {PYTEST_TABLE} out of {pyproject} unchanged (is it split up?)")
    return (
        "# pytest settings of the graders, copied from the instructor's pyproject.toml; "
        "`pytest graders` runs under them.\n" + table
    )


def _requirements(source: Path, torchgrade_line: str) -> str:
    dependencies = tomllib.loads((source / "pyproject.toml").read_text()).get("project", {}).get("dependencies", [])
    torch = next((d for d in dependencies if d.replace(" ", "").startswith("torch==")), "torch")
    return (
        f"# Install torch first from PyTorch's CPU index (the default wheel is a multi-GB CUDA build):\n"
        f'#   python -m pip install "{torch}" --index-url {TORCH_CPU_INDEX}\n'
        f"#   python -m pip install -r requirements.txt\n"
        f"{torch}\n{torchgrade_line}\n"
    )


MSG_README_HIDDEN = (
    " The official grading also runs checks that are not in this copy: passing every check here "
    "is necessary, not sufficient."
)


def student_readme(source: Path) -> str:
    """The README of a student release: what to fill in, how to install, how to run the graders."""
    modules = ", ".join(f"`{p.name}`" for p in sorted((source / "student_template").glob("*.py")))
    hidden = any((source / "graders" / HIDDEN_DIR).glob("*.py"))
    dependencies = tomllib.loads((source / "pyproject.toml").read_text()).get("project", {}).get("dependencies", [])
    torch = next((d for d in dependencies if d.replace(" ", "").startswith("torch==")), "torch")
    return f"""# Your copy of the assignment

Write your solution in `student_template/` ({modules}). Each function and class there raises
`NotImplementedError` until you fill it in. Keep the module names and the public names and signatures:
the graders call them as the docstrings say. You may add helpers and imports.

## Set up (Python 3.11 or later)

```bash
python -m pip install "{torch}" --index-url {TORCH_CPU_INDEX}   # CPU build; the default is a multi-GB CUDA one
python -m pip install -r requirements.txt
```

## Check your work

```bash
pytest graders                                   # every check; a score table per question at the end
pytest graders/test_shoes.py                     # one grader module
pytest graders/test_shoes.py::test_cnn           # one check: each failure prints the line that reproduces it
pytest graders --submission path/to/other/folder # grade another folder than student_template/
```

Each failing check says what it called, with what, what came back and what was expected. Questions
answered in writing are listed as *pending TA review*: a TA grades them. The run also writes a JSON
report, `torchgrade-report.json`.

`graders/` and `fixtures/` are the graders and their data: do not edit them, your grade does not come
from your copy.{MSG_README_HIDDEN if hidden else ""}
"""


# -- the leak scan ---------------------------------------------------------------------------------------
def find_leaks(release_dir: str | Path, *, reference_dir: str | Path, template_dir: str | Path) -> list[Leak]:
    """Find reference code in a release: a path named ``reference``, a block of reference code, or
    the body of a reference function.

    A block is :data:`LEAK_BLOCK_LINES` consecutive code lines of ``reference/*.py`` (blank lines,
    comments and imports skipped, whitespace collapsed, so re-indented code still counts) of
    :data:`MIN_LEAK_BLOCK_CHARS` characters or more, found consecutive in a released file. Single
    lines are not compared: the graders are independent implementations of the same formulas, and
    one of their lines may equal one of the reference's (``return scale[:, None] * a * scale[None, :]``
    is the GCN normalisation however it is written). Bodies are compared by their AST, docstrings left
    out, when they have :data:`MIN_LEAK_BODY_NODES` nodes or more, so a copied one-line solution is
    still found. What the reference shares with the template (signatures, docstrings, stubs) is never
    a leak.
    """
    release_dir, reference_dir, template_dir = Path(release_dir), Path(reference_dir), Path(template_dir)
    template_blocks = {block for path in template_dir.glob("*.py") for block, _ in _code_blocks(path.read_text())}
    template_bodies = {dump for path in template_dir.glob("*.py") for _, _, dump in _function_bodies(path.read_text())}
    reference_blocks: dict[tuple[str, ...], str] = {}
    reference_bodies: dict[str, str] = {}
    for path in sorted(reference_dir.glob("*.py")):
        text = path.read_text()
        for block, number in _code_blocks(text):
            if sum(map(len, block)) >= MIN_LEAK_BLOCK_CHARS and block not in template_blocks:
                reference_blocks.setdefault(block, f"reference/{path.name}:{number}")
        for name, size, dump in _function_bodies(text):
            if size >= MIN_LEAK_BODY_NODES and dump not in template_bodies:
                reference_bodies.setdefault(dump, f"reference/{path.name}:{name}")

    leaks = []
    for path in sorted(p for p in release_dir.rglob("*") if not p.is_dir()):
        rel = path.relative_to(release_dir)
        if any(part.lower() in ("reference", "reference.py") for part in rel.parts):
            leaks.append(Leak(rel.as_posix(), 0, "a path named reference"))
        try:
            chunks = _scannable_chunks(path)
        except (UnicodeDecodeError, OSError, ValueError):
            if path.suffix.lower() not in DATA_SUFFIXES:
                leaks.append(Leak(rel.as_posix(), 0, "a file that is neither text nor data, so it cannot be scanned"))
            continue
        for block, number in _code_blocks("\n".join(chunks)):
            if block in reference_blocks:
                leaks.append(Leak(rel.as_posix(), number, f"the code of {reference_blocks[block]}: {block[0][:70]}"))
        if path.suffix in (".py", ".ipynb"):
            for name, _, dump in (body for chunk in chunks for body in _function_bodies(chunk)):
                if dump in reference_bodies:
                    leaks.append(Leak(rel.as_posix(), 0, f"{name}'s body is that of {reference_bodies[dump]}"))
    return leaks


def _scannable_chunks(path: Path) -> list[str]:
    """A file's text; for a notebook, each cell's source, which its JSON holds as escaped strings."""
    text = path.read_text()
    if path.suffix != ".ipynb":
        return [text]
    cells = json.loads(text).get("cells", [])
    return ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", "")) for c in cells]


def _code_blocks(text: str) -> Iterator[tuple[tuple[str, ...], int]]:
    """Every run of :data:`LEAK_BLOCK_LINES` consecutive code lines, whitespace collapsed, with the
    line number where it starts."""
    code = [(number, " ".join(line.split())) for number, line in enumerate(text.splitlines(), 1)]
    code = [(n, line) for n, line in code if line and not line.startswith(("#", "import ", "from "))]
    for i in range(len(code) - LEAK_BLOCK_LINES + 1):
        yield tuple(line for _, line in code[i : i + LEAK_BLOCK_LINES]), code[i][0]


def _function_bodies(text: str) -> Iterator[tuple[str, int, str]]:
    """(qualified name, AST node count, AST dump) of the body of every function, docstring left out."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            name = f"{prefix}{getattr(child, 'name', '')}"
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                body = child.body[1:] if ast.get_docstring(child) is not None else child.body
                module = ast.Module(body=body, type_ignores=[])
                yield name, sum(1 for _ in ast.walk(module)), ast.dump(module)
            scope = isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            stack.append((child, f"{name}." if scope else prefix))
