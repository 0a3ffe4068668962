"""Declared parameters of plugins and study sections, and their validation.

Every component a study names (dataset, mapping, loss, metric) declares its parameters as
`Param`s. Validation and sweep expansion are driven by these declarations, so a plugin gets
"unknown key", type, range and "did you mean" errors without writing any checking code.

Sweep rule: a list where the parameter takes one value is a sweep over those values. A parameter
declared `many=True` takes a list as one value (a single scalar is read as a one-element list);
a list of lists sweeps it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from xmodal.errors import Problem, did_you_mean

_REQUIRED = object()
_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}


@attrs.frozen
class Param:
    """One parameter: its type, default, allowed values and bounds."""

    type: type = attrs.field(validator=attrs.validators.in_((int, float, str, bool)))
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    many: bool = False
    also: tuple[Any, ...] = ()
    doc: str = ""
    # A registry kind (e.g. "similarities"): the value must be a name registered of that kind.
    # The choices are filled in from the loaded plugins when a study is read (`with_choices`).
    choices_from: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """What is allowed, in words, for error messages and `xmodal plugins`."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.choices_from is not None:
            text = f"the name of one of the registered {self.choices_from}"
        else:
            text = _TYPE_NAMES[self.type]
            if self.min is not None and self.max is not None:
                text += f" in [{_number(self.min)}, {_number(self.max)}]"
            elif self.min is not None:
                text += f" >= {_number(self.min)}"
            elif self.max is not None:
                text += f" <= {_number(self.max)}"
        if self.also:
            text += " or " + ", ".join(repr(a) for a in self.also)
        if self.many:
            text = f"{text}, or a list of them"
        return text


def with_choices(
    schema: Mapping[str, Param], names_of: Callable[[str], Iterable[str]]
) -> dict[str, Param]:
    """`schema` with the choices of every `choices_from` parameter filled in: the names
    `names_of(kind)` gives (the registry's, sorted), so validation names them and suggests one."""
    return {
        key: attrs.evolve(param, choices=tuple(sorted(names_of(param.choices_from))))
        if param.choices_from is not None and param.choices is None
        else param
        for key, param in schema.items()
    }


def _number(bound: float) -> str:
    """A bound as written: `2147483647`, not `2.14748e+09`; `0.01` stays `0.01`."""
    if float(bound).is_integer() and abs(bound) < 1e15:
        return str(int(bound))
    return f"{bound:g}"


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to one line's worth, for messages about a user's (possibly huge) value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


# How a TOML value's Python type is named in messages: "3 is an integer", "[1] is a list".
_VALUE_NAMES = {**_TYPE_NAMES, list: "list", dict: "table", type(None): "nothing"}


def a_type(value: Any) -> str:
    """The kind of `value`, with its article, for messages: "an integer", "a string", "a table"."""
    name = next(
        (text for kind, text in _VALUE_NAMES.items() if type(value) is kind),
        type(value).__name__,
    )
    if name == "nothing":
        return name
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def check_scalar(param: Param, value: Any) -> str | None:
    """Why `value` is not a valid single value of `param`, or None when it is."""
    if value in param.also and not isinstance(value, bool):
        return None
    if param.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return f"{shown(value)} is not a finite number"
    elif param.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, param.type)
    if not ok:
        return f"{shown(value)} is {a_type(value)}, expected {_TYPE_NAMES[param.type]}"
    if param.choices is not None and value not in param.choices:
        return f"{shown(value)} is not allowed"
    if param.min is not None and value < param.min:
        return f"{shown(value)} is out of range"
    if param.max is not None and value > param.max:
        return f"{shown(value)} is out of range"
    return None


def _check_one(param: Param, value: Any, path: str) -> list[Problem]:
    values = value if (param.many and isinstance(value, list)) else [value]
    if param.many and not values:
        return [Problem(path, "is an empty list", allowed=param.describe())]
    problems = []
    for v in values:
        why = check_scalar(param, v)
        if why:
            hint = did_you_mean(v, param.choices) if param.choices and isinstance(v, str) else None
            problems.append(Problem(path, why, allowed=param.describe(), suggestion=hint))
    return problems


def validate_params(
    schema: Mapping[str, Param], given: Mapping[str, Any], path: str, *, sweep: bool = True
) -> list[Problem]:
    """Check `given` against `schema`: unknown keys, missing required keys, types, ranges."""
    problems: list[Problem] = []
    for key in given:
        if key not in schema:
            problems.append(
                Problem(
                    f"{path}.{key}",
                    "is not a known parameter",
                    allowed=", ".join(sorted(schema)) or "no parameters",
                    suggestion=did_you_mean(key, schema),
                )
            )
    for key, param in schema.items():
        keypath = f"{path}.{key}"
        if key not in given:
            if param.required:
                problems.append(Problem(keypath, "is required", allowed=param.describe()))
            continue
        for value in sweep_values(param, given[key]) if sweep else [given[key]]:
            problems.extend(_check_one(param, value, keypath))
        if sweep and _is_sweep(param, given[key]) and not given[key]:
            problems.append(Problem(keypath, "is an empty sweep", allowed=param.describe()))
        # An empty list where a list is the value is "an empty list" (said above), not a sweep.
        if not sweep and _is_sweep(param, given[key]) and not (param.many and given[key] == []):
            problems.append(
                Problem(keypath, "cannot be swept here (a list is not allowed)", param.describe())
            )
    return problems


def _is_sweep(param: Param, value: Any) -> bool:
    if not isinstance(value, list):
        return False
    return not param.many or any(isinstance(v, list) for v in value) or value == []


def _canonical(param: Param, value: Any) -> Any:
    """`lr = 1` and `lr = 1.0` are the same setting: float parameters hold floats."""
    if param.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def sweep_values(param: Param, value: Any) -> list[Any]:
    """The values a (possibly swept) parameter takes, normalised (`many` params become lists)."""
    values = value if _is_sweep(param, value) else [value]
    if param.many:
        return [[_canonical(param, x) for x in (v if isinstance(v, list) else [v])] for v in values]
    return [_canonical(param, v) for v in values]


def expand(schema: Mapping[str, Param], given: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every concrete parameter set of a (validated) declaration: defaults filled, sweeps crossed.

    Keys come out sorted so that equal configurations serialise identically.
    """
    keys = sorted(schema)
    axes = []
    for key in keys:
        param = schema[key]
        if key in given:
            axes.append(sweep_values(param, given[key]))
        else:
            default = param.default
            axes.append([list(default) if param.many else default])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


def sweep_length(param: Param, value: Any) -> int:
    """How many values a (possibly swept) parameter takes, without normalising any of them."""
    return len(value) if _is_sweep(param, value) else 1


def sweep_lengths(schema: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, int]:
    """The declared parameters that are sweeps, with their lengths (in schema order)."""
    lengths = {key: sweep_length(schema[key], given[key]) for key in schema if key in given}
    return {key: n for key, n in lengths.items() if n != 1}


def count_variants(schema: Mapping[str, Param], given: Mapping[str, Any]) -> int:
    """`len(expand(schema, given))`, computed from the sweep lengths without expanding."""
    return math.prod(sweep_lengths(schema, given).values())


def first_variant(schema: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """`expand(schema, given)[0]` without expanding: each sweep at its first value."""
    first = {}
    for key in sorted(schema):
        param = schema[key]
        if key in given:
            value = given[key]
            if _is_sweep(param, value):
                value = value[:1]
            first[key] = sweep_values(param, value)[0]
        else:
            first[key] = list(param.default) if param.many else param.default
    return first
