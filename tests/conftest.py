"""Shared fixtures: run the CLI in-process, write study files, isolate plugin state."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import duckdb
import pytest

from xmodal import plugins
from xmodal.cli import main

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


@attrs.frozen
class CliResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


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
        return CliResult(code, captured.out, captured.err)

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


def rows(db_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()
