"""Notebook and script submissions: what is kept and what is dropped (and why), the messages a student
reads when a name is missing, the report's "extraction", and bad files that still get a report."""

from __future__ import annotations

import ast
import json
import os
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from fixtures.notebooks import colab
from torchgrade import assignments
from torchgrade.instructor import cli, grading
from torchgrade.intake import notebook
from torchgrade.reporting import report
from torchgrade.reporting.table import score_table
from torchgrade.worker import loader
from torchgrade.worker.loader import LoadedSubmission

ROOT = Path(__file__).resolve().parents[1]
NOT_INSTALLED = "torchgrade_no_such_module"

# A script as `jupyter nbconvert --to script` writes it: cell markers, magics as get_ipython() calls,
# and the training cell at the bottom.
SCRIPT = """#!/usr/bin/env python
# coding: utf-8

# In[1]:


get_ipython().system('pip install torch_geometric')


# In[2]:


import torch
from torch import nn

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HIDDEN = 100
LAYERS = [nn.Linear(HIDDEN, 2) for _ in range(2)]


# In[3]:


class CNN(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.fc = nn.Linear(n, 2)

    def forward(self, x):
        return self.fc(x)


def train_model(model, data):
    raise RuntimeError("train_model ran on import")


# In[5]:


model = CNN().to(DEVICE)
optimizer = torch.optim.Adam(model.parameters())
for epoch in range(10):
    train_model(model, None)
"""


def line_of(text: str, start: str) -> int:
    """The 1-based number of the first line of ``text`` that starts with ``start``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook whose cells are a markdown title and then ``sources`` as code cells (cell 2 on)."""
    cells = [v4.new_markdown_cell("# Homework")] + [v4.new_code_cell(textwrap.dedent(s)) for s in sources]
    nbformat.write(v4.new_notebook(cells=cells), path)
    return path


def summary_of(extraction: report.Extraction) -> list[tuple]:
    return [(d.cell, d.lines, d.reason, d.names) for d in extraction.dropped]


# -- scripts -----------------------------------------------------------------------------------------
def test_a_script_keeps_definitions_and_drops_the_training_cell(tmp_path):
    path = tmp_path / "hw2.py"
    path.write_text(SCRIPT)
    extraction = notebook.convert(path, tmp_path / "out")

    model_line = line_of(SCRIPT, "model = ")
    assert extraction.modules == ("shoes",)  # CNN and train_model are names of shoes.py
    assert extraction.defined == ("DEVICE", "HIDDEN", "LAYERS", "CNN", "train_model")
    assert summary_of(extraction) == [
        (1, (7, 7), notebook.REASON_IPYTHON_CALL, ()),
        (5, (model_line, model_line), notebook.REASON_CALLS_OWN.format(callee="CNN"), ("model",)),
        (
            5,
            (model_line + 1, model_line + 1),
            notebook.REASON_LEFT_OUT.format(name="model", where=f"line {model_line} (In[5])"),
            ("optimizer",),
        ),
        (5, (model_line + 2, model_line + 3), notebook.REASON_LOOP, ("epoch",)),
    ]
    # The graded module imports without training, and what it kept works.
    loaded = LoadedSubmission(tmp_path / "out")
    try:
        shoes = loaded.module("shoes")
        assert shoes.CNN(n=4).fc.in_features == 4 and str(shoes.DEVICE) in ("cpu", "cuda")
        assert len(shoes.LAYERS) == 2
    finally:
        loaded.unload()


def test_a_script_without_markers_is_one_cell_with_file_line_numbers(tmp_path):
    path = tmp_path / "shoes.py"
    path.write_text("import torch\n\n\ndef f():\n    return 1\n\n\nprint(f())\n")
    extraction = notebook.extract(path).extraction
    assert summary_of(extraction) == [(None, (8, 8), notebook.REASON_CALL.format(callee="print"), ())]
    assert notebook.where(extraction.dropped[0], "script") == "line 8"


# -- notebooks ---------------------------------------------------------------------------------------------
COLAB_CELL = """\
!pip install torch_geometric
%matplotlib inline
from google.colab import drive
drive.mount('/content/drive')
"""


