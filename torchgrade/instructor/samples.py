"""The one engine that grades an assignment's sample submissions.

``torchgrade demo``, ``torchgrade check`` and the harness's own tests (``tests/test_samples.py``) all
grade the samples of ``ASSIGNMENT/fixtures/samples.py`` (the reference, the template and buggy
variants of the reference) through :class:`SampleGrader`:

* each sample is written into a scratch folder once and graded by the real entry point
  (:func:`torchgrade.instructor.grading.grade`, a fresh pytest process), ``jobs`` at a time on
  threads (the work is in the child processes); side by side, each grading runs one torch thread
  (``OMP_NUM_THREADS=1``): two gradings each spinning two OpenMP threads on two shared cores made
  training 3-9x slower;
* with ``cache``, training runs of identical code are shared through one grade cache (pytest's
  ``--grade-cache``, keyed by a content hash of the graded code): a buggy sample differs from the
  reference in one module, so most of its training runs are the reference's. The reference is
  graded first, alone, so that its runs fill the cache before the other samples read it;
* with ``select_graders``, a buggy sample is graded only by the grader modules that mention a name
  of a module it edits (:func:`graders_for`): every other grader sees the reference's code byte for
  byte, so its verdicts are the reference's. A correct variant that names its checks (``checks``) is
  graded by those checks alone (:func:`checks_expression`).
"""

from __future__ import annotations

import ast
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torchgrade.errors import TorchgradeError
from torchgrade.importfile import import_file
from torchgrade.instructor import grading

#: The sample graded first when training runs are shared: its runs fill the cache.
FIRST = "reference"


@dataclass(frozen=True)
class SampleGrading:
    """One sample graded in one isolation mode.

    Attributes:
        name: the sample (``reference``, ``template`` or a bug's TOML stem).
        isolation: ``none`` or ``process``.
        sample: its description (a ``Sample`` of the assignment's ``fixtures/samples.py``).
        exit_code: the grading's exit code (:mod:`torchgrade.instructor.grading`); None if it never ran.
        report: the report's JSON; None if no report was written.
        seconds: how long grading it took.
        problem: why it was not graded (its edit no longer applies to the reference); else None.
    """

    name: str
    isolation: str
    sample: Any
    exit_code: int | None
    report: dict[str, Any] | None
    seconds: float
    problem: str | None = None


def load_samples_module(assignment: Path) -> ModuleType:
    """Import ``ASSIGNMENT/fixtures/samples.py`` under a private name, so that it describes the
    samples of this assignment and not those of whatever ``fixtures`` package is importable."""
    path = Path(assignment) / "fixtures" / "samples.py"
    if not path.is_file():
        raise TorchgradeError(f"{assignment} has no fixtures/samples.py describing its sample submissions")
    name = f"_torchgrade_samples_{zlib.crc32(str(path.resolve()).encode())}"
    return import_file(path, name)


# -- which graders a sample needs -------------------------------------------------------------------
def public_names(module: Path) -> set[str]:
    """The public top-level functions and classes of a Python file (none if it does not exist)."""
    if not module.is_file():
        return set()
    tree = ast.parse(module.read_text())
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in tree.body if isinstance(node, kinds) and not node.name.startswith("_")}


