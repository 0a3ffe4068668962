"""The plugin manager: loads plugins from the `xmodal` entry-point group into a `Registry`.

Built-in plugins (the `xmodal_plugins` package, in plugins/) are entry points like any other.
`XMODAL_LOAD_PLUGINS` filters which ones load (docs/plugins.md, "Choosing which plugins load"):
comma-separated entry-point names load only those, `-name` entries skip a plugin, an empty string
loads none.

Nothing is replaced silently: two installed entry points of one name, two plugins registering one
component name, a plugin that fails to import or raises while registering, and a filter naming no
installed plugin are all `PluginProblem`s. Loading never stops at one: the manager and the
registry collect them, so commands that need no components (`--help`, `plugins`, `status`,
`query`) show them as warnings and go on, while `get_registry()` (what validate, plan and run use)
raises one `PluginError` listing them all, each saying how to skip the plugin at fault.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import re
import shlex
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import attrs
import pluggy

from xmodal import hookspecs
from xmodal.components import (
    DatasetSpec,
    EncoderSpec,
    ExecutorSpec,
    LossSpec,
    MappingSpec,
    MetricSpec,
    NeighborBackendSpec,
    ReportSectionSpec,
    ResultRow,
    RunKindSpec,
    SimilaritySpec,
    SplitStrategySpec,
)
from xmodal.errors import XmodalError, did_you_mean

ENTRY_POINT_GROUP = "xmodal"
# xmodal's own plugins (llm's default-plugins model): registered first, whatever the filter says,
# and not listed among the installed plugins. They provide what every study needs (executors,
# the exact neighbour backend).
DEFAULT_PLUGINS = ("xmodal.default_executors", "xmodal.default_neighbor_backends")
FILTER_ENV = "XMODAL_LOAD_PLUGINS"
KINDS: dict[str, tuple[str, type]] = {
    "datasets": ("register_datasets", DatasetSpec),
    "mappings": ("register_mappings", MappingSpec),
    "losses": ("register_losses", LossSpec),
    "metrics": ("register_metrics", MetricSpec),
    "encoders": ("register_encoders", EncoderSpec),
    "run_kinds": ("register_run_kinds", RunKindSpec),
    "report_sections": ("register_report_sections", ReportSectionSpec),
    "split_strategies": ("register_split_strategies", SplitStrategySpec),
    "similarities": ("register_similarities", SimilaritySpec),
    "executors": ("register_executors", ExecutorSpec),
    "neighbor_backends": ("register_neighbor_backends", NeighborBackendSpec),
}
_SINGULAR = {
    "datasets": "dataset",
    "mappings": "mapping",
    "losses": "loss",
    "metrics": "metric",
    "encoders": "encoder",
    "run_kinds": "run kind",
    "report_sections": "report section",
    "split_strategies": "split strategy",
    "similarities": "similarity",
    "executors": "executor",
    "neighbor_backends": "neighbour backend",
}


def singular(kind: str) -> str:
    """`"losses"` -> `"loss"`: one component of a registry kind, for messages."""
    return _SINGULAR.get(kind, kind)


@attrs.frozen
class PluginProblem:
    """One thing wrong with the installed plugins or the filter, on one line.

    `plugin` is the plugin to skip to get past it (None when the filter itself is wrong);
    `fix` says what to do.
    """

    message: str
    plugin: str | None = None
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


class PluginError(XmodalError):
    """Plugins failed to load or registered something invalid: every problem, each with a fix."""

    def __init__(self, problems: Sequence[PluginProblem] | str, skip_hint: str = "") -> None:
        self.problems = [PluginProblem(problems)] if isinstance(problems, str) else list(problems)
        self.skip_hint = skip_hint
        super().__init__(self.render())

    def render(self, shown: Collection[PluginProblem] = ()) -> str:
        """The message; problems in `shown` (already printed as warnings) are only referred to."""
        new = [p for p in self.problems if p not in shown]
        skip = f"; or skip the plugin(s) at fault: {self.skip_hint}" if self.skip_hint else ""
        if len(new) < len(self.problems):
            head = (
                "this command needs the components of every plugin: fix the plugin problem(s) "
                f"warned about above{skip}"
            )
            return "\n".join([head, *(f"  {p}" for p in new)])
        if len(new) == 1:
            return str(new[0])
        return "\n".join([f"{len(new)} plugin problems{skip}:", *(f"  {p}" for p in new)])


class MetricOutputError(XmodalError):
    """A metric wrote a row its `MetricSpec` does not allow (comparison, value range, type)."""


@attrs.frozen
class PluginFilter:
    """`XMODAL_LOAD_PLUGINS`, parsed: names to load (all when none), names to skip (`-name`)."""

    raw: str | None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    installed: frozenset[str] | None = None  # known once the entry points are listed

    @classmethod
    def parse(cls, raw: str | None) -> PluginFilter:
        if raw is None:
            return cls(None)
        entries = [e.strip() for e in raw.split(",") if e.strip()]
        include = tuple(e for e in entries if not e.startswith("-"))
        exclude = tuple(e[1:].strip() for e in entries if e.startswith("-"))
        return cls(raw, include, exclude)

    @classmethod
    def from_env(cls) -> PluginFilter:
        return cls.parse(os.environ.get(FILTER_ENV))

    def allows(self, name: str) -> bool:
        """Whether the entry point `name` loads: listed (or nothing listed) and not skipped."""
        if self.raw is None:
            return True
        if name in self.exclude:
            return False
        return name in self.include if self.include else bool(self.exclude)

    def problems(self, installed: Collection[str]) -> list[PluginProblem]:
        """Names that match no installed plugin (a typo loads or skips nothing, silently)."""
        out = []
        for name, shown in [*((n, n) for n in self.include), *((n, f"-{n}") for n in self.exclude)]:
            if not name:
                out.append(
                    PluginProblem(
                        f"{FILTER_ENV}={shlex.quote(self.raw or '')}: {shown!r} names no plugin",
                        fix="write -name to skip a plugin, name to load only the plugins named",
                    )
                )
            elif name not in installed:
                guess = did_you_mean(name, installed)
                hint = f"did you mean {guess!r}? " if guess else ""
                out.append(
                    PluginProblem(
                        f"{FILTER_ENV}={shlex.quote(self.raw or '')}: {name!r} is not an "
                        "installed plugin",
                        fix=f"{hint}installed: {', '.join(sorted(installed)) or 'none'}",
                    )
                )
        return out

    def without(self, names: Iterable[str]) -> str:
        """The filter value that loads what this one does, except `names` (and with no entry
        that names no installed plugin)."""
        entries = [] if self.raw is None else [e.strip() for e in self.raw.split(",") if e.strip()]
        if self.installed is not None:
            entries = [e for e in entries if e.removeprefix("-").strip() in self.installed]
        for name in names:
            if name in entries and self.include:
                entries.remove(name)
            elif f"-{name}" not in entries:
                entries.append(f"-{name}")
        if self.include and not any(not e.startswith("-") for e in entries):
            return ""  # only named plugins were to load, and none of them is left
        return ",".join(entries)

    def skip_hint(self, names: Iterable[str]) -> str:
        """`XMODAL_LOAD_PLUGINS=...`, ready to paste, that skips `names`."""
        return f"{FILTER_ENV}={shlex.quote(self.without(names))}"

    def skip_fix(self, name: str) -> str:
        return f"skip it with {self.skip_hint([name])}"


class Manager(pluggy.PluginManager):
    """A pluggy manager that also remembers what loading it met: the filter, skipped entry
    points and problems (kept, not raised, so that commands needing no components still run).
    It starts with xmodal's default plugins (`DEFAULT_PLUGINS`) registered, before any other."""

    def __init__(self, plugin_filter: PluginFilter | None = None) -> None:
        super().__init__("xmodal")
        self.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:  # first, so that they win a clash of names
            self.register(importlib.import_module(module_name), name=module_name)
        self.plugin_filter = plugin_filter or PluginFilter(None)
        self.not_loaded: list[str] = []
        self.problems: list[PluginProblem] = []


