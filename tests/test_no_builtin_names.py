"""The core names no built-in component (issue 12: "`grep` finds no built-in component name in
xmodal/ outside defaults declared by plugins").

Every string constant of every module in xmodal/ is compared with the names of every registered
component, of every registry kind. The default plugin modules (xmodal/default_*.py) are skipped:
they are plugins that live in the package, and declaring built-ins is their job. Anything else
must come from the registry (a spec's `default`, its declared fields), or be listed below with
the reason it is not a component name.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from xmodal import plugins

PACKAGE = Path(__file__).resolve().parent.parent / "xmodal"

# (module, constant) -> why that constant, in that module, is not a built-in component's name.
ALLOWED: dict[tuple[str, str], str] = {
    ("neighbors.py", "cosine"): "DEFAULT_SIMILARITY: the documented default of the public knn, "
    "mnno and Probe.neighbors (the similarity the built-in plugin registers)",
    ("neighbors.py", "mnno"): "the public function xmodal.mnno naming itself in its errors",
    ("neighbors.py", "knn"): "the public function xmodal.knn naming itself in its errors",
    ("__init__.py", "mnno"): "the public function xmodal.mnno, exported by name",
    ("__init__.py", "knn"): "the public function xmodal.knn, exported by name",
    ("executors.py", "local"): "Ray's own address word (ray.init(address='local'))",
    ("executors.py", "ray"): "the ray:// URL scheme of a Ray Client address",
    ("fingerprint.py", "files"): "the domain tag of a digest of files, hashed into data "
    "fingerprints: changing it would change the run id of every run on file data",
}


def builtin_names() -> dict[str, list[str]]:
    """Every registered component name -> the registry kinds that have it."""
    registry = plugins.get_registry()
    names: dict[str, list[str]] = {}
    for kind in plugins.KINDS:
        for name in registry.of(kind):
            names.setdefault(name, []).append(kind)
    return names


def kind_words() -> set[str]:
    """The words for the kinds themselves ("dataset", "datasets"), which name no component even
    when a component has the same name (the split strategy `dataset`)."""
    return {w for kind in plugins.KINDS for w in (kind, plugins.singular(kind))}


def _key_like(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the constant is used as a word, not as a value a default could be: a dict key, a
    subscript, an operand of a comparison, one of several strings in a tuple/list/set (column
    names), or the singular word of a kind in a table keyed by kinds."""
    parent = parents.get(node)
    if isinstance(parent, ast.Dict):
        if any(key is node for key in parent.keys):
            return True
        keys = {k.value for k in parent.keys if isinstance(k, ast.Constant)}
        return bool(keys) and keys <= set(plugins.KINDS)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.Compare):
        return True
    if isinstance(parent, (ast.Tuple, ast.List, ast.Set)):
        return sum(isinstance(e, ast.Constant) for e in parent.elts) > 1
    return False


def offences() -> Iterator[str]:
    names = builtin_names()
    words = kind_words()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("default_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            name = node.value
            if name not in names or (module, name) in ALLOWED:
                continue
            if name in words and _key_like(node, parents):
                continue
            kinds = ", ".join(plugins.singular(k) for k in names[name])
            yield f"xmodal/{module}:{node.lineno}: {name!r} ({kinds})"


def test_the_core_names_no_builtin_component():
    found = list(offences())
    assert not found, (
        "built-in component names in core code (take them from the registry, or move them to "
        "the plugin that declares them):\n" + "\n".join(found)
    )


def test_the_scan_finds_a_builtin_name_used_as_a_default(tmp_path, monkeypatch):
    """The scan is not vacuous: a split strategy's name as a default is caught even though the
    same word names the dataset kind; as a dict key it is a word and passes."""
    package = tmp_path / "xmodal"
    package.mkdir()
    (package / "core.py").write_text(
        'def split_of(data):\n    return data.get("split", "dataset")\n'
        'COLUMNS = {"dataset": 1}\nDEFAULT = "trained"\n'
    )
    (package / "default_things.py").write_text('NAME = "trained"\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    found = sorted(offences())
    assert found == [
        "xmodal/core.py:2: 'dataset' (split strategy)",
        "xmodal/core.py:4: 'trained' (run kind)",
    ]


def test_every_allowed_constant_is_still_there():
    """An allowance whose constant is gone is removed from the list (it would hide a new use)."""
    present = set()
    for module, name in ALLOWED:
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Constant) and n.value == name for n in ast.walk(tree)):
            present.add((module, name))
    assert present == set(ALLOWED), sorted(set(ALLOWED) - present)
