"""A cache of expensive grading results (training runs), keyed by the content of the graded code.

The harness's own tests grade many sample submissions that differ from the reference in one
function; a training run whose code is identical is then computed once (so does ``torchgrade
demo``). Never used for official grading (the plugin enables it only with ``--grade-cache``).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torchgrade
from torchgrade import errors
from torchgrade.submission_files import read_regular


class GradeCache:
    """Results of expensive computations, reused when the graded code is identical.

    The key hashes the named submission modules' sources, the computing function's module source,
    its parameters and the torchgrade version. Without a cache directory it computes every time.
    Values must be plain JSON data; a :class:`~torchgrade.errors.CheckFailure` is cached too and
    raised again with the same type and message.
    """

    def __init__(self, directory: str | None, submission: Path) -> None:
        self.directory = Path(directory) if directory else None
        self.submission = submission
        self._memory: dict[str, dict[str, Any]] = {}

    def compute(
        self,
        name: str,
        modules: tuple[str, ...],
        params: dict[str, Any],
        fn: Callable[[], Any],
        ignore: tuple[str, ...] = (),
    ) -> Any:
        """Return ``fn()``, or its cached value for the same graded code.

        Args:
            name: what is computed, part of the key.
            modules: the submission modules whose code the computation runs.
            params: everything else the result depends on (budgets, seeds), part of the key.
            fn: the computation; returns plain JSON data.
            ignore: top-level functions/classes of ``modules`` the computation never calls
                (e.g. ``load_shoes`` for a training run on data the grader supplies), left out of
                the hash so that samples differing only there share the result.
        """
        key = self._key(name, modules, params, fn, ignore)
        entry = self._memory.get(key) or self._read(key)
        if entry is None:
            try:
                entry = {"value": fn()}
            except errors.CheckFailure as exc:
                entry = {"failure": type(exc).__name__, "message": str(exc)}
            self._memory[key] = entry
            self._write(key, entry)
        if "failure" in entry:
            raise getattr(errors, entry["failure"], errors.CheckFailure)(entry["message"])
        return entry["value"]

    def _key(
        self, name: str, modules: tuple[str, ...], params: dict[str, Any], fn: Callable, ignore: tuple[str, ...]
    ) -> str:
        digest = hashlib.sha256(f"{torchgrade.__version__}|{name}|{json.dumps(params, sort_keys=True)}".encode())
        digest.update(Path(inspect.getsourcefile(fn)).read_bytes())
        for module in modules:
            # As the worker reads it: a link (to the reference, say) is not the module, and must not
            # share the key, nor the cached run, of the file it points to.
            try:
                source = read_regular(self.submission / f"{module}.py")
            except OSError:
                source = None
            digest.update(b"<missing>" if source is None else _code_without(source, ignore))
        return f"{name}-{digest.hexdigest()[:24]}"

    def _read(self, key: str) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self.directory / f"{key}.json")


def _code_without(source: bytes, ignore: tuple[str, ...]) -> bytes:
    """The module's code minus the top-level definitions named in ``ignore`` (parsed, never run);
    the raw bytes when it does not parse."""
    if not ignore:
        return source
    try:
        tree = ast.parse(source)
        tree.body = [node for node in tree.body if getattr(node, "name", None) not in ignore]
        return ast.unparse(tree).encode()
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # code too deep for Python's parser
        return source
