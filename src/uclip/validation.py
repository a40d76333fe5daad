"""Type and range checks of config sections, driven by dataclass annotations.

A config dataclass (``TrainArgs``, ``UCLIPHyperParams``, ``UCLIPConfig``, ...) calls
:func:`check_fields` from ``__post_init__`` with a small table of allowed ranges. Every field is
checked against its annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``,
``Literal[...]``, ``list[X]``, ``dict[K, V]``) and, if the table has an entry, against its range;
a field added without an entry is still type-checked. A failure is one :class:`UclipError` line
naming the field, the value and what is allowed. ``bool`` is not accepted as a number, and a
float must be finite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from uclip.errors import UclipError


@dataclass(frozen=True)
class Allowed:
    """The allowed values of a field beyond its type: a numeric range or a set of choices."""

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] = ()

    def admits(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        try:
            low_ok = self.min is None or (
                value > self.min if self.min_exclusive else value >= self.min
            )
            return low_ok and (self.max is None or value <= self.max)
        except TypeError:  # a value of another type than the range's (a str for a number)
            return False

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        low = None if self.min is None else f"{'>' if self.min_exclusive else '>='} {self.min:g}"
        if self.max is None:
            return low or ""
        return f"from {self.min:g} to {self.max:g}" if self.min is not None else f"<= {self.max:g}"


def at_least(low: float) -> Allowed:
    return Allowed(min=low)


def above(low: float) -> Allowed:
    return Allowed(min=low, min_exclusive=True)


def between(low: float, high: float) -> Allowed:
    return Allowed(min=low, max=high)


def one_of(*values: Any) -> Allowed:
    return Allowed(choices=values)


def check_fields(obj: Any, allowed: Mapping[str, Allowed], section: str) -> None:
    """Check every field of dataclass instance ``obj``; ``section`` prefixes the field name."""
    hints = _type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check_value(
            f"{section}.{f.name}", getattr(obj, f.name), hints.get(f.name), allowed.get(f.name)
        )


def check_mapping(
    data: Any,
    cls: type,
    section: str,
    allowed: Mapping[str, Allowed] | None = None,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``data`` as a dict whose keys are fields of dataclass ``cls`` (less ``exclude``), each
    value checked like :func:`check_fields` does; for raw sections checked before building."""
    if not isinstance(data, dict):
        raise UclipError(
            f"config section '{section}' must be a mapping of keys to values, got {_show(data)}"
        )
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise UclipError(
            f"unknown key(s) {unknown} in config section '{section}'; known: {sorted(names)}"
        )
    for key, value in data.items():
        check_value(f"{section}.{key}", value, hints.get(key), (allowed or {}).get(key))
    return dict(data)


def check_value(name: str, value: Any, annotation: Any, allowed: Allowed | None = None) -> None:
    """One value against its annotation (``None`` or unresolvable: not checked) and range."""
    ok = annotation is None or _matches(value, annotation)
    if ok and allowed is not None and value is not None and not _is_container(value):
        ok = allowed.admits(value)
    if not ok:
        expected = _describe(annotation, allowed)
        raise UclipError(f"{name} = {_show(value)} is not allowed: expected {expected}")


@cache
def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        # An annotation that cannot be resolved at run time is not checked (never a crash).
        return {}


def _is_container(value: Any) -> bool:
    return isinstance(value, (list, tuple, dict))


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return None


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    union = _union_args(annotation)
    if union is not None:
        return any(_matches(value, arg) for arg in union)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if annotation is bool:
        return isinstance(value, bool)
    # numbers.* rather than int/float: numpy scalars computed in code are numbers too.
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return isinstance(value, numbers.Integral) or math.isfinite(value)
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        # JSON has no tuples: a list stands for either.
        if not isinstance(value, (list, tuple)):
            return False
        homogeneous = origin is not tuple or len(args) == 1 or (len(args) == 2 and args[1] is ...)
        return not args or not homogeneous or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or annotation is dict:
        if not isinstance(value, dict):
            return False
        if len(args) != 2:
            return True
        return all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


_NAMES = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


