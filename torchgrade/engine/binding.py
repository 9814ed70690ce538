"""Bind a grader's call of a handout function to the submission's own signature, by parameter name.

Graders call the handout's interface: ``CNN(n=4, kernel_size=3)``, ``train_model(model, train, valid,
batch_size=32, max_epoch=30, ...)``, ``GraphAttentionLayer(5, 6, 2, is_concat=True, alpha=0.2)``.
Real submissions rename, reorder, add and leave out parameters. :func:`bind` turns the grader's call
into the call to make on the submitted callable, given its parameters (as the worker reports them,
validated by :func:`parse_parameters`):

* The handout's leading *positional* parameters (``model, train_data, valid_data``) stay
  positional: the submission may name them anything, but its own leading parameters must line up
  (none of them may carry another handout parameter's name).
* Every other value is passed by name: under the handout's name, or under one of its aliases
  (``learning_rate`` as ``lr``, ``alpha`` as ``leaky_relu_negative_slope``), or through the
  submission's ``**kwargs``; where the submission has no such parameter, the value is left out if
  the handout gives it a default (``CNN()`` with ``n`` fixed inside). The grader's positional values
  for such parameters (``GraphAttentionLayer(5, 6, 2, ...)``) are first named by the handout's order.
* A value is never moved to another position, and a submitted parameter without a default that
  receives no value makes the call fail, naming it.

The module is pure (no I/O, nothing of the worker): the proxy (:class:`torchgrade.engine.proxy.Remote`)
asks the worker for the parameters and sends the call :func:`bind` returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchgrade.assignments import REQUIRED, HandoutParameter

POSITIONAL_ONLY = "positional_only"
POSITIONAL_OR_KEYWORD = "positional_or_keyword"
VAR_POSITIONAL = "var_positional"
KEYWORD_ONLY = "keyword_only"
VAR_KEYWORD = "var_keyword"
#: The kinds of :class:`inspect.Parameter`, as the worker names them.
KINDS = (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD, VAR_POSITIONAL, KEYWORD_ONLY, VAR_KEYWORD)

#: Limits on what the worker may report (everything from it is untrusted).
MAX_PARAMETERS = 256
MAX_NAME = 200
MAX_DEFAULT_TEXT = 200
#: Longest rendering of a default in a signature shown in a message.
SHOWN_DEFAULT = 40

MSG_LINE_UP = (
    "its positional parameters do not line up with the handout's ({handout}): its parameter {slot!r} stands where "
    "the handout has {expected} but looks like the handout's {other}"
)
MSG_TOO_FEW_POSITIONAL = "it takes {count} positional parameter(s); the handout passes {names} by position"
MSG_POSITIONAL_ONLY = (
    "its parameter {slot!r}, which takes the handout's {name}, is positional-only, and values are only "
    "passed to parameters by name"
)
MSG_NO_PARAMETER = "it has no parameter for the handout's {name} (looked for {names}), which has no default"
MSG_UNFILLED = "its parameter {slot!r} has no default and the grader has no value for it ({why}); give it a default"
WHY_UNKNOWN = "the handout's {name} has no such parameter"
WHY_NOT_PASSED = "it stands for the handout's {owner}, which this call does not pass"


class MalformedParameters(ValueError):
    """The worker's description of a signature is not what :func:`parse_parameters` accepts."""


class CannotBind(Exception):
    """The grader's call cannot be bound to the submitted signature; the message says why, in a phrase
    that follows "could not call X: "."""


@dataclass(frozen=True)
class SubmittedParameter:
    """One parameter of a submitted callable (a class: its constructor, without ``self``).

    Attributes:
        name: its name.
        kind: one of :data:`KINDS`.
        has_default: whether it has a default.
        default: the default, when it is a plain value (``None``, a bool, int, float or short str).
        default_known: whether ``default`` holds it.
    """

    name: str
    kind: str = POSITIONAL_OR_KEYWORD
    has_default: bool = False
    default: Any = None
    default_known: bool = False


