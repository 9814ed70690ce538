"""``torchgrade release``: the copies of an assignment that leave the instructor's hands.

Each profile is an allowlist: what it does not name is not copied, so a new instructor-only folder
never leaks by default.

* ``student`` (``torchgrade release --out DIR``), what students clone or download:
  ``student_template/`` (the folder they fill in; ``pytest graders`` grades it by default), the
  graders without ``graders/hidden/``, ``fixtures/`` without the sample submissions (they are made
  from the reference), a ``pyproject.toml`` holding only the pytest
  settings the graders run under (plus ``testpaths = ["graders"]``, so that a bare ``pytest`` and an
  IDE's test discovery run the graders), ``requirements.txt``, a README for students and, on request,
  the CI file of their platform (``--ci github`` / ``--ci gitlab``).
* ``gradescope`` (``--profile gradescope``), the content of a Gradescope autograder zip:
  ``setup.sh`` and ``run_autograder`` at the root, every grader (hidden ones included), the same
  fixtures, ``pyproject.toml`` and ``requirements.txt``, and ``student_template/``: Gradescope grades
  the student's upload, but the graders read the submission interface (which module holds which
  name, the signatures) from the template's syntax tree.

Both carry the manifest, ``assignments.toml``, where the assignment has one.

Both carry torchgrade itself as a wheel, ``wheels/torchgrade-<version>-py3-none-any.whl`` (the running
torchgrade, packed offline by :func:`build_wheel`), which ``requirements.txt`` installs with the extras
the release's own code imports (:data:`EXTRA_MODULES`): ``pip install -r requirements.txt`` works on a
machine that reaches only the package registry. ``--torchgrade-requirement`` names another line instead
(a version on an index, a git URL), and then no wheel is shipped.

Never copied: ``reference/``, the sample submissions (``fixtures/submissions/``, ``fixtures/samples.py``,
``fixtures/notebooks/``), the correct variants (``fixtures/variants/``: solutions), the hostile corpus
(``fixtures/adversarial/``), ``benchmarks/``
(calibration scripts import the reference), ``tests/``, caches and bytecode. After copying,
:func:`find_leaks` scans the copy, and a release holding any reference code is deleted and refused.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata
import io
import json
import shutil
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torchgrade
from torchgrade.assignments import MANIFEST
from torchgrade.errors import TorchgradeError
from torchgrade.hidden import HIDDEN_DIR

PROFILES = ("student", "gradescope")
CI_FILES = {
    "github": ("ci/github-classroom.yml", ".github/workflows/grade.yml"),
    "gitlab": ("ci/gitlab-ci.yml", ".gitlab-ci.yml"),
}
GRADESCOPE_FILES = ("ci/gradescope/setup.sh", "ci/gradescope/run_autograder")
#: Folder of a release that holds torchgrade's wheel (``requirements.txt`` installs it from there).
WHEELS_DIR = "wheels"
#: torchgrade's extras that a release's requirements list when the code it ships (graders, fixtures,
#: the template) imports one of these top-level modules; the extras themselves are in pyproject.toml.
EXTRA_MODULES = {"graphs": ("torch_geometric", "scipy"), "handouts": ("pandas", "tqdm")}
#: Extras every release of a profile lists. A student's own machine has what their own code imports,
#: so a student release stays light (core, plus what its graders import); Gradescope, the official
#: grading of uploads, also gets the handouts' usual imports (pandas, tqdm: a submission's ``import
#: pandas`` works instead of being stood in for) and the bundled bubblewrap sandbox.
PROFILE_EXTRAS = {"student": (), "gradescope": ("handouts", "sandbox")}
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
        torchgrade_requirement: the line of ``requirements.txt`` that installs torchgrade (a version
            on an index, a git URL); default: the wheel of the running torchgrade, shipped in
            :data:`WHEELS_DIR`, with the extras the release needs.
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
    for needed in ("graders", "fixtures", "pyproject.toml", "student_template"):
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
        (out / "pyproject.toml").write_text(pytest_settings(source / "pyproject.toml", testpaths=True))
        if (source / MANIFEST).is_file():  # the assignments' declarations, which the graders' interface reads
            _copy_file(source / MANIFEST, out / MANIFEST)
        _copy_tree(source / "student_template", out / "student_template")
        if profile == "student":
            (out / "README.md").write_text(student_readme(source))
            for platform in ci:
                _copy_file(source / CI_FILES[platform][0], out / CI_FILES[platform][1])
        else:
            for name in GRADESCOPE_FILES:
                _copy_file(source / name, out / Path(name).name)
        (out / "requirements.txt").write_text(_requirements(out, profile, torchgrade_requirement))
        leaks = find_leaks(out, reference_dir=source / "reference", template_dir=source / "student_template")
        if leaks:
            findings = "\n".join(f"  {leak}" for leak in leaks[:20])
            raise LeakFound(f"the release holds reference code and was deleted ({len(leaks)} finding(s)):\n{findings}")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


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


def pytest_settings(pyproject: Path, *, testpaths: bool = False) -> str:
    """A pyproject.toml with only the ``[tool.pytest.ini_options]`` table of ``pyproject``, verbatim.

    The graders must run under the very settings they were calibrated under (``filterwarnings =
    error``, the timeout, strict markers), so the table is copied as text, comments included, and
    checked to parse to the same settings. ``testpaths``: add ``testpaths = ["graders"]`` where the
    table has none, so that a bare ``pytest`` at the release's root (and an IDE's discovery) loads
    ``graders/conftest.py`` as an initial conftest, where its ``pytest_plugins`` is allowed, instead of
    failing on "Defining 'pytest_plugins' in a non-top-level conftest".
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
    if testpaths and "testpaths" not in settings:
        table += '# Added by torchgrade release: a bare `pytest` runs the graders.\ntestpaths = ["graders"]\n'
    return (
        "# pytest settings of the graders, copied from the instructor's pyproject.toml; "
        "`pytest graders` runs under them.\n" + table
    )


