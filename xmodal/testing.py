"""Test xmodal plugins in-process, without `pip install`: pytest's `pytester`, for xmodal.

An `XmodalTester` registers plugins (modules, objects, files, or a dict of hook functions) next to
the installed ones, writes studies (TOML text or a dict) into its own directory, runs them with the
real command line in this process (`xmodal run`: validate, plan, run, store, exactly as a user
would) into its own results database, and reads the results back as dicts or with SQL::

    def test_my_metric(xmodal_tester):
        xmodal_tester.register(my_plugin)
        result = xmodal_tester.run(STUDY)
        result.assert_ok()
        assert {r["metric"] for r in result.results()} >= {"my_metric"}

The `xmodal_tester` fixture is a pytest plugin that installing xmodal makes available (entry point
`xmodal.testing` in the `pytest11` group); disable it with `-p no:xmodal.testing`. Outside pytest,
use `XmodalTester(directory)` as a context manager. Closing a tester forgets its plugins, so no
registration leaks into the next test. docs/plugins.md, "Testing a plugin", is the guide.

In-process plugins exist only in this process: run their studies with the `local` executor (the
default); `process` and `ray` workers load the installed plugins only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
import sys
import textwrap
import tomllib
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from xmodal import hookspecs

__all__ = ["CliResult", "PluginRegistrationError", "RunResult", "XmodalTester", "to_toml"]

_HOOKS = frozenset(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{hookspecs.hookspec.project_name}_spec")
)
_IMPL_MARK = f"{hookspecs.hookimpl.project_name}_impl"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PluginRegistrationError(TypeError):
    """`XmodalTester.register` was given something that is not a usable plugin."""


@attrs.frozen
class CliResult:
    """What one in-process `xmodal ...` command did: its exit status and its output."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        """stdout followed by stderr."""
        return self.out + self.err

    def assert_ok(self) -> CliResult:
        """Fail (AssertionError showing the command and its output) unless the exit status is 0."""
        if self.code != 0:
            raise AssertionError(
                f"`xmodal {' '.join(self.args)}` exited with status {self.code}:\n{self.output}"
            )
        return self


@attrs.frozen
class RunResult(CliResult):
    """`xmodal run` of one study: the command's result plus what it stored."""

    db: Path
    study: str
    _tester: XmodalTester = attrs.field(repr=False)

    def results(self, **where: Any) -> list[dict[str, Any]]:
        """The study's result rows (the `study_results` view: run columns, then `split`,
        `metric`, `comparison`, `k`, `similarity`, `epoch`, `value`, ...), as dicts; keyword arguments
        keep the rows whose column equals the value (`metric="my_metric", k=10`; None matches NULL)."""
        return self._tester.select("study_results", study=self.study, **where)

    def runs(self, **where: Any) -> list[dict[str, Any]]:
        """The runs the study planned (the `runs` table: one row per run, with `status` and
        `error`), as dicts, filtered like `results`."""
        return self._tester.select("runs", _study=self.study, **where)

    def measurements(self, **where: Any) -> list[dict[str, Any]]:
        """The study's measurements (one metric configuration on one run: `status`, `error`),
        as dicts, filtered like `results`."""
        return self._tester.select("measurements", _study=self.study, **where)


