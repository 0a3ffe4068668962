"""The parameter reference: `xmodal plugins --params` (table and JSON) and docs/reference.md come
from one generator, xmodal.reference, reading every registry kind's schemas; docs/reference.md
is never stale."""

from __future__ import annotations

import difflib
import json
import types

import pytest

from tests.conftest import REPO
from xmodal import hookimpl, plugins, reference
from xmodal.components import MappingSpec
from xmodal.params import Param

DOC = REPO / "docs" / "reference.md"


def test_docs_reference_md_is_what_the_generator_writes():
    expected = reference.builtin_markdown()
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                "docs/reference.md",
                "generated",
                n=1,
            )
        )
        pytest.fail(
            "docs/reference.md is stale (a component or parameter changed); regenerate it:\n"
            f"    {reference.REGENERATE}\n\n{diff[:4000]}",
            pytrace=False,
        )


def test_every_registry_kind_has_a_section_even_with_no_component():
    text = reference.markdown(plugins.Registry())  # an empty registry: no component at all
    for kind in plugins.KINDS:
        title = kind.replace("_", " ").capitalize()
        assert f"## {title}\n" in text and f"`{plugins.KINDS[kind][0]}`" in text, kind


def test_every_builtin_component_and_parameter_is_in_the_reference():
    registry = reference.builtin_registry()
    text = reference.builtin_markdown()
    assert not registry.problems, registry.problems
    for kind in plugins.KINDS:
        for name, spec in registry.of(kind).items():
            assert f"### `{name}` (plugin `{registry.owners[(kind, name)]}`)" in text
            for key in getattr(spec, "params", {}):
                assert f"| `{key}` |" in text, (kind, name, key)


def test_the_study_files_own_sections_are_in_the_reference():
    text = reference.builtin_markdown()
    for section in ("study", "data", "train", "execution"):
        assert f"### `[{section}]`" in text
    assert "| `name` | string | required |" in text


def test_params_json_is_every_schema_field_of_every_component(cli):
    result = cli("plugins", "--params", "--json")
    listing = json.loads(result.out)
    registry = plugins.get_registry(strict=False)
    by_key = {(c["kind"], c["name"]): c for c in listing}
    assert set(by_key) == {(k, n) for k in plugins.KINDS for n in registry.of(k)}
    for (kind, name), component in by_key.items():
        schema = getattr(registry.of(kind)[name], "params", {})
        assert component["plugin"] == registry.owners[(kind, name)]
        assert [p["name"] for p in component["params"]] == list(schema)
        for p in component["params"]:
            param = schema[p["name"]]
            assert p["required"] == param.required and p["many"] == param.many
            assert (p["min"], p["max"], p["doc"]) == (param.min, param.max, param.doc)
            assert p["choices"] == (None if param.choices is None else list(param.choices))
            if not param.required:
                default = param.default
                assert p["default"] == (list(default) if isinstance(default, tuple) else default)


# A third-party mapping: its parameters appear exactly as it declares them.
TOY = MappingSpec(
    name="toy_map",
    build=lambda i, o, p: None,
    description="a mapping from a plugin",
    params={
        "gain": Param(float, default=0.5, min=0.0, max=1.0, doc="how much | to keep"),
        "mode": Param(str, default="fast", choices=("fast", "exact"), doc="speed or accuracy"),
        "widths": Param(int, default=[8, 16], many=True, min=1, doc="one per layer"),
        "seed": Param(int, doc="required seed"),
        "batch": Param(int, default="full", min=1, also=("full",)),
    },
)


@pytest.fixture
def toy_plugin() -> None:
    @hookimpl
    def register_mappings(register):
        register(TOY)

    plugins.reset(
        plugins.load_manager(
            extra=[("toy", types.SimpleNamespace(register_mappings=register_mappings))]
        )
    )


def test_a_third_party_components_parameters_are_listed(cli, toy_plugin):
    [toy] = json.loads(cli("plugins", "--params", "toy_map", "--json").out)
    assert toy["plugin"] == "toy" and toy["description"] == "a mapping from a plugin"
    gain, mode, widths, seed, batch = toy["params"]
    assert gain == {"name": "gain", "type": "number", "required": False, "default": 0.5,
                    "choices": None, "min": 0.0, "max": 1.0, "also": [], "many": False,
                    "doc": "how much | to keep"}  # fmt: skip
    assert mode["choices"] == ["fast", "exact"] and widths["many"] and widths["default"] == [8, 16]
    assert seed["required"] and seed["default"] is None and batch["also"] == ["full"]

    table = cli("plugins", "--params", "toy_map")
    assert table.code == 0, table.output
    for text in ("toy_map", "plugin toy", "gain", "0 to 1", '"fast", "exact"', "list of integers",
                 "required", '>= 1, or "full"', "speed or accuracy"):  # fmt: skip
        assert text in table.out, text
    markdown = reference.markdown(plugins.get_registry(strict=False))
    assert "| `gain` | number | `0.5` | 0 to 1 | how much \\| to keep |" in markdown
    assert "| `seed` | integer | required |  | required seed |" in markdown


def test_the_params_table_fits_80_columns(cli, monkeypatch, toy_plugin):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("plugins", "--params")
    assert result.code == 0, result.output
    assert all(len(line) <= 80 for line in result.out.splitlines())
    for kind in plugins.KINDS:
        if plugins.get_registry(strict=False).of(kind):
            assert kind.replace("_", " ") in result.out


def test_an_unknown_component_name_suggests_the_closest(cli):
    result = cli("plugins", "--params", "mpl")
    assert result.code == 1 and "Traceback" not in result.output
    assert "no component of that name; did you mean 'mlp'?" in result.err
    without = cli("plugins", "mlp")
    assert without.code == 1 and "xmodal plugins --params mlp" in without.err


def test_the_plugins_table_lists_every_kind_registered(cli):
    result = cli("plugins")
    registry = plugins.get_registry(strict=False)
    for kind in plugins.KINDS:
        for name in registry.of(kind):
            assert name in result.out, (kind, name)


def test_missing_docs_are_listed_by_the_generator():
    found = reference.components(plugins.get_registry(strict=False))
    missing = reference.missing_docs(found)
    assert all("/" in entry and "." in entry for entry in missing)
    undocumented = {f"{c.kind}/{c.name}.{p.name}" for c in found for p in c.params if not p.doc}
    assert set(missing) == undocumented


def test_every_builtin_parameter_has_a_doc():
    """Each parameter of a built-in component or study section says what it does, so the
    reference and `xmodal plugins --params` never show an empty description."""
    found = [*reference.study_sections(), *reference.components(reference.builtin_registry())]
    missing = reference.missing_docs(found)
    assert not missing, (
        "parameters without a doc= (add a one-line doc to each Param): " + ", ".join(missing)
    )


def test_the_runs_section_names_the_registered_run_kinds():
    registry = reference.builtin_registry()
    text = reference.markdown(registry, reference.study_sections())
    runs = text.split("### `[runs]`", 1)[1].split("\n### ", 1)[0]
    assert "Every key of `[runs]` names a run kind" in runs
    for kind, spec in registry.of("run_kinds").items():
        on = " (on by default)" if spec.default else ""
        assert f"`{kind}`{on}" in runs, kind
    empty = reference.markdown(plugins.Registry(), reference.study_sections())
    assert "No run kind is registered." in empty