def test_a_colab_notebook_defines_the_references_names_and_says_what_it_dropped(tmp_path):
    answers = (ROOT / "reference" / "answers.py").read_text()
    path = write_notebook(
        tmp_path / "hw.ipynb",
        COLAB_CELL,
        "import matplotlib.pyplot as plt",
        answers,
        "for n in (2, 4):\n    print(cnn_param_count(n, 3))",
        "plt.plot([1, 2, 3])\nplt.show()",
    )
    extraction = notebook.convert(path, tmp_path / "out")

    reference_names = {
        n.name if hasattr(n, "name") else n.targets[0].id
        for n in ast.parse(answers).body
        if isinstance(n, (ast.FunctionDef, ast.Assign))
    }
    assert set(extraction.defined) == reference_names
    assert set(assignments.active().modules()["answers"]) <= set(extraction.defined)
    assert extraction.modules == ("answers",)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["answers.py"]
    assert summary_of(extraction) == [
        (2, (1, 1), notebook.REASON_SHELL, ()),
        (2, (2, 2), notebook.REASON_MAGIC, ()),
        (2, (3, 3), notebook.REASON_COLAB.format(what="`google.colab` exists only in Colab"), ("drive",)),
        (2, (4, 4), notebook.REASON_COLAB.format(what="it mounts Google Drive"), ()),
        (5, (1, 2), notebook.REASON_LOOP, ("n",)),
        (6, (1, 1), notebook.REASON_PLOT.format(callee="plt.plot"), ()),
        (6, (2, 2), notebook.REASON_PLOT.format(callee="plt.show"), ()),
    ]
    # The reference's own `from __future__ import annotations` moved to the top, where Python needs it.
    code = (tmp_path / "out" / "answers.py").read_text()
    assert code.count("from __future__ import annotations") == 1
    compile(code, "answers.py", "exec")


@pytest.mark.parametrize(
    ("cells", "kept", "dropped"),
    [
        pytest.param(["import torch", "DEVICE = torch.device('cpu')"], ["DEVICE"], [], id="library-call-constant"),
        pytest.param(
            [f"from {NOT_INSTALLED} import transforms", "transform = transforms.Compose([transforms.ToTensor()])"],
            ["transform"],
            [],
            id="not-installed-import-and-its-use",  # the loader stands in for the package
        ),
        pytest.param(
            ["import numpy as np\ndata = np.load('/content/drive/MyDrive/x.npy')"],
            [],
            [(2, notebook.REASON_LOADS.format(callee="np.load"), ("data",))],
            id="data-from-drive",
        ),
        pytest.param(
            ["from torch_geometric.datasets import Planetoid\ncora = Planetoid('/tmp/Cora', 'Cora')"],
            [],
            [(2, notebook.REASON_LOADS.format(callee="Planetoid"), ("cora",))],
            id="dataset-class",
        ),
        pytest.param(
            ["name = input('your name: ')"],
            [],
            [(2, notebook.REASON_BUILTIN.format(callee="input"), ("name",))],
            id="input",
        ),
        pytest.param(
            ["import torch\nif torch.cuda.is_available():\n    device = 'cuda'\nelse:\n    device = 'cpu'"],
            ["device"],
            [],
            id="if-of-constants",
        ),
        pytest.param(
            [f"try:\n    import {NOT_INSTALLED}\nexcept ImportError:\n    {NOT_INSTALLED} = None"],
            [NOT_INSTALLED],
            [],
            id="guarded-import",
        ),
        pytest.param(
            [
                "try:\n    from google.colab import drive\n    IN_COLAB = True\nexcept ImportError:\n"
                "    IN_COLAB = False"
            ],
            ["IN_COLAB"],
            [],
            id="colab-import-in-try",
        ),
        pytest.param(
            ["a = 1; print(a); b = a + 1"],
            ["a", "b"],
            [(2, notebook.REASON_CALL.format(callee="print"), ())],
            id="semicolons",
        ),
        pytest.param(
            ["def main():\n    pass\n\nif __name__ == '__main__':\n    main()"],
            ["main"],
            [(2, notebook.REASON_MAIN, ())],
            id="main-guard",
        ),
        pytest.param(
            ["class CNN:\n    pass", "Model = CNN", "model = Model()"],
            ["CNN", "Model"],
            [(4, notebook.REASON_CALLS_OWN.format(callee="Model"), ("model",))],
            id="alias-of-own-class",
        ),
        pytest.param(
            ["def load():\n    return 1", "data = load()", "def f(x=data):\n    return x"],
            ["load"],
            [
                (3, notebook.REASON_CALLS_OWN.format(callee="load"), ("data",)),
                (
                    4,
                    notebook.REASON_DEFINITION.format(
                        role="default value",
                        code="x=data",
                        defined="f",
                        name="data",
                        why=notebook.REASON_NAME_LEFT_OUT.format(
                            where="cell 3, line 1", reason=notebook.REASON_CALLS_OWN.format(callee="load")
                        ),
                    ),
                    ("f",),
                ),
            ],
            id="default-uses-dropped-name",
        ),
        pytest.param(
            ["import torch\nwith torch.no_grad():\n    y = torch.zeros(1)"],
            [],
            [(2, notebook.REASON_BLOCK.format(kind="with"), ("y",))],
            id="with-block",
        ),
        pytest.param(
            ['"""# Part 1: markdown pasted as a string"""\nx = 1\nx'],
            ["x"],
            [(2, notebook.REASON_EXPRESSION, ())],
            id="bare-expressions",
        ),
        pytest.param(
            ["import functools\n@functools.lru_cache\ndef f(n: int = 2) -> int:\n    return n"],
            ["f"],
            [],
            id="decorated-def",
        ),
        pytest.param(
            ["class Net:\n    SIZE = 4\n    DOUBLE = SIZE * 2\n    def f(self, k=DOUBLE):\n        return k"],
            ["Net"],
            [],
            id="class-body-constants",
        ),
        pytest.param(
            ["%%time\nfor i in range(3):\n    pass\ndef in_timed_cell():\n    pass"],
            [],
            [(2, notebook.REASON_CELL_MAGIC.format(magic="%%time"), ("i", "in_timed_cell"))],
            id="cell-magic",
        ),
    ],
)
def test_keep_and_drop_rules(tmp_path, cells, kept, dropped):
    extraction = notebook.extract(write_notebook(tmp_path / "hw.ipynb", *cells)).extraction
    assert list(extraction.defined) == kept
    assert [(d.cell, d.reason, d.names) for d in extraction.dropped] == dropped