@dataclass(frozen=True)
class Binding:
    """How a grader's call of a handout name was (or would be) made on the submission.

    Attributes:
        name: the handout's name (``"train_model"``).
        args: the positional values of the call made.
        kwargs: the keyword values of the call made, under the submission's names.
        as_written: the grader's call was sent unchanged (it binds every value where binding by
            name would); then ``args`` and ``kwargs`` are the grader's own.
        targets: handout parameter -> the submitted parameter that receives its value: its own
            name, an alias, the name of the submission's positional parameter, ``*args`` or
            ``**kwargs`` (then under the handout's name) as the submission names them.
        dropped: handout parameter -> the grader's value, left out of the call because the
            submission has no such parameter (the handout gives it a default).
        positional: the handout parameters passed by position.
        parameters: the submitted parameters; None when the worker could not read them.
        called: the call made, as messages show it (``CNN()``); set by the proxy.
    """

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    as_written: bool = True
    targets: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, Any] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    parameters: tuple[SubmittedParameter, ...] | None = None
    called: str = ""

    def received(self, name: str) -> bool:
        """Whether the grader's value for the handout parameter ``name`` was passed (by position, by
        name, under an alias or through ``**kwargs``); False when it was left out or never given."""
        return name in self.targets

    def target(self, name: str) -> str | None:
        """The submitted parameter that receives the handout parameter ``name`` (see ``targets``)."""
        return self.targets.get(name)

    @property
    def renamed(self) -> dict[str, str]:
        """Handout keyword -> the submission's other name for it (``{"learning_rate": "lr"}``)."""
        return {
            handout: target
            for handout, target in self.targets.items()
            if handout not in self.positional and target != handout and not target.startswith("*")
        }

    @property
    def through_kwargs(self) -> tuple[str, ...]:
        """Handout keywords passed through the submission's ``**kwargs`` (it may ignore them)."""
        return tuple(handout for handout, target in self.targets.items() if target.startswith("**"))

    @property
    def signature(self) -> str:
        """The submitted signature as messages show it, or "" when it is not known."""
        return "" if self.parameters is None else render_signature(self.name, self.parameters)