def _requirements(out: Path, profile: str, torchgrade_line: str | None) -> str:
    """``requirements.txt`` of the release in ``out``: torch's range, and torchgrade (by default its
    wheel, built into ``out``/:data:`WHEELS_DIR`) with the extras the release uses."""
    torch = torch_requirement()
    if torchgrade_line is None:
        wheel = build_wheel(out / WHEELS_DIR)
        extras = sorted({*PROFILE_EXTRAS[profile], *needed_extras(out)})
        torchgrade_line = f"./{wheel.relative_to(out).as_posix()}" + (f"[{','.join(extras)}]" if extras else "")
    return (
        f"# Install torch first from PyTorch's CPU index (the default wheel is a multi-GB CUDA build);\n"
        f"# a torch you have already (a GPU build, a newer release) is kept. From this folder:\n"
        f'#   python -m pip install "{torch}" --index-url {TORCH_CPU_INDEX}\n'
        f"#   python -m pip install -r requirements.txt\n"
        f"{torch}\n{torchgrade_line}\n"
    )


def torch_requirement() -> str:
    """The running torchgrade's requirement on torch (``torch>=2.13``), from its installed metadata."""
    for line in _distribution().requires or ():
        if line.replace(" ", "").startswith(("torch>", "torch=", "torch<", "torch~", "torch!")) or line == "torch":
            return line.replace(" ", "")
    return "torch"


def needed_extras(folder: Path) -> list[str]:
    """The extras of :data:`EXTRA_MODULES` whose modules the Python files under ``folder`` import
    (at the top of a module or inside a function), outside :data:`WHEELS_DIR`."""
    imported: set[str] = set()
    for path in folder.rglob("*.py"):
        if WHEELS_DIR in path.relative_to(folder).parts[:1]:
            continue
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    return [extra for extra, modules in EXTRA_MODULES.items() if imported & set(modules)]


def _distribution() -> importlib.metadata.Distribution:
    try:
        dist = importlib.metadata.distribution("torchgrade")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is None or dist.version != torchgrade.__version__:
        raise TorchgradeError(
            f"the running torchgrade {torchgrade.__version__} is not installed as a package (found "
            f"{dist.version if dist else 'none'}), so it cannot be packed into the release: install it "
            "(`pip install -e .` in its checkout), or name how students install it with --torchgrade-requirement"
        )
    _check_metadata_is_current(dist, Path(torchgrade.__file__).resolve().parents[1] / "pyproject.toml")
    return dist


def _check_metadata_is_current(dist: importlib.metadata.Distribution, pyproject: Path) -> None:
    """Refuse to pack an editable torchgrade whose installed metadata predates its ``pyproject.toml``
    (the dependencies or extras changed since ``pip install -e``): the wheel would carry the old ones."""
    from packaging.requirements import Requirement  # pytest's own dependency

    if not pyproject.is_file():
        return
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    if project.get("name") != "torchgrade":
        return
    declared = {str(Requirement(line)) for line in project.get("dependencies", [])}
    installed = {str(Requirement(line)) for line in dist.requires or () if "extra ==" not in line}
    extras = set(project.get("optional-dependencies", {}))
    if declared != installed or extras != set(dist.metadata.get_all("Provides-Extra") or ()):
        raise TorchgradeError(
            f"torchgrade's installed metadata is older than {pyproject} (its dependencies or extras changed): "
            f"reinstall it (`pip install -e {pyproject.parent}`) before building a release"
        )


