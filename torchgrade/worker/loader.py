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
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Mapping
from pathlib import Path

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

    def unload(self) -> None:
        """Forget the submission's modules, aliases and finder (in-process mode, when grading ends),
        so that nothing of it leaks into a later submission or the grader's own imports."""
        for finder in (self._snapshot, self._finder):
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
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
        try:
            return importlib.import_module(f"{PACKAGE}.{name}")
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, SystemExit too
            self._errors[name] = format_student_exception(exc, self.folder)
            sys.modules.pop(f"{PACKAGE}.{name}", None)
            raise ModuleImportError(name, self._errors[name]) from None

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


def _importable_elsewhere(name: str) -> bool:
    try:
        return importlib.machinery.PathFinder.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