def test_ipython_lines_are_blanked_and_the_rest_of_the_cell_kept(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb",
        "import torch\nfiles = !ls /content\ntorch.nn.Conv2d?\ndef double(x):\n    return 2 * x\n",
    )
    extraction = notebook.extract(path).extraction
    assert extraction.defined == ("double",)
    assert [(d.lines, d.excerpt, d.reason) for d in extraction.dropped] == [
        ((2, 2), "files = !ls /content", notebook.REASON_SHELL),
        ((3, 3), "torch.nn.Conv2d?", notebook.REASON_HELP),
    ]


def test_a_cell_that_still_does_not_parse_is_dropped_with_the_names_it_holds(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb", "def ok():\n    return 1", "def broken(:\n    pass\n\ndef lost():\n    return 2\n"
    )
    extraction = notebook.extract(path).extraction
    assert extraction.defined == ("ok",)
    assert summary_of(extraction) == [
        (3, (1, 5), notebook.REASON_SYNTAX.format(error="invalid syntax", line=1), ("lost",))
    ]


# -- messages for missing names --------------------------------------------------------------------------
IF_CELL = """\
if RUN_TRAINING:
    def triple(x):
        return 3 * x
    print(triple(2))
"""


def test_a_name_defined_only_in_dropped_code_gets_a_message_naming_the_cell(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb",
        "RUN_TRAINING = True",
        IF_CELL,
        "def dubble(x):\n    return 2 * x",
        "%%capture\ndef quadruple(x):\n    return 4 * x",
    )
    extraction = notebook.extract(path).extraction
    nested = notebook.REASON_PART.format(line=4, reason=notebook.REASON_CALL.format(callee="print"))
    assert notebook.explain_missing(extraction, "triple", "loader's message") == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb", name="triple", where="cell 3, lines 1-4", reason=nested
        )
        + notebook.HINT_TOP_LEVEL.format(name="triple")
    )
    assert notebook.explain_missing(extraction, "quadruple", "loader's message") == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb",
            name="quadruple",
            where="cell 5, lines 1-3",
            reason=notebook.REASON_CELL_MAGIC.format(magic="%%capture"),
        )
    )
    assert notebook.explain_missing(extraction, "double", "loader's message") == (
        notebook.MSG_NOT_DEFINED.format(source="hw.ipynb", name="double")
        + notebook.MSG_SIMILAR.format(names="`dubble`", name="double")
    )
    # A kept name that the grader still misses: its module failed to import; the loader's message stays.
    assert notebook.explain_missing(extraction, "dubble", "shoes.py could not be imported") == (
        notebook.MSG_KEPT_BUT_BROKEN.format(
            message="shoes.py could not be imported", source="hw.ipynb", modules="notebook.py"
        )
    )


GRADER = """
import pytest

ASSIGNMENT = "toy"

@pytest.mark.points(2, question="Q1")
def test_double(sub):
    assert sub.double(3) == 6

@pytest.mark.points(1, question="Q2")
def test_triple(sub):
    assert sub.triple(3) == 9
"""


@pytest.fixture
def toy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["torchgrade.engine.plugin"]')
    pytester.makepyfile(test_toy=GRADER)
    return pytester


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_grading_a_notebook_reports_what_was_dropped(toy, isolation):
    write_notebook(toy.path / "hw.ipynb", COLAB_CELL, "RUN_TRAINING = True\ndef double(x):\n    return 2 * x", IF_CELL)
    result = toy.runpytest_subprocess("--submission=hw.ipynb", f"--isolation={isolation}", "--report=out.json")
    assert result.ret == 1
    data = json.loads((toy.path / "out.json").read_text())
    report.validate(data)
    assert data["submission"] == str(toy.path / "hw.ipynb")
    assert (data["score"], data["max_score"], data["notes"]) == (2, 3, [])  # double found where it belongs
    checks = {c["id"].split("::")[-1]: c for c in data["checks"]}
    nested = notebook.REASON_PART.format(line=4, reason=notebook.REASON_CALL.format(callee="print"))
    assert checks["test_triple"]["message"] == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb", name="triple", where="cell 4, lines 1-4", reason=nested
        )
        + notebook.HINT_TOP_LEVEL.format(name="triple")
    )
    extraction = data["extraction"]
    assert (extraction["source"], extraction["kind"], extraction["modules"]) == ("hw.ipynb", "notebook", ["notebook"])
    assert extraction["defined"] == ["RUN_TRAINING", "double"] and "error" not in extraction
    assert [(d["cell"], d["lines"], d["excerpt"]) for d in extraction["dropped"]] == [
        (2, [1, 1], "!pip install torch_geometric"),
        (2, [2, 2], "%matplotlib inline"),
        (2, [3, 3], "from google.colab import drive"),
        (2, [4, 4], "drive.mount('/content/drive')"),
        (4, [1, 4], "if RUN_TRAINING:"),
    ]
    result.stdout.fnmatch_lines(
        [
            " hw.ipynb (notebook): graded as notebook.py; 5 statement(s) left out",
            "   left out cell 4, lines 1-4 `if RUN_TRAINING:`: line 4 inside it would run*",
        ]
    )


