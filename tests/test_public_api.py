"""The public API: what plugins may import from xmodal, and that it is cheap to import.

Plugins — the built-in ones in plugins/ (package `xmodal_plugins`) included — import from xmodal
only the names in `xmodal.__all__` (`from xmodal import Name`), plus anything in `xmodal_plugins`.
Every other xmodal module is internal. The core, in turn, imports no plugin.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import xmodal

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
CORE = ROOT / "xmodal"


def reaches_inside(source: str, public: set[str]) -> Iterator[tuple[int, str]]:
    """(line, offending code) for every use of xmodal beyond its public names in `source`."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("xmodal."):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("xmodal."):
                names = ", ".join(a.name for a in node.names)
                yield node.lineno, f"from {node.module} import {names}"
            elif node.module == "xmodal":
                for alias in node.names:
                    if alias.name not in public:
                        yield node.lineno, f"from xmodal import {alias.name}"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "xmodal"
            and node.attr not in public
        ):
            yield node.lineno, f"xmodal.{node.attr}"


def test_built_in_plugins_import_only_the_public_api():
    public = set(xmodal.__all__)
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) > 10  # the walk found the plugins
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {code}"
        for path in files
        for line, code in reaches_inside(path.read_text(encoding="utf-8"), public)
    ]
    assert not offences, (
        "plugins may import from xmodal only the names in xmodal.__all__ (add a name to "
        "xmodal/__init__.py _EXPORTS, or move a plugin-only helper to plugins/support/):\n"
        + "\n".join(offences)
    )


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import xmodal.neighbors", "import xmodal.neighbors"),
        ("from xmodal.params import Param", "from xmodal.params import Param"),
        ("from xmodal import Param, plugins", "from xmodal import plugins"),
        ("import xmodal\nxmodal.store.connect()", "xmodal.store"),
    ],
)
def test_the_import_check_names_each_way_of_reaching_inside(source, found):
    assert [code for _, code in reaches_inside(source, {"Param", "hookimpl"})] == [found]


def test_the_import_check_allows_public_names_and_plugin_packages():
    source = (
        "import xmodal\n"
        "from xmodal import Param, hookimpl\n"
        "from xmodal_plugins.support import encoders\n"
        "from . import sibling\n"
        "xmodal.Param\n"
    )
    assert list(reaches_inside(source, {"Param", "hookimpl"})) == []


def test_the_core_imports_no_plugin():
    offences = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            offences += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {m}"
                for m in modules
                if m.split(".")[0] == "xmodal_plugins"
            ]
    assert not offences, "the core must not import built-in plugins:\n" + "\n".join(offences)


@pytest.mark.parametrize("name", xmodal.__all__)
def test_every_public_name_resolves_and_is_documented(name):
    value = getattr(xmodal, name)
    assert inspect.getdoc(value), f"xmodal.{name} has no docstring"


def test_all_is_the_sorted_export_table_and_dir_shows_it():
    assert xmodal.__all__ == sorted(xmodal._EXPORTS)
    assert set(xmodal.__all__) <= set(dir(xmodal))


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        _ = xmodal.Nonexistent
    with pytest.raises(ImportError):
        from xmodal import Nonexistent  # noqa: F401


def test_every_public_name_has_a_line_in_the_docs():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("\n## The public API\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)(?:\(.*?\))?`", section))
    missing = sorted(set(xmodal.__all__) - documented)
    assert not missing, (
        "add a line for each to the 'The public API' section of docs/plugins.md: "
        + ", ".join(missing)
    )


def test_importing_xmodal_and_its_errors_loads_neither_torch_nor_numpy():
    code = (
        "import sys, xmodal, xmodal.errors\n"
        "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'duckdb') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"