@attrs.define
class Registry:
    """Everything the loaded plugins registered, by kind and name, and who registered it.

    `problems` lists what went wrong while loading and registering (empty when all is well);
    `plugin_filter` is the `XMODAL_LOAD_PLUGINS` filter in force, `not_loaded` the entry points
    it left out.
    """

    datasets: dict[str, DatasetSpec] = attrs.Factory(dict)
    mappings: dict[str, MappingSpec] = attrs.Factory(dict)
    losses: dict[str, LossSpec] = attrs.Factory(dict)
    metrics: dict[str, MetricSpec] = attrs.Factory(dict)
    encoders: dict[str, EncoderSpec] = attrs.Factory(dict)
    run_kinds: dict[str, RunKindSpec] = attrs.Factory(dict)
    report_sections: dict[str, ReportSectionSpec] = attrs.Factory(dict)
    split_strategies: dict[str, SplitStrategySpec] = attrs.Factory(dict)
    similarities: dict[str, SimilaritySpec] = attrs.Factory(dict)
    executors: dict[str, ExecutorSpec] = attrs.Factory(dict)
    neighbor_backends: dict[str, NeighborBackendSpec] = attrs.Factory(dict)
    owners: dict[tuple[str, str], str] = attrs.Factory(dict)
    plugins: list[str] = attrs.Factory(list)
    problems: list[PluginProblem] = attrs.Factory(list)
    plugin_filter: PluginFilter = PluginFilter(None)
    not_loaded: list[str] = attrs.Factory(list)

    @property
    def load_filter(self) -> str | None:
        """The `XMODAL_LOAD_PLUGINS` value in force (None: unset)."""
        return self.plugin_filter.raw

    def of(self, kind: str) -> dict[str, Any]:
        return getattr(self, kind)

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        return {
            kind: sorted(
                name for (k, name), owner in self.owners.items() if k == kind and owner == plugin
            )
            for kind in KINDS
        }

    def filter_notes(self, kind: str) -> tuple[str, ...]:
        """Why a `kind` component may be missing: the active `XMODAL_LOAD_PLUGINS` and what it
        left out (nothing when no filter is set)."""
        if self.load_filter is None:
            return ()
        left_out = ", ".join(self.not_loaded) or "none"
        return (
            f"{FILTER_ENV}={shlex.quote(self.load_filter)} is set; plugins not loaded: {left_out}; "
            f"unset it, or let the plugin that provides this {singular(kind)} load",
        )


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "an unknown package"


