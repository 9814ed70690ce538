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

Both carry the manifest, ``assignments.toml``, where the assignment has one, and both release one
assignment of it with ``--only ID`` (:class:`Selection`): its template modules (other assignments'
names pruned from shared ones), graders, fixtures, a manifest of it alone, ``addopts`` with
``--only=ID``, and (student) a README of its questions and points. A student release also carries a
``.gitignore``.

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
import re
import shlex
import shutil
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torchgrade
from torchgrade import assignments
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
    only: str | None = None,
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
        only: release one assignment of the manifest (:func:`select`): its template modules (other
            assignments' names pruned), graders, fixtures and questions; default: all of them.

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
    selection = select(source, only) if only is not None else None
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
        settings = pytest_settings(source / "pyproject.toml", testpaths=True, only=only)
        (out / "pyproject.toml").write_text(settings)
        if (source / MANIFEST).is_file():  # the assignments' declarations, which the graders' interface reads
            _copy_file(source / MANIFEST, out / MANIFEST)
        _copy_tree(source / "student_template", out / "student_template")
        if selection is not None:
            selection.apply(out)
        if profile == "student":
            readme = student_readme(source) if selection is None else assignment_readme(source, selection, out)
            (out / "README.md").write_text(readme)
            (out / ".gitignore").write_text(GITIGNORE)
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


def pytest_settings(pyproject: Path, *, testpaths: bool = False, only: str | None = None) -> str:
    """A pyproject.toml with only the ``[tool.pytest.ini_options]`` table of ``pyproject``, verbatim.

    The graders must run under the very settings they were calibrated under (``filterwarnings =
    error``, the timeout, strict markers), so the table is copied as text, comments included, and
    checked to parse to the same settings. ``testpaths``: add ``testpaths = ["graders"]`` where the
    table has none, so that a bare ``pytest`` at the release's root (and an IDE's discovery) loads
    ``graders/conftest.py`` as an initial conftest, where its ``pytest_plugins`` is allowed, instead of
    failing on "Defining 'pytest_plugins' in a non-top-level conftest". ``only``: add ``--only ID`` to
    ``addopts`` (the one assignment of a release of one; the line of ``addopts`` is rewritten).
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
    if only is not None:
        table = _add_only(table, tomllib.loads(table)["tool"]["pytest"]["ini_options"], only)
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
    """The installed torchgrade's metadata. An installed ``.dist-info`` (with ``METADATA``) comes before a
    ``torchgrade.egg-info`` folder that a source checkout holds after an editable build: where the
    checkout is on ``sys.path`` (pytest run from it) the latter is found first and has no ``METADATA``."""
    found = list(importlib.metadata.distributions(name="torchgrade"))
    installed = [d for d in found if d.read_text("METADATA") is not None]
    dist = (installed or found or [None])[0]
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


# -- a release of one assignment (--only ID) ------------------------------------------------------------
#: The .gitignore of a student release: environments, caches and what a grading run writes.
GITIGNORE = """\
# Virtual environments
.venv/
venv/
env/
# Python and tool caches
__pycache__/
*.py[cod]
.pytest_cache/
.ruff_cache/
.mypy_cache/
.ipynb_checkpoints/
# What a grading run writes
torchgrade-report.json
torchgrade-summary.md
.torchgrade-cache/
# Data sets downloaded or unpacked for the handout
data/
*.zip
"""


@dataclass(frozen=True)
class Selection:
    """One assignment of a manifest, and what a release of it keeps of the instructor's folders.

    :meth:`apply` trims a full copy (``release`` copies everything first, then trims):

    * the manifest keeps only the assignment's tables (:func:`manifest_of`);
    * ``student_template/``: the modules of other assignments go; a module the assignment shares
      loses the others' public names and the helpers only those use (:func:`prune_module`); a module
      no assignment names stays;
    * ``graders/``: the modules the manifest gives only to other assignments go; each test module
      left loses the checks whose points marker (``assignment=``, else the module's ``ASSIGNMENT``)
      names another assignment, and goes if none is left; ``conftest.py`` loses the fixtures only
      the removed checks use;
    * ``fixtures/``: the assignment's ``fixtures``, what they and the graders kept import from
      ``fixtures/`` (the package's ``__init__.py`` too), and its data files; other modules go.
    """

    repository: assignments.Repository
    assignment: assignments.Assignment

    @property
    def others(self) -> list[assignments.Assignment]:
        return [a for a in self.repository.assignments.values() if a.id != self.assignment.id]

    def apply(self, out: Path) -> None:
        manifest = self.repository.manifest
        (out / MANIFEST).write_text(manifest_of(manifest.read_text(encoding="utf-8"), self.assignment.id))
        template = out / "student_template"  # what release() copies, whatever the manifest names
        self._trim_template(template)
        kept_graders = self._trim_graders(out / "graders")
        self._trim_fixtures(out / "fixtures", kept_graders)
        for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(folder.iterdir()):
                folder.rmdir()

    def _trim_template(self, template: Path) -> None:
        mine = self.assignment.modules
        for path in sorted(template.glob("*.py")):
            module = path.stem
            if module not in mine:
                if any(module in other.modules for other in self.others):
                    path.unlink()
                continue
            drop = {name for other in self.others for name in other.modules.get(module, ())} - set(mine[module])
            if drop:
                path.write_text(prune_module(path.read_text(), drop, keep=mine[module], where=str(path)))

    def _trim_graders(self, graders: Path) -> list[Path]:
        """Trim ``graders/``; returns the grader modules kept (conftest.py included)."""
        mine = set(self.assignment.graders)
        others = {g for other in self.others for g in other.graders} - mine
        ids = {other.id for other in self.others}
        kept: list[Path] = []
        conftests: list[Path] = []
        removed_refs: set[str] = set()
        for path in sorted(graders.rglob("*.py")):
            rel = path.relative_to(graders).as_posix()
            text = path.read_text()
            if path.name == "conftest.py":
                conftests.append(path)
                continue
            if rel in others:
                removed_refs |= _references(_parse(text, path))
                path.unlink()
                continue
            if path.name.startswith("test_") or path.name.endswith("_test.py"):
                tree = _parse(text, path)
                tests = _checks_by_assignment(tree)
                drop = {name for name, aid in tests.items() if aid in ids}
                if drop:
                    removed_refs |= _references(tree)
                    if drop == set(tests) and rel not in mine:
                        path.unlink()
                        continue
                    path.write_text(prune_module(text, drop, keep=set(tests) - drop, where=str(path)))
            kept.append(path)
        kept_refs = set().union(*(_references(_parse(p.read_text(), p)) for p in kept))
        for path in conftests:
            text = path.read_text()
            fixtures = _fixture_names(_parse(text, path))
            drop = (fixtures & removed_refs) - kept_refs
            if drop:
                path.write_text(prune_module(text, drop, keep=fixtures - drop, where=str(path)))
        return kept + conftests

    def _trim_fixtures(self, fixtures: Path, graders: list[Path]) -> None:
        if not fixtures.is_dir():
            return
        needed = {Path(name).stem if name.endswith(".py") else name for name in self.assignment.fixtures}
        for name in sorted(needed):
            if not ((fixtures / f"{name}.py").is_file() or (fixtures / name / "__init__.py").is_file()):
                raise TorchgradeError(
                    f"assignment {self.assignment.id!r} lists the fixture {name!r}, which fixtures/ does not hold"
                )
        for path in graders:
            needed |= _fixture_imports(_parse(path.read_text(), path), relative=False)
        todo = list(needed)
        while todo:  # what the fixtures kept import from fixtures/, and what those import
            name = todo.pop()
            sources = [fixtures / f"{name}.py"] if (fixtures / f"{name}.py").is_file() else []
            sources += sorted((fixtures / name).rglob("*.py")) if (fixtures / name).is_dir() else []
            for source in sources:
                found = _fixture_imports(_parse(source.read_text(), source), relative=source.parent == fixtures)
                todo += sorted(found - needed)
                needed |= found
        for path in sorted(fixtures.rglob("*.py")):
            top = path.relative_to(fixtures).parts
            name = Path(top[0]).stem if len(top) == 1 else top[0]
            if top != ("__init__.py",) and name not in needed:
                path.unlink()


def _parse(text: str, path: Path) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise TorchgradeError(f"cannot release one assignment: {path} does not parse ({exc})") from None


def select(source: Path, only: str) -> Selection:
    """The assignment ``only`` of the manifest at ``source``, for a release of it alone.

    Raises:
        TorchgradeError: ``source`` has no manifest, or the manifest declares no such assignment
            (the message lists the known ones).
    """
    if not (source / MANIFEST).is_file():
        raise TorchgradeError(f"--only needs a manifest: {source} has no {MANIFEST} declaring its assignments")
    repository = assignments.load(source)
    return Selection(repository, repository.get(only))


def manifest_of(text: str, only: str) -> str:
    """The manifest ``text`` with only the assignment ``only``: its lines before the first table (the
    comments, ``template = ...``) and the tables whose key starts with ``only``, copied as text, comments
    included, and checked to parse to exactly that assignment's data."""
    data = tomllib.loads(text)
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        header = _table_header(line)
        if header is not None:
            keep = header == only
        if keep:
            kept.append(line)
    result = "".join(kept).rstrip() + "\n"
    expected = {key: value for key, value in data.items() if not isinstance(value, dict)} | {only: data[only]}
    try:
        same = tomllib.loads(result) == expected
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise TorchgradeError(f"could not cut assignment {only!r} out of {MANIFEST} as text (is a table split up?)")
    return result


def _table_header(line: str) -> str | None:
    """The first key of a ``[table]`` or ``[[array]]`` header line (``shoes`` of ``[shoes.questions]``)."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    try:
        parsed = tomllib.loads(stripped)
    except tomllib.TOMLDecodeError:
        return None
    return next(iter(parsed)) if len(parsed) == 1 else None


def _add_only(table: str, settings: dict, only: str) -> str:
    """``table`` (a ``[tool.pytest.ini_options]`` table) with ``--only ID`` appended to its ``addopts``."""
    addopts = settings.get("addopts", [])
    # One word: pytest's first look at the arguments, before graders/conftest.py registers --only, would
    # take a separate ID for a path, and a bare `pytest` would then not load that conftest.
    words = [*(shlex.split(addopts) if isinstance(addopts, str) else addopts), f"--only={only}"]
    line = "# Added by torchgrade release --only: this copy grades one assignment.\n"
    line += f"addopts = [{', '.join(json.dumps(word) for word in words)}]\n"
    lines = table.splitlines(keepends=True)
    start = next((i for i, text in enumerate(lines) if text.split("=")[0].strip() == "addopts"), None)
    if start is None:
        result = table + line
    else:
        end = start + 1
        while end < len(lines):  # the value may span lines: up to where the key alone parses
            try:
                tomllib.loads("".join(lines[start:end]))
                break
            except tomllib.TOMLDecodeError:
                end += 1
        result = "".join(lines[:start]) + line + "".join(lines[end:])
    try:
        parsed = tomllib.loads(result)["tool"]["pytest"]["ini_options"]
    except (tomllib.TOMLDecodeError, KeyError):
        parsed = None
    if parsed != {**settings, "addopts": words}:
        raise TorchgradeError(f"could not add --only {only} to the addopts of {PYTEST_TABLE}")
    return result


def prune_module(text: str, drop: set[str] | frozenset[str], *, keep=(), where: str = "") -> str:
    """``text`` (a module's source) without its top-level definitions (``def``, ``class``, assignment)
    of the names in ``drop``, and without the helpers and constants that only those used; imports and
    everything else stay, comments included. The comment lines right above a removed definition go
    with it (a section's header). A dropped name that a kept definition uses stays, so that the module
    still imports; the names in ``keep`` always stay.

    Raises:
        TorchgradeError: the module does not parse, or would not once pruned.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise TorchgradeError(f"cannot prune {where}: {exc}") from None
    statements = tree.body
    defined = [_defined_names(node) for node in statements]
    refs = [_references(node) - names for node, names in zip(statements, defined, strict=True)]
    dropped = {i for i, names in enumerate(defined) if names and names <= set(drop)}
    keep = set(keep)
    changed = True
    while changed:
        changed = False
        kept_refs = set().union(*(refs[i] for i in range(len(statements)) if i not in dropped))
        used = {i for i in dropped if defined[i] & kept_refs}
        if used:  # a kept definition needs it: it stays
            dropped -= used
            changed = True
            continue
        dropped_refs = set().union(*(refs[i] for i in dropped))
        for i, names in enumerate(defined):
            if i not in dropped and names and names <= dropped_refs and not names & (kept_refs | keep):
                dropped.add(i)  # a helper only removed code used
                changed = True
    lines = text.splitlines(keepends=True)
    spans = {i: _span(statements[i]) for i in range(len(statements))}
    kept_lines = {n for i, (a, b) in spans.items() if i not in dropped for n in range(a, b + 1)}
    removed: set[int] = set()
    for i in sorted(dropped):
        first, last = spans[i]
        if kept_lines & set(range(first, last + 1)):  # shares a line with kept code (``a = 1; b = 2``)
            continue
        while first > 1 and lines[first - 2].startswith("#"):  # its comment block
            first -= 1
        removed |= set(range(first, last + 1))
    gone_names = set().union(*(defined[i] for i in dropped)) - set().union(
        *(defined[i] for i in range(len(defined)) if i not in dropped)
    )
    removed |= _docstring_bullets_about(tree, lines, gone_names, keep)
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        if number in removed:
            continue
        if not line.strip() and len(out) >= 2 and not out[-1].strip() and not out[-2].strip():
            continue  # at most two blank lines in a row
        out.append(line)
    result = "".join(out).rstrip() + "\n"
    try:
        pruned = ast.parse(result)
    except SyntaxError as exc:
        raise TorchgradeError(f"pruning {where} broke it: {exc}") from None
    left = set().union(*(_defined_names(node) for node in pruned.body))
    still = set().union(*(defined[i] for i in range(len(defined)) if i not in dropped))
    gone = set().union(*(defined[i] for i in dropped)) - still
    if left & gone:
        raise TorchgradeError(f"pruning {where} left names it should have removed: {sorted(left & gone)}")
    return result


def _docstring_bullets_about(tree: ast.Module, lines: list[str], gone: set[str], keep: set[str]) -> set[int]:
    """The lines of the module docstring's bullets (``* ...`` or ``- ...`` and their indented continuation)
    that name a removed name and no kept one: a shared module's docstring often gives each assignment's
    part a bullet. Paragraphs stay (one that names a removed name may also explain what the kept ones
    need, such as tensor conventions)."""
    if not gone or not tree.body or ast.get_docstring(tree) is None:
        return set()
    first, last = tree.body[0].lineno, tree.body[0].end_lineno or tree.body[0].lineno
    blocks: list[list[int]] = []
    current: list[int] | None = None
    for number in range(first + 1, last):  # not the lines that hold the quotes
        line = lines[number - 1]
        stripped = line.lstrip()
        if _is_bullet(line):
            current = [number]
            blocks.append(current)
        elif current is not None and stripped and len(line) > len(stripped):
            current.append(number)  # its continuation
        else:
            current = None
    removed: set[int] = set()
    for block in blocks:
        after = lines[block[-1]].strip() if block[-1] < len(lines) else ""
        if after and after not in ('"""', "'''") and not _is_bullet(after):
            continue  # the bullet does not end on a line of its own: leave it
        words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", "".join(lines[n - 1] for n in block)))
        if words & gone and not words & keep:
            removed |= set(block)
    return removed


def _is_bullet(line: str) -> bool:
    return line.lstrip().startswith(("* ", "- "))


def _span(node: ast.stmt) -> tuple[int, int]:
    """First and last line of a statement, its decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
    return first, node.end_lineno or node.lineno


def _defined_names(node: ast.stmt) -> set[str]:
    """The names a top-level ``def``, ``class`` or assignment defines (empty for anything else)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = set()
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        return names
    return set()


def _references(node: ast.AST) -> set[str]:
    """The names a piece of code may use: its names, its parameters' names (a pytest fixture is used by
    naming it as a parameter) and its identifier-like strings (``request.getfixturevalue("x")``)."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.arg):
            found.add(child.arg)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str) and child.value.isidentifier():
            found.add(child.value)
    return found


def _checks_by_assignment(tree: ast.Module) -> dict[str, str | None]:
    """Each top-level check of a test module (``test_*`` function, ``Test*`` class) -> its assignment:
    the ``assignment=`` of its points marker, else the module's ``ASSIGNMENT`` (as the plugin reads them)."""
    default = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ASSIGNMENT" for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                default = node.value.value
    checks: dict[str, str | None] = {}
    for node in tree.body:
        is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
        if not (is_test or isinstance(node, ast.ClassDef) and node.name.startswith("Test")):
            continue
        assignment = default
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("mark.points"):
                for keyword in decorator.keywords:
                    if keyword.arg == "assignment" and isinstance(keyword.value, ast.Constant):
                        assignment = str(keyword.value.value)
        checks[node.name] = assignment
    return checks


def _fixture_names(tree: ast.Module) -> set[str]:
    """The top-level functions of a conftest that are pytest fixtures."""
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    }


def _fixture_imports(tree: ast.Module, *, relative: bool) -> set[str]:
    """The modules of ``fixtures/`` a module imports (``from fixtures import text``, ``import
    fixtures.text``, ``from fixtures.text import x``; ``relative``: ``from . import x``, ``from .x
    import y`` too, for a module of fixtures/ itself); names that are no module are harmless."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fixtures.")}
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0 and parts[0] == "fixtures":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif node.level == 1 and relative:
                found |= {parts[0]} if node.module else {a.name for a in node.names}
    return found


MSG_README_HIDDEN = (
    " The official grading also runs checks that are not in this copy: passing every check here "
    "is necessary, not sufficient."
)


def _setup_section() -> str:
    """The READMEs' installation steps: torch's CPU build first, then the release's requirements."""
    torch = torch_requirement()
    return f"""## Set up (Python 3.11 or later)

From this folder (`requirements.txt` installs torchgrade from the wheel in `{WHEELS_DIR}/`):

```bash
python -m pip install "{torch}" --index-url {TORCH_CPU_INDEX}   # CPU build; the default is a multi-GB CUDA one
python -m pip install -r requirements.txt
```

A torch you have already (a GPU build, a newer release) is kept: skip the first line.
"""


def student_readme(source: Path) -> str:
    """The README of a student release: what to fill in, how to install, how to run the graders."""
    modules = ", ".join(f"`{p.name}`" for p in sorted((source / "student_template").glob("*.py")))
    hidden = any((source / "graders" / HIDDEN_DIR).glob("*.py"))
    tests = sorted((source / "graders").glob("test_*.py"))
    example_module = f"graders/{tests[0].name}" if tests else "graders"
    checks = list(_checks_by_assignment(_parse(tests[0].read_text(), tests[0]))) if tests else []
    example_check = f"{example_module}::{checks[0]}" if checks else example_module
    return f"""# Your copy of the assignment

Write your solution in `student_template/` ({modules}). Each function and class there raises
`NotImplementedError` until you fill it in. Keep the module names and the public names and signatures:
the graders call them as the docstrings say. You may add helpers and imports.

{_setup_section()}
## Check your work

```bash
pytest graders                                   # every check; a score table per question at the end (or bare `pytest`)
{f"pytest {example_module}":<48} # one grader module
{f"pytest {example_check}":<48} # one check: each failure prints the line that reproduces it
pytest graders --submission path/to/other/folder # grade another folder than student_template/
```

Each failing check says what it called, with what, what came back and what was expected. Questions
answered in writing are listed as *pending TA review*: a TA grades them. The run also writes a JSON
report, `torchgrade-report.json`.

`graders/` and `fixtures/` are the graders and their data: do not edit them, your grade does not come
from your copy.{MSG_README_HIDDEN if hidden else ""}
"""


def assignment_readme(source: Path, selection: Selection, out: Path) -> str:
    """The README of a release of one assignment (``--only``): its title, its questions with their
    points (from the manifest), how to install, how to run the graders and what they print."""
    assignment = selection.assignment
    template = "student_template"
    modules = ", ".join(f"`{name}.py`" for name in assignment.modules)
    hidden = any((source / "graders" / HIDDEN_DIR).glob("*.py"))
    rows = "\n".join(
        f"| {q.id} | {q.points:g} | {q.title} | {'by a TA' if q.manual else 'by the checks'} |"
        for q in assignment.questions
    )
    listed = [out / "graders" / name for name in assignment.graders]
    tests = [p for p in listed if p.name.startswith("test_") and p.is_file()] or sorted(
        (out / "graders").glob("test_*.py")
    )
    example_module = tests[0].relative_to(out).as_posix() if tests else "graders"
    checks = list(_checks_by_assignment(_parse(tests[0].read_text(), tests[0]))) if tests else []
    example_check = f"{example_module}::{checks[0]}" if checks else example_module
    auto, manual = assignment.auto_points, assignment.manual_points
    return f"""# {assignment.title}

Your copy of the assignment `{assignment.id}`. Write your solution in `{template}/` ({modules}). Each
function and class there raises `NotImplementedError` until you fill it in. Keep the module names and
the public names and signatures: the graders call them as the docstrings say. You may add helpers and
imports.

## Questions

| Question | Points | What | Graded |
|---|---|---|---|
{rows}

{auto:g} points are graded by the checks in `graders/` (run them yourself, below) and {manual:g} by a TA
(written answers and plots); {auto + manual:g} in all.

{_setup_section()}
## Check your work

```bash
pytest graders                                   # every check of this assignment (or bare `pytest`)
{f"pytest {example_module}":<48} # one grader module
{f"pytest {example_check}":<48} # one check
pytest graders --submission path/to/other/folder # grade another folder than {template}/
```

Each check prints a line as it runs; a failing one says what it called, with what, what came back and
what was expected, and the line that reproduces it. The run ends with a score table, one row per
question (`-- {assignment.id}    Q...   points / max`), the questions *pending TA review*, and the total:

```
 total: 0 / {auto:g} auto-graded points; {manual:g} points pending TA review
```

(what the untouched template scores). The run also writes a JSON report, `torchgrade-report.json`.

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