def _describe(annotation: Any, allowed: Allowed | None) -> str:
    union = _union_args(annotation)
    if union is not None:
        parts = [_describe(a, allowed) for a in union if a is not type(None)]
        text = " or ".join(parts)
        return f"{text}, or null" if type(None) in union else text
    if allowed is not None and allowed.choices:
        return allowed.describe()
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return one_of(*args).describe()
    if annotation in _NAMES:
        name = _NAMES[annotation]
        return f"{name} {allowed.describe()}" if allowed is not None else name
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, Mapping) or annotation is dict:
        return f"a mapping of {_plural(args[0])} to {_plural(args[1])}" if args else "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _plural(annotation: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(
        annotation, "values"
    )


def _show(value: Any) -> str:
    """The value as the user wrote it (JSON), cut short if long."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def check_record(data: Any, cls: type, where: str, fix: str) -> dict[str, Any]:
    """The fields of dataclass ``cls`` found in record ``data`` (a file uclip wrote and reads
    back: a run JSON, a quality entry), each checked against its annotation; unknown keys are
    ignored (newer writers may add some). A missing required field, a wrong type or a
    non-finite number is one :class:`UclipError` naming ``where`` and the field, then ``fix``.
    """
    if not isinstance(data, dict):
        raise UclipError(f"{where} is not a JSON object (got {_show(data)}): {fix}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise UclipError(f"{where} has no {name!r} field: {fix}")
            continue
        value, annotation = data[name], hints.get(name)
        # Mapping entries one by one, so the line names the entry (metrics.x2en_acc).
        args = typing.get_args(annotation)
        if isinstance(value, dict) and typing.get_origin(annotation) is dict and len(args) == 2:
            entries = {f"{name}.{k}": (v, args[1]) for k, v in value.items()}
        else:
            entries = {name: (value, annotation)}
        for label, (item, kind) in entries.items():
            if kind is not None and not _matches(item, kind):
                raise UclipError(
                    f"{where}: {label} = {_show(item)} is not allowed: expected "
                    f"{_describe(kind, None)}; {fix}"
                )
    return {k: v for k, v in data.items() if k in fields}


def parse_override(spec: str) -> tuple[str, str, Any]:
    """``section.key=value`` (``--set``) as ``(section, key, value)``; the value is parsed as
    JSON (numbers, true/false, null, lists), else kept as text."""
    key, sep, text = spec.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise UclipError(f"--set {spec!r} must look like section.key=value, e.g. train.lr=1e-4")
    try:
        value = json.loads(text)
    except ValueError:  # not JSON (also NaN-free: json.loads accepts NaN, checked later)
        value = text
    return parts[0], parts[1], value


def apply_overrides(
    raw: Mapping[str, Any], specs: Sequence[str], sections: Mapping[str, type]
) -> dict[str, Any]:
    """``raw`` with ``section.key=value`` overrides applied in order (``raw`` is not changed).

    ``sections`` maps every config section that holds keys to the dataclass naming them (for
    ``uclip train``: model, data, method, train). One parser for every command that takes
    ``--set``: an unknown section or key is one :class:`UclipError` line, never dropped.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for spec in specs:
        section, key, value = parse_override(spec)
        if section not in sections and section in raw:
            raise UclipError(
                f"--set {spec}: config section {section!r} holds no keys that --set can change; "
                f"sections with keys: {', '.join(sorted(sections))}"
            )
        if section not in sections:
            raise UclipError(
                f"--set {spec}: unknown config section {section!r}; sections with keys: "
                f"{', '.join(sorted(sections))}"
            )
        names = {f.name for f in dataclasses.fields(sections[section])}
        if key not in names:
            raise UclipError(
                f"--set {spec}: unknown key {key!r} in section {section!r}; known: "
                f"{', '.join(sorted(names))}"
            )
        current = out.get(section, {})
        if not isinstance(current, dict):
            raise UclipError(
                f"--set {spec}: the config's section {section!r} is {_show(current)}, not a "
                "mapping of keys: fix the config file"
            )
        out[section] = {**current, key: value}
    return out