def load_manager(extra: list[tuple[str, object]] | None = None) -> Manager:
    """A plugin manager with the entry-point plugins (filtered by XMODAL_LOAD_PLUGINS) and `extra`.

    `extra` registers in-process plugins (tests, notebooks) under the given names; the filter does
    not apply to them. Problems are collected in `manager.problems`, never raised here.
    """
    by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        same = by_name.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):  # one package seen twice is one
            same.append(ep)
    extras = list(extra or [])
    flt = attrs.evolve(
        PluginFilter.from_env(), installed=frozenset(by_name) | {name for name, _ in extras}
    )
    pm = Manager(flt)
    pm.problems.extend(flt.problems(flt.installed or ()))
    for name, eps in by_name.items():
        if not flt.allows(name):
            pm.not_loaded.append(name)
            continue
        if len(eps) > 1:
            pm.problems.append(_entry_point_clash(name, eps))
            continue
        ep = eps[0]
        try:
            module = ep.load()
        except Exception as exc:
            pm.problems.append(
                PluginProblem(
                    f"plugin {name!r} ({ep.value}, from {_dist_name(ep)}) failed to load: "
                    f"{type(exc).__name__}: {_one_line(exc)}",
                    name,
                    flt.skip_fix(name),
                )
            )
            continue
        pm.register(module, name=name)
        pm.problems.extend(  # pluggy ignores these silently
            PluginProblem(f"plugin {name!r} ({ep.value}): {text}", name, flt.skip_fix(name))
            for text in ignored_hooks(module)
        )
    for name, plugin in extras:
        if pm.has_plugin(name) or name in by_name:
            where = ", ".join(f"{ep.value} from {_dist_name(ep)}" for ep in by_name.get(name, []))
            pm.problems.append(
                PluginProblem(
                    f"the in-process plugin {name!r} has the name of an installed plugin "
                    f"({where or 'already registered'})",
                    name,
                    "give it another name",
                )
            )
            continue
        try:
            pm.register(plugin, name=name)
        except ValueError as exc:  # the same object under two names
            pm.problems.append(PluginProblem(f"in-process plugin {name!r}: {exc}", name))
    return pm


def ignored_hooks(plugin: object) -> list[str]:
    """What pluggy would silently ignore in a plugin: a function named like a hook but not
    decorated with `@hookimpl`, and a `@hookimpl` function named like no hook (a typo)."""
    hooks = {n for n, v in vars(hookspecs).items() if hasattr(v, "xmodal_spec")}
    problems = []
    for attr in dir(plugin):
        value = getattr(plugin, attr, None) if not attr.startswith("__") else None
        if not callable(value):
            continue
        marked = hasattr(value, "xmodal_impl")
        if marked and attr not in hooks:
            guess = did_you_mean(attr, hooks)
            hint = f"; did you mean {guess!r}?" if guess else ""
            problems.append(f"{attr!r} is decorated with @hookimpl but is no xmodal hook{hint}")
        elif attr in hooks and not marked:
            problems.append(f"{attr!r} is not decorated with @hookimpl, so it is never called")
    return problems


