"""The parameter reference: every registered component's parameters, read from its schema.

One generator for both outputs, so that they cannot disagree:

- `xmodal plugins --params` (a table per registry kind) and `--params --json` describe the
  components of the plugins loaded here (third-party ones included);
- `python -m xmodal.reference > docs/reference.md` writes the Markdown reference of the built-in
  plugins (plus the study file's own sections); tests/test_reference.py fails when that file
  differs from what this module generates.

Every registry kind is covered: the kinds are read from `xmodal.plugins.KINDS`, never listed
here, and a component without a `params` schema is listed as taking none.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from xmodal import plugins
from xmodal.params import _TYPE_NAMES, Param, _number

REGENERATE = "python -m xmodal.reference > docs/reference.md"
BUILTIN_PACKAGE = "xmodal_plugins"


@attrs.frozen
class ParamInfo:
    """One parameter as the reference shows it."""

    name: str
    type: str  # integer, number, string or boolean
    required: bool
    default: Any  # None when required
    choices: tuple[Any, ...] | None
    min: float | None
    max: float | None
    also: tuple[Any, ...]
    many: bool
    doc: str

    @classmethod
    def of(cls, name: str, param: Param) -> ParamInfo:
        return cls(
            name=name,
            type=_TYPE_NAMES[param.type],
            required=param.required,
            default=None if param.required else _plain(param.default),
            choices=None if param.choices is None else tuple(_plain(c) for c in param.choices),
            min=param.min,
            max=param.max,
            also=tuple(_plain(a) for a in param.also),
            many=param.many,
            doc=param.doc,
        )

    def type_text(self) -> str:
        """`integer`, or `list of integers` for a parameter that takes a list as one value."""
        return f"list of {self.type}s" if self.many else self.type

    def default_text(self) -> str:
        """The default as a study file writes it (TOML), or `required`."""
        if self.required:
            return "required"
        return "(unset)" if self.default is None else _toml(self.default)

    def allowed_text(self) -> str:
        """Choices, or a range, plus extra accepted values; empty when any value of the type is."""
        if self.choices is not None:
            text = ", ".join(_toml(c) for c in self.choices)
        elif self.min is not None and self.max is not None:
            text = f"{_number(self.min)} to {_number(self.max)}"
        elif self.min is not None:
            text = f">= {_number(self.min)}"
        elif self.max is not None:
            text = f"<= {_number(self.max)}"
        else:
            text = ""
        if self.also:
            extra = ", ".join(_toml(a) for a in self.also)
            text = f"{text}, or {extra}" if text else f"any, or {extra}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "choices": None if self.choices is None else list(self.choices),
            "min": self.min,
            "max": self.max,
            "also": list(self.also),
            "many": self.many,
            "doc": self.doc,
        }


@attrs.frozen
class ComponentInfo:
    """One component (or one study-file section) and its parameters, in declaration order."""

    kind: str  # a registry kind ("mappings") or "sections" for the study file's own tables
    name: str
    plugin: str | None
    description: str
    params: tuple[ParamInfo, ...]
    has_schema: bool = True  # False: the kind's spec declares no parameters at all

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "params": [p.to_json() for p in self.params],
        }


def kinds() -> list[str]:
    """The registry's kinds, in registration order (datasets, mappings, ...)."""
    return list(plugins.KINDS)


def components(registry: plugins.Registry, name: str | None = None) -> list[ComponentInfo]:
    """Every component the registry holds, kind by kind, names sorted; only those called `name`
    when given."""
    found = []
    for kind in kinds():
        table: Mapping[str, Any] = registry.of(kind)
        for component in sorted(table):
            if name is not None and component != name:
                continue
            found.append(_component(kind, component, table[component], registry))
    return found


def _component(kind: str, name: str, spec: Any, registry: plugins.Registry) -> ComponentInfo:
    schema = getattr(spec, "params", None)
    has_schema = isinstance(schema, Mapping)
    params = tuple(
        ParamInfo.of(key, param)
        for key, param in (schema.items() if has_schema else ())
        if isinstance(param, Param)
    )
    return ComponentInfo(
        kind=kind,
        name=name,
        plugin=registry.owners.get((kind, name)),
        description=_one_paragraph(str(getattr(spec, "description", "") or "")),
        params=params,
        has_schema=has_schema,
    )


def study_sections() -> list[ComponentInfo]:
    """The study file's own tables ([study], [data], [train], ...), from `xmodal.study`'s
    `<SECTION>_PARAMS` schemas."""
    from xmodal import study

    known = getattr(study, "SECTIONS", ())
    found = []
    for attribute, schema in vars(study).items():
        if not attribute.endswith("_PARAMS") or not isinstance(schema, Mapping):
            continue
        if not schema or not all(isinstance(p, Param) for p in schema.values()):
            continue
        tables = getattr(study, "TABLE_OF_PARAMS", {})
        section = tables.get(attribute) or attribute.removesuffix("_PARAMS").lower()
        if section not in known and f"{section}s" in known:
            section = f"{section}s"
        params = tuple(ParamInfo.of(key, param) for key, param in schema.items())
        found.append(ComponentInfo("sections", section, None, "", params))
    if "runs" in known:  # [runs] has no schema of its own: its keys are the run kinds
        found.append(ComponentInfo("sections", "runs", None, "", ()))
    order = {name: i for i, name in enumerate(known)}
    return sorted(found, key=lambda c: (order.get(c.name, len(order)), c.name))


