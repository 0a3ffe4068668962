"""Shared fixtures: run the CLI in-process, write study files, isolate plugin state."""

from __future__ import annotations

import copy
import textwrap
import tomllib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from xmodal import plugins
from xmodal.cli import main
from xmodal.testing import CliResult, to_toml

REPO = Path(__file__).resolve().parent.parent

# A complete, small study: seconds to run. Tests derive variants from it.
TINY_STUDY = """\
[study]
name = "tiny"
seeds = [0]

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = ["forward", "backward"]

[data.params]
n_items = 240
dim_text = 16
dim_image = 24

[[mapping]]
name = "linear"

[[mapping]]
name = "mlp"
depth = 2
hidden = 32

[[loss]]
name = "mse"

[train]
epochs = 3
batch_size = 32

[[metric]]
name = "mnno"
k = [1, 5, 10]
"""


def study_toml(base: str = TINY_STUDY, **tables: Any) -> str:
    """`base` (a study's TOML text) with some tables changed, as TOML text.

    A dict updates the table's keys (a key set to None is removed; `data={"params": {...}}`
    replaces `[data.params]` whole), a list of dicts replaces an array of tables
    (`mapping=[{"name": "ridge"}]`), None removes the table."""
    study = tomllib.loads(base)
    for name, change in tables.items():
        if change is None:
            study.pop(name, None)
        elif isinstance(change, dict):
            table = study.setdefault(name, {})
            for key, value in change.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = copy.deepcopy(value)
        else:
            study[name] = copy.deepcopy(change)
    return to_toml(study)


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run `xmodal ARGS...` in this process and return its exit code and output."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(tuple(map(str, args)), code, captured.out, captured.err)

    return run


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study file into the test's directory and return its path."""

    def write(text: str = TINY_STUDY, name: str = "study.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.duckdb"


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    """Each test starts and ends with the plugins the environment would load."""
    plugins.reset()
    yield
    plugins.reset()


def assert_same_lists(a: Any, b: Any) -> None:
    """Two `Neighbors` are the same lists bit for bit: indices, similarities and ties at k."""
    import numpy as np

    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.similarities, b.similarities)
    assert a.ties_at_k == b.ties_at_k


def rows(db_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def use(name: str, **hooks: object) -> None:
    """Register an in-process plugin `name` with these hook functions (beside the installed
    plugins) for the next commands; the `fresh_plugins` fixture forgets it after the test."""
    plugins.reset(plugins.load_manager(extra=[(name, types.SimpleNamespace(**hooks))]))


def install(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    dist: str,
    entry_points: dict[str, str],
    modules: dict[str, str] | None = None,
) -> None:
    """Install a package into `site` the way pip would: its modules (name -> source; a package
    may be copied into `site` beforehand) and a dist-info declaring its `xmodal` entry points
    (name -> module); `site` goes on sys.path for this test and the plugins are loaded again."""
    site.mkdir(exist_ok=True)
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[xmodal]\n{lines}")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
