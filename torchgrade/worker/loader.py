"""Importing a submission's modules under a private package name (worker side).

A student's ``shoes.py`` becomes ``_tg_submission.shoes``: it can never collide with an installed
module, and the submission folder is never put on ``sys.path``, so a ``torch.py`` or
``conftest.py`` in it changes nothing. The modules' sources are read once, when the submission is
loaded, and imported from that snapshot: code that deletes or rewrites files of its folder while it
is graded changes nothing of what is graded. Students' sibling imports (``from shoes import CNN`` inside
``answers.py``) still work: a meta-path finder maps the bare names of the submission's own modules
-- and only those that are not real, importable modules -- onto the private package.

Only regular files are modules (:func:`torchgrade.submission_files.list_files`): a module that was a
link, a pipe or a device is missing, and a name the grader looks for there says so
(:data:`MSG_LEFT_OUT`). Source that nests deeper than Python can compile (``a.b.b...`` 5,000 times)
fails its own import with :data:`MSG_TOO_DEEP`, like a syntax error, never the worker.

A package the grading environment lacks never costs a whole module: when a module's import fails
with ``ModuleNotFoundError`` for a top-level package that is not installed (and is no module of the
submission, and not one the harness cannot work without: :data:`NEVER_STAND_IN`), the import is
retried with a stand-in for that package (:class:`StandIn`). ``import torchvision``, ``import
torchvision.transforms as T``, ``from torchvision.models import resnet18`` then succeed; what the
module does with the stand-in while it is imported (``T.Compose([...])``, a decorator, a base class)
yields more stand-ins, and only a check that *uses* one at run time fails, with
:data:`MSG_NO_PACKAGE` naming the package. The same holds for an installed module whose own import
needs a missing package (``from torch.utils.tensorboard import SummaryWriter`` without
tensorboard) and for a missing portion of an installed namespace package (``google.colab``).
Stand-ins are served only to the submission's own import statements (an import made by torch, by a
library function or by the grader gets the real ``ModuleNotFoundError``), only for names seen
failing to import, so a module that imports is never hidden; :attr:`LoadedSubmission.stood_in`
lists them for the report's notes (:data:`NOTE_STOOD_IN`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from torchgrade.submission_files import list_files, read_regular
from torchgrade.worker.tracebacks import format_student_exception

PACKAGE = "_tg_submission"

#: Why a module the grader looks in is missing, when the submission had it as something else than a
#: regular file; ``why`` is :func:`~torchgrade.submission_files.list_files`'s, e.g. "a symbolic link
#: (links are never followed)".
MSG_LEFT_OUT = "{module}.py is {why}, and torchgrade grades only regular files"
#: ... or when it was left out for another reason (a cap, an unreadable file).
MSG_LEFT_OUT_OTHER = "{module}.py was left out of the submission ({why})"
#: A module whose source the parser or the compiler gives up on (``SyntaxError`` is what the student reads).
MSG_TOO_DEEP = "{file} nests deeper than Python can compile ({error}); split its deepest expression"
#: What a check that uses a stood-in package reads (``what``: ``torchvision.transforms.ToTensor()``).
MSG_NO_PACKAGE = (
    "the grading environment has no '{package}' package: {what} {how}, which needs it. The import that "
    "needs '{package}' was stood in for so that the rest of the submission could be graded; only what uses "
    "it fails. Write this part with torch or numpy, or ask the instructor to install '{package}'."
)
#: A protocol attribute (``__version__``, ``__array__``) of a stand-in: absent.
MSG_NO_DUNDER = "{path} has no {name}: the grading environment has no '{package}' package, and it was stood in for"
#: The report's note on each stood-in package.
NOTE_STOOD_IN = (
    "stood in for missing package {package}: the grading environment has no '{package}', so checks that "
    "use it fail and the others are graded"
)
#: Packages never stood in for: the harness cannot grade without them, so their absence is its own error.
NEVER_STAND_IN = frozenset({"torch", "numpy", "torchgrade", "__future__", PACKAGE})
#: Calls of a stood-in package that do nothing wherever grading runs, so a stand-in does nothing for
#: them either: mounting Google Drive, or downloading a file to the student's browser, in Colab.
NO_OP_CALLS = frozenset(
    {"google.colab.drive.mount", "google.colab.drive.flush_and_unmount", "google.colab.files.download"}
)
#: How many missing packages one module import may have stood in for (each costs a re-import).
MAX_STAND_INS = 16


class MissingPackageError(ModuleNotFoundError):
    """Student code used a stand-in for a package the grading environment lacks (:data:`MSG_NO_PACKAGE`)."""


#: > 0 while a submission module is being imported: a stand-in called then yields another stand-in
#: (``T.Compose([...])`` at the top of a module); called later, from a check, it raises.
_importing = 0


@contextmanager
def _importing_module() -> Iterator[None]:
    global _importing
    _importing += 1
    try:
        yield
    finally:
        _importing -= 1


class StandIn:
    """What student code gets for ``package.path`` of a package that is not installed.

    Attribute access gives another stand-in; a call gives one too while the submission's module is
    being imported, and raises :class:`MissingPackageError` afterwards; any other use (truth value,
    iteration, arithmetic, indexing, ``with``) raises at once. Subclassing one gives a class whose
    instances cannot be made. Its attributes are name-mangled so that student code cannot clash.
    """

    __slots__ = ("__package", "__path")

    def __init__(self, package: str, path: str) -> None:
        object.__setattr__(self, "_StandIn__package", package)
        object.__setattr__(self, "_StandIn__path", path)

    def _tg_fail(self, how: str) -> NoReturn:
        package, what = self.__package, f"`{self.__path}`"
        raise MissingPackageError(MSG_NO_PACKAGE.format(package=package, what=what, how=how), name=package)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # protocols (__array__, __wrapped__...) are absent
            raise AttributeError(MSG_NO_DUNDER.format(name=name, path=self.__path, package=self.__package))
        return StandIn(self.__package, f"{self.__path}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._tg_fail("was modified")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.__path in NO_OP_CALLS:
            return None
        if _importing:
            return StandIn(self.__package, f"{self.__path}(...)")
        self._tg_fail("was called")

    def __mro_entries__(self, bases: tuple) -> tuple[type]:
        stand_in = self

        def __init__(instance, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - it is the base's __init__
            stand_in._tg_fail("is the base class of the object being made")

        name = self.__path.rpartition(".")[2].removesuffix("(...)") or "StandIn"
        return (type(name if name.isidentifier() else "StandIn", (), {"__init__": __init__}),)

    def __repr__(self) -> str:
        return f"<stand-in for {self.__path}: the grading environment has no '{self.__package}' package>"

    def __instancecheck__(self, instance: Any) -> bool:  # isinstance(x, pd.DataFrame): nothing is one here
        return False

    def __subclasscheck__(self, subclass: type) -> bool:
        return False

    def __bool__(self) -> bool:
        self._tg_fail("was tested for truth")

    def __iter__(self) -> Iterator[Any]:
        self._tg_fail("was iterated over")

    def __len__(self) -> int:
        self._tg_fail("was measured (len)")

    def __getitem__(self, key: Any) -> Any:
        self._tg_fail("was indexed")

    def __enter__(self) -> Any:
        self._tg_fail("was used in a `with` statement")

    def __exit__(self, *exc: Any) -> None:
        return None

    def _tg_operator(self, *other: Any) -> Any:
        self._tg_fail("was used in an arithmetic or comparison operation")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __matmul__ = __rmatmul__ = _tg_operator
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __pow__ = __neg__ = _tg_operator
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __index__ = _tg_operator
    __hash__ = object.__hash__


class _StandInModule(types.ModuleType):
    """A module object for a missing package or one of its submodules: a package (it has a
    ``__path__``, so ``import package.sub`` works) whose other attributes are stand-ins (:class:`StandIn`), and
    which fails like one when it is called, tested or iterated over."""

    def __init__(self, package: str, fullname: str) -> None:
        super().__init__(fullname, f"stand-in for {fullname}: the grading environment has no '{package}'")
        self.__path__: list[str] = []
        self.__tg_stand_in__ = package

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(MSG_NO_DUNDER.format(name=name, path=self.__name__, package=self.__tg_stand_in__))
        return StandIn(self.__tg_stand_in__, f"{self.__name__}.{name}")

    def _tg_stand_in(self) -> StandIn:
        return StandIn(self.__tg_stand_in__, self.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tg_stand_in()(*args, **kwargs)

    def __bool__(self) -> bool:
        return bool(self._tg_stand_in())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._tg_stand_in())

    def __mro_entries__(self, bases: tuple) -> tuple[type]:
        return self._tg_stand_in().__mro_entries__(bases)


class _StandInFinder(importlib.abc.MetaPathFinder):
    """Serves stand-ins, to imports made by the submission's own code only, for the modules in
    ``served`` and their submodules: each maps to the missing package it stands for (``pandas`` ->
    ``pandas``; ``torch.utils.tensorboard`` -> ``tensorboard``, which that installed module needs).
    A name enters ``served`` only once it was seen failing to import (:meth:`LoadedSubmission._stand_in_for`),
    so the finder, first on ``sys.meta_path``, never hides a module that imports."""

    def __init__(self) -> None:
        self.served: dict[str, str] = {}
        self.modules: dict[str, types.ModuleType] = {}

    def find_spec(self, fullname, path=None, target=None):
        prefix = next((p for p in self.served if fullname == p or fullname.startswith(p + ".")), None)
        if prefix is None or not _imported_by_submission():
            return None
        return importlib.machinery.ModuleSpec(fullname, _StandInLoader(self, self.served[prefix]), is_package=True)

    def forget(self) -> None:
        """Take the stand-ins out of ``sys.modules``, and off the real modules they were set on as
        attributes (``torch.utils.tensorboard``): the submission's modules keep what they bound, and
        nothing else in the process (torch's own optional imports, the grader) finds a stand-in."""
        for name, module in self.modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent and parent not in self.modules and getattr(sys.modules.get(parent), child, None) is module:
                delattr(sys.modules[parent], child)


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, finder: _StandInFinder, package: str) -> None:
        self.finder, self.package = finder, package

    def create_module(self, spec):
        module = self.finder.modules.get(spec.name)
        if module is None:
            module = self.finder.modules[spec.name] = _StandInModule(self.package, spec.name)
        return module

    def exec_module(self, module):
        return None


