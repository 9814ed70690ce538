"""The submission interface of the current repository, as module-level names (kept for graders that
import them; new code reads :func:`torchgrade.assignments.active`).

Nothing here is written in torchgrade: each name is computed, on first access, from the repository's
manifest (``assignments.toml``) and its ``student_template/`` (see :mod:`torchgrade.assignments`):

* ``MODULES``: module -> its public names, over all assignments;
* ``NAME_TO_MODULE``: public name -> the module the template defines it in;
* ``HANDOUT_PARAMETERS``: name -> its handout parameters, for the names whose calls graders bind by name;
* ``PARAMETER_ALIASES``: handout parameter -> other names submissions give it (merged over assignments).
"""

from __future__ import annotations

from typing import Any

from torchgrade.assignments import REQUIRED, HandoutParameter, active

__all__ = ["REQUIRED", "HandoutParameter"]  # and, computed on access, the four names above

_COMPUTED = {
    "MODULES": lambda repo: repo.modules(),
    "NAME_TO_MODULE": lambda repo: repo.name_to_module(),
    "HANDOUT_PARAMETERS": lambda repo: repo.calls(),
    "PARAMETER_ALIASES": lambda repo: repo.aliases(),
}


def __getattr__(name: str) -> Any:
    if name in _COMPUTED:
        return _COMPUTED[name](active())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