def _entry_point_clash(name: str, eps: list[importlib.metadata.EntryPoint]) -> PluginProblem:
    """Two packages declare one entry-point name: neither loads, both are named, with the fix."""
    described = " and ".join(f"{_dist_name(ep)} ({ep.value})" for ep in eps)
    others = [_dist_name(ep) for ep in eps if _dist_name(ep) != "xmodal"]
    uninstall = f" or uninstall one (pip uninstall {others[-1]})" if others else ""
    return PluginProblem(
        f"two installed packages declare the xmodal plugin {name!r}: {described}; "
        "neither is loaded",
        name,
        "plugin names must be unique: rename the entry point in one package's "
        f"[project.entry-points.xmodal] table{uninstall}",
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def build_registry(pm: pluggy.PluginManager, *, strict: bool = True) -> Registry:
    """Call every plugin's register_* hooks and collect what they register.

    A component name registered twice keeps its first registration; the second, a plugin that
    raises, and a registration of the wrong type become problems. With `strict`, any problem
    (loading ones included) raises a `PluginError` listing them all.
    """
    flt: PluginFilter = getattr(pm, "plugin_filter", None) or PluginFilter(None)
    registry = Registry(
        plugins=[name for name, _ in pm.list_name_plugin() if name not in DEFAULT_PLUGINS],
        problems=list(getattr(pm, "problems", [])),
        plugin_filter=flt,
        not_loaded=list(getattr(pm, "not_loaded", [])),
    )
    for kind, (hook_name, spec_type) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name
            register = _registrar(registry, kind, spec_type, plugin, flt)
            try:
                impl.function(register=register)
            except Exception as exc:
                registry.problems.append(
                    PluginProblem(
                        f"plugin {plugin!r} failed in {hook_name}: "
                        f"{type(exc).__name__}: {_one_line(exc)}",
                        plugin,
                        flt.skip_fix(plugin),
                    )
                )
    if strict:
        raise_problems(registry)
    return registry


def raise_problems(registry: Registry) -> None:
    """Raise one `PluginError` for all of `registry.problems`, if there are any."""
    if registry.problems:
        flt = registry.plugin_filter
        at_fault = sorted({p.plugin for p in registry.problems if p.plugin})
        raise PluginError(registry.problems, flt.skip_hint(at_fault) if at_fault else "")


_SPEC_OWNERS: dict[int, tuple[weakref.ref[Any], str]] = {}


def owner_of(spec: Any) -> str | None:
    """The plugin that registered `spec` (the object itself), if a registry has seen it."""
    entry = _SPEC_OWNERS.get(id(spec))
    return entry[1] if entry is not None and entry[0]() is spec else None


def _remember_owner(spec: Any, plugin: str) -> None:
    key = id(spec)
    try:
        ref = weakref.ref(spec, lambda _, key=key: _SPEC_OWNERS.pop(key, None))
    except TypeError:  # not weak-referenceable: not remembered
        return
    _SPEC_OWNERS[key] = (ref, plugin)


def _registrar(
    registry: Registry, kind: str, spec_type: type, plugin: str, flt: PluginFilter
) -> Callable[[Any], None]:
    def register(spec: Any) -> None:
        if not isinstance(spec, spec_type):
            registry.problems.append(
                PluginProblem(
                    f"plugin {plugin!r} called register_{kind}'s register with "
                    f"{_short(repr(spec))}; expected a {spec_type.__name__}",
                    plugin,
                    flt.skip_fix(plugin),
                )
            )
            return
        table = registry.of(kind)
        if spec.name in table:
            other = registry.owners[(kind, spec.name)]
            same = " (twice)" if other == plugin else ""
            registry.problems.append(
                PluginProblem(
                    f"plugins {other!r} and {plugin!r} both register {_a(singular(kind))} named "
                    f"{spec.name!r}{same}; {plugin!r}'s is not used",
                    plugin,
                    f"rename one of them, uninstall one, or {flt.skip_fix(plugin)}",
                )
            )
            return
        table[spec.name] = spec
        registry.owners[(kind, spec.name)] = plugin
        _remember_owner(spec, plugin)

    return register


def _a(noun: str) -> str:
    """`noun` with its indefinite article: "a metric", "an executor"."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def register_commands(pm: pluggy.PluginManager, cli: Any) -> list[PluginProblem]:
    """Call each plugin's `register_commands(cli)`, one at a time: a plugin that raises, or adds a
    command whose name is taken, is a problem (kept in `pm.problems` and returned), never a crash
    and never a silent replacement of a built-in command."""
    flt: PluginFilter = getattr(pm, "plugin_filter", None) or PluginFilter(None)
    problems: list[PluginProblem] = []
    commands: list[Any] | None = getattr(cli, "registered_commands", None)
    for impl in pm.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name
        before = len(commands) if commands is not None else 0
        taken = {_command_name(c): "xmodal" for c in (commands or [])[:before]}
        taken.update(getattr(cli, "_xmodal_command_owners", {}))
        try:
            impl.function(cli=cli)
        except Exception as exc:
            if commands is not None:
                del commands[before:]
            problems.append(
                PluginProblem(
                    f"plugin {plugin!r} failed in register_commands: "
                    f"{type(exc).__name__}: {_one_line(exc)}",
                    plugin,
                    flt.skip_fix(plugin),
                )
            )
            continue
        if commands is None:
            continue
        owners = getattr(cli, "_xmodal_command_owners", {})
        for info in list(commands[before:]):
            name = _command_name(info)
            if taken.get(name) == plugin:  # the same plugin registering again: the newer wins
                commands.remove(next(c for c in commands if _command_name(c) == name))
            elif name in taken:
                commands.remove(info)
                problems.append(
                    PluginProblem(
                        f"plugin {plugin!r} adds a command {name!r}, which "
                        f"{'xmodal' if taken[name] == 'xmodal' else repr(taken[name])} already "
                        "has; the plugin's command is not added",
                        plugin,
                        f"rename the plugin's command, or {flt.skip_fix(plugin)}",
                    )
                )
                continue
            taken[name] = owners[name] = plugin
        with contextlib.suppress(AttributeError):  # an object that takes no attributes
            cli._xmodal_command_owners = owners
    if isinstance(pm, Manager):
        pm.problems.extend(problems)
    return problems


def _command_name(info: Any) -> str:
    """A typer CommandInfo's name as the command line spells it."""
    name = getattr(info, "name", None)
    if not name:
        callback = getattr(info, "callback", None)
        name = getattr(callback, "__name__", "") if callback is not None else ""
    return name.lower().replace("_", "-")


# --- what metrics write is checked against what they declare ------------------------------------


def _comparison_pattern(compares: Sequence[str]) -> re.Pattern[str]:
    """`compares` as one regular expression; `<word>` in a declared comparison matches any text."""
    parts = [
        "".join(
            ".+" if piece.startswith("<") else re.escape(piece)
            for piece in re.split(r"(<[^<>]+>)", declared)
            if piece
        )
        for declared in compares
    ]
    return re.compile("|".join(f"(?:{p})" for p in parts))


# Rounding may put a value a hair past a bound (a CKA of 1.0000000000000002): tolerated.
RANGE_TOLERANCE = 1e-6


def checked_rows(spec: MetricSpec, rows: Iterable[Any]) -> Iterator[ResultRow]:
    """Each row `spec.compute` produced, after checking it against what `spec` declares.

    A row must be a `ResultRow` with a numeric value; when `spec.compares` is declared its
    comparison must be one of them; its value must lie in its range when one is declared: the
    row metric's `outputs[...].value_range`, else `spec.value_range` (NaN, "undefined", always
    passes). A confidence interval (`ci_low`, `ci_high`) is both bounds or neither, numbers with
    ci_low <= ci_high, each in that range (NaN bounds pass). A row that breaks this raises
    `MetricOutputError`.
    """
    pattern = _comparison_pattern(spec.compares) if spec.compares else None
    ranges = {
        name: shown.value_range
        for name, shown in spec.outputs.items()
        if getattr(shown, "value_range", None) is not None
    }
    for row in rows:
        if not isinstance(row, ResultRow):
            raise MetricOutputError(
                f"compute yielded {_short(repr(row))}; it must yield "
                "xmodal.components.ResultRow objects"
            )
        try:
            value = float(row.value)
        except (TypeError, ValueError):
            raise MetricOutputError(
                f"the value {_short(repr(row.value))} ({_where(row)}) is not a number"
            ) from None
        if pattern is not None and not pattern.fullmatch(str(row.comparison)):
            raise MetricOutputError(
                f"the comparison {row.comparison!r} (split {row.split!r}) is not declared: "
                f"compares = {tuple(spec.compares)!r}; add it to the MetricSpec's compares or "
                "fix the metric"
            )
        declared = ranges.get(row.metric, spec.value_range)
        _check_in_range(row, "", value, declared)
        if row.ci_low is not None or row.ci_high is not None:
            bounds = _ci_bounds(row)
            for name, bound in zip(("ci_low", "ci_high"), bounds, strict=True):
                _check_in_range(row, name, bound, declared)
            if bounds[0] > bounds[1]:  # False with NaN: an undefined interval passes
                raise MetricOutputError(
                    f"{row.metric} ({_where(row)}) has ci_low = {bounds[0]!r} above ci_high = "
                    f"{bounds[1]!r}; a confidence interval is (low, high): fix the metric"
                )
        yield row


def _ci_bounds(row: ResultRow) -> tuple[float, float]:
    if row.ci_low is None or row.ci_high is None:
        raise MetricOutputError(
            f"{row.metric} ({_where(row)}) has ci_low = {row.ci_low!r} and ci_high = "
            f"{row.ci_high!r}; a confidence interval needs both bounds (or neither)"
        )
    try:
        return (float(row.ci_low), float(row.ci_high))
    except (TypeError, ValueError):
        raise MetricOutputError(
            f"{row.metric} ({_where(row)}): the interval ({_short(repr(row.ci_low))}, "
            f"{_short(repr(row.ci_high))}) is not two numbers"
        ) from None


def _check_in_range(
    row: ResultRow, what: str, value: float, declared: tuple[float, float] | None
) -> None:
    """Raise `MetricOutputError` when `value` (the row's value, or its `what` bound) is outside
    the declared range, beyond the rounding tolerance. NaN passes."""
    if declared is None or math.isnan(value):
        return
    low, high = declared
    slack_low = RANGE_TOLERANCE * max(1.0, abs(low))
    slack_high = RANGE_TOLERANCE * max(1.0, abs(high))
    if not low - slack_low <= value <= high + slack_high:
        name = f"the {what} of {row.metric}" if what else row.metric
        raise MetricOutputError(
            f"{name} = {value!r} ({_where(row)}) is outside the declared "
            f"value_range [{low:g}, {high:g}]; fix the metric or its MetricSpec's "
            "value_range"
        )


def _where(row: ResultRow) -> str:
    parts = [f"split {row.split!r}", f"comparison {row.comparison!r}"]
    if row.k is not None:
        parts.append(f"k={row.k}")
    if row.similarity is not None:
        parts.append(f"similarity {row.similarity!r}")
    return ", ".join(parts)


def measurement_error(exc: BaseException, plugin: str | None, detail: str = "") -> str:
    """A failed measurement's error text: the exception on the first line, naming the plugin
    the metric comes from, then `detail` (a traceback) if any."""
    first, _, rest = f"{type(exc).__name__}: {exc}".partition("\n")
    if plugin:
        first += f" (metric of plugin {plugin!r})"
    return "\n".join(part for part in (first, rest, detail) if part)


# --- the process-wide manager and registry -------------------------------------------------------

_manager: pluggy.PluginManager | None = None
_registry: Registry | None = None


def get_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loaded on first use. Never raises for a broken plugin:
    see `load_problems()`."""
    global _manager
    if _manager is None:
        _manager = load_manager()
    return _manager


def load_problems() -> list[PluginProblem]:
    """What loading the process-wide manager met (broken imports, clashes, filter typos)."""
    return list(getattr(get_manager(), "problems", []))


def get_registry(*, strict: bool = True) -> Registry:
    """The process-wide registry, built on first use.

    Strict (the default, for anything that uses components) raises a `PluginError` when any plugin
    has a problem; `strict=False` returns what did register, with `registry.problems`.
    """
    global _registry
    if _registry is None:
        _registry = build_registry(get_manager(), strict=False)
    if strict:
        raise_problems(_registry)
    return _registry


def reset(manager: pluggy.PluginManager | None = None) -> None:
    """Forget the loaded plugins, or install `manager` (tests that add plugins use this)."""
    global _manager, _registry
    _manager, _registry = manager, None