def _imported_by_submission() -> bool:
    """Whether the import being resolved was made by the submission's code: the first frame outside
    the import machinery belongs to a module of :data:`PACKAGE`."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<frozen importlib") or filename == __file__ or filename == importlib.__file__):
            return str(frame.f_globals.get("__name__", "")).startswith(PACKAGE + ".")
        frame = frame.f_back
    return False


class ModuleImportError(Exception):
    """A submission module exists but raised while being imported (syntax error, bad import...)."""

    def __init__(self, module: str, message: str) -> None:
        super().__init__(message)
        self.module = module


class _SiblingFinder(importlib.abc.MetaPathFinder):
    """Resolves ``import shoes`` inside a submission to ``_tg_submission.shoes``."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(f"{PACKAGE}.{fullname}"))


class _SnapshotFinder(importlib.abc.MetaPathFinder):
    """Imports ``_tg_submission.<module>`` from the sources read when the submission was loaded."""

    def __init__(self, sources: dict[str, tuple[Path, bytes]]) -> None:
        self.sources = sources

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in self.sources:
            return None
        file, source = self.sources[name]
        return importlib.util.spec_from_file_location(fullname, file, loader=_SnapshotLoader(fullname, file, source))


class _SnapshotLoader(importlib.abc.SourceLoader):
    """A source loader whose only file is the snapshot; it neither reads nor writes bytecode."""

    def __init__(self, fullname: str, file: Path, source: bytes) -> None:
        self.fullname, self.file, self.source = fullname, str(file), source

    def get_filename(self, fullname: str) -> str:
        return self.file

    def get_data(self, path: str) -> bytes:
        if path == self.file:
            return self.source
        raise OSError(f"{path} is not part of the snapshot")

    def source_to_code(self, data, path, *, _optimize=-1):
        try:
            return super().source_to_code(data, path, _optimize=_optimize)
        except (RecursionError, MemoryError) as exc:  # the parser's and the compiler's limits on nesting
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SyntaxError(MSG_TOO_DEEP.format(file=Path(path).name, error=error)) from None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):  # the target module is already executed
        return None