class XmodalTester:
    """Plugins registered in-process, studies written and run in a private directory.

    `path` is the directory the tester writes into (created); `db` is its results database.
    `entry_points` says which installed plugins load next to the registered ones: True (default)
    all of them (as `XMODAL_LOAD_PLUGINS` allows), False none, or an iterable of their names
    (e.g. `["mappings", "losses", "metrics"]`).
    """

    def __init__(self, path: str | Path, *, entry_points: bool | Iterable[str] = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = self.path / "results.duckdb"
        self.entry_points: bool | tuple[str, ...] = (
            entry_points if isinstance(entry_points, bool) else tuple(entry_points)
        )
        self.plugins: list[tuple[str, object]] = []
        self._sys_path: list[str] = []
        self._modules: list[str] = []
        self._cli_state: tuple[list[Any], dict[str, str], bool] | None = None
        self._closed = False
        self._install()

    # --- plugins -----------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin in this process; return the name it is registered under.

        `plugin` is a module, an importable module name (`"xmodal_toy"`), the path of a `.py`
        file or of a package directory (imported with its parent directory on `sys.path`), a
        dict `{"register_metrics": function, ...}` (the functions need no `@hookimpl`), or any
        object with `@hookimpl` functions as attributes. `name` defaults to the module's name.
        A function named like a hook but not decorated with `@hookimpl`, or decorated but named
        like no hook (`register_metric`), is an error here, not a plugin that silently does
        nothing.
        """
        if self._closed:
            raise RuntimeError("this XmodalTester is closed")
        if isinstance(plugin, Path) or (isinstance(plugin, str) and plugin.endswith(".py")):
            plugin = self._import_path(Path(plugin))
        elif isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if isinstance(plugin, Mapping):
            plugin = self._from_hooks(plugin, name)
        if name is None:
            name = getattr(plugin, "__name__", None) or self._fresh_name()
        if any(name == taken for taken, _ in self.plugins):
            raise PluginRegistrationError(
                f"a plugin named {name!r} is already registered with this tester; pass name=..."
            )
        _check_hooks(plugin, name)
        self.plugins.append((name, plugin))
        self._install()
        return name

    @property
    def registry(self) -> Any:
        """The registry of every loaded plugin (`xmodal.plugins.Registry`); raises `PluginError`
        when a plugin has a problem (a clash, an exception while registering...)."""
        from xmodal import plugins

        return plugins.get_registry()

    def _fresh_name(self) -> str:
        taken = {n for n, _ in self.plugins}
        return next(
            f"test_plugin_{i}" for i in range(1, len(taken) + 2) if f"test_plugin_{i}" not in taken
        )

    def _from_hooks(self, hooks: Mapping[str, Any], name: str | None) -> object:
        namespace = types.SimpleNamespace(__name__=name or self._fresh_name())
        for hook, function in hooks.items():
            if not callable(function):
                raise PluginRegistrationError(
                    f"the hook {hook!r} is given {function!r}, not a function"
                )
            if not hasattr(function, _IMPL_MARK):
                function = hookspecs.hookimpl(_copy_function(function))
            setattr(namespace, hook, function)
        return namespace

    def _import_path(self, path: Path) -> types.ModuleType:
        path = path.resolve()
        if not path.exists():
            raise PluginRegistrationError(f"no plugin file or package at {path}")
        module_name = path.stem if path.suffix == ".py" else path.name
        if not _IDENTIFIER.match(module_name):
            raise PluginRegistrationError(f"{path}: {module_name!r} cannot be a module name")
        if module_name in sys.modules:
            raise PluginRegistrationError(
                f"{path}: a module named {module_name!r} is already imported; rename the file"
            )
        parent = str(path.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
            self._sys_path.append(parent)
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
        self._modules.append(module_name)
        return module

    def _install(self) -> None:
        """Make the process-wide plugin manager the installed plugins plus ours."""
        from xmodal import plugins

        if self.entry_points is False:
            manager = plugins.Manager()
            for name, plugin in self.plugins:
                manager.register(plugin, name=name)
        elif self.entry_points is True:
            manager = plugins.load_manager(extra=self.plugins)
        else:
            with _env(plugins.FILTER_ENV, ",".join(self.entry_points)):
                manager = plugins.load_manager(extra=self.plugins)
        plugins.reset(manager)

    # --- studies -----------------------------------------------------------------------------

    def write_study(self, study: str | Mapping[str, Any], name: str = "study.toml") -> Path:
        """Write a study (TOML text, dedented; or a dict of its tables) into the tester's
        directory and return its path."""
        text = textwrap.dedent(study) if isinstance(study, str) else to_toml(study)
        path = self.path / name
        path.write_text(text)
        return path

    def _study_path(self, study: str | Path | Mapping[str, Any]) -> Path:
        if isinstance(study, Path):
            return study
        if isinstance(study, str) and "\n" not in study and study.endswith(".toml"):
            return Path(study)
        return self.write_study(study)

    def validate(self, study: str | Path | Mapping[str, Any], *args: str) -> CliResult:
        """`xmodal validate STUDY ARGS...` (the study as a path, TOML text or a dict)."""
        return self.cli("validate", self._study_path(study), *args)

    def plan(self, study: str | Path | Mapping[str, Any], *args: str) -> CliResult:
        """`xmodal plan STUDY --db DB ARGS...`."""
        return self.cli("plan", self._study_path(study), "--db", self.db, *args)

    def run(self, study: str | Path | Mapping[str, Any], *args: str) -> RunResult:
        """`xmodal run STUDY --db DB ARGS...`: validate, plan, run and store, as the command line
        does. The result holds the exit status, the output and accessors for what was stored."""
        path = self._study_path(study)
        result = self.cli("run", path, "--db", self.db, *args)
        return RunResult(result.args, result.code, result.out, result.err, self.db,
                         _study_name(path), self)  # fmt: skip

    # --- command line ------------------------------------------------------------------------

    def cli(self, *args: object) -> CliResult:
        """Run `xmodal ARGS...` in this process, with the tester's plugins (their commands
        included), and return its exit status and output. An exception that is not a user
        error (a bug) propagates, with its traceback."""
        import xmodal.cli as cli_module

        app = cli_module.app
        if self._cli_state is None:
            owners = dict(getattr(app, "_xmodal_command_owners", {}))
            self._cli_state = (
                list(app.registered_commands),
                owners,
                cli_module._commands_registered,
            )
        commands, owners, _ = self._cli_state
        from xmodal.plugins import _command_name

        # Only xmodal's own commands; main() adds the loaded plugins' commands again.
        app.registered_commands[:] = [c for c in commands if _command_name(c) not in owners]
        app._xmodal_command_owners = {}
        cli_module._commands_registered = False
        argv = [str(a) for a in args]
        out, err = io.StringIO(), io.StringIO()
        code = 0
        width = os.environ.get("COLUMNS", "200")  # rich tables are not cut at 80 columns
        with (
            _env("COLUMNS", width),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                cli_module.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return CliResult(tuple(argv), code, out.getvalue(), err.getvalue())

    # --- results -----------------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of one SQL statement on the tester's database, as dicts (`?` placeholders take
        `params`). Tables and views: docs/queries.md."""
        import duckdb

        if not self.db.exists():
            raise AssertionError(f"{self.db} does not exist yet: run a study first")
        with duckdb.connect(str(self.db), read_only=True) as con:
            cursor = con.execute(sql, list(params))
            columns = [d[0] for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def select(self, table: str, **where: Any) -> list[dict[str, Any]]:
        """Rows of a table or view whose columns equal the keyword values (None matches NULL).
        `_study=NAME` keeps rows of runs that study planned."""
        if not _IDENTIFIER.match(table):
            raise ValueError(f"{table!r} is not a table name")
        clauses, params = [], []
        study = where.pop("_study", None)
        if study is not None:
            clauses.append("run_id IN (SELECT run_id FROM study_runs WHERE study = ?)")
            params.append(study)
        for column, value in where.items():
            if not _IDENTIFIER.match(column):
                raise ValueError(f"{column!r} is not a column name")
            clauses.append(f'"{column}" IS NOT DISTINCT FROM ?')
            params.append(value)
        sql = f"SELECT * FROM {table}" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        return self.query(sql, *params)

    # --- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Forget the registered plugins and restore the command line: nothing leaks into what
        runs next (the next test)."""
        if self._closed:
            return
        self._closed = True
        from xmodal import plugins

        plugins.reset()
        if self._cli_state is not None:
            import xmodal.cli as cli_module

            commands, owners, registered = self._cli_state
            cli_module.app.registered_commands[:] = commands
            cli_module.app._xmodal_command_owners = owners
            cli_module._commands_registered = registered
        for name in self._modules:
            sys.modules.pop(name, None)
            prefix = f"{name}."
            for sub in [m for m in sys.modules if m.startswith(prefix)]:
                sys.modules.pop(sub, None)
        for entry in self._sys_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
        importlib.invalidate_caches()

    def __enter__(self) -> XmodalTester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_function(function: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapper, so marking it with `@hookimpl` leaves the caller's function untouched."""

    def hook(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    import inspect

    hook.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    hook.__name__ = getattr(function, "__name__", "hook")
    return hook


def _check_hooks(plugin: object, name: str) -> None:
    """Hook-like functions that pluggy would silently ignore (undecorated or misnamed), and a
    plugin with no hook at all, are errors."""
    from xmodal.plugins import ignored_hooks

    problems = ignored_hooks(plugin)
    implemented = [a for a in _HOOKS if hasattr(getattr(plugin, a, None), _IMPL_MARK)]
    if not problems and not implemented:
        problems.append(f"it implements no hook (hooks: {', '.join(sorted(_HOOKS))})")
    if problems:
        raise PluginRegistrationError(f"plugin {name!r}: " + "; ".join(problems))


def _study_name(path: Path) -> str:
    try:
        return str(tomllib.loads(path.read_text())["study"]["name"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return ""


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# --- a dict as a study file ---------------------------------------------------------------------


def to_toml(study: Mapping[str, Any]) -> str:
    """A study given as a dict of its tables, as TOML text. A list of dicts is an array of tables
    (`"mapping": [{"name": "my_mapping"}]` is `[[mapping]]`); nested dicts are sub-tables
    (`"data": {"params": {...}}` is `[data.params]`)."""
    lines: list[str] = []
    for key, value in study.items():
        _table(lines, [key], value)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], path: list[str], value: Any) -> None:
    header = ".".join(_key(p) for p in path)
    if isinstance(value, Mapping):
        lines.extend(["", f"[{header}]"])
        _body(lines, path, value)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for item in value:
            lines.extend(["", f"[[{header}]]"])
            _body(lines, path, item)
    else:
        raise TypeError(f"{header}: a study's top level holds tables, not {value!r}")


def _body(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    nested = []
    for key, value in table.items():
        if isinstance(value, Mapping) or (
            isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
        ):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        _table(lines, [*path, key], value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{value!r} cannot be written in a study file")


# --- the pytest plugin --------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # xmodal.testing used outside pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def xmodal_tester(tmp_path: Path) -> Iterator[XmodalTester]:
        """An `XmodalTester` in the test's temporary directory, closed after the test."""
        with XmodalTester(tmp_path / "xmodal") as tester:
            yield tester
