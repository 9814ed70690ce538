"""torchgrade.probes.numpy_only (torch found by reading functions and by tracing their calls) and
torchgrade.checks.numpy_only (the grader's reading of what the audit found)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from torchgrade.checks import numpy_only
from torchgrade.importfile import import_file
from torchgrade.probes import numpy_only as probes

pytestmark = pytest.mark.usefixtures("single_thread")

SOURCE = """
import numpy as np
import torch                      # at module level, for checking results: allowed
import torch.nn.functional as F

def plain(x):
    return np.maximum(x, 0)

def aliased(x):
    return F.relu(torch.from_numpy(x)).numpy()

def helper(x):
    return torch.as_tensor(x)

def via_helper(x):
    return np.asarray(helper(x))

def imports_inside(x):
    import torch as t
    return x

def dynamic(x):
    t = __import__("tor" + "ch")
    return t.relu(t.from_numpy(x)).numpy()

def nested(x):
    return [torch.tensor(v) for v in x]
"""


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    path = tmp_path_factory.mktemp("numpy_only") / "layers.py"
    path.write_text(SOURCE)
    return import_file(path, "_numpy_only_sample")


def test_torch_imports_finds_every_spelling():
    source = (
        "import os\nimport torch\nfrom torch import nn\nimport torchvision\nfrom . import torch\n"
        "m = __import__('torch')\nimport importlib\nimportlib.import_module('torch.nn')\n"
    )
    assert probes.torch_imports(source) == [
        "line 2: import torch",
        "line 3: from torch import nn",
        "line 6: __import__('torch')",
        "line 8: importlib.import_module('torch.nn')",
    ]


def test_torch_references_reads_names_helpers_and_bodies(module):
    assert probes.torch_references(module.plain) == []
    assert probes.torch_references(module.aliased) == ["aliased uses F (torch.nn.functional)", "aliased uses torch"]
    assert probes.torch_references(module.via_helper) == ["helper uses torch"]
    assert probes.torch_references(module.nested) == ["nested uses torch"]
    assert probes.torch_references(module.imports_inside) == [
        "imports_inside has line 19: import torch as t",
        "imports_inside uses torch",
    ]
    # A dynamic import is invisible to reading: the run-time trace exists for it.
    assert probes.torch_references(module.dynamic) == []


def test_trace_sees_torch_however_it_was_obtained(module):
    x = np.array([-1.0, 2.0])
    assert probes.trace_torch_calls(module.plain, x) == {"calls": [], "error": None}
    traced = probes.trace_torch_calls(module.dynamic, x)
    assert traced["error"] is None
    assert traced["calls"][:2] == ["torch.from_numpy", "torch.relu"]
    assert "torch.from_numpy" in probes.trace_torch_calls(module.aliased, x)["calls"]


def test_trace_records_the_exception_and_restores_the_profiler():
    def broken(x):
        raise NotImplementedError("write me")

    sentinel = sys.getprofile()
    assert probes.trace_torch_calls(broken, 1) == {
        "calls": [],
        "error": {"type": "NotImplementedError", "message": "write me"},
    }
    assert sys.getprofile() is sentinel


def test_audit_combines_both_looks(module):
    found = probes.audit(
        {"plain": module.plain, "aliased": module.aliased}, {"plain": ([np.ones(2)], {}), "aliased": ([np.ones(2)], {})}
    )
    assert found["static"] == {"plain": [], "aliased": ["aliased uses F (torch.nn.functional)", "aliased uses torch"]}
    assert found["runtime"]["plain"]["calls"] == []
    assert found["runtime"]["aliased"]["calls"]


def test_torch_findings_name_the_reading_then_the_run():
    found = {
        "static": {"relu_forward": ["relu_forward uses torch"], "linear_forward": []},
        "runtime": {"relu_forward": {"calls": ["torch.relu"], "error": None}, "linear_forward": {"calls": []}},
    }
    assert numpy_only.torch_findings(found, ["relu_forward", "linear_forward", "absent"]) == [
        "relu_forward uses torch",
        "relu_forward called torch.relu when run",
    ]
    assert numpy_only.torch_findings({}, ["relu_forward"]) == []