class LoadedSubmission:
    """The modules of one submission folder, imported lazily under :data:`PACKAGE`.

    (The grader's view of a submission is :class:`torchgrade.engine.proxy.Submission`; this is the
    worker's, holding the modules themselves.)

    Args:
        folder: the submission directory (its ``*.py`` files are the candidate modules).
        left_out: relative path -> why, for what the submission held but grading leaves out (links,
            pipes, devices, files over a cap), to name in messages; by default what
            :func:`~torchgrade.submission_files.list_files` leaves out of ``folder``. A scratch copy
            holds only regular files, so whoever made it passes what the original folder held.
    """

    def __init__(self, folder: str | Path, left_out: Mapping[str, str] | None = None) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"submission folder {self.folder} does not exist")
        # Regular files only, as in the scratch copy of process isolation: both modes see the same modules.
        listing = list_files(self.folder)
        self.left_out = dict(listing.skipped if left_out is None else left_out)
        sources = {}
        for relative, path in listing.files:
            stem = relative.removesuffix(".py")
            if "/" not in relative and relative.endswith(".py") and stem.isidentifier():
                try:
                    sources[stem] = (path, read_regular(path))
                except OSError as exc:  # swapped for a pipe or a link since it was listed
                    self.left_out[relative] = f"unreadable ({exc.strerror or exc})"
        self.module_names = sorted(sources)
        self._snapshot = _SnapshotFinder(sources)
        self._errors: dict[str, str] = {}
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(self.folder)]
        package.__package__ = PACKAGE
        sys.modules[PACKAGE] = package
        shadowing = {
            n for n in self.module_names if n in sys.modules or n in sys.stdlib_module_names or _importable_elsewhere(n)
        }
        self._finder = _SiblingFinder(set(self.module_names) - shadowing)
        sys.meta_path[:0] = [self._snapshot, self._finder]
        self._stand_ins = _StandInFinder()
        sys.meta_path.insert(0, self._stand_ins)

    @property
    def stood_in(self) -> list[str]:
        """The missing packages stood in for so far (see the module docstring), sorted."""
        return sorted(set(self._stand_ins.served.values()))

    def notes(self) -> list[str]:
        """The report's notes on what loading the submission needed: :data:`NOTE_STOOD_IN` per package."""
        return [NOTE_STOOD_IN.format(package=package) for package in self.stood_in]

    def unload(self) -> None:
        """Forget the submission's modules, aliases and finder (in-process mode, when grading ends),
        so that nothing of it leaks into a later submission or the grader's own imports."""
        for finder in (self._snapshot, self._finder, self._stand_ins):
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
        self._stand_ins.forget()
        for name, module in list(sys.modules.items()):
            if (
                name == PACKAGE
                or name.startswith(PACKAGE + ".")
                or (name in self._finder.names and getattr(module, "__name__", "").startswith(PACKAGE + "."))
            ):
                del sys.modules[name]

    def module(self, name: str) -> types.ModuleType:
        """Import (once) and return the submission module ``name``.

        Raises:
            FileNotFoundError: there is no ``name.py`` in the submission.
            ModuleImportError: the module raised on import; the message is the trimmed traceback.
        """
        if name not in self.module_names:
            raise FileNotFoundError(f"{name}.py")
        if name in self._errors:
            raise ModuleImportError(name, self._errors[name])
        fullname = f"{PACKAGE}.{name}"
        while True:  # each round stands in for one more package, at most MAX_STAND_INS in all
            try:
                with _importing_module():
                    return importlib.import_module(fullname)
            except BaseException as exc:  # noqa: BLE001 - student code may raise anything, SystemExit too
                sys.modules.pop(fullname, None)
                stand_in = self._stand_in_for(exc)
                if stand_in is None or len(self._stand_ins.served) >= MAX_STAND_INS:
                    self._errors[name] = format_student_exception(exc, self.folder)
                    raise ModuleImportError(name, self._errors[name]) from None
                served, package = stand_in
                self._stand_ins.served[served] = package  # and import the module again
            finally:
                self._stand_ins.forget()

    def _stand_in_for(self, exc: BaseException) -> tuple[str, str] | None:
        """What to stand in for when ``exc`` failed a module's import, as (the module to serve, the
        missing package it stands for); None when ``exc`` is the student's own error.

        * ``import pandas`` where pandas is not installed: ``("pandas", "pandas")``. Never for a
          package of :data:`NEVER_STAND_IN`, the standard library, a module of the submission, a
          package that is installed (a missing submodule of torch is a real error), or one already
          stood in for (a stand-in that fails again is the student's error).
        * ``from google.colab import drive`` where ``google`` is an installed namespace package
          (protobuf's): ``("google.colab", "google.colab")``, a missing portion of it.
        * ``from torch.utils.tensorboard import SummaryWriter``, which is installed but whose own
          import needs ``tensorboard``, which is not: ``("torch.utils.tensorboard", "tensorboard")``.
        """
        if not isinstance(exc, ModuleNotFoundError) or isinstance(exc, MissingPackageError) or not exc.name:
            return None
        missing = exc.name.partition(".")[0]
        if not self._may_stand_in(missing) or _importable_elsewhere(missing):
            portion = ".".join(exc.name.split(".")[:2])
            if portion != missing and _is_namespace(missing) and not _importable(portion):
                missing = portion  # google.colab where google is a namespace package: a missing portion
            else:
                return None
        if missing in self._stand_ins.served.values():
            return None
        raiser = _raiser(exc, self.folder)
        if raiser == _OWN_IMPORT:
            return missing, missing
        if raiser is None or raiser in NEVER_STAND_IN or raiser.partition(".")[0] in sys.stdlib_module_names:
            return None
        return raiser, missing  # an installed module whose own import needs the missing package

    def _may_stand_in(self, package: str) -> bool:
        return not (
            package in NEVER_STAND_IN
            or package in self.module_names
            or package in sys.stdlib_module_names
            or not package.isidentifier()
            or (package in sys.modules and sys.modules[package] is not None)
        )

    def find(self, name: str, preferred: str | None) -> tuple[object, str]:
        """Find a public name, first in the ``preferred`` module, then in any other module.

        Returns:
            The object and the name of the module it was found in.

        Raises:
            LookupError: with a message naming where the grader looked.
        """
        order = ([preferred] if preferred in self.module_names else []) + [
            m for m in self.module_names if m != preferred
        ]
        import_errors = {}
        for module_name in order:
            try:
                module = self.module(module_name)
            except ModuleImportError as exc:
                import_errors[module_name] = str(exc)
                continue
            if hasattr(module, name):
                return getattr(module, name), module_name
        if preferred in import_errors:
            raise LookupError(
                f"{preferred}.py could not be imported, so `{name}` is not available:\n{import_errors[preferred]}"
            )
        modules = ", ".join(m + ".py" for m in self.module_names) or "none"
        # A module that failed to import may be the one that defines the name: say so, with its error.
        broken = "".join(
            f"\n{module}.py could not be imported, so it may define `{name}`: "
            f"{error.strip().splitlines()[-1] if error.strip() else 'no message'}"
            for module, error in import_errors.items()
        )
        if preferred is None:
            unusable = "".join(
                f" {_left_out(file.removesuffix('.py'), why)}."
                for file, why in self.left_out.items()
                if file.endswith(".py") and "/" not in file
            )
            raise LookupError(
                f"the submission has no `{name}`: none of its modules defines it (modules: {modules})."
                + unusable
                + broken
            )
        if preferred not in self.module_names and f"{preferred}.py" in self.left_out:
            where = _left_out(preferred, self.left_out[f"{preferred}.py"])
        elif preferred not in self.module_names:
            where = f"there is no {preferred}.py in the submission"
            if self.module_names:
                where += f" (its modules: {', '.join(m + '.py' for m in self.module_names)})"
        else:
            where = f"{preferred}.py does not define it"
        raise LookupError(f"the submission has no `{name}`: {where}; no other module defines it either." + broken)


