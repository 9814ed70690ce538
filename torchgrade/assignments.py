"""The assignments of a repository: its manifest (``assignments.toml``) and the interface its
``student_template/`` declares.

torchgrade knows no course. A repository of assignments declares them in one TOML manifest at its root
(:data:`MANIFEST`): per assignment an id, a title, the handout's questions in order with points and
titles, the submission modules and public names it uses, its grader and fixture modules, and, for the
names whose calls graders bind by parameter name (:mod:`torchgrade.engine.binding`), only what the
starter code cannot say (which leading parameters are passed by position, which may be dropped, the
other names submissions give a parameter). Everything else about the interface is read from the
template's syntax tree, never by importing it: which module defines each public name, and the
parameters (names, order, literal defaults) of each function and of each class's ``__init__``.

>>> repo = load(Path("."))                      # doctest: +SKIP
>>> repo.get("shoes").questions[0]              # doctest: +SKIP
Question(id='Q1a', points=1.0, title="why track men's ...", manual=True)

Loading is cached per manifest (keyed by its path and the modification times of the files read), and
everything here is plain data: the notebook extraction and the worker's loader get what they need as
dicts of strings. :func:`active` is the repository of the current run (set by the pytest plugin from
its rootdir; else found from the working directory upward).
"""

from __future__ import annotations

import ast
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from torchgrade.errors import TorchgradeError

#: The manifest's file name, at the root of a repository of assignments.
MANIFEST = "assignments.toml"
#: The starter code's folder when the manifest names none.
DEFAULT_TEMPLATE = "student_template"
#: Keys of an assignment's table.
ASSIGNMENT_KEYS = frozenset({"title", "modules", "names", "graders", "fixtures", "questions", "calls", "aliases"})
QUESTION_KEYS = frozenset({"points", "title", "manual"})
CALL_KEYS = frozenset({"positional", "droppable"})


class ManifestError(TorchgradeError):
    """The manifest, or the template it reads, is not what this module expects; the message says where."""


class UnknownAssignment(TorchgradeError):
    """An assignment id the manifest does not declare; the message lists the known ones."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Stands for a handout parameter without a default: the submission must receive its value.
REQUIRED = _Required()


class SourceDefault:
    """A default the template writes as an expression that is no literal (``torch.float32``): its source text."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return self.source

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceDefault) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


@dataclass(frozen=True)
class HandoutParameter:
    """One parameter of a handout's function or class, as graders pass it.

    Attributes:
        name: the handout's name for it (the grader's keyword).
        default: the handout's default, or :data:`REQUIRED`.
        positional: the grader passes it by position and the submission may name it anything
            (``train_model(model, train_data, valid_data, ...)``); only a leading run of a
            handout's parameters can be positional.
        droppable: may be left out of the call when the submission has no parameter for it even
            though the handout gives it no default (one with a default always may).
    """

    name: str
    default: object = REQUIRED
    positional: bool = False
    droppable: bool = False


@dataclass(frozen=True)
class Question:
    """One question of a handout: its id as the handout writes it, its points, a title."""

    id: str
    points: float
    title: str = ""
    manual: bool = False


@dataclass(frozen=True)
class Assignment:
    """One assignment of the manifest, with its part of the template's interface."""

    id: str
    title: str
    questions: tuple[Question, ...]
    #: module -> the public names of this assignment that the template defines in it.
    modules: Mapping[str, tuple[str, ...]]
    graders: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    #: name -> the handout's parameters, for the names whose calls graders bind by name.
    calls: Mapping[str, tuple[HandoutParameter, ...]] = field(default_factory=dict)
    #: handout parameter -> other names submissions give it (for this assignment's calls).
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for names in self.modules.values() for name in names)

    @property
    def auto_points(self) -> float:
        """The points of the questions graded by checks."""
        return sum(q.points for q in self.questions if not q.manual)

    @property
    def manual_points(self) -> float:
        return sum(q.points for q in self.questions if q.manual)

    def question(self, qid: str) -> Question | None:
        return next((q for q in self.questions if q.id == qid), None)

    def to_data(self) -> dict[str, Any]:
        """The assignment as plain JSON-able data (e.g. for a release): no torchgrade types."""
        return {
            "id": self.id,
            "title": self.title,
            "questions": [
                {"id": q.id, "points": q.points, "title": q.title, "manual": q.manual} for q in self.questions
            ],
            "auto_points": self.auto_points,
            "manual_points": self.manual_points,
            "modules": {module: list(names) for module, names in self.modules.items()},
            "names": list(self.names),
            "graders": list(self.graders),
            "fixtures": list(self.fixtures),
        }