BAD_FILES = {
    "invalid-json": (
        "hw.ipynb",
        b'{"cells": [',
        notebook.PROBLEM_JSON.format(error="line 1, column 12: Expecting value"),
    ),
    "syntax-error": (
        "hw.py",
        b"def f(:\n    pass\n",
        notebook.PROBLEM_SYNTAX.format(error="invalid syntax", where="line 1", excerpt="def f(:"),
    ),
    "binary": ("hw.ipynb", bytes(range(256)), notebook.PROBLEM_BINARY),
    "empty": ("hw.py", b"", notebook.PROBLEM_EMPTY),
    "unknown-extension": ("hw.pdf", b"%PDF-1.4", notebook.PROBLEM_SUFFIX.format(suffix="`.pdf`")),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_an_extraction_error(tmp_path, case):
    name, content, problem = BAD_FILES[case]
    (tmp_path / name).write_bytes(content)
    extraction = notebook.convert(tmp_path / name, tmp_path / "out")
    assert extraction.error == notebook.MSG_BAD_FILE.format(source=name, problem=problem)
    assert (extraction.modules, extraction.defined) == ((), ())
    assert not list((tmp_path / "out").iterdir())


# Every bad file takes the same path through the plugin; two of them end to end.
@pytest.mark.parametrize("case", ["invalid-json", "syntax-error"])
def test_a_bad_file_fails_every_check_with_a_report_that_says_why(toy, case):
    name, content, problem = BAD_FILES[case]
    (toy.path / name).write_bytes(content)
    result = toy.runpytest_subprocess(f"--submission={name}", "--report=out.json")
    assert result.ret == 1
    data = json.loads((toy.path / "out.json").read_text())
    report.validate(data)
    message = notebook.MSG_BAD_FILE.format(source=name, problem=problem)
    assert data["extraction"]["error"] == message
    assert [(c["outcome"], c["message"]) for c in data["checks"]] == [("failed", message)] * 2
    assert (data["score"], data["harness_errors"]) == (0, 0)
    result.stdout.fnmatch_lines([f" {message}"])


def test_json_that_is_not_a_notebook_is_a_bad_file(tmp_path):
    path = tmp_path / "hw.ipynb"
    path.write_text('{"cells": 3}')
    extraction = notebook.extract(path).extraction
    assert extraction.error == notebook.MSG_BAD_FILE.format(
        source="hw.ipynb", problem=notebook.PROBLEM_NOT_NOTEBOOK.format(error='it has no list of "cells"')
    )
    assert (extraction.modules, extraction.defined, extraction.dropped) == ((), (), ())


# -- hostile input: bounded, left out with why, never a crash ---------------------------------------------
# Each is a cell between two good ones; what it nests is out of the kept code, and the rest is graded.
HOSTILE_CELLS = {
    # Python's own parser gives up: a RecursionError, a MemoryError (its stack overflows).
    "attribute chain 5,000 deep": ("y = a" + ".b" * 5000, (notebook.REASON_PARSER_GAVE_UP,)),
    "calls 5,000 deep": ("y = f" + "()" * 5000, (notebook.REASON_PARSER_GAVE_UP,)),
    "unary minus 100,000 deep": ("y = " + "-" * 100_000 + "1", (notebook.REASON_PARSER_GAVE_UP,)),
    # The tokenizer refuses more than 200 open brackets: a syntax error like any other.
    "parentheses 5,000 deep": ("y = " + "(" * 5000 + "1" + ")" * 5000, (notebook.REASON_SYNTAX,)),
    "lists 5,000 deep": ("y = " + "[" * 5000 + "]" * 5000, (notebook.REASON_SYNTAX,)),
    # These parse (or not, deeper in the stack), but nest past MAX_DEPTH: ast.unparse, the compiler
    # in the worker would recurse past Python's limit.
    "lists 199 deep": ("y = " + "[" * 199 + "]" * 199, (notebook.REASON_TOO_DEEP,)),
    "sum of 900 terms": ("y = 1" + " + 1" * 900, (notebook.REASON_TOO_DEEP, notebook.REASON_PARSER_GAVE_UP)),
    "lambdas 2,000 deep": (
        "y = " + "lambda: " * 2000 + "1",
        (notebook.REASON_TOO_DEEP, notebook.REASON_PARSER_GAVE_UP),
    ),
}


def at_stack_depth(frames: int, fn):
    """``fn()`` called ``frames`` Python frames deeper: the outcome must not hinge on the caller's stack."""
    return fn() if frames == 0 else at_stack_depth(frames - 1, fn)


def starts_as(reason: str, templates: tuple[str, ...]) -> bool:
    return reason.startswith(tuple(t.split("{")[0] for t in templates))


@pytest.mark.parametrize("frames", [0, 600])
@pytest.mark.parametrize("case", HOSTILE_CELLS)
def test_a_cell_nested_too_deeply_is_left_out_and_the_rest_is_graded(tmp_path, case, frames):
    hostile, reasons = HOSTILE_CELLS[case]
    path = write_notebook(tmp_path / "hw.ipynb", "def double(x):\n    return 2 * x", hostile, "TRIPLE = 3")
    extracted = at_stack_depth(frames, lambda: notebook.extract(path))
    extraction = extracted.extraction
    assert (extraction.error, extraction.defined) == ("", ("double", "TRIPLE"))
    [dropped] = extraction.dropped
    assert dropped.cell == 3 and dropped.lines == (1, 1) and len(dropped.excerpt) <= notebook.EXCERPT_CHARS
    assert starts_as(dropped.reason, reasons), dropped.reason
    compile(extracted.code, "kept.py", "exec")  # what the worker imports compiles, deep in its stack too
    at_stack_depth(frames, lambda: compile(extracted.code, "kept.py", "exec"))


def test_a_deep_statement_costs_only_its_own_names_and_says_why(tmp_path):
    deep_default = "def triple(x, unused=" + "[" * 150 + "]" * 150 + "):\n    return 3 * x"
    path = write_notebook(tmp_path / "hw.ipynb", "def double(x):\n    return 2 * x\n\n" + deep_default)
    extraction = notebook.extract(path).extraction
    reason = notebook.REASON_TOO_DEEP.format(limit=notebook.MAX_DEPTH)
    assert summary_of(extraction) == [(2, (4, 5), reason, ("triple",))]
    assert notebook.explain_missing(extraction, "triple", "loader's message") == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb", name="triple", where="cell 2, lines 4-5", reason=reason
        )
    )  # no hint to move it to the top level: it is there already