#: Package data a release's wheel leaves out: the files of ``torchgrade new`` (instructor/scaffold.py) hold
#: a reference solution, which a release of the scaffolded assignment would otherwise ship to students.
WHEEL_EXCLUDED = ("instructor/scaffold_files/",)


def build_wheel(folder: Path) -> Path:
    """The running torchgrade as a wheel in ``folder``, offline and in-process: its package's files
    (bytecode and caches left out) and its installed metadata (``METADATA``, entry points), packed as
    ``torchgrade-<version>-py3-none-any.whl`` with a fresh ``RECORD``. Works for an installed and an
    editable torchgrade alike; the same files give the same bytes (fixed timestamps).
    """
    dist = _distribution()
    package = Path(torchgrade.__file__).resolve().parent
    info = f"torchgrade-{dist.version}.dist-info"
    members: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if rel.as_posix().startswith(WHEEL_EXCLUDED):
            continue
        if path.is_file() and not any(part in JUNK for part in rel.parts) and path.suffix not in (".pyc", ".pyo"):
            members[f"torchgrade/{rel.as_posix()}"] = path.read_bytes()
    for name in ("METADATA", "entry_points.txt", "top_level.txt"):
        text = dist.read_text(name)
        if text is not None:
            members[f"{info}/{name}"] = text.encode()
    if f"{info}/METADATA" not in members:
        raise TorchgradeError(f"torchgrade {dist.version}'s installed metadata has no METADATA file; reinstall it")
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: torchgrade release\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = io.StringIO()
    for name, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(data)}\n")
    record.write(f"{info}/RECORD,,\n")
    members[f"{info}/RECORD"] = record.getvalue().encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"torchgrade-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


MSG_README_HIDDEN = (
    " The official grading also runs checks that are not in this copy: passing every check here "
    "is necessary, not sufficient."
)


def student_readme(source: Path) -> str:
    """The README of a student release: what to fill in, how to install, how to run the graders."""
    modules = ", ".join(f"`{p.name}`" for p in sorted((source / "student_template").glob("*.py")))
    hidden = any((source / "graders" / HIDDEN_DIR).glob("*.py"))
    torch = torch_requirement()
    return f"""# Your copy of the assignment

Write your solution in `student_template/` ({modules}). Each function and class there raises
`NotImplementedError` until you fill it in. Keep the module names and the public names and signatures:
the graders call them as the docstrings say. You may add helpers and imports.

## Set up (Python 3.11 or later)

From this folder (`requirements.txt` installs torchgrade from the wheel in `{WHEELS_DIR}/`):

```bash
python -m pip install "{torch}" --index-url {TORCH_CPU_INDEX}   # CPU build; the default is a multi-GB CUDA one
python -m pip install -r requirements.txt
```

A torch you have already (a GPU build, a newer release) is kept: skip the first line.

## Check your work

```bash
pytest graders                                   # every check; a score table per question at the end (or bare `pytest`)
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
            groups = _scannable_groups(path, rel.as_posix())
        except (UnicodeDecodeError, OSError, ValueError, zipfile.BadZipFile):
            if path.suffix.lower() not in DATA_SUFFIXES:
                leaks.append(Leak(rel.as_posix(), 0, "a file that is neither text nor data, so it cannot be scanned"))
            continue
        for where, suffix, chunks in groups:
            for block, number in _code_blocks("\n".join(chunks)):
                if block in reference_blocks:
                    leaks.append(Leak(where, number, f"the code of {reference_blocks[block]}: {block[0][:70]}"))
            if suffix in (".py", ".ipynb"):
                for name, _, dump in (body for chunk in chunks for body in _function_bodies(chunk)):
                    if dump in reference_bodies:
                        leaks.append(Leak(where, 0, f"{name}'s body is that of {reference_bodies[dump]}"))
    return leaks


def _scannable_groups(path: Path, rel: str) -> list[tuple[str, str, list[str]]]:
    """(where, suffix, chunks) of each text a file holds: the file itself, or each member of a wheel
    (``wheels/torchgrade-….whl/torchgrade/engine/plugin.py``), which is a zip that a plain read cannot scan."""
    if path.suffix != ".whl":
        return [(rel, path.suffix, _scannable_chunks(path))]
    groups = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            suffix = Path(name).suffix
            if name.endswith("/") or suffix.lower() in DATA_SUFFIXES:
                continue
            groups.append((f"{rel}/{name}", suffix, [archive.read(name).decode("utf-8")]))
    return groups


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