@dataclass(frozen=True)
class Repository:
    """The assignments of one manifest (empty where a folder has none)."""

    root: Path | None
    assignments: Mapping[str, Assignment]
    template: Path | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.assignments)

    def get(self, assignment_id: str) -> Assignment:
        """The assignment ``assignment_id``.

        Raises:
            UnknownAssignment: the manifest declares no such id; the message lists the known ones.
        """
        try:
            return self.assignments[assignment_id]
        except KeyError:
            raise UnknownAssignment(unknown_message(assignment_id, self.ids, self.manifest)) from None

    @property
    def manifest(self) -> Path | None:
        return None if self.root is None else self.root / MANIFEST

    def only(self, assignment_id: str | None) -> Repository:
        """This repository restricted to one assignment (all of them for None)."""
        if assignment_id is None:
            return self
        return Repository(self.root, {assignment_id: self.get(assignment_id)}, self.template)

    def modules(self) -> dict[str, tuple[str, ...]]:
        """module -> its public names, over all assignments (a module shared by several holds all theirs)."""
        out: dict[str, list[str]] = {}
        for assignment in self.assignments.values():
            for module, names in assignment.modules.items():
                out.setdefault(module, [])
                out[module] += [n for n in names if n not in out[module]]
        return {module: tuple(names) for module, names in out.items()}

    def name_to_module(self) -> dict[str, str]:
        """public name -> the module the template defines it in, e.g. ``{"load": "data"}``."""
        return {name: module for module, names in self.modules().items() for name in names}

    def calls(self) -> dict[str, tuple[HandoutParameter, ...]]:
        """name -> the handout's parameters, for every name whose calls graders bind by name."""
        return {name: params for a in self.assignments.values() for name, params in a.calls.items()}

    def call_aliases(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """name -> {handout parameter -> its aliases}, each call with its own assignment's aliases."""
        return {
            name: {p.name: a.aliases[p.name] for p in params if p.name in a.aliases}
            for a in self.assignments.values()
            for name, params in a.calls.items()
        }

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """handout parameter -> aliases, merged over all assignments (an id's own come first)."""
        out: dict[str, list[str]] = {}
        for assignment in self.assignments.values():
            for parameter, spellings in assignment.aliases.items():
                out.setdefault(parameter, [])
                out[parameter] += [s for s in spellings if s not in out[parameter]]
        return {parameter: tuple(spellings) for parameter, spellings in out.items()}

    def interface_data(self) -> dict[str, list[str]]:
        """module -> names as plain lists: what a worker or the notebook extraction needs."""
        return {module: list(names) for module, names in self.modules().items()}


def unknown_message(assignment_id: str, known: Iterable[str], manifest: Path | None = None) -> str:
    known = sorted(known)
    where = f" in {manifest}" if manifest is not None else ""
    return f"unknown assignment {assignment_id!r}{where}; known: {', '.join(known) if known else '(none)'}"


EMPTY = Repository(None, {})


# -- finding and loading -----------------------------------------------------------------------------
def find_manifest(*starts: str | os.PathLike[str] | None) -> Path | None:
    """The first :data:`MANIFEST` found in each start folder (or a file's folder) or one of its parents."""
    for start in starts:
        if start is None:
            continue
        folder = Path(start).resolve()
        if folder.is_file():
            folder = folder.parent
        for candidate in (folder, *folder.parents):
            if (candidate / MANIFEST).is_file():
                return candidate / MANIFEST
    return None


def load(root: str | os.PathLike[str]) -> Repository:
    """The repository whose manifest is ``root``/assignments.toml (or ``root`` itself, a manifest file).

    Cached: a second call costs a few ``stat`` calls until the manifest or a template module changes.

    Raises:
        ManifestError: the manifest is missing or malformed, or names what the template lacks.
    """
    path = Path(root).resolve()
    manifest = path if path.is_file() else path / MANIFEST
    if not manifest.is_file():
        raise ManifestError(f"no {MANIFEST} in {path}")
    stamps = _stamps(manifest)
    return _load(manifest, stamps)


def _stamps(manifest: Path) -> tuple[tuple[str, int], ...]:
    """Modification times of the manifest and of the template's modules: the cache's key."""
    stamps = [(str(manifest), manifest.stat().st_mtime_ns)]
    template = _template_folder(manifest, _read_toml(manifest, manifest.stat().st_mtime_ns))
    if template.is_dir():
        stamps += [(str(p), p.stat().st_mtime_ns) for p in sorted(template.glob("*.py"))]
    return tuple(stamps)


@lru_cache(maxsize=16)
def _read_toml(manifest: Path, _mtime: int) -> dict[str, Any]:
    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{manifest}: {exc}") from None


def _template_folder(manifest: Path, data: Mapping[str, Any]) -> Path:
    return manifest.parent / str(data.get("template", DEFAULT_TEMPLATE))


@lru_cache(maxsize=16)
def _load(manifest: Path, stamps: tuple[tuple[str, int], ...]) -> Repository:
    data = _read_toml(manifest, stamps[0][1])
    template = _template_folder(manifest, data)
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    if not tables:
        raise ManifestError(f"{manifest} declares no assignment (write one [ID] table per assignment)")
    assignments = {}
    definitions: dict[str, dict[str, ast.AST]] = {}
    for assignment_id, table in tables.items():
        assignments[assignment_id] = _assignment(manifest, template, assignment_id, table, definitions)
    return Repository(manifest.parent, assignments, template)


def _assignment(
    manifest: Path, template: Path, aid: str, table: Mapping[str, Any], definitions: dict[str, dict[str, ast.AST]]
) -> Assignment:
    where = f"{manifest}: [{aid}]"
    unknown = set(table) - ASSIGNMENT_KEYS
    if unknown:
        raise ManifestError(f"{where} has unknown keys {sorted(unknown)}; expected some of {sorted(ASSIGNMENT_KEYS)}")
    modules = _strings(table.get("modules", []), f"{where} modules")
    names = _strings(table.get("names", []), f"{where} names")
    for module in modules:
        if module not in definitions:
            definitions[module] = template_definitions(template / f"{module}.py")
    placed: dict[str, list[str]] = {module: [] for module in modules}
    for name in names:
        module = next((m for m in modules if name in definitions[m]), None)
        if module is None:
            raise ManifestError(
                f"{where} names {name!r}, which no module of its ({', '.join(f'{m}.py' for m in modules)}) "
                f"in {template} defines"
            )
        placed[module].append(name)
    questions = []
    for qid, spec in dict(table.get("questions", {})).items():
        if not isinstance(spec, dict) or "points" not in spec or set(spec) - QUESTION_KEYS:
            raise ManifestError(f"{where} question {qid!r}: write {{ points = N, title = '...', manual = true }}")
        title, manual = str(spec.get("title", "")), bool(spec.get("manual"))
        questions.append(Question(str(qid), float(spec["points"]), title, manual))
    aliases = {str(k): _strings(v, f"{where} aliases.{k}") for k, v in dict(table.get("aliases", {})).items()}
    calls = {}
    for name, spec in dict(table.get("calls", {})).items():
        if name not in names:
            raise ManifestError(f"{where} calls.{name}: {name!r} is not one of its names")
        if not isinstance(spec, dict) or set(spec) - CALL_KEYS:
            raise ManifestError(f"{where} calls.{name}: expected a table of {sorted(CALL_KEYS)}")
        module = next(m for m, ns in placed.items() if name in ns)
        calls[name] = handout_parameters(
            definitions[module][name],
            positional=int(spec.get("positional", 0)),
            droppable=_strings(spec.get("droppable", []), f"{where} calls.{name}.droppable"),
            where=f"{where} calls.{name}",
        )
    return Assignment(
        id=aid,
        title=str(table.get("title", aid)),
        questions=tuple(questions),
        modules={m: tuple(ns) for m, ns in placed.items()},
        graders=_strings(table.get("graders", []), f"{where} graders"),
        fixtures=_strings(table.get("fixtures", []), f"{where} fixtures"),
        calls=calls,
        aliases=aliases,
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


# -- the template's syntax tree ------------------------------------------------------------------------
def template_definitions(path: Path) -> dict[str, ast.AST]:
    """Top-level public names a template module defines -> their ``def``/``class`` (or assignment) node.

    Raises:
        ManifestError: the module is missing or does not parse.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as exc:
        raise ManifestError(f"cannot read the template module {path}: {exc}") from None
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update({t.id: node for t in targets if isinstance(t, ast.Name)})
    return {name: node for name, node in found.items() if not name.startswith("_")}


def handout_parameters(
    node: ast.AST, *, positional: int = 0, droppable: Iterable[str] = (), where: str = ""
) -> tuple[HandoutParameter, ...]:
    """The parameters of a template ``def`` (or a class's ``__init__``, without ``self``), in order, with
    their literal defaults; ``positional`` leading ones passed by position, ``droppable`` ones that may
    be left out. ``*args`` and ``**kwargs`` are not handout parameters."""
    function = node
    if isinstance(node, ast.ClassDef):
        function = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if function is None:
            return ()
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        raise ManifestError(f"{where}: the template defines it as neither a function nor a class")
    args = function.args
    ordered = [*args.posonlyargs, *args.args]
    if isinstance(node, ast.ClassDef) and ordered:
        ordered = ordered[1:]  # self
    defaults: list[ast.expr | None] = [None] * (len(ordered) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(ordered, defaults, strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    droppable = set(droppable)
    names = [a.arg for a, _ in pairs]
    if positional > len(names) or droppable - set(names):
        raise ManifestError(f"{where}: positional/droppable name parameters the template lacks ({names})")
    return tuple(
        HandoutParameter(arg.arg, _default(default), i < positional, arg.arg in droppable)
        for i, (arg, default) in enumerate(pairs)
    )


def _default(node: ast.expr | None) -> object:
    if node is None:
        return REQUIRED
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return SourceDefault(ast.unparse(node))


# -- the run's repository ------------------------------------------------------------------------------
_ACTIVE: list[Repository] = []


def activate(repository: Repository) -> list[Repository]:
    """Make ``repository`` the one :func:`active` returns (the pytest plugin does, from its rootdir);
    returns what to give :func:`restore` to undo it."""
    previous = list(_ACTIVE)
    _ACTIVE[:] = [repository]
    return previous


def restore(previous: list[Repository]) -> None:
    """Undo :func:`activate` (the plugin does when its run ends)."""
    _ACTIVE[:] = previous


def active() -> Repository:
    """The repository of this run: the one :func:`activate` set, else the manifest found from the
    working directory upward (or next to the torchgrade package, in a development checkout), else
    an empty one."""
    if _ACTIVE:
        return _ACTIVE[0]
    manifest = find_manifest(Path.cwd(), Path(__file__).resolve().parents[1])
    return load(manifest) if manifest is not None else EMPTY


def assignment_data(root: str | os.PathLike[str], assignment_id: str) -> dict[str, Any]:
    """One assignment of the manifest at ``root`` as plain data (:meth:`Assignment.to_data`): its
    questions, modules and their names, grader and fixture modules; what a release needs.

    Raises:
        ManifestError: no usable manifest at ``root``.
        UnknownAssignment: no such assignment; the message lists the known ones.
    """
    return load(root).get(assignment_id).to_data()