def private_imports(module: Path, private: dict[str, Path]) -> set[str]:
    """The private grader modules (``graders/_*.py``, by stem) that ``module`` imports, however spelled:
    ``import _shoes``, ``from _shoes import x``, ``from graders._shoes import x``, ``from . import _shoes``."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            dotted = [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {part for name in dotted for part in name.split(".") if part in private}
    return found


def grader_sources(graders: Path) -> dict[str, str]:
    """Each test module of ``graders`` (by file name) with the text it grades by: its own and that of
    every private module (``graders/_*.py``) it imports, directly or through another private module."""
    private = {path.stem: path for path in graders.glob("_*.py")}
    imports = {stem: private_imports(path, private) for stem, path in private.items()}
    sources = {}
    for path in sorted(graders.glob("test_*.py")):
        pending, seen = list(private_imports(path, private)), set()
        while pending:
            stem = pending.pop()
            if stem not in seen:
                seen.add(stem)
                pending.extend(imports[stem])
        sources[path.name] = "\n".join([path.read_text()] + [private[stem].read_text() for stem in sorted(seen)])
    return sources


def graders_for(sample: Any, graders: Path) -> str | None:
    """A pytest ``-k`` expression selecting the grader modules that mention a public name of a module
    the sample edits, in their own text or in a private module they import (see :func:`grader_sources`).

    Args:
        sample: a ``Sample`` of ``fixtures/samples.py`` (its ``edits`` and its ``base`` folder).
        graders: the assignment's ``graders/`` folder.

    Returns:
        The expression, or None (every grader) for a sample that edits no module with public names.
    """
    names = {name for file, _, _ in sample.edits for name in public_names(Path(sample.base) / file)}
    if not names:
        return None
    pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    chosen = [name for name, text in grader_sources(graders).items() if pattern.search(text)]
    return " or ".join(chosen)


def check_names(graders: Path) -> dict[str, str]:
    """Each test function of ``graders/test_*.py`` (a check) -> the file it is in."""
    found = {}
    for path in sorted(graders.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                found[node.name] = path.name
    return found


def checks_expression(checks: Iterable[str], known: dict[str, str]) -> str:
    """A pytest ``-k`` expression that selects exactly the checks (test functions) named ``checks``.

    ``-k`` matches substrings of an item's names, its module's included: ``test_cnn`` alone would also
    select ``test_cnn_channel``, and ``test_gnn`` every check of ``test_gnn.py``. Each name is therefore
    paired with ``not`` every other check that such a match would catch.

    Args:
        checks: test function names.
        known: every check of the graders and its file (:func:`check_names`).

    Raises:
        TorchgradeError: a name is no check of the graders.
    """
    clauses = []
    for name in dict.fromkeys(checks):
        if name not in known:
            raise TorchgradeError(f"{name!r} is no check of the graders: no test function of that name")
        low = name.lower()
        caught = [
            other
            for other, module in known.items()
            if other != name and (low in other.lower() or low in module.lower())
        ]
        clauses.append(" and ".join([name] + [f"not {other}" for other in caught]))
    return " or ".join(f"({clause})" for clause in clauses)


# -- the engine -------------------------------------------------------------------------------------
class SampleGrader:
    """Grades the samples of one assignment, ``jobs`` at a time; each (sample, isolation) at most once.

    Use it as a context manager: leaving it waits for the gradings in flight and cancels the rest.

    Args:
        assignment: the assignment folder (``graders/``, ``fixtures/samples.py``, ``reference/``...).
        workdir: a scratch folder for the samples' modules and the grade cache.
        isolation: the default isolation mode; its reports are ``<name>.json``, those of the other
            mode ``<name>-<isolation>.json``.
        jobs: gradings at once.
        cache: share training runs of identical code (``--grade-cache`` in ``workdir``).
        select_graders: grade a buggy sample only with the graders of what it edits (:func:`graders_for`).
        select_checks: with ``select_graders``, grade a correct variant only with the checks it names
            (:func:`checks_expression`); False: with every check of those graders.
        keyword: a pytest ``-k`` expression for every grading (combined with the graders' selection).
        pytest_args: more pytest arguments for every grading (``--data-root synthetic``).
        reports: where the reports go, with pytest's output of each (``<name>.log``); default in ``workdir``.
        logs: send pytest's output to those logs; False: to this process's own output.
        threads: torch threads per grading; default 1 when gradings run side by side, else torch's own.
        on_start: called with each sample's name and description as its grading starts (on a pool thread).
    """

    def __init__(
        self,
        assignment: str | Path,
        *,
        workdir: Path,
        isolation: str = "none",
        jobs: int = 1,
        cache: bool = True,
        select_graders: bool = False,
        select_checks: bool = True,
        keyword: str | None = None,
        pytest_args: tuple[str, ...] = (),
        reports: Path | None = None,
        logs: bool = True,
        threads: int | None = None,
        on_start: Callable[[str, str], None] | None = None,
    ) -> None:
        self.assignment = Path(assignment).resolve()
        if not (self.assignment / "graders").is_dir():
            raise TorchgradeError(f"{self.assignment} is not an assignment: it has no graders/ folder")
        if jobs < 1:
            raise TorchgradeError(f"--jobs must be at least 1 (got {jobs})")
        self.module = load_samples_module(self.assignment)
        self.workdir = Path(workdir)
        self.isolation, self.cache, self.select_graders = isolation, cache, select_graders
        self.select_checks = select_graders and select_checks
        self.keyword, self.pytest_args, self.logs, self.on_start = keyword, tuple(pytest_args), logs, on_start
        self.reports = Path(reports) if reports is not None else self.workdir / "reports"
        self.reports.mkdir(parents=True, exist_ok=True)
        threads = threads if threads is not None else (1 if jobs > 1 else None)
        self.env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="torchgrade-samples")
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], Future[SampleGrading]] = {}
        self._samples: dict[str, Any] = {}
        self._folders: dict[str, Path] = {}

    def __enter__(self) -> SampleGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the gradings in flight; cancel those not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def names(self) -> list[str]:
        """Every sample: the reference, the template, then each buggy sample."""
        return [sample.name for sample in self.module.all_samples()]

    def sample(self, name: str) -> Any:
        """The sample called ``name``.

        Raises:
            TorchgradeError: no such sample (the message lists the valid names).
        """
        with self._lock:
            if name not in self._samples:
                try:
                    self._samples[name] = self.module.load(name)
                except KeyError as exc:
                    raise TorchgradeError(exc.args[0]) from None
            return self._samples[name]

    def grade(self, name: str, isolation: str | None = None, *, own_cache: bool = False) -> Future[SampleGrading]:
        """Start grading one sample (once per isolation mode: a second call returns the same future).

        Args:
            name: the sample.
            isolation: default the grader's.
            own_cache: use a grade cache of its own instead of the shared one: it trains afresh (e.g.
                to show that two runs of the same code agree).
        """
        isolation = isolation or self.isolation
        sample = self.sample(name)
        with self._lock:
            if (name, isolation) not in self._started:
                self._started[name, isolation] = self._submit(sample, isolation, own_cache)
            return self._started[name, isolation]

    def grade_all(self, pairs: Iterable[tuple[str, str]], *, own_cache: Iterable[tuple[str, str]] = ()) -> None:
        """Start the gradings ``(sample, isolation)``; the reference's come first, and with a shared cache
        those that fill it finish before any other starts."""
        pairs, own = list(dict.fromkeys(pairs)), set(own_cache)
        first = [pair for pair in pairs if pair[0] == FIRST]
        for pair in first:
            self.grade(*pair, own_cache=pair in own)
        if self.cache:
            for pair in first:
                if pair not in own:
                    self._started[pair].exception()  # wait; a failure shows where the result is read
        for pair in pairs:
            self.grade(*pair, own_cache=pair in own)

    def _submit(self, sample: Any, isolation: str, own_cache: bool) -> Future[SampleGrading]:
        try:
            folder = self._folders.get(sample.name) or self.module.materialise(sample, self.workdir / "submissions")
        except ValueError as exc:  # the reference changed under the sample's edit
            done: Future[SampleGrading] = Future()
            problem = "its edit no longer applies: " + str(exc).splitlines()[0]
            done.set_result(SampleGrading(sample.name, isolation, sample, None, None, 0.0, problem))
            return done
        self._folders[sample.name] = folder
        return self._pool.submit(self._run, sample, folder, isolation, own_cache)

    def _run(self, sample: Any, folder: Path, isolation: str, own_cache: bool) -> SampleGrading:
        stem = sample.name if isolation == self.isolation else f"{sample.name}-{isolation}"
        args: list[str] = []
        if self.cache:
            cache = f"cache-{stem}" if own_cache else "cache"
            args += ["--grade-cache", str(self.workdir / cache)]
        selection = [f"({self.keyword})"] if self.keyword else []
        if self.select_graders and (graders := graders_for(sample, self.assignment / "graders")):
            selection.append(f"({graders})")
        if self.select_checks and getattr(sample, "checks", ()):
            known = check_names(self.assignment / "graders")
            selection.append(f"({checks_expression(sample.checks, known)})")
        if selection:
            args += ["-k", " and ".join(selection)]
        if self.on_start is not None:
            self.on_start(sample.name, sample.description)
        started = time.monotonic()
        code, data = grading.grade(
            folder,
            assignment=self.assignment,
            isolation=isolation,
            report=self.reports / f"{stem}.json",
            extra_args=(*args, *self.pytest_args),
            extra_env=self.env,
            log=self.reports / f"{stem}.log" if self.logs else None,
        )
        return SampleGrading(sample.name, isolation, sample, code, data, time.monotonic() - started)