def test_a_cell_the_parser_gives_up_on_still_names_what_it_defined(tmp_path):
    chain = "y = a" + ".b" * 5000
    path = write_notebook(tmp_path / "hw.ipynb", "X = 1", "def triple(x):\n    return 3 * x\n\n" + chain)
    extraction = notebook.extract(path).extraction
    [dropped] = extraction.dropped
    assert (extraction.error, extraction.defined, dropped.names) == ("", ("X",), ("triple",))
    assert starts_as(dropped.reason, (notebook.REASON_PARSER_GAVE_UP,)) and "RecursionError" in dropped.reason
    assert notebook.explain_missing(extraction, "triple", "loader's message") == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb", name="triple", where="cell 3, lines 1-4", reason=dropped.reason
        )
    )  # no hint to move it to the top level: it is there already


def test_a_script_of_nothing_but_deep_code_is_a_bad_file(tmp_path):
    path = tmp_path / "hw.py"
    path.write_text("y = a" + ".b" * 5000 + "\n")
    extraction = notebook.extract(path).extraction
    [dropped] = extraction.dropped
    assert extraction.error == notebook.MSG_BAD_FILE.format(
        source="hw.py", problem=notebook.PROBLEM_NOTHING_KEPT.format(where="line 1", reason=dropped.reason)
    )


def deep_json(depth: int, *, notebook_around: bool) -> str:
    """JSON of ``depth`` levels: nested arrays alone, or a notebook whose metadata holds them (the
    notebook and its metadata are 2 levels)."""
    nested = "[" * (depth - 2 * notebook_around) + "]" * (depth - 2 * notebook_around)
    if not notebook_around:
        return nested
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": "X = 1"}
    return json.dumps({"cells": [cell], "nbformat": 4, "nbformat_minor": 4, "metadata": {}})[:-2] + f'"a": {nested}}}}}'


@pytest.mark.parametrize(
    "depth, notebook_around",
    [(100_000, False), (100_000, True), (notebook.MAX_JSON_DEPTH + 1, True)],
    ids=["bare-100000", "metadata-100000", "metadata-past-the-limit"],
)
def test_json_nested_too_deeply_is_a_bad_file(tmp_path, depth, notebook_around):
    path = tmp_path / "hw.ipynb"
    path.write_text(deep_json(depth, notebook_around=notebook_around))
    extraction = at_stack_depth(600, lambda: notebook.extract(path)).extraction
    problem = notebook.PROBLEM_JSON_DEEP.format(limit=notebook.MAX_JSON_DEPTH)
    assert extraction.error == notebook.MSG_BAD_FILE.format(source="hw.ipynb", problem=problem)