def missing_docs(found: Iterable[ComponentInfo]) -> list[str]:
    """`kind/name.param` for every parameter without a `doc` (their owners should add one)."""
    return [f"{c.kind}/{c.name}.{p.name}" for c in found for p in c.params if not p.doc]


def as_json(found: Sequence[ComponentInfo]) -> str:
    return json.dumps([c.to_json() for c in found], indent=2, default=str)


# --- Markdown -------------------------------------------------------------------------------------

_HEADER = f"""\
# Parameter reference

Every parameter of every built-in component, and of the study file's own sections: its type,
default, allowed values and meaning. Generated from the parameter schemas by
`{REGENERATE}`; do not edit it by hand
(tests/test_reference.py fails when it is stale). `xmodal plugins --params` prints the same for
the plugins installed where you run it (third-party ones included), `xmodal plugins --params NAME`
for one component, and `--json` as data.

How to read the tables: a parameter with a default may be left out; a `required` one may not.
**type** `list of ...` takes a list as one value (a single value is read as a one-element list).
A list where one value is expected is a sweep, one run per value (docs/study-format.md).
**allowed** gives the choices, or the range (bounds included); `or "full"` names a value accepted
besides the type's.
"""


def markdown(registry: plugins.Registry, sections: Sequence[ComponentInfo] = ()) -> str:
    """The reference as Markdown: the study file's sections, then each registry kind."""
    found = components(registry)
    lines = [_HEADER]
    groups: list[tuple[str, str, list[ComponentInfo]]] = []
    if sections:
        groups.append(("Study file sections", "sections", list(sections)))
    for kind in kinds():
        groups.append((_kind_title(kind), kind, [c for c in found if c.kind == kind]))
    lines.append("Contents: " + " · ".join(f"[{title}](#{_anchor(title)})" for title, *_ in groups))
    lines.append("")
    for title, kind, members in groups:
        if kind == "sections":
            members = [_with_run_kinds(c, registry) for c in members]
        lines += [f"## {title}", ""]
        if kind != "sections":
            lines += [
                f"Plugins add {kind.replace('_', ' ')} with the `{plugins.KINDS[kind][0]}` hook.",
                "",
            ]
        if not members:
            lines += [f"No built-in {plugins.singular(kind)}.", ""]
        for component in members:
            lines += _component_markdown(component)
    return "\n".join(lines).rstrip() + "\n"


def _with_run_kinds(section: ComponentInfo, registry: plugins.Registry) -> ComponentInfo:
    """The `[runs]` section, saying that its keys are run kinds (the registered ones); every other
    section unchanged."""
    if section.name != "runs" or section.description:
        return section
    kinds = registry.of("run_kinds")
    listed = ", ".join(
        f"`{name}`" + (" (on by default)" if getattr(kinds[name], "default", False) else "")
        for name in sorted(kinds)
    )
    note = (
        "Every key of `[runs]` names a run kind: `kind = true` turns it on, `kind = false` off, "
        "and a `[runs.kind]` table turns it on with the kind's parameters; a kind `[runs]` does "
        "not mention runs if it is on by default (docs/study-format.md). "
        + (
            f"Registered run kinds: {listed} ([Run kinds](#run-kinds))."
            if kinds
            else "No run kind is registered."
        )
    )
    return attrs.evolve(section, description=note)


def _component_markdown(component: ComponentInfo) -> list[str]:
    if component.kind == "sections":
        heading = f"### `[{component.name}]`"
    else:
        heading = f"### `{component.name}` (plugin `{component.plugin}`)"
    lines = [heading, ""]
    if component.description:
        lines += [component.description, ""]
    if not component.params and component.kind == "sections":
        return lines  # [runs]: its description says what its keys are
    if not component.params:
        what = "parameters" if component.has_schema else "parameters (its kind declares none)"
        lines += [f"No {what}.", ""]
        return lines
    lines += [
        "| parameter | type | default | allowed | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in component.params:
        cells = (
            f"`{p.name}`",
            p.type_text(),
            f"`{p.default_text()}`"
            if p.required is False and p.default is not None
            else p.default_text(),
            _cell(p.allowed_text()),
            _cell(p.doc),
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _kind_title(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _one_paragraph(text: str) -> str:
    return " ".join(text.split())


def _plain(value: Any) -> Any:
    """A default or choice as JSON/TOML can hold it (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _toml(value: Any) -> str:
    """A value as a TOML study file writes it: `"adam"`, `true`, `0.001`, `[0]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# --- the built-in plugins alone (what docs/reference.md describes) -------------------------------


def builtin_registry() -> plugins.Registry:
    """A registry of the built-in plugins only (entry points in `xmodal_plugins`), whatever else
    is installed and whatever XMODAL_LOAD_PLUGINS says: docs/reference.md must not depend on
    the machine it is generated on."""
    manager = plugins.Manager()
    for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP):
        module = ep.value.split(":")[0]
        if module.split(".")[0] == BUILTIN_PACKAGE and not manager.has_plugin(ep.name):
            manager.register(ep.load(), name=ep.name)
    return plugins.build_registry(manager, strict=False)


def builtin_markdown() -> str:
    """The content docs/reference.md must have."""
    return markdown(builtin_registry(), study_sections())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m xmodal.reference [--missing-docs]`: the Markdown reference on standard output,
    or the parameters that have no `doc`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--missing-docs"]:
        found = [*study_sections(), *components(builtin_registry())]
        print("\n".join(missing_docs(found)))
        return 0
    if args:
        print(f"usage: {REGENERATE}  (or --missing-docs)", file=sys.stderr)
        return 2
    sys.stdout.write(builtin_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
