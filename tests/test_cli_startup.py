"""The commands that train nothing start without torch and the other heavy libraries.

`xmodal --help`, `--version`, `query`, `status`, `plugins` and `validate` of a small study are
each run in a fresh interpreter, which then reports which of the watched modules it imported.
Torch alone takes seconds to import: one eager `import torch` in xmodal.cli, a core module or a
built-in plugin (at module level, instead of inside the function that trains) fails this test.
The commands that use no component (`--version`, `query`, `status`, `gc`) import no plugin module
either: each built-in plugin imports numpy and more when it registers.
No timing is asserted here; benchmarks/bench_cli.py measures the start-up times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import use
from xmodal import hookimpl
from xmodal.cli import needs_plugins
from xmodal.store import Store

REPO = Path(__file__).resolve().parent.parent

# Imported by no command listed here: the training stack, plotting, scientific extras.
HEAVY = ("torch", "torchvision", "scipy", "sklearn", "matplotlib", "PIL", "transformers")
# Modules whose import means the training or plotting code was loaded.
INTERNAL = ("xmodal.train", "xmodal.figures", "xmodal_plugins.support.paper_figures")

# Runs `main(argv)` as the console script would, then prints the watched modules it imported.
PROBE = """
import json, sys
argv, watched, preload = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
if preload:
    __import__(preload)
from xmodal.cli import main
try:
    main(argv)
    code = 0
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(m for m in sys.modules if m in watched or m.split(".")[0] in watched)
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


def probe(argv: list[str], cwd: Path, *, also: tuple[str, ...] = (), preload: str = "") -> dict:
    """Run `xmodal ARGV` in a fresh interpreter: its exit code and the watched modules it loaded."""
    watched = [*HEAVY, *INTERNAL, *also]
    env = {**os.environ, "XMODAL_DB": str(cwd / "default.duckdb"), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(watched), preload],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"the probe did not finish:\n{done.stdout}\n{done.stderr}"
    return {**json.loads(lines[-1][len("PROBE ") :]), "output": done.stdout + done.stderr}


@pytest.fixture
def results_db(tmp_path: Path) -> Path:
    db = tmp_path / "results.duckdb"
    with Store(db).writing():  # an empty, migrated results database
        pass
    return db


COMMANDS = {
    "--help": lambda db: ["--help"],
    "--version": lambda db: ["--version"],
    "query": lambda db: ["query", "SELECT 1 AS one", "--db", str(db)],
    "status": lambda db: ["status", "--db", str(db)],
    "plugins": lambda db: ["plugins"],
    "validate": lambda db: ["validate", str(REPO / "studies" / "quickstart.toml")],
    "gc": lambda db: ["gc", "--dry-run", "--db", str(db)],
}
# The commands that use no component: no plugin module may load for them.
PLUGIN_FREE = ("--version", "query", "status", "gc")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_that_trains_nothing_imports_no_heavy_module(command, results_db, tmp_path):
    # --help and --version do not even open a database: duckdb is not imported either (the
    # query command's help, which lists the schema, is made only when it is shown).
    also = ("duckdb",) if command in ("--help", "--version") else ()
    result = probe(COMMANDS[command](results_db), tmp_path, also=also)
    assert result["code"] == 0, result["output"]
    assert result["loaded"] == [], (
        f"`xmodal {command}` imported {result['loaded']}: import it inside the function that "
        "uses it (see the comment at the top of xmodal/cli.py)\n" + result["output"]
    )


@pytest.mark.parametrize("command", PLUGIN_FREE)
def test_a_command_that_uses_no_component_imports_no_plugin_module(command, results_db, tmp_path):
    result = probe(COMMANDS[command](results_db), tmp_path, also=("xmodal_plugins",))
    assert result["code"] == 0, result["output"]
    assert result["loaded"] == [], (
        f"`xmodal {command}` imported {result['loaded']}: it needs no component, so main() must "
        "not load the plugins for it (xmodal.cli.PLUGIN_FREE_COMMANDS)\n" + result["output"]
    )


@pytest.mark.parametrize("command", ["--help", "plugins"])
def test_commands_that_list_plugins_or_their_commands_load_them(command, results_db, tmp_path):
    # The control for the test above: the probe sees the plugin modules when they load.
    result = probe(COMMANDS[command](results_db), tmp_path, also=("xmodal_plugins",))
    assert result["code"] == 0, result["output"]
    assert "xmodal_plugins.metrics" in result["loaded"]


@pytest.mark.parametrize(
    ("argv", "loads"),
    [
        ([], True),  # the help, which lists the plugins' commands
        (["--help"], True),
        (["--version"], False),
        (["query", "SELECT 1"], False),
        (["query", "--help"], False),
        (["status", "--db", "x.duckdb"], False),
        (["gc", "--dry-run"], False),
        (["--version", "--help"], False),  # the first eager flag given is the one click runs
        (["--help", "--version"], True),
        (["validate", "status"], True),  # a study file named like a command is no command
        (["run", "study.toml"], True),
        (["plugins"], True),
        (["hello"], True),  # unknown to xmodal: perhaps a plugin's command
    ],
)
def test_which_command_lines_load_the_plugins(argv, loads):
    assert needs_plugins(argv) is loads


@pytest.fixture
def greeter(monkeypatch):
    """An in-process plugin that adds the command `hello`; the CLI registers commands again."""
    import xmodal.cli

    def register_commands(cli):
        @cli.command("hello")
        def hello() -> None:
            """Say hello (a plugin's command)."""
            print("hello from a plugin")

    use("greeter", register_commands=hookimpl(register_commands))
    monkeypatch.setattr(xmodal.cli, "_commands_registered", False)
    monkeypatch.setattr(
        xmodal.cli.app, "registered_commands", list(xmodal.cli.app.registered_commands)
    )


def test_a_plugins_command_still_runs_and_help_lists_it(cli, greeter, results_db):
    assert cli("status", "--db", results_db).code == 0  # registers no plugin command
    result = cli("hello")
    assert result.code == 0 and "hello from a plugin" in result.out, result.output
    assert "hello" in cli("--help").out


def test_the_probe_sees_a_module_imported_on_the_way(tmp_path):
    # The control: xmodal.train imports torch at module level, and the probe reports both.
    result = probe(["--version"], tmp_path, preload="xmodal.train")
    assert result["code"] == 0
    assert {"torch", "xmodal.train"} <= set(result["loaded"])


def test_ctrl_c_while_the_command_line_imports_is_one_line_not_a_traceback(tmp_path):
    # Simulates Ctrl-C arriving while `xmodal` starts (typer and rich import): the first import
    # of rich.console raises KeyboardInterrupt, as the signal would.
    code = """
import builtins
real = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "rich.console":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = interrupted
from xmodal.cli import main
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 130
    assert done.stderr.strip() == "interrupted"
    assert "Traceback" not in done.stderr