def test_json_nested_as_deep_as_allowed_is_read(tmp_path):
    path = tmp_path / "hw.ipynb"
    path.write_text(deep_json(notebook.MAX_JSON_DEPTH, notebook_around=True))
    extraction = at_stack_depth(600, lambda: notebook.extract(path)).extraction
    assert (extraction.error, extraction.defined) == ("", ("X",))


def test_json_bulky_outside_its_strings_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "hw.ipynb"
    values = notebook.MAX_JSON_STRUCTURE // 2 + 1  # "0," each: 1.5 GB of dicts had they been "{},"
    path.write_text('{"cells": [], "x": [' + "0," * values + "0]}")
    extraction = notebook.extract(path).extraction
    size = len(path.read_text().replace('"cells"', "").replace('"x"', "")) / 2**20
    problem = notebook.PROBLEM_JSON_BULKY.format(size=size, limit=notebook.MAX_JSON_STRUCTURE / 2**20)
    assert extraction.error == notebook.MSG_BAD_FILE.format(source="hw.ipynb", problem=problem)


def test_a_notebook_whose_bulk_is_strings_is_read(tmp_path):
    image = "iVBORw0KGgo" * (notebook.MAX_JSON_STRUCTURE // 5)  # a plot's base64, over the structure cap
    cell = v4.new_code_cell("X = 1", outputs=[v4.new_output("display_data", data={"image/png": image})])
    path = tmp_path / "hw.ipynb"
    nbformat.write(v4.new_notebook(cells=[cell]), path)
    assert notebook.extract(path).extraction.defined == ("X",)


def test_a_script_over_the_code_cap_is_refused_unread(tmp_path):
    path = tmp_path / "hw.py"
    path.write_bytes(b"#\n" * (notebook.MAX_CODE_BYTES // 2 + 1))
    extraction = notebook.extract(path).extraction
    problem = notebook.PROBLEM_SCRIPT_TOO_LARGE.format(
        size=path.stat().st_size / 2**20, limit=notebook.MAX_CODE_BYTES / 2**20
    )
    assert extraction.error == notebook.MSG_BAD_FILE.format(source="hw.py", problem=problem)


def test_long_cells_are_left_out_unparsed_with_the_names_they_define(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "MAX_CELL_BYTES", 2000)
    monkeypatch.setattr(notebook, "MAX_CODE_BYTES", 3000)
    long_cell = "class CNN:\n    pass\n\n\ndef train_model():\n    pass\n" + "# padding\n" * 200
    padded = "Y = 2\n" + "#" * 1900  # kept: under the cell cap; the code read so far reaches 1.9 kB
    path = write_notebook(tmp_path / "hw.ipynb", "X = 1", long_cell, padded, "Z = 3\n" + "#" * 1500)
    extraction = notebook.extract(path).extraction
    too_long = notebook.REASON_CELL_TOO_LONG.format(size=len(long_cell) // 2**10, limit=1)
    past_cap = notebook.REASON_CODE_TOO_LONG.format(limit=0)
    assert extraction.defined == ("X", "Y")
    assert summary_of(extraction) == [(3, (1, 206), too_long, ("CNN", "train_model")), (5, (1, 2), past_cap, ())]
    assert notebook.explain_missing(extraction, "CNN", "loader's message") == notebook.MSG_DROPPED_DEFINITION.format(
        source="hw.ipynb", name="CNN", where="cell 3, lines 1-206", reason=too_long
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "link to a notebook"])
def test_a_notebook_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    path = tmp_path / "hw.ipynb"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        target = write_notebook(tmp_path / "real.ipynb", "X = 1") if kind == "link to a notebook" else "/dev/zero"
        path.symlink_to(target)
    what = "a named pipe" if kind == "fifo" else "a symbolic link"
    problem = notebook.PROBLEM_NOT_REGULAR.format(what=what)
    assert notebook.extract(path).extraction.error == notebook.MSG_BAD_FILE.format(source="hw.ipynb", problem=problem)


def test_a_recursion_that_escapes_a_statement_costs_only_that_statement(tmp_path, monkeypatch):
    real = notebook._Extractor._statement

    def fragile(self, cell, lines, stmt, *rest):
        if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "BAD":
            self.blocks.append((cell, "half-done"))
            raise RecursionError("maximum recursion depth exceeded")
        return real(self, cell, lines, stmt, *rest)

    monkeypatch.setattr(notebook._Extractor, "_statement", fragile)
    path = write_notebook(tmp_path / "hw.ipynb", "X = 1\nBAD = 2\nY = 3")
    extracted = notebook.extract(path)
    reason = notebook.REASON_TOO_COMPLEX.format(error="RecursionError: maximum recursion depth exceeded")
    assert extracted.extraction.defined == ("X", "Y") and "half-done" not in extracted.code
    assert summary_of(extracted.extraction) == [(2, (2, 2), reason, ("BAD",))]


def test_a_recursion_that_escapes_the_extraction_is_a_bad_file_not_a_crash(tmp_path, monkeypatch):
    def exhausted(self, cell):
        raise MemoryError

    monkeypatch.setattr(notebook._Extractor, "add_cell", exhausted)
    path = write_notebook(tmp_path / "hw.ipynb", "X = 1")
    problem = notebook.PROBLEM_TOO_COMPLEX.format(error="MemoryError")
    assert notebook.extract(path).extraction.error == notebook.MSG_BAD_FILE.format(source="hw.ipynb", problem=problem)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_grading_a_notebook_with_a_cell_the_parser_gives_up_on(toy, isolation):
    """One run end to end: no harness error; only the check of the name in the lost cell loses points."""
    write_notebook(
        toy.path / "hw.ipynb",
        "def double(x):\n    return 2 * x",
        "def triple(x):\n    return 3 * x\n\n" + "y = a" + ".b" * 5000,
    )
    result = toy.runpytest_subprocess("--submission=hw.ipynb", f"--isolation={isolation}", "--report=out.json")
    assert result.ret == 1
    data = json.loads((toy.path / "out.json").read_text())
    report.validate(data)
    assert (data["score"], data["max_score"], data["harness_errors"]) == (2, 3, 0)
    [dropped] = data["extraction"]["dropped"]
    assert starts_as(dropped["reason"], (notebook.REASON_PARSER_GAVE_UP,))
    checks = {c["id"].split("::")[-1]: c for c in data["checks"]}
    assert checks["test_triple"]["message"] == notebook.MSG_DROPPED_DEFINITION.format(
        source="hw.ipynb", name="triple", where="cell 3, lines 1-4", reason=dropped["reason"]
    )


def test_the_loader_says_a_module_was_a_link_and_fails_deep_code_like_a_syntax_error(tmp_path):
    """The in-process loader (and a worker told what the original folder held): a module that was a
    symbolic link is named as one; a module nested too deeply to compile fails its own import."""
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "answers.py").symlink_to(ROOT / "reference" / "answers.py")
    (folder / "deep.py").write_text("y = a" + ".b" * 5000 + "\n")
    (folder / "shoes.py").write_text("X = 1\n")
    link = "a symbolic link (links are never followed)"
    for left_out in (None, {"answers.py": link}):
        loaded = LoadedSubmission(folder, left_out)
        try:
            assert loaded.module_names == ["deep", "shoes"] and loaded.left_out == {"answers.py": link}
            with pytest.raises(LookupError) as missing:
                loaded.find("receptive_field_1d", "answers")
            assert str(missing.value).startswith(
                "the submission has no `receptive_field_1d`: "
                + loader.MSG_LEFT_OUT.format(module="answers", why=link)
                + "; no other module defines it either."
            )
            with pytest.raises(loader.ModuleImportError) as deep:
                loaded.module("deep")
            error = "RecursionError: maximum recursion depth exceeded during compilation"
            assert str(deep.value) == "SyntaxError: " + loader.MSG_TOO_DEEP.format(file="deep.py", error=error)
        finally:
            loaded.unload()


# -- the report ------------------------------------------------------------------------------------------
def minimal_report(extraction: report.Extraction | None) -> report.Report:
    return report.Report(
        submission="hw.ipynb",
        isolation="none",
        versions={"torchgrade": "0", "torch": "2", "python": "3"},
        started_at="2026-11-23T01:00:00+00:00",
        finished_at="2026-11-23T01:00:05+00:00",
        score=0,
        max_score=0,
        pending_max_score=0,
        harness_errors=0,
        questions=(),
        checks=(),
        extraction=extraction,
    )


EXTRACTION = report.Extraction(
    "hw.ipynb",
    "notebook",
    ("shoes",),
    ("CNN",),
    (
        report.Dropped(3, (1, 4), "for epoch in range(10):", notebook.REASON_LOOP, ("epoch",)),
        report.Dropped(2, (1, 1), "!pip install torch_geometric", notebook.REASON_SHELL),
    ),
)


def test_the_extraction_validates_and_a_folders_report_reads_as_before(tmp_path):
    data = json.loads(report.write(minimal_report(EXTRACTION), tmp_path / "r.json").read_text())
    assert data["extraction"]["dropped"][0] == {
        "cell": 3,
        "lines": [1, 4],
        "excerpt": "for epoch in range(10):",
        "reason": notebook.REASON_LOOP,
        "names": ["epoch"],
    }
    assert "error" not in data["extraction"]
    assert "extraction" not in minimal_report(None).to_json()
    report.validate(minimal_report(None).to_json())


def test_a_malformed_extraction_names_the_field(tmp_path):
    broken = report.Extraction("hw.ipynb", "pdf", (), (), ())
    with pytest.raises(report.TorchgradeError, match=r"at extraction/kind: 'pdf' is not one of"):
        report.write(minimal_report(broken), tmp_path / "r.json")


def test_the_score_table_lists_dropped_definitions_first():
    lines = score_table(minimal_report(EXTRACTION))
    start = lines.index(" hw.ipynb (notebook): graded as shoes.py; 2 statement(s) left out")
    assert lines[start + 1] == f"   left out cell 3, lines 1-4 `for epoch in range(10):`: {notebook.REASON_LOOP}"
    assert lines[start + 2].startswith("   left out cell 2, line 1 `!pip install torch_geometric`")


# -- the command line and a realistic notebook, end to end ------------------------------------------------
def test_the_cli_refuses_a_missing_file(tmp_path, capsys):
    assert cli.main(["--assignment", str(ROOT), "grade", str(tmp_path / "hw.ipynb")]) == grading.EXIT_USAGE
    assert "does not exist (give a folder, a .py or a .ipynb)" in capsys.readouterr().err


def test_the_colab_sample_notebook_earns_the_references_points(tmp_path):
    path = colab.write_notebook(tmp_path)
    # Only the hand-computation checks: cheap, and they look up CNN/CNNChannel in shoes.py too.
    code, data = grading.grade(
        path, assignment=ROOT, isolation="process", report=tmp_path / "r.json", extra_args=("-k", "test_answers")
    )
    assert code == grading.EXIT_OK, data and [c["message"] for c in data["checks"] if c["outcome"] != "passed"]
    report.validate(data)
    assert data["score"] == data["max_score"] > 0 and data["notes"] == []
    extraction = data["extraction"]
    assert extraction["modules"] == ["shoes", "answers"]
    assert set(extraction["defined"]) == colab.reference_names()
    reasons = {d["excerpt"].split("(")[0]: d["reason"] for d in extraction["dropped"]}
    assert reasons["!pip install torch_geometric"] == notebook.REASON_SHELL
    assert reasons["drive.mount"] == notebook.REASON_COLAB.format(what="it mounts Google Drive")
    assert reasons["%matplotlib inline"] == notebook.REASON_MAGIC
    assert reasons["%%time"] == notebook.REASON_CELL_MAGIC.format(magic="%%time")
    assert reasons["for kernel_size in "] == notebook.REASON_LOOP
    assert reasons["plt.show"] == notebook.REASON_PLOT.format(callee="plt.show")


# -- a definition left out for what Python evaluates when it defines it --------------------------------
def test_a_default_naming_a_dropped_global_says_so_not_define_it_at_the_top_level(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb",
        "import torch\nfor _ in range(1):\n    device = torch.device('cpu')",
        "def train_model(model, data, device=device):\n    return model",
        "@register\ndef get_accuracy(model, data):\n    return 0.5",
    )
    extraction = notebook.extract(path).extraction
    loop = notebook.where(extraction.dropped[0], "notebook")
    reason = notebook.REASON_DEFINITION.format(
        role="default value",
        code="device=device",
        defined="train_model",
        name="device",
        why=notebook.REASON_NAME_LEFT_OUT.format(where=loop, reason=notebook.REASON_LOOP),
    )
    message = notebook.explain_missing(extraction, "train_model", "loader's message")
    assert message == (
        notebook.MSG_DROPPED_DEFINITION.format(
            source="hw.ipynb", name="train_model", where="cell 3, lines 1-2", reason=reason
        )
        + notebook.HINT_DEFINITION.format(name="train_model", dependency="device")
    )
    assert "top level of a cell, outside loops" not in message.split("Give")[0]
    # A decorator naming a name defined nowhere above it.
    decorated = notebook.explain_missing(extraction, "get_accuracy", "loader's message")
    assert (
        notebook.REASON_DEFINITION.format(
            role="decorator",
            code="@register",
            defined="get_accuracy",
            name="register",
            why=notebook.REASON_NAME_UNDEFINED,
        )
        in decorated
    )
    assert decorated.endswith(notebook.HINT_DEFINITION.format(name="get_accuracy", dependency="register"))


# -- packages the grading environment lacks: kept, and stood in for by the loader ---------------------
def test_a_notebook_importing_a_missing_package_keeps_the_rest_and_fails_only_its_use(tmp_path):
    path = write_notebook(
        tmp_path / "hw.ipynb",
        f"import {NOT_INSTALLED} as pd\nimport numpy as np\nimport torch",
        f"from {NOT_INSTALLED}.sub import Thing\nTABLE = pd.DataFrame({{'a': [1]}})",
        "def double(x):\n    return 2 * x\n\ndef table():\n    return pd.read_csv('x.csv')",
    )
    assert notebook.convert(path, tmp_path / "out").defined == ("TABLE", "double", "table")
    code = (tmp_path / "out" / "notebook.py").read_text()
    assert f"import {NOT_INSTALLED} as pd\n" in code  # unguarded, so that the loader sees it fail
    loaded = LoadedSubmission(tmp_path / "out")
    try:
        module = loaded.module("notebook")
        assert module.double(3) == 6
        assert loaded.stood_in == [NOT_INSTALLED]
        used = f"no '{NOT_INSTALLED}' package: `{NOT_INSTALLED}.read_csv`"
        with pytest.raises(loader.MissingPackageError, match=used):
            module.table()
    finally:
        loaded.unload()
