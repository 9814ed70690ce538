"""Does a submitted module use torch where the handout asks for NumPy only? Two independent looks,
taken where the functions live. Worker side.

* Statically, :func:`torch_references` reads a function without running it: the global names its
  code uses that are bound to torch (``torch``, ``F``, ``conv2d`` imported from torch), helpers of
  its module that do, and imports of torch in its body (:func:`torch_imports` parses source).
* At run time, :func:`trace_torch_calls` calls a function under ``sys.setprofile`` and records
  every torch function, torch method and torch Python frame the call reaches, however torch was
  obtained (an alias, a module passed in, an object from another module).

:func:`audit` does all three where the functions live (``sub.apply(numpy_only.audit, ...)``) and
returns plain data (the names found), never a verdict: the grader judges it
(:func:`torchgrade.checks.numpy_only.torch_findings`). Reading a function needs the function itself
(its globals, its helpers), so the reading runs in the worker too. Imports only torch (to know
where its files are) and the standard library.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: The package the checks look for.
BANNED = "torch"
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
#: How many distinct torch calls a trace keeps (enough to explain, short enough to read).
MAX_RECORDED = 8


def _is_banned(name: str | None) -> bool:
    return bool(name) and (name == BANNED or name.startswith(BANNED + "."))


def torch_imports(source: str, filename: str = "<module>", first_line: int = 1) -> list[str]:
    """Lines of ``source`` that import torch, e.g. ``["line 3: import torch"]`` (empty if none).

    ``first_line`` is the line number of the source's first line in its file.

    Raises:
        SyntaxError: the source does not parse.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and _dynamic_import(node.func):
            names = [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        if any(_is_banned(name) for name in names):
            found.append(f"line {node.lineno + first_line - 1}: {ast.get_source_segment(source, node) or names[0]}")
    return found


def _dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr in ("__import__", "import_module")


def torch_references(fn: Callable[..., Any]) -> list[str]:
    """Torch that a function's code names, found without running it.

    Follows the global names its code (nested functions and comprehensions included) refers to: a
    name bound to a torch module or to an object defined by torch is reported; a name bound to
    another plain function of the same module is followed in turn (a helper doing the torch work).
    Imports of torch inside the function bodies are reported too. A module-level ``import torch``
    alone is not: a notebook that tests its layers against torch imports it without using it in them.

    Returns:
        Findings such as ``"conv2d_forward uses F (torch.nn.functional)"`` (empty if none).
    """
    found: list[str] = []
    seen: set[int] = set()
    pending = [fn]
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        code, namespace = getattr(function, "__code__", None), getattr(function, "__globals__", {})
        if code is None:
            continue
        try:
            lines, start = inspect.getsourcelines(function)
            source = textwrap.dedent("".join(lines))
            found += [f"{function.__name__} has {line}" for line in torch_imports(source, first_line=max(start, 1))]
        except (OSError, TypeError, SyntaxError, RecursionError, MemoryError):
            pass  # no source to read: the names its code uses still tell
        for name in sorted(_global_names(code)):
            if name not in namespace:
                continue
            value = namespace[name]
            origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(origin, str) and _is_banned(origin):
                found.append(f"{function.__name__} uses {name}" + ("" if name == origin else f" ({origin})"))
            elif isinstance(value, types.FunctionType) and value.__module__ == function.__module__:
                pending.append(value)
    return found


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _torch_call(frame: types.FrameType, event: str, arg: Any) -> str | None:
    """The torch callable of a profiler event, or None when the event is not a call into torch."""
    if event == "c_call":
        module = getattr(arg, "__module__", None)
        owner = type(getattr(arg, "__self__", None)).__module__
        if _is_banned(module) or _is_banned(owner):
            name = getattr(arg, "__qualname__", getattr(arg, "__name__", "?"))
            # torch.conv2d's qualified name is _VariableFunctionsClass.conv2d: show what students wrote.
            return f"{module or owner}.{name.removeprefix('_VariableFunctionsClass.')}"
    elif event == "call" and frame.f_code.co_filename.startswith(_TORCH_DIR):
        return f"{frame.f_globals.get('__name__', BANNED)}.{frame.f_code.co_name}"
    return None


def trace_torch_calls(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call ``fn(*args, **kwargs)`` and record the torch functions it reaches.

    Returns:
        ``{"calls": [names of torch callables, first seen first], "error": None or
        {"type": exception type name, "message": str}}``; the return value itself is dropped.
    """
    calls: list[str] = []

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        name = _torch_call(frame, event, arg)
        if name is not None and name not in calls and len(calls) < MAX_RECORDED:
            calls.append(name)

    previous = sys.getprofile()
    error = None
    sys.setprofile(profile)
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the student's exception is evidence, not our failure
        error = {"type": type(exc).__name__, "message": str(exc)[:500]}
    finally:
        sys.setprofile(previous)
    return {"calls": calls, "error": error}


def audit(
    functions: dict[str, Callable[..., Any]], calls: dict[str, tuple[Sequence[Any], dict[str, Any]]]
) -> dict[str, Any]:
    """Look for torch in submitted functions, by reading them and by running them.

    Args:
        functions: name -> the submitted function.
        calls: name -> (args, kwargs) of one call to trace (names without an entry are not called).

    Returns:
        ``{"static": {name: findings of torch_references}, "runtime": {name: trace}}``, with each
        trace as :func:`trace_torch_calls` returns it.
    """
    static = {name: torch_references(fn) for name, fn in functions.items()}
    runtime = {
        name: trace_torch_calls(functions[name], *args, **kwargs)
        for name, (args, kwargs) in calls.items()
        if name in functions
    }
    return {"static": static, "runtime": runtime}