def _left_out(module: str, why: str) -> str:
    """Why ``module.py`` is not a module of the submission: :data:`MSG_LEFT_OUT` or :data:`MSG_LEFT_OUT_OTHER`."""
    if why.startswith(("a ", "an ")):  # what it is: a symbolic link, a named pipe, a device
        return MSG_LEFT_OUT.format(module=module, why=why)
    return MSG_LEFT_OUT_OTHER.format(module=module, why=why)


#: What :func:`_raiser` returns when the submission's own import statement raised.
_OWN_IMPORT = ""


def _raiser(exc: BaseException, folder: Path) -> str | None:
    """Who raised ``exc`` below the submission's last frame: :data:`_OWN_IMPORT` when it was the
    submission's own import statement (only the import machinery below it); the name of an installed
    module whose top-level code raised it while the submission imported it (``torch.utils.tensorboard``,
    whose ``import tensorboard`` fails); None when something else did (a function the submission
    called, e.g. ``torch.compile`` needing triton), or the submission has no frame in it."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    folder_text = str(folder)
    own = [i for i, f in enumerate(frames) if f.f_code.co_filename.startswith(folder_text)]
    if not own:
        return None
    for frame in frames[own[-1] + 1 :]:
        filename = frame.f_code.co_filename
        if filename.startswith("<frozen importlib") or filename in (__file__, importlib.__file__):
            continue
        name = frame.f_globals.get("__name__")
        if frame.f_code.co_name == "<module>" and isinstance(name, str) and name.isascii():
            return name if all(part.isidentifier() for part in name.split(".")) else None
        return None
    return _OWN_IMPORT


def _is_namespace(name: str) -> bool:
    """Whether the top-level ``name`` is an installed namespace package (no ``__init__.py``; e.g.
    ``google``, which protobuf and others share): a portion of it can be missing while it is installed."""
    try:
        spec = importlib.machinery.PathFinder.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin in (None, "namespace") and spec.submodule_search_locations is not None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _importable_elsewhere(name: str) -> bool:
    try:
        return importlib.machinery.PathFinder.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
