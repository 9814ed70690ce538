"""Tamper evidence: what the grader's code in the worker looked like before the submission loaded.

The probes run next to student code, which can replace any Python object it can reach: a probe
(``torchgrade.probes.graphs.train_node_classifier = fake``), a helper a probe calls, a torch function
a probe relies on (``F.cross_entropy`` returning a small constant), or the worker's own request loop.
The first wall is that nothing a verdict rests on is decided in the worker (the grader keeps held-out
labels and computes every score). This module is the second: before the submission is imported,
:class:`Seal` records the identity and code of

* every function and class of :mod:`torchgrade.probes` and of the worker's own modules (with the
  methods of those classes, and the functions a decorator wraps);
* the functions of torch and NumPy the probes use: every attribute of ``torch``, ``torch.nn.functional``,
  ``torch.Tensor``, ``torch.nn.Module``, the optimisers and the other namespaces of :data:`LIBRARY`
  whose name the probes' code uses.

Before and after each probe runs, :meth:`Seal.broken` compares what that probe relies on (found from
its code, transitively) and the request loop, and the worker refuses the probe with ``the submission
replaced ...`` on any change. One kind of change is not the submission's: a
library that patches another as it is imported (importing ``torch_geometric`` replaces
``torch.select``, and torch wraps ``torch.manual_seed`` when its compiler loads). A library function
replaced by a function whose code lives in the installed libraries (site-packages or the standard
library, read-only in the sandbox) is accepted and sealed anew; the grader's own functions accept
nothing. Python offers no wall inside one process: code
that replaces the verification itself still gets through, which is why it is the second wall.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import site
import sys
import sysconfig
import types
from collections.abc import Iterable, Iterator
from typing import Any

#: Namespaces of the libraries whose attributes the probes call, by the name a message gives them.
LIBRARY = (
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.nn.init",
    "torch.nn.utils",
    "torch.autograd",
    "torch.optim",
    "torch.optim.lr_scheduler",
    "torch.overrides",
    "numpy",
    "numpy.linalg",
    "numpy.random",
    "builtins",
    "copy",
    "glob",
    "inspect",
    "math",
    "os",
    "tempfile",
)
#: Classes of those libraries whose methods the probes call, ``module:qualified name``.
LIBRARY_CLASSES = (
    "torch:Tensor",
    "torch._C:TensorBase",
    "torch.nn:Module",
    "torch.nn:Parameter",
    "torch.optim:Optimizer",
    "torch.optim:Adam",
    "torch.optim:SGD",
    "torch.optim.lr_scheduler:LRScheduler",
    "torch.optim.lr_scheduler:CosineAnnealingLR",
    "torch:Generator",
)
#: The grader's own packages in the worker: every function and class in them is sealed.
OWN_PACKAGES = ("torchgrade.probes", "torchgrade.worker")
OWN_MODULES = ("torchgrade.wire", "torchgrade.submission_files")
#: Modules whose functions a probe's relied-on names are followed into: the grader's packages and the
#: probe modules the grader sends (torchgrade.worker.session.PROBE_MODULE_PREFIX).
FOLLOWED = (*OWN_PACKAGES, "_torchgrade_probe_")
#: Sealed names compared before every probe, whatever it relies on: the worker's request loop.
ALWAYS = ("torchgrade.worker.", "torchgrade.wire.", "__main__.")
_MISSING = object()


class Seal:
    """The identity and code of what the probes and the worker run, recorded now.

    Attributes:
        entries: ``[name for messages, namespace, key, object, code objects, the grader's own]`` per
            sealed attribute (object and code are updated where a library patches a library).
    """

    def __init__(self) -> None:
        own = list(_own_modules())
        names = _names_used(own)
        self.entries: list[list[Any]] = []
        self._closures: dict[str, frozenset[str]] = {}
        for module in own:
            self._seal_namespace(module.__name__, vars(module), None, own=True)
        # Every attribute of the libraries, not only those torchgrade.probes names: an assignment's own probe
        # modules (graders/_probes_*.py) reach the worker after the submission loaded, so what they rely on
        # must be recorded now. Only what a probe relies on is compared (broken), so this costs start-up only.
        del names
        for name in LIBRARY:
            module = sys.modules.get(name) or _import(name)
            if module is not None:
                self._seal_namespace(name, vars(module), None)
        for spec in LIBRARY_CLASSES:
            module_name, _, qualified = spec.partition(":")
            cls = getattr(sys.modules.get(module_name) or _import(module_name), qualified, None)
            if isinstance(cls, type):
                self._seal_namespace(f"{module_name}.{qualified}", cls.__dict__, None)

    def add_probe_module(self, label: str, module: types.ModuleType) -> None:
        """Seal a probe module of the grader's (``graders/_probes_*.py``) as it arrives: freshly executed
        from the grader's source, it is the original; ``label`` is the grader's name for it, as requests
        name their probe (``_probes_lstm:train_language_model``)."""
        self._seal_namespace(label, vars(module), None, own=True)
        self._closures.clear()

    def _seal_namespace(self, label: str, namespace: Any, names: set[str] | None, own: bool = False) -> None:
        for key, value in list(namespace.items()):
            if names is not None and key not in names:
                continue
            if isinstance(value, types.ModuleType) or not _sealable(value):
                continue
            if own and isinstance(value, type) and value.__module__ == label:
                self._seal_namespace(f"{label}.{key}", value.__dict__, None, own=True)
            self.entries.append([f"{label}.{key}", namespace, key, value, tuple(_codes(value)), own])

    def broken(self, probe: str) -> list[str]:
        """The names of sealed attributes that were replaced, deleted, or given other code.

        Args:
            probe: ``module:name`` of a probe about to run: only what it relies on is compared (the
                probe, the grader's functions it calls, the library functions they name), with the
                worker's own request loop.
        """
        relied_on = self._relied_on(probe)
        changed = []
        for entry in self.entries:
            label, namespace, key, value, codes, own = entry
            if key not in relied_on and not label.startswith(ALWAYS):
                continue
            now = namespace.get(key, _MISSING)
            if now is value and tuple(_codes(now)) == codes:
                continue
            if not own and _installed(now):
                entry[3], entry[4] = now, tuple(_codes(now))  # a library patching a library
                continue
            changed.append(label)
        return changed

    def _relied_on(self, probe: str) -> frozenset[str]:
        """Every name the sealed original of ``probe`` uses, and those the grader's functions it
        reaches by name use, transitively."""
        if probe not in self._closures:
            module_name, _, attr = probe.partition(":")
            original = next((e[3] for e in self.entries if e[0] == f"{module_name}.{attr}" and e[5]), None)
            names, stack, seen = {attr}, [original], set()
            while stack:
                obj = stack.pop()
                if obj is None or id(obj) in seen:
                    continue
                seen.add(id(obj))
                used = _names_used_by([obj])
                names |= used
                namespace = vars(sys.modules[obj.__module__]) if obj.__module__ in sys.modules else {}
                stack.extend(
                    namespace[name]
                    for name in used
                    if str(getattr(namespace.get(name), "__module__", "")).startswith(FOLLOWED)
                )
            self._closures[probe] = frozenset(names)
        return self._closures[probe]


def _own_modules() -> Iterator[types.ModuleType]:
    """The grader's modules in the worker, imported now (probes are otherwise imported on first use)."""
    for package_name in OWN_PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            if info.name.endswith(".__main__"):
                continue
            module = _import(info.name)
            if module is not None:
                yield module
    for name in OWN_MODULES:
        yield importlib.import_module(name)
    main = sys.modules.get("__main__")
    if main is not None and getattr(getattr(main, "__spec__", None), "name", "") == "torchgrade.worker.__main__":
        yield main  # the request loop, where the worker runs as python -m torchgrade.worker


def _import(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _names_used(modules: Iterable[types.ModuleType]) -> set[str]:
    """Every global and attribute name that the functions and classes of ``modules`` use."""
    return _names_used_by(
        value
        for module in modules
        for value in vars(module).values()
        if not isinstance(value, type) or value.__module__ == module.__name__
    )


def _names_used_by(objects: Iterable[Any]) -> set[str]:
    """Every global and attribute name the code of ``objects`` uses (functions, and the methods of
    classes; their code's ``co_names``, nested functions and comprehensions included)."""
    names: set[str] = set()
    stack = []
    for value in objects:
        owner = vars(value).values() if isinstance(value, type) else [value]
        stack.extend(code for item in owner for code in _codes(item) if code is not None)
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages())
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


_LIBRARY_ROOTS = _library_roots()


def _installed(value: Any) -> bool:
    """Whether ``value`` is a function whose code comes from an installed library's file."""
    if not isinstance(value, types.FunctionType):
        return False
    return os.path.realpath(value.__code__.co_filename).startswith(_LIBRARY_ROOTS)


def _sealable(value: Any) -> bool:
    return callable(value) or isinstance(value, (staticmethod, classmethod, property))


def _codes(value: Any) -> Iterator[Any]:
    """The code objects behind ``value``: a function's, those it wraps (``__wrapped__``), a
    property's accessors, a static or class method's function."""
    seen = 0
    while value is not None and seen < 8:
        seen += 1
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            yield from (getattr(f, "__code__", None) for f in (value.fget, value.fset))
            return
        if not isinstance(value, types.FunctionType):
            yield None  # a builtin, a class, a C method: its identity is all that can change
            return
        yield value.__code__
        value = value.__dict__.get("__wrapped__")