def unchanged(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Binding:
    """The binding of a call sent as the grader wrote it, with no knowledge of the submitted signature."""
    return Binding(name, tuple(args), dict(kwargs))


def parse_parameters(data: Any) -> tuple[SubmittedParameter, ...]:
    """Validate the worker's description of a signature: a list of dicts with ``name``, ``kind``,
    ``has_default`` and, for a plain default, ``default``.

    Raises:
        MalformedParameters: anything else (wrong types, unknown kinds, duplicate or overlong names,
            too many parameters, a default that is not a plain value).
    """
    if not isinstance(data, list) or len(data) > MAX_PARAMETERS:
        raise MalformedParameters(f"expected a list of at most {MAX_PARAMETERS} parameters")
    parsed: list[SubmittedParameter] = []
    for item in data:
        if not isinstance(item, dict) or not set(item) <= {"name", "kind", "has_default", "default"}:
            raise MalformedParameters("a parameter is not a dict of name, kind, has_default and default")
        name, kind, has_default = item.get("name"), item.get("kind"), item.get("has_default")
        if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_NAME:
            raise MalformedParameters("a parameter's name is not an identifier")
        if kind not in KINDS or type(has_default) is not bool:
            raise MalformedParameters(f"parameter {name!r} has no valid kind or has_default")
        known = "default" in item
        if known and not (has_default and _plain(item["default"])):
            raise MalformedParameters(f"parameter {name!r} has a default that is not a plain value")
        parsed.append(SubmittedParameter(name, kind, has_default, item.get("default"), known))
    names = [p.name for p in parsed]
    kinds = [p.kind for p in parsed]
    if len(set(names)) != len(names) or kinds.count(VAR_POSITIONAL) > 1 or kinds.count(VAR_KEYWORD) > 1:
        raise MalformedParameters("duplicate parameters")
    return tuple(parsed)


def _plain(value: Any) -> bool:
    if value is None or type(value) in (bool, int):
        return True
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is str and len(value) <= MAX_DEFAULT_TEXT


def render_signature(name: str, parameters: Sequence[SubmittedParameter]) -> str:
    """``CNNChannel(n, dropout=0.5)``: the signature as Python writes it, without annotations; a
    default that is not a plain value shows as ``=...``."""
    parts: list[str] = []
    starred = False
    for i, p in enumerate(parameters):
        if p.kind == KEYWORD_ONLY and not starred:
            parts.append("*")
        starred = starred or p.kind in (VAR_POSITIONAL, KEYWORD_ONLY)
        text = {"var_positional": "*", "var_keyword": "**"}.get(p.kind, "") + p.name
        if p.has_default:
            shown = repr(p.default) if p.default_known else "..."
            text += "=" + (shown if len(shown) <= SHOWN_DEFAULT else shown[: SHOWN_DEFAULT - 3] + "...")
        parts.append(text)
        following = parameters[i + 1].kind if i + 1 < len(parameters) else None
        if p.kind == POSITIONAL_ONLY and following != POSITIONAL_ONLY:
            parts.append("/")
    return f"{name}({', '.join(parts)})"


def covers(handout: Sequence[HandoutParameter], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether the grader's call is made of the handout's parameters only (each given once), so that
    :func:`bind` can name every value; graders' other calls are sent as they are."""
    names = [p.name for p in handout]
    return len(args) <= len(names) and all(k in names[len(args) :] for k in kwargs)


def _normal(name: str) -> str:
    return name.replace("_", "").lower()


def _candidates(name: str, aliases: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    return (name, *aliases.get(name, ()))


def _owner(slot: str, handout: Sequence[HandoutParameter], aliases: Mapping[str, Sequence[str]]) -> str | None:
    """The handout parameter whose name or alias ``slot`` is (as written, else ignoring case and _)."""
    for compare in (lambda a, b: a == b, lambda a, b: _normal(a) == _normal(b)):
        for p in handout:
            if any(compare(slot, candidate) for candidate in _candidates(p.name, aliases)):
                return p.name
    return None


def bind(
    name: str,
    handout: Sequence[HandoutParameter],
    parameters: Sequence[SubmittedParameter],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> Binding:
    """The call to make on a submitted callable for the grader's call ``name(*args, **kwargs)``.

    Args:
        name: the handout's name of the callable (for the binding and messages).
        handout: the handout's parameters of ``name``, in order (:meth:`torchgrade.assignments.Repository.calls`).
        parameters: the submitted callable's parameters (from :func:`parse_parameters`).
        args: the grader's positional values: the handout's first ``len(args)`` parameters.
        kwargs: the grader's keyword values, under the handout's names.
        aliases: handout parameter -> other names submissions give it (the manifest's ``aliases``).

    Returns:
        The :class:`Binding`; ``as_written`` when the grader's call, sent unchanged, binds every
        value where this binding does.

    Raises:
        CannotBind: the call is not made of the handout's parameters, the submission's positional
            parameters do not line up with the handout's, a value without a default in the handout
            has no parameter to go to, or a submitted parameter without a default gets no value.
    """
    aliases = aliases or {}
    spec = {p.name: p for p in handout}
    order = [p.name for p in handout]
    if not covers(handout, args, kwargs):
        unknown = [k for k in kwargs if k not in spec]
        raise CannotBind(
            f"the handout's {name} has no parameter {unknown[0]!r}"
            if unknown
            else f"the call does not fit the handout's {render_handout(name, handout)}"
        )
    values = {**dict(zip(order, args, strict=False)), **kwargs}
    leading = [p.name for p in handout if p.positional]
    given = [n for n in leading if n in values]
    if given != leading[: len(given)]:
        raise CannotBind(f"the grader gives {', '.join(given)} but not every parameter before them")
    named = [n for n in order if n in values and n not in given]

    slots = [p for p in parameters if p.kind in (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD)]
    star = next((p for p in parameters if p.kind == VAR_POSITIONAL), None)
    double_star = next((p for p in parameters if p.kind == VAR_KEYWORD), None)
    targets: dict[str, str] = {}
    taken: set[str] = set()
    call_args = []
    for i, handout_name in enumerate(given):
        if i < len(slots):
            slot = slots[i].name
            other = _owner(slot, handout, aliases)
            if other is not None and other != handout_name:
                raise CannotBind(
                    MSG_LINE_UP.format(handout=", ".join(given), slot=slot, expected=handout_name, other=other)
                )
            targets[handout_name] = slot
            taken.add(slot)
        elif star is not None:
            targets[handout_name] = "*" + star.name
        else:
            raise CannotBind(MSG_TOO_FEW_POSITIONAL.format(count=len(slots), names=", ".join(given)))
        call_args.append(values[handout_name])

    # Exact names first, for every keyword, then aliases, then spellings that differ in case or _:
    # an alias of one keyword never takes the parameter that carries another keyword's own name.
    free = {p.name: p for p in parameters if p.kind in (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD, KEYWORD_ONLY)}
    matches: dict[str, SubmittedParameter] = {}
    for stage in ("exact", "alias", "normal"):
        for handout_name in named:
            if handout_name in matches:
                continue
            candidates = _candidates(handout_name, aliases) if stage != "exact" else (handout_name,)
            for candidate in candidates:
                found = [
                    p
                    for n, p in free.items()
                    if n not in taken and (n == candidate if stage != "normal" else _normal(n) == _normal(candidate))
                ]
                if found:
                    matches[handout_name] = found[0]
                    taken.add(found[0].name)
                    break

    call_kwargs: dict[str, Any] = {}
    dropped: dict[str, Any] = {}
    for handout_name in named:
        slot = matches.get(handout_name)
        if slot is not None:
            if slot.kind == POSITIONAL_ONLY:
                raise CannotBind(MSG_POSITIONAL_ONLY.format(slot=slot.name, name=handout_name))
            call_kwargs[slot.name] = values[handout_name]
            targets[handout_name] = slot.name
        elif double_star is not None and handout_name not in free:
            call_kwargs[handout_name] = values[handout_name]
            targets[handout_name] = "**" + double_star.name
        elif spec[handout_name].default is not REQUIRED or spec[handout_name].droppable:
            dropped[handout_name] = values[handout_name]
        else:
            names = ", ".join(_candidates(handout_name, aliases))
            raise CannotBind(MSG_NO_PARAMETER.format(name=handout_name, names=names))

    for p in parameters:
        if p.kind not in (VAR_POSITIONAL, VAR_KEYWORD) and not p.has_default and p.name not in taken:
            owner = _owner(p.name, handout, aliases)
            why = WHY_UNKNOWN.format(name=name) if owner is None else WHY_NOT_PASSED.format(owner=owner)
            raise CannotBind(MSG_UNFILLED.format(slot=p.name, why=why))

    # Sent unchanged, the grader's call puts its i-th value in the i-th positional slot (or *args)
    # and each keyword under its own name (or in **kwargs): as written when that is where by name.
    where = [slot.name for slot in slots[: len(args)]] + ["*" + star.name if star else ""] * (len(args) - len(slots))
    into_kwargs = "**" + double_star.name if double_star else ""
    only_positional = {p.name for p in parameters if p.kind == POSITIONAL_ONLY}
    as_written = (
        not dropped
        and all(targets[n] == where[i] for i, n in enumerate(order[: len(args)]))
        and all(targets[k] in (k, into_kwargs) and k not in only_positional for k in kwargs)
    )
    if as_written:
        return Binding(name, tuple(args), dict(kwargs), True, targets, {}, tuple(given), tuple(parameters))
    return Binding(name, tuple(call_args), call_kwargs, False, targets, dropped, tuple(given), tuple(parameters))


def render_handout(name: str, handout: Sequence[HandoutParameter]) -> str:
    """``GraphAttentionLayer(in_features, out_features, n_heads, is_concat=True, ...)``."""
    parts = [p.name if p.default is REQUIRED else f"{p.name}={p.default!r}" for p in handout]
    return f"{name}({', '.join(parts)})"
