"""One way to ask a component whether its parameters make sense: `check(params, context)`.

Every spec that can judge its own parameters beyond what its `Param` schema says (a mapping, a
loss, a metric) carries an optional `check(params, context)` that yields `(parameter, message)`
pairs. `params` is one complete parameter set (defaults filled, sweeps expanded); `context` is a
`CheckContext` holding what is known at that moment, with None for what is not yet known.

A check is called at two moments:

- when the study is read (`xmodal validate`, `plan`, `run`): nothing about the data is known, so
  `n_items`, `split`, `include_self`, `in_dim` and `out_dim` are None;
- once the data is loaded (`xmodal validate`, `run`): mappings and losses once per distinct
  (training split size, input dimension, output dimension) of the study's runs; metrics once per
  split the runs are measured on (`n_items` is the size of that split).

A check judges only what its context lets it judge and yields nothing otherwise: a metric whose
`k` must fit in the split returns at once when `context.n_items` is None, and is asked again
once the sizes are known. Each yielded pair becomes a study problem at the component's key path
(`mapping[1].hidden`); an empty `parameter` places it at the component itself (`metric[0]`).

A check that raises, or yields something other than `(str, str)` pairs, is a bug in its plugin:
the study error names the plugin and how to skip it, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from xmodal.errors import Problem, XmodalError
from xmodal.plugins import PluginFilter, owner_of


@attrs.frozen
class CheckContext:
    """What is known when a component's `check(params, context)` is called.

    - `component`: the kind of component being checked, `"mapping"`, `"loss"` or `"metric"`.
    - `name`: the component's registered name (`[[mapping]] name`, ...).
    - `n_items`: how many items the split in `split` holds; None before the data is loaded.
      For mappings and losses it is the training split (the items they are fitted on); for a
      metric it is the probed split.
    - `split`: `"train"` or `"test"`, the split `n_items` counts; None before the data is loaded.
    - `include_self`: whether each item counts as its own neighbour (`[measure] include_self`);
      None before the data is loaded.
    - `in_dim`, `out_dim`: the dimensions of the mapping's input and target feature sets (the
      run's direction applied); None before the data is loaded.
    """

    component: str
    name: str
    n_items: int | None = None
    split: str | None = None
    include_self: bool | None = None
    in_dim: int | None = None
    out_dim: int | None = None


class ComponentError(XmodalError):
    """A component's own description misbehaved (its `check` or `depth` raised, or returned
    something it must not): a bug in the plugin, named in the message."""


def _blame(spec: Any, component: str) -> str:
    plugin = owner_of(spec)
    who = f"{component} {getattr(spec, 'name', '?')!r}"
    return f"{who} (plugin {plugin!r})" if plugin else who


def _skip_hint(spec: Any) -> str:
    plugin = owner_of(spec)
    if not plugin:
        return "fix the plugin that registers it"
    return f"fix or update plugin {plugin!r}, or {PluginFilter.from_env().skip_fix(plugin)}"


def _raised(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, XmodalError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def check_component(
    spec: Any, params: Mapping[str, Any], context: CheckContext, path: str
) -> list[Problem]:
    """Run `spec.check(params, context)` and turn each `(parameter, message)` it yields into a
    `Problem` at `path.parameter` (at `path` itself when the parameter is empty).

    A spec without a check has nothing to say. A check that raises or yields a malformed item
    gives one problem at `path` naming the plugin, instead of a traceback.
    """
    check = getattr(spec, "check", None)
    if check is None:
        return []
    problems: list[Problem] = []
    try:
        for item in check(params, context):
            if (
                not isinstance(item, tuple)
                or len(item) != 2
                or not all(isinstance(part, str) for part in item)
            ):
                text = repr(item)
                text = text if len(text) <= 60 else f"{text[:59]}…"
                return [
                    Problem(
                        path,
                        f"the check of {_blame(spec, context.component)} yielded {text}; a check "
                        "yields (parameter, message) pairs of strings",
                        allowed=_skip_hint(spec),
                    )
                ]
            key, message = item
            problems.append(Problem(f"{path}.{key}" if key else path, message))
    except Exception as exc:  # a bug in the plugin, not a problem of the study
        return [
            Problem(
                path,
                f"the check of {_blame(spec, context.component)} failed: {_raised(exc)}",
                allowed=_skip_hint(spec),
            )
        ]
    return problems


def mapping_depth(spec: Any, params: Mapping[str, Any]) -> int | None:
    """The number of hidden layers `spec.depth(params)` declares, or None (no `depth`, or a
    family without one). Raises `ComponentError` naming the plugin when `depth` raises or
    returns something other than None or a whole number >= 0."""
    depth = getattr(spec, "depth", None)
    if depth is None:
        return None
    try:
        value = depth(params)
    except Exception as exc:
        raise ComponentError(
            f"the depth of {_blame(spec, 'mapping')} failed: {_raised(exc)}; {_skip_hint(spec)}"
        ) from None
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    text = repr(value)
    text = text if len(text) <= 60 else f"{text[:59]}…"
    raise ComponentError(
        f"the depth of {_blame(spec, 'mapping')} returned {text}; it must return None or a whole "
        f"number >= 0 (hidden layers); {_skip_hint(spec)}"
    )


def depth_problems(spec: Any, params: Mapping[str, Any], path: str) -> list[Problem]:
    """`mapping_depth` as study problems: empty when the depth is declared correctly."""
    try:
        mapping_depth(spec, params)
    except ComponentError as exc:
        return [Problem(path, str(exc))]
    return []
