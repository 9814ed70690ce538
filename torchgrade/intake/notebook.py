"""Submissions as they really arrive: a notebook (``.ipynb``) or a script exported from one (``.py``,
usually with ``# In[12]:`` cell markers), turned into modules that the loader grades like a folder.

Nothing here runs student code: cells are parsed with :mod:`ast` and each top-level statement is
kept or dropped by its form, on the grader's side, before any worker starts.

What is kept (in notebook order, so a later cell's redefinition wins as it did in Colab):

* imports -- except Colab-only ones (``google.colab``), which are dropped with a note (inside the
  student's own ``try``/``except`` they are kept: the ``except`` branch runs, as outside Colab); a
  kept import is also guarded at run time, so one that still fails (a renamed name) costs only the
  names it would have bound. An import of a package not installed where grading runs (``import
  pandas``) is kept unguarded: the loader stands in for the package
  (:class:`torchgrade.worker.loader.StandIn`), so only the checks that use it fail, naming it, as in
  a folder submission;
* ``def`` and ``class`` statements, unless what they evaluate when defined (decorators, default
  values, base classes, annotations, class-level statements) uses a name that was dropped, calls the
  submission's own code, or loads data;
* constant assignments: the value may use literals, builtins, names kept above and calls of
  imported library code (``DEVICE = torch.device('cpu')``, ``transform = T.Compose([...])``), never
  a call of the submission's own functions or classes (``model = CNN()`` would run student code and
  ``history = train_model(...)`` would train on import), of ``open``/``input``/``eval``-like
  builtins, or of data loaders (``torch.load``, ``pd.read_csv``, anything from a ``datasets``
  module, ``download=...``): graders pass their own data. Assignments with calls are guarded at run
  time, so a library call that still fails drops that one name, not the module;
* ``if``/``try`` blocks made only of such statements (``if torch.cuda.is_available(): ...``,
  ``try: import x / except ImportError: ...``); ``if __name__ == "__main__":`` is dropped.

What is dropped, and recorded with its cell, lines, an excerpt and the reason: loops and ``with``
blocks at the top level (training, evaluation), bare calls (``train_model(...)``, ``plt.show()``,
``drive.mount(...)``), bare expressions (a notebook only displays them), ``del``/``assert``/``raise``,
``!shell`` and ``%magic`` lines, ``%%magic`` cells, and cells that still do not parse once those
lines are stripped. Bare strings (markdown pasted as docstrings) and ``pass`` are dropped silently.

Where the kept code goes: graders look a name up in the module the interface puts it in (the
repository's ``student_template/``, :mod:`torchgrade.assignments`), then in the submission's other
modules. The kept code is therefore written, whole, as every
interface module it defines at least one public name of (``shoes.py`` and ``answers.py`` for a
notebook with both parts), and as ``notebook.py`` if it defines none. Each name is then found in
its own module, so the report carries no "found in another module" notes, and the grade cache
hashes the real code of the module it names. The copies are executed separately, which is harmless
because nothing kept does any work on import.

A file that cannot be read at all (unknown extension, empty, binary, invalid notebook JSON, no code
that parses) becomes an :class:`~torchgrade.reporting.report.Extraction` with an ``error``; the plugin fails
every check with it, and the report still gets written.

Hostile input is bounded before it costs the grader anything: the file is read through
:func:`torchgrade.submission_files.read_regular` (a regular file only, never through a link or from a
pipe, at most :data:`MAX_BYTES`); a notebook's JSON may nest at most :data:`MAX_JSON_DEPTH` levels and
hold at most :data:`MAX_JSON_STRUCTURE` bytes outside its strings; a cell may hold at most
:data:`MAX_CELL_BYTES` of code and the notebook :data:`MAX_CODE_BYTES` in all; a statement nested more
than :data:`MAX_DEPTH` levels is left out, with why, before any recursive code looks at it, so the kept
code also compiles wherever it is imported. A cell that Python's own parser gives up on
(``RecursionError``, ``MemoryError``) is left out like one that does not parse. A loss of a cell or a
statement costs only the names it defined.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib.util
import json
import os
import re
import stat
import sys
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from torchgrade.assignments import active
from torchgrade.reporting import report
from torchgrade.submission_files import read_regular

#: Suffix -> kind of submission file this module converts.
KINDS = {".py": "script", ".ipynb": "notebook"}
#: The module the kept code is written as when it defines no name of the interface.
FALLBACK_MODULE = "notebook"
#: Notebooks with embedded plots are large, but not this large.
MAX_BYTES = 64 * 2**20
#: Parsing costs far more memory than the text it parses: ``ast.parse`` of 1 MiB of ``x=1`` lines took
#: 620 MB and 3 s, of 1 MiB of the reference's own code 69 MB and 0.3 s (measured on CPython 3.11).
#: Real homework code is tens of KiB, so a cell is cut at this size (what the grader parses at once) ...
MAX_CELL_BYTES = 512 * 2**10
#: ... and a notebook's code, or a script, at this size in all.
MAX_CODE_BYTES = 4 * 2**20
#: A statement nested deeper than this is left out unread. The deepest top-level statement of this
#: project is 17 levels; of every package installed beside it (torch, numpy, scipy, ...) 93, and only
#: sympy's generated tables go past 100. ``ast.unparse`` needs 3 frames a level, so 100 levels stay far
#: inside Python's 1000 frames, and the compiler's own limit, wherever the kept code is imported.
MAX_DEPTH = 100
#: A notebook's JSON nests 10 levels or so (widget state, a plotly figure: a few more). nbformat reads
#: it recursively, 2 frames a level (measured: it fails at 490 levels called from an empty stack).
MAX_JSON_DEPTH = 64
#: A notebook's bulk is strings (code, outputs, base64 images); what lies outside them (brackets,
#: commas, numbers) is small. 64 MiB of ``{},{},...`` would parse into 1.5 GB of dicts (measured).
MAX_JSON_STRUCTURE = 4 * 2**20
EXCERPT_CHARS = 80
#: How many dropped statements the score table lists (the report has them all).
SUMMARY_ROWS = 3

#: ``# In[12]:`` (or ``# In[ ]:``), as ``jupyter nbconvert --to script`` writes cell boundaries.
CELL_MARKER = re.compile(r"^#\s*In\s*\[\s*(\d*)\s*\]\s*:?\s*$")
#: IPython-only lines: shell (``!pip``), line magics (``%matplotlib``), ``x = !ls``, help (``obj?``).
_SHELL = re.compile(r"^\s*(?:[A-Za-z_][\w.,\s]*=\s*)?!")
_MAGIC = re.compile(r"^\s*(?:[A-Za-z_][\w.,\s]*=\s*)?%")
_HELP = re.compile(r"^\s*\??[A-Za-z_][\w.]*\?\??\s*$")
#: Lines that continue a top-level statement rather than start one (used to salvage names).
_CONTINUATION = re.compile(r"^(?:else|elif|except|finally|case)\b|^[)\]}]")
#: The names of a cell too long to parse: its unindented ``def`` and ``class`` lines.
_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)
#: JSON strings and whitespace: what is left of a notebook without them is its structure.
_JSON_TEXT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|\s+', re.DOTALL)

COLAB_MODULES = ("google.colab",)
#: Builtins that read files or input, or run code from text: never called on import.
BLOCKED_BUILTINS = frozenset(
    {"open", "input", "exec", "eval", "compile", "breakpoint", "exit", "quit", "help", "__import__"}
)
#: Last parts of callee names that load or download data (``torch.load``, ``pd.read_csv``, ``Image.open``).
DATA_CALLS = frozenset(
    {
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "imread",
        "open",
        "urlopen",
        "urlretrieve",
        "download",
        "from_pretrained",
        "DataLoader",
        "ImageFolder",
    }
)

# -- messages: what a student reads, in the report and in failed checks ------------------------------
MSG_BAD_FILE = "{source} could not be graded: {problem}."
PROBLEM_SUFFIX = (
    "a {suffix} file is neither a notebook (.ipynb) nor a Python script (.py); submit the notebook "
    "itself (File > Download > Download .ipynb)"
)
PROBLEM_MISSING = "the file does not exist or cannot be read ({error})"
PROBLEM_NOT_REGULAR = "it is {what}, not a regular file; torchgrade grades only regular files"
PROBLEM_TOO_LARGE = "it is {size:.0f} MB; a submission may be at most {limit:.0f} MB"
PROBLEM_SCRIPT_TOO_LARGE = "it is {size:.1f} MB; a script may be at most {limit:.0f} MB of code"
PROBLEM_EMPTY = "the file is empty"
PROBLEM_BINARY = "it is not a text file (it is binary, or not UTF-8 encoded)"
PROBLEM_JSON = (
    "it is not valid notebook JSON ({error}); download the notebook again "
    "(File > Download > Download .ipynb) rather than editing it by hand"
)
PROBLEM_NOT_NOTEBOOK = "it is JSON but not a Jupyter notebook ({error})"
PROBLEM_JSON_DEEP = (
    "its JSON nests more than {limit} levels deep, which no notebook does; download the notebook again "
    "(File > Download > Download .ipynb) rather than editing it by hand"
)
PROBLEM_JSON_BULKY = (
    "its JSON holds {size:.1f} MB outside its strings (brackets, commas, numbers), where a notebook holds "
    "at most {limit:.0f} MB; download the notebook again (File > Download > Download .ipynb)"
)
PROBLEM_TOO_COMPLEX = "torchgrade could not analyse it: {error}"
PROBLEM_NO_CODE = "it contains no code"
PROBLEM_SYNTAX = "none of its code parses as Python ({error} at {where}: `{excerpt}`)"
PROBLEM_NOTHING_KEPT = "none of its code could be analysed ({where}: {reason})"

REASON_LOOP = "a loop at the top level (training, evaluation) would run when the notebook is imported"
REASON_BLOCK = "a `{kind}` block at the top level would run when the notebook is imported"
REASON_STATEMENT = "a top-level `{kind}` statement would run when the notebook is imported"
REASON_CALL = (
    "a call on its own, `{callee}(...)`, would run when the notebook is imported; graders call your "
    "functions themselves"
)
REASON_PLOT = "plotting (`{callee}(...)`) only shows a figure in the notebook"
REASON_EXPRESSION = "an expression on its own only displays a value in the notebook"
REASON_COLAB = "Colab-only: {what}"
REASON_SHELL = "shell command: `!` lines run only in Colab or Jupyter"
REASON_MAGIC = "IPython magic: `%` lines run only in Colab or Jupyter"
REASON_HELP = "IPython help: `?` lines run only in Colab or Jupyter"
REASON_IPYTHON_CALL = "IPython magic or shell command (`get_ipython()`) runs only in Colab or Jupyter"
REASON_CELL_MAGIC_PREFIX = "cell magic"
REASON_CELL_MAGIC = REASON_CELL_MAGIC_PREFIX + " `{magic}`: the whole cell runs only in Colab or Jupyter"
REASON_SYNTAX_PREFIX = "the cell does not parse as Python"
REASON_SYNTAX = REASON_SYNTAX_PREFIX + " ({error} at line {line}), so nothing in it is graded"
REASON_PARSER_GAVE_UP = (
    REASON_SYNTAX_PREFIX + ": it nests deeper than Python's parser allows ({error}), so nothing in it is graded"
)
REASON_CELL_TOO_LONG = (
    "the cell holds {size} KiB of code; torchgrade reads cells of at most {limit} KiB, so nothing in it is graded"
)
REASON_CODE_TOO_LONG = (
    "the code before this cell already reached {limit} MiB, all that torchgrade reads of one submission, "
    "so nothing in it is graded"
)
REASON_TOO_DEEP = (
    "it nests more than {limit} levels deep, deeper than torchgrade reads; split the expression, or the "
    "`if`/`elif` chain, into smaller ones"
)
REASON_TOO_COMPLEX = "torchgrade could not analyse it ({error})"
#: Reasons no rewriting of top-level code fixes: a missing name's message adds no hint about it.
NO_HINT_REASONS = tuple(
    reason.split("{")[0]
    for reason in (
        REASON_SYNTAX_PREFIX,
        REASON_CELL_MAGIC_PREFIX,
        REASON_CELL_TOO_LONG,
        REASON_CODE_TOO_LONG,
        REASON_TOO_DEEP,
        REASON_TOO_COMPLEX,
    )
)
REASON_MAIN = "`if __name__ == '__main__':` runs only when the file is run as a script"
REASON_LEFT_OUT = "it uses `{name}`, which was left out at {where}"
#: A ``def``/``class`` left out for what Python evaluates when it defines it (``device=device``).
REASON_DEFINITION_MARK = "is evaluated when Python defines"
REASON_DEFINITION = "its {role} `{code}` " + REASON_DEFINITION_MARK + " `{defined}`, and it uses `{name}`, which {why}"
REASON_NAME_LEFT_OUT = "was left out at {where} ({reason})"
REASON_NAME_UNDEFINED = "is not defined above it"
REASON_UNDEFINED = "it uses `{name}`, which is not defined above it"
REASON_CALLS_OWN = "it calls `{callee}`, defined in the notebook, which would run your code (e.g. training) on import"
REASON_BUILTIN = "it calls `{callee}()`, which reads files or input"
REASON_LOADS = "it loads or downloads data (`{callee}(...)`); graders pass their own data"
REASON_YIELDS = "it awaits or yields at the top level"
REASON_PART = "line {line} inside it would run on import: {reason}"

MSG_DROPPED_DEFINITION = "{source} defines `{name}` at {where}, but that code is not graded: {reason}."
HINT_TOP_LEVEL = " Define `{name}` at the top level of a cell, outside loops, `if` blocks and training code."
HINT_DEFINITION = (
    " Give `{name}` a default value (or decorator) that needs nothing from other cells, e.g. `None` replaced "
    "inside the function, or define `{dependency}` as a constant at the top level of a cell, outside loops, "
    "`if` blocks and training code."
)
MSG_NOT_DEFINED = "{source} does not define `{name}` at the top level of any cell."
MSG_UNPARSED = " {where} does not parse as Python, so nothing in it is graded."
MSG_SIMILAR = " It defines {names}: rename yours to `{name}` if that is it."
MSG_KEPT_BUT_BROKEN = "{message}\n(The code kept from {source} is graded as {modules}.)"

_SILENT = "silent"  # a verdict: drop without a note (docstrings, pass)


@dataclass(frozen=True)
class Extracted:
    """The result of :func:`extract`: what the report says, and the module source to write."""

    extraction: report.Extraction
    code: str


@dataclass(frozen=True)
class _Cell:
    """One code cell. ``number`` is what the report calls it (the notebook position, or the N of a
    script's ``# In[N]:``); ``offset`` turns a line of the cell into the line the report gives
    (0 in a notebook, where lines count within the cell; the file line before the cell in a script)."""

    number: int | None
    source: str
    offset: int = 0


class _BadFile(Exception):
    """The file cannot be graded at all; the message is one of the ``PROBLEM_*`` texts."""


# -- the public functions --------------------------------------------------------------------------
#: module -> its public names: the submission interface, as plain data.
Interface = Mapping[str, Sequence[str]]


def _interface(interface: Interface | None) -> Interface:
    """The given interface, else the active repository's (:func:`torchgrade.assignments.active`)."""
    return active().interface_data() if interface is None else interface


def convert(path: str | Path, folder: str | Path, interface: Interface | None = None) -> report.Extraction:
    """Extract a notebook or script and write the kept code as modules into ``folder``.

    ``interface`` (module -> public names; default: the active repository's) says which modules the
    kept code is written as.

    Returns:
        What the report says about the extraction (``error`` set if the file is unusable; then
        nothing is written).
    """
    extracted = extract(path, interface)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not extracted.extraction.error:
        for module in extracted.extraction.modules:
            (folder / f"{module}.py").write_text(extracted.code, encoding="utf-8")
    return extracted.extraction


def extract(path: str | Path, interface: Interface | None = None) -> Extracted:
    """Read a ``.py`` or ``.ipynb`` submission and keep what can be graded (see the module docstring).

    Never raises for a bad file: the problem is the extraction's ``error``. Input so deep or so large
    that Python itself gives up on it (``RecursionError``, ``MemoryError``) is bounded cell by cell and
    statement by statement; should it still escape, the whole file is the error, never the run's crash.
    """
    path = Path(path)
    kind = KINDS.get(path.suffix.lower(), "unknown")
    try:
        cells = _read_cells(path, kind)
        extractor = _Extractor(kind, _interface(interface))
        for cell in cells:
            extractor.add_cell(cell)
        return extractor.result(path.name)
    except _BadFile as problem:
        error = MSG_BAD_FILE.format(source=path.name, problem=problem)
    except (RecursionError, MemoryError) as exc:
        problem = PROBLEM_TOO_COMPLEX.format(error=_resource_error(exc))
        error = MSG_BAD_FILE.format(source=path.name, problem=problem)
    return Extracted(report.Extraction(path.name, kind, (), (), (), error), "")


def explain_missing(extraction: report.Extraction, name: str, message: str) -> str:
    """The message for a name the grader needs and did not find in a converted notebook.

    Args:
        extraction: what was kept and dropped.
        name: the public name, e.g. ``CNN``.
        message: the loader's own message (it speaks of modules the student never wrote).
    """
    source = extraction.source
    if name in extraction.defined:  # kept, so its module failed to import: the loader's traceback says why
        modules = ", ".join(f"{m}.py" for m in extraction.modules)
        return MSG_KEPT_BUT_BROKEN.format(message=message, source=source, modules=modules)
    lost = [d for d in extraction.dropped if name in d.names]
    if lost:
        last = lost[-1]
        text = MSG_DROPPED_DEFINITION.format(
            source=source, name=name, where=where(last, extraction.kind), reason=last.reason
        )
        if last.reason.startswith(NO_HINT_REASONS):
            return text
        if REASON_DEFINITION_MARK in last.reason:
            dependency = re.search(r"and it uses `([^`]+)`", last.reason)
            return text + HINT_DEFINITION.format(name=name, dependency=dependency.group(1) if dependency else "it")
        return text + HINT_TOP_LEVEL.format(name=name)
    text = MSG_NOT_DEFINED.format(source=source, name=name)
    unparsed = [d for d in extraction.dropped if d.reason.startswith(REASON_SYNTAX_PREFIX)]
    if unparsed:
        text += MSG_UNPARSED.format(where=_capitalised(where(unparsed[0], extraction.kind)))
    similar = difflib.get_close_matches(name, extraction.defined, n=3, cutoff=0.7)
    if similar:
        text += MSG_SIMILAR.format(names=", ".join(f"`{s}`" for s in similar), name=name)
    return text


def where(dropped: report.Dropped, kind: str) -> str:
    """Where a dropped statement is, as the student finds it: ``cell 5, line 3`` in a notebook,
    ``lines 40-52 (In[7])`` in a script (whose lines count in the file)."""
    first, last = dropped.lines
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    if kind == "notebook":
        return f"cell {dropped.cell}, {lines}"
    return lines + (f" (In[{dropped.cell}])" if dropped.cell is not None else "")


def summary(extraction: report.Extraction, interface: Interface | None = None) -> list[str]:
    """A few lines for the score table: where the graded code came from and what was left out."""
    if extraction.error:
        return [f" {extraction.error}"]
    modules = ", ".join(f"{m}.py" for m in extraction.modules)
    lines = [
        f" {extraction.source} ({extraction.kind}): graded as {modules}; "
        f"{len(extraction.dropped)} statement(s) left out"
    ]
    # First what lost a name of the interface (it explains a failed check), then what lost any name.
    names = {name for names in _interface(interface).values() for name in names}
    shown = sorted(extraction.dropped, key=lambda d: (not set(d.names) & names, not d.names))
    shown = shown[:SUMMARY_ROWS]
    for dropped in shown:
        excerpt = dropped.excerpt if len(dropped.excerpt) <= 40 else dropped.excerpt[:37] + "..."
        lines.append(f"   left out {where(dropped, extraction.kind)} `{excerpt}`: {dropped.reason}"[:200])
    if len(extraction.dropped) > len(shown):
        lines.append(f'   ... {len(extraction.dropped) - len(shown)} more in the report\'s "extraction"')
    return lines


# -- reading files into cells ----------------------------------------------------------------------------
def _read_cells(path: Path, kind: str) -> list[_Cell]:
    if kind == "unknown":
        raise _BadFile(PROBLEM_SUFFIX.format(suffix=f"`{path.suffix}`" if path.suffix else "extension-less"))
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise _BadFile(PROBLEM_MISSING.format(error=exc.strerror or exc)) from None
    if not stat.S_ISREG(info.st_mode):  # a link may point at anything, a pipe blocks, /dev/zero never ends
        raise _BadFile(PROBLEM_NOT_REGULAR.format(what=_kind_of(info.st_mode)))
    size = info.st_size
    if kind == "script" and size > MAX_CODE_BYTES:
        raise _BadFile(PROBLEM_SCRIPT_TOO_LARGE.format(size=size / 2**20, limit=MAX_CODE_BYTES / 2**20))
    if size > MAX_BYTES:
        raise _BadFile(PROBLEM_TOO_LARGE.format(size=size / 2**20, limit=MAX_BYTES / 2**20))
    try:
        data = read_regular(path, MAX_CODE_BYTES if kind == "script" else MAX_BYTES)
    except OSError as exc:  # swapped for something else, or grown, since it was looked at
        raise _BadFile(PROBLEM_MISSING.format(error=exc.strerror or exc)) from None
    if not data.strip():
        raise _BadFile(PROBLEM_EMPTY)
    if b"\x00" in data:
        raise _BadFile(PROBLEM_BINARY)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _BadFile(PROBLEM_BINARY) from None
    return _notebook_cells(text) if kind == "notebook" else _script_cells(text)


def _notebook_cells(text: str) -> list[_Cell]:
    import nbformat

    structure = len(_JSON_TEXT.sub("", text))
    if structure > MAX_JSON_STRUCTURE:
        raise _BadFile(PROBLEM_JSON_BULKY.format(size=structure / 2**20, limit=MAX_JSON_STRUCTURE / 2**20))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadFile(PROBLEM_JSON.format(error=f"line {exc.lineno}, column {exc.colno}: {exc.msg}")) from None
    except RecursionError:  # json's C scanner stops at Python's recursion limit
        raise _BadFile(PROBLEM_JSON_DEEP.format(limit=MAX_JSON_DEPTH)) from None
    if _json_deeper_than(data, MAX_JSON_DEPTH):  # what nbformat reads recursively, in Python
        raise _BadFile(PROBLEM_JSON_DEEP.format(limit=MAX_JSON_DEPTH))
    # nbformat's own errors on other JSON ("'int' object is not iterable") would puzzle a student.
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        raise _BadFile(PROBLEM_NOT_NOTEBOOK.format(error='it has no list of "cells"'))
    del data  # nbformat parses the text again: one parsed copy at a time
    try:
        with warnings.catch_warnings():  # e.g. MissingIDFieldWarning: the grader's -W error must not apply
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
        cells = [(index, cell) for index, cell in enumerate(notebook.cells, 1)]
        code = [_Cell(index, _cell_source(cell.source)) for index, cell in cells if cell.cell_type == "code"]
    except (RecursionError, MemoryError) as exc:
        raise _BadFile(PROBLEM_TOO_COMPLEX.format(error=_resource_error(exc))) from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises ValidationError, TypeError, KeyError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _BadFile(PROBLEM_NOT_NOTEBOOK.format(error=first[:200])) from None
    if not any(cell.source.strip() for cell in code):
        raise _BadFile(PROBLEM_NO_CODE)
    return code


def _cell_source(source: object) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _script_cells(text: str) -> list[_Cell]:
    """Split a script at its ``# In[N]:`` markers (one cell without markers); lines keep their numbers."""
    lines = text.splitlines()
    cells: list[_Cell] = []
    number, start = None, 0
    for index, line in enumerate(lines):
        marker = CELL_MARKER.match(line)
        if marker:
            cells.append(_Cell(number, "\n".join(lines[start:index]) + "\n", start))
            number, start = (int(marker.group(1)) if marker.group(1) else None), index + 1
    cells.append(_Cell(number, "\n".join(lines[start:]) + "\n", start))
    if not any(cell.source.strip() for cell in cells):
        raise _BadFile(PROBLEM_NO_CODE)
    return cells


# -- keeping and dropping ----------------------------------------------------------------------------
class _Extractor:
    """Walks the cells in order, keeping statements by the rules of the module docstring.

    ``known`` holds the names bound so far by kept code (and builtins); ``own`` those bound to the
    notebook's own functions and classes, whose calls would run student code; ``lost`` the names
    bound only by dropped code, to say where they went.
    """

    def __init__(self, kind: str, interface: Interface) -> None:
        self.kind = kind
        self.interface = interface
        self.known: set[str] = set(dir(builtins)) | {"__name__", "__file__", "__doc__"}
        self.own: set[str] = set()
        self.origins: dict[str, str] = {}  # imported name -> dotted module path, e.g. nn -> torch.nn
        self.lost: dict[str, report.Dropped] = {}
        self.star_import = False
        self.future: list[str] = []
        self.defined: list[str] = []
        self.blocks: list[tuple[_Cell, str]] = []
        self.dropped: list[report.Dropped] = []
        self.first_problem: str | None = None  # the PROBLEM_* of the first cell left out whole
        self.parsed_any = False
        self.code_bytes = 0  # read so far, against MAX_CODE_BYTES
        self.offset = 0  # of the cell being read: reasons name lines as the report does

    # -- cells ---------------------------------------------------------------------------------------
    def add_cell(self, cell: _Cell) -> None:
        self.offset = cell.offset
        if not cell.source.strip():
            return
        size = len(cell.source.encode("utf-8", "surrogatepass"))
        if size > MAX_CELL_BYTES or self.code_bytes + size > MAX_CODE_BYTES:
            reason = (
                REASON_CELL_TOO_LONG.format(size=size // 2**10, limit=MAX_CELL_BYTES // 2**10)
                if size > MAX_CELL_BYTES
                else REASON_CODE_TOO_LONG.format(limit=MAX_CODE_BYTES // 2**20)
            )
            first = cell.source.lstrip()[:EXCERPT_CHARS].partition("\n")[0]
            self._drop_unread_cell(cell, reason, first)
            return
        self.code_bytes += size
        lines = cell.source.splitlines()
        first = next(line.strip() for line in lines if line.strip())
        if first.startswith("%%"):
            self._drop_cell(cell, REASON_CELL_MAGIC.format(magic=first.split()[0]), first)
            return
        source, ipython_lines = cell.source, []
        tree, error = _parse(source)
        if tree is None:  # IPython syntax? blank its lines (keeping line numbers) and try again
            kept_lines = []
            for number, line in enumerate(lines, 1):
                reason = _ipython_line(line)
                kept_lines.append("" if reason else line)
                if reason:
                    ipython_lines.append(self._record(cell, number, number, line, reason))
            source = "\n".join(kept_lines) + "\n"
            tree, error = _parse(source)
        if isinstance(error, _ParserGaveUp):
            dropped = self._drop_cell(cell, REASON_PARSER_GAVE_UP.format(error=error.msg), first)
            if self.first_problem is None:
                self.first_problem = PROBLEM_NOTHING_KEPT.format(where=self._where(cell), reason=dropped.reason)
            return
        if tree is None:
            line = error.lineno or 1
            text = lines[line - 1] if 0 < line <= len(lines) else first
            dropped = self._drop_cell(cell, REASON_SYNTAX.format(error=error.msg, line=line + cell.offset), text)
            if self.first_problem is None:
                at = f"line {line + cell.offset}" if self.kind == "script" else f"cell {cell.number}, line {line}"
                self.first_problem = PROBLEM_SYNTAX.format(error=error.msg, where=at, excerpt=dropped.excerpt)
            return
        self.parsed_any = True
        self.dropped.extend(ipython_lines)
        lines = source.splitlines()
        body = tree.body
        for index, stmt in enumerate(body):
            previous_end = body[index - 1].end_lineno if index else 0
            next_start = _first_line(body[index + 1]) if index + 1 < len(body) else len(lines) + 1
            self._bounded_statement(cell, lines, stmt, previous_end, next_start)

    def _drop_cell(self, cell: _Cell, reason: str, excerpt: str) -> report.Dropped:
        lines = cell.source.splitlines()
        dropped = self._record(cell, 1, max(1, len(lines)), excerpt, reason, _salvage_names(cell.source))
        self.dropped.append(dropped)
        for name in dropped.names:
            self.lost.setdefault(name, dropped)
        return dropped

    def _drop_unread_cell(self, cell: _Cell, reason: str, excerpt: str) -> None:
        """Leave out a cell too long to parse; the names its ``def``/``class`` lines define are found
        by a pattern, not by parsing, so that a missing name's message can still point at it."""
        last = cell.source.count("\n") + (not cell.source.endswith("\n"))
        names = tuple(dict.fromkeys(match.group(1) for match in _DEFINITION.finditer(cell.source)))
        dropped = self._record(cell, 1, max(1, last), excerpt, reason, names)
        self.dropped.append(dropped)
        for name in names:
            self.lost.setdefault(name, dropped)
        if self.first_problem is None:
            self.first_problem = PROBLEM_NOTHING_KEPT.format(where=self._where(cell), reason=reason)

    def _where(self, cell: _Cell) -> str:
        if self.kind == "notebook":
            return f"cell {cell.number}"
        return f"line {cell.offset + 1}" + (f" (In[{cell.number}])" if cell.number is not None else "")

    def _record(
        self, cell: _Cell, first: int, last: int, excerpt: str, reason: str, names: tuple[str, ...] = ()
    ) -> report.Dropped:
        text = excerpt.strip()
        text = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."
        return report.Dropped(cell.number, (first + cell.offset, last + cell.offset), text, reason, names)

    # -- statements ----------------------------------------------------------------------------------
    def _bounded_statement(
        self, cell: _Cell, lines: list[str], stmt: ast.stmt, previous_end: int, next_start: int
    ) -> None:
        """:meth:`_statement`, unless ``stmt`` nests too deeply for the recursive code that reads it
        (``ast.unparse``, the compiler where the kept code is imported): then it is left out, with why."""
        if _deeper_than(stmt, MAX_DEPTH):
            self._drop_statement(cell, lines, stmt, REASON_TOO_DEEP.format(limit=MAX_DEPTH))
            return
        saved = self._snapshot(), len(self.blocks), len(self.dropped), len(self.future)
        try:
            self._statement(cell, lines, stmt, previous_end, next_start)
        except (RecursionError, MemoryError) as exc:  # a backstop: MAX_DEPTH should make it unreachable
            state, blocks, dropped, future = saved
            self._restore(state)
            del self.blocks[blocks:], self.dropped[dropped:], self.future[future:]
            self._drop_statement(cell, lines, stmt, REASON_TOO_COMPLEX.format(error=_resource_error(exc)))

    def _drop_statement(self, cell: _Cell, lines: list[str], stmt: ast.stmt, reason: str) -> None:
        first, last = _first_line(stmt), stmt.end_lineno or stmt.lineno
        try:
            names = tuple(_bindings(stmt))
        except RecursionError:
            names = ()
        dropped = self._record(cell, first, last, lines[first - 1], reason, names)
        self.dropped.append(dropped)
        for name in names:
            if name not in self.known:
                self.lost[name] = dropped

    def _statement(self, cell: _Cell, lines: list[str], stmt: ast.stmt, previous_end: int, next_start: int) -> None:
        first, last = _first_line(stmt), stmt.end_lineno or stmt.lineno
        saved = self._snapshot()
        verdict = self._verdict(stmt)
        if verdict == _SILENT:
            return
        if verdict is not None:
            self._restore(saved)
            names = tuple(_bindings(stmt))
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self.origins.update(_import_origins(stmt))
                names = tuple(_import_origins(stmt))
            dropped = self._record(cell, first, last, lines[first - 1], verdict, names)
            self.dropped.append(dropped)
            for name in names:
                if name not in self.known:
                    self.lost[name] = dropped
            return
        self._bind(stmt)
        if _is_future_import(stmt):
            self.future += [alias.name for alias in stmt.names]
            return
        exclusive = previous_end < first and next_start > last
        text = "\n".join(lines[first - 1 : last]) if exclusive else ast.unparse(stmt)
        self.blocks.append((cell, _guarded(stmt, text, self.interface)))

    def _verdict(self, stmt: ast.stmt, guarded: bool = False) -> str | None:
        """None to keep ``stmt``, else why it is dropped (or ``_SILENT``). Binds nested names as it goes."""
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            return self._import_problem(stmt, guarded)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            expressions, local = _evaluated_on_definition(stmt, "annotations" in self.future)
            problem = self._expression_problem(expressions, local)
            return self._definition_problem(stmt, problem, local) if problem else None
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if stmt.value is None:
                return None
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            read = (
                [ast.Name(stmt.target.id, ast.Load())]
                if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name)
                else []
            )
            return self._expression_problem([*read, *targets, stmt.value])
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):
                return _SILENT
            return self._call_reason(stmt.value) if isinstance(stmt.value, ast.Call) else REASON_EXPRESSION
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            return REASON_LOOP
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            return REASON_BLOCK.format(kind="with")
        if isinstance(stmt, ast.If):
            if _is_main_guard(stmt.test):
                return REASON_MAIN
            return self._expression_problem([stmt.test]) or self._block_problem(stmt.body + stmt.orelse, guarded)
        if isinstance(stmt, (ast.Try, ast.TryStar)):
            types = [h.type for h in stmt.handlers if h.type is not None]
            nested = stmt.body + [s for h in stmt.handlers for s in h.body] + stmt.orelse + stmt.finalbody
            for handler in stmt.handlers:
                if handler.name:
                    self.known.add(handler.name)
            return self._expression_problem(types) or self._block_problem(nested, guarded or bool(stmt.handlers))
        if isinstance(stmt, (ast.Pass, ast.Global, ast.Nonlocal)):
            return _SILENT
        return REASON_STATEMENT.format(kind=_keyword(stmt))

    def _block_problem(self, body: list[ast.stmt], guarded: bool) -> str | None:
        for stmt in body:
            verdict = self._verdict(stmt, guarded)
            if verdict == _SILENT:
                continue
            if verdict is not None:
                return REASON_PART.format(line=_first_line(stmt) + self.offset, reason=verdict)
            self._bind(stmt)
        return None

    def _import_problem(self, stmt: ast.Import | ast.ImportFrom, guarded: bool) -> str | None:
        if guarded:  # inside the student's own try/except: a failing import takes their except branch
            return None
        if isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                return None
            base = stmt.module or ""
            modules = [base] + [f"{base}.{alias.name}" for alias in stmt.names if base == "google"]
        else:
            modules = [alias.name for alias in stmt.names]
        for module in modules:
            if _is_colab(module):
                return REASON_COLAB.format(what=f"`{module}` exists only in Colab")
        return None

    def _expression_problem(self, nodes: list[ast.AST], local: frozenset[str] = frozenset()) -> str | None:
        for node in nodes:
            bound = local | _locally_bound(node)
            for sub in _evaluated(node):
                if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom)):
                    return REASON_YIELDS
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in bound:
                    problem = self._unknown(sub.id)
                    if problem:
                        return problem
                if isinstance(sub, ast.Call):
                    problem = self._call_problem(sub)
                    if problem:
                        return problem
        return None

    def _definition_problem(
        self, stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, problem: str, local: frozenset[str]
    ) -> str:
        """Say which part of a definition needs a name that is missing (a default value, a decorator,
        a base class), and why that name is missing: a student reads "define it at the top level" for
        a ``def`` that *is* at the top level otherwise."""
        lazy = "annotations" in self.future
        for role, code, node in _definition_parts(stmt, lazy):
            bound = local | _locally_bound(node)
            for sub in _evaluated(node):
                if not (isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)) or sub.id in bound:
                    continue
                if sub.id in self.known or (sub.id not in self.lost and self.star_import):
                    continue
                if sub.id in self.lost:
                    lost = self.lost[sub.id]
                    reason = lost.reason if len(lost.reason) <= 200 else lost.reason[:197] + "..."
                    why = REASON_NAME_LEFT_OUT.format(where=where(lost, self.kind), reason=reason)
                else:
                    why = REASON_NAME_UNDEFINED.format(name=sub.id)
                code = code if len(code) <= EXCERPT_CHARS // 2 else code[: EXCERPT_CHARS // 2 - 3] + "..."
                return REASON_DEFINITION.format(defined=stmt.name, role=role, code=code, name=sub.id, why=why)
        return problem

    def _unknown(self, name: str) -> str | None:
        if name in self.known:
            return None
        if name in self.lost:
            return REASON_LEFT_OUT.format(name=name, where=where(self.lost[name], self.kind))
        return None if self.star_import else REASON_UNDEFINED.format(name=name)

    def _call_problem(self, call: ast.Call) -> str | None:
        callee = _dotted(call.func) or ast.unparse(call.func)
        root = _root_name(call.func)
        if root in self.own:
            return REASON_CALLS_OWN.format(callee=root)
        if isinstance(call.func, ast.Name) and call.func.id in BLOCKED_BUILTINS:
            return REASON_BUILTIN.format(callee=callee)
        qualified = self._qualified(call.func)
        parts = qualified.split(".") if qualified else []
        if (parts and (parts[-1] in DATA_CALLS or parts[-1].startswith("read_") or "datasets" in parts[:-1])) or any(
            keyword.arg == "download" for keyword in call.keywords
        ):
            return REASON_LOADS.format(callee=callee)
        return None

    def _call_reason(self, call: ast.Call) -> str:
        callee = _dotted(call.func) or ast.unparse(call.func)
        qualified = self._qualified(call.func) or ""
        if callee.endswith("drive.mount") or _is_colab(qualified):
            return REASON_COLAB.format(
                what="it mounts Google Drive" if callee.endswith(".mount") else f"`{callee}` exists only in Colab"
            )
        if _root_name(call.func) == "get_ipython":
            return REASON_IPYTHON_CALL
        if qualified.startswith(("matplotlib", "seaborn")) or callee.split(".")[-1] in ("show", "imshow"):
            return REASON_PLOT.format(callee=callee)
        return REASON_CALL.format(callee=callee)

    def _qualified(self, func: ast.expr) -> str | None:
        """``datasets.MNIST`` after ``from torchvision import datasets`` -> ``torchvision.datasets.MNIST``."""
        dotted = _dotted(func)
        if dotted is None:
            return None
        root, _, rest = dotted.partition(".")
        origin = self.origins.get(root, root)
        return f"{origin}.{rest}" if rest else origin

    # -- bindings ------------------------------------------------------------------------------------
    def _bind(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.star_import = self.star_import or any(alias.name == "*" for alias in stmt.names)
            for name, origin in _import_origins(stmt).items():
                self.origins[name] = origin
                self._define(name, record=False)
            return
        names = _bindings(stmt)
        for name in names:
            self._define(name, record=True)
        for node in _nested_statements(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.own.add(node.name)
            elif (
                isinstance(node, ast.Assign)
                and _root_name(node.value) in self.own
                and isinstance(node.value, (ast.Name, ast.Attribute))
            ):
                self.own.update(n for t in node.targets for n in _target_names(t))  # an alias: Model = CNN

    def _define(self, name: str, record: bool) -> None:
        self.known.add(name)
        self.lost.pop(name, None)
        self.own.discard(name)
        if record and name not in self.defined:
            self.defined.append(name)

    def _snapshot(self) -> tuple:
        return (
            set(self.known),
            set(self.own),
            dict(self.origins),
            dict(self.lost),
            self.star_import,
            list(self.defined),
        )

    def _restore(self, saved: tuple) -> None:
        self.known, self.own, self.origins, self.lost, self.star_import, self.defined = saved

    # -- the result ----------------------------------------------------------------------------------
    def result(self, source: str) -> Extracted:
        defined = tuple(self.defined)
        error = ""
        if not self.parsed_any:
            error = MSG_BAD_FILE.format(source=source, problem=self.first_problem or PROBLEM_NO_CODE)
        modules = tuple(m for m, names in self.interface.items() if any(n in defined for n in names))
        modules = modules or (FALLBACK_MODULE,)
        extraction = report.Extraction(source, self.kind, () if error else modules, defined, tuple(self.dropped), error)
        return Extracted(extraction, "" if error else self._code(source))

    def _code(self, source: str) -> str:
        out = [
            f"# The code torchgrade kept from {source}: imports, definitions and constants. What was left out,",
            '# and why, is in the report\'s "extraction".',
            "",
        ]
        if self.future:
            out += [f"from __future__ import {', '.join(dict.fromkeys(self.future))}", ""]
        current = None
        for cell, text in self.blocks:
            if cell is not current:
                current = cell
                label = (
                    f"cell {cell.number}"
                    if self.kind == "notebook"
                    else (
                        f"{source} line {cell.offset + 1}"
                        + (f" (In[{cell.number}])" if cell.number is not None else "")
                    )
                )
                out += ["", f"# -- {label}"]
            out += [text, ""]
        return "\n".join(out)


# -- AST helpers -------------------------------------------------------------------------------------------
class _ParserGaveUp(SyntaxError):
    """Python's parser stopped on code nested too deeply (``a.b.b...`` 5,000 times, ``-`` 100,000 times)."""


def _parse(source: str) -> tuple[ast.Module | None, SyntaxError | None]:
    try:
        with warnings.catch_warnings():  # invalid escape sequences in student strings are not ours to report
            warnings.simplefilter("ignore")
            return ast.parse(source), None
    except SyntaxError as exc:
        return None, exc
    except ValueError as exc:  # e.g. source with null bytes
        return None, SyntaxError(str(exc))
    except (RecursionError, MemoryError) as exc:  # the parser's own limits on nesting
        return None, _ParserGaveUp(_resource_error(exc))


def _resource_error(exc: BaseException) -> str:
    """``RecursionError: maximum recursion depth exceeded during ast construction``, or just the type."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _deeper_than(node: ast.AST, limit: int) -> bool:
    """Whether ``node``'s tree has more than ``limit`` levels (``node`` itself is level 1); iterative,
    and it stops at the first node past the limit."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return False


def _json_deeper_than(value: object, limit: int) -> bool:
    """Whether parsed JSON nests more than ``limit`` levels of arrays and objects; iterative."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        current, depth = stack.pop()
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"


def _ipython_line(line: str) -> str | None:
    if _SHELL.match(line):
        return REASON_SHELL
    if _MAGIC.match(line):
        return REASON_MAGIC
    if _HELP.match(line):
        return REASON_HELP
    return None


def _is_colab(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in COLAB_MODULES)


def _import_origins(stmt: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """Bound name -> dotted origin: ``import torch.nn as nn`` gives ``{"nn": "torch.nn"}``."""
    origins = {}
    for alias in stmt.names:
        if alias.name == "*":
            continue
        if isinstance(stmt, ast.Import):
            name = alias.asname or alias.name.split(".")[0]
            origins[name] = alias.name if alias.asname else name
        else:
            name = alias.asname or alias.name
            origins[name] = f"{stmt.module}.{alias.name}" if stmt.level == 0 else name
    return origins


def _first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno] + [d.lineno for d in decorators])


def _is_future_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = {ast.unparse(test.left), ast.unparse(test.comparators[0])}
    return sides == {"__name__", "'__main__'"}


def _keyword(stmt: ast.stmt) -> str:
    return {ast.Delete: "del", ast.Assert: "assert", ast.Raise: "raise", ast.Match: "match", ast.Return: "return"}.get(
        type(stmt), type(stmt).__name__.lower()
    )


def _guarded(stmt: ast.stmt, text: str, interface: Interface) -> str:
    """Wrap statements that do work on import (imports, calls) so that a failure costs only their names."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return text
    if not isinstance(stmt, (ast.Import, ast.ImportFrom)) and not any(isinstance(n, ast.Call) for n in ast.walk(stmt)):
        return text
    if _imports_missing_package(stmt, interface):  # left to fail, so that the loader stands in for the package
        return text
    multiline_string = any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and n.end_lineno != n.lineno for n in ast.walk(stmt)
    )
    body = textwrap.indent(ast.unparse(stmt) if multiline_string else text, "    ")
    return f"try:\n{body}\nexcept Exception:  # torchgrade: if this fails, the rest still grades\n    pass"


def _imports_missing_package(stmt: ast.stmt, interface: Interface) -> bool:
    """Whether ``stmt`` is an absolute import of a top-level package not installed where grading runs."""
    if isinstance(stmt, ast.Import):
        modules = [alias.name for alias in stmt.names]
    elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module:
        modules = [stmt.module]
    else:
        return False
    return any(m.split(".")[0] != "__future__" and not _installed(m.split(".")[0], interface) for m in modules)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _nested_statements(stmt: ast.stmt):
    """``stmt`` and the statements nested in its blocks that run in module scope (not function bodies)."""
    yield stmt
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return
    for field in ("body", "orelse", "finalbody"):
        for child in getattr(stmt, field, []):
            yield from _nested_statements(child)
    for handler in getattr(stmt, "handlers", []):
        for child in handler.body:
            yield from _nested_statements(child)
    for case in getattr(stmt, "cases", []):
        for child in case.body:
            yield from _nested_statements(child)


def _bindings(stmt: ast.stmt) -> list[str]:
    """The module-level names ``stmt`` binds (imports aside), in order, without duplicates."""
    names: list[str] = []
    for node in _nested_statements(stmt):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [n for target in node.targets for n in _target_names(target)]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            if not (isinstance(node, ast.AnnAssign) and node.value is None):
                names.append(node.target.id)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            names += _target_names(node.target)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            names += [n for item in node.items if item.optional_vars for n in _target_names(item.optional_vars)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            expressions = [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]
            names += [
                n.target.id
                for e in expressions
                for n in ast.walk(e)
                if isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name)
            ]
    return list(dict.fromkeys(names))


def _evaluated_on_definition(
    stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lazy_annotations: bool
) -> tuple[list[ast.AST], frozenset[str]]:
    """What Python evaluates when ``stmt`` runs (its body aside), and the names local to a class body."""
    expressions: list[ast.AST] = list(stmt.decorator_list)
    if isinstance(stmt, ast.ClassDef):
        expressions += stmt.bases + [keyword.value for keyword in stmt.keywords]
        local: set[str] = set()
        for child in stmt.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner, _ = _evaluated_on_definition(child, lazy_annotations)
                expressions += inner
            elif isinstance(child, ast.AnnAssign) and lazy_annotations:
                expressions += [child.value] if child.value else []
            else:
                expressions.append(child)
            local.update(_bindings(child))
        return expressions, frozenset(local)
    arguments = stmt.args
    expressions += arguments.defaults + [d for d in arguments.kw_defaults if d is not None]
    if not lazy_annotations:
        every = (
            arguments.posonlyargs
            + arguments.args
            + arguments.kwonlyargs
            + [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        )
        expressions += [a.annotation for a in every if a.annotation is not None]
        expressions += [stmt.returns] if stmt.returns is not None else []
    return expressions, frozenset()


def _definition_parts(
    stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lazy_annotations: bool
) -> list[tuple[str, str, ast.AST]]:
    """What Python evaluates when it defines ``stmt``, as (the part a student calls it, its code, its
    node): ``("default value", "device=device", <expr>)``, ``("decorator", "@cache", <expr>)``."""
    parts = [("decorator", f"@{ast.unparse(d)}", d) for d in stmt.decorator_list]
    if isinstance(stmt, ast.ClassDef):
        parts += [("base class", ast.unparse(b), b) for b in stmt.bases]
        parts += [("class keyword", f"{k.arg}={ast.unparse(k.value)}", k.value) for k in stmt.keywords]
        for child in stmt.body:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                parts += _definition_parts(child, lazy_annotations)
            elif not (isinstance(child, ast.AnnAssign) and lazy_annotations and child.value is None):
                parts.append(("class-level statement", ast.unparse(child).partition("\n")[0], child))
        return parts
    arguments = stmt.args
    positional = arguments.posonlyargs + arguments.args
    with_defaults = list(zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True))
    with_defaults += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is not None]
    parts += [("default value", f"{a.arg}={ast.unparse(d)}", d) for a, d in with_defaults]
    if not lazy_annotations:
        every = positional + arguments.kwonlyargs + [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        parts += [("annotation", f"{a.arg}: {ast.unparse(a.annotation)}", a.annotation) for a in every if a.annotation]
        parts += [("return annotation", f"-> {ast.unparse(stmt.returns)}", stmt.returns)] if stmt.returns else []
    return parts


def _evaluated(node: ast.AST):
    """The nodes of ``node`` that run when it is evaluated: function and lambda bodies are skipped
    (they run when called), their default values are not."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, ast.Lambda):
            stack += current.args.defaults + [d for d in current.args.kw_defaults if d is not None]
            continue
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner, _ = _evaluated_on_definition(current, lazy_annotations=False)
            stack += inner
            continue
        stack += reversed(list(ast.iter_child_nodes(current)))


def _locally_bound(node: ast.AST) -> frozenset[str]:
    """Names bound inside an expression: comprehension variables and lambda arguments."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.comprehension):
            names.update(_target_names(sub.target))
        elif isinstance(sub, ast.Lambda):
            arguments = sub.args
            names.update(a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
            names.update(a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None)
    return frozenset(names)


def _salvage_names(source: str) -> tuple[str, ...]:
    """Names that the parsable top-level pieces of an unparsable cell define, so that a missing name's
    message can point at the cell. Pieces start at unindented lines; each must parse on its own."""
    lines = source.splitlines()
    starts = [
        i
        for i, line in enumerate(lines)
        if line[:1] not in ("", " ", "\t", "#")
        and not _CONTINUATION.match(line)
        and not (i and lines[i - 1].startswith("@"))
    ]
    names: list[str] = []
    for start, end in pairwise(starts + [len(lines)]):
        tree, _ = _parse("\n".join(lines[start:end]) + "\n")
        if tree is not None:
            names += [n for stmt in tree.body for n in _bindings(stmt)]
    return tuple(dict.fromkeys(names))


def _installed(module: str, interface: Interface) -> bool:
    """Whether a top-level module can be imported where grading runs (the worker uses this Python).
    The interface's module names count as installed: they may be the submission's own siblings."""
    if module in sys.modules or module in interface or module == FALLBACK_MODULE:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
