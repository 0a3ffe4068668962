"""xmodal from Python: load, plan and run a study, and read its results as data frames.

    >>> import xmodal
    >>> study = xmodal.load_study("studies/quickstart.toml")    # parsed and checked
    >>> xmodal.plan(study, db="x.duckdb").counts()              # what running it would do
    {'train': 24}
    >>> summary = xmodal.run(study, db="x.duckdb", workers=2)   # the runner `xmodal run` uses
    >>> db = xmodal.connect("x.duckdb")                         # read-only
    >>> db.results(study="quickstart", metric="mnno", k=10).df()

`run` is the runner of `xmodal run`: the same checks before anything is written, the same lock
(one runner per database), the same resume (finished runs are skipped, a new metric only
measures stored predictions). `connect` reads through the sandboxed connection of `xmodal query`:
nothing can be written and no other file read. docs/python.md describes every function.

Only `connect` and what it returns are cheap: they import neither torch nor the plugins. Loading
a study loads the plugins; training or neighbour search imports torch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from xmodal.errors import XmodalError, did_you_mean

if TYPE_CHECKING:
    import duckdb

    from xmodal.planning import Run
    from xmodal.runner import RunEvent
    from xmodal.study import Study as StudyDeclaration
    from xmodal.studydata import StudyData

PathLike = str | Path


class FilterError(XmodalError):
    """A filter names a column the table does not have, a study the database does not hold, or
    gives a value that cannot be compared."""


# -- studies --------------------------------------------------------------------------------------


class Study:
    """A study file, parsed and validated, with the runs it declares (`xmodal.load_study`).

    Attributes: `name`, `path`, `description`, `runs` (one `Run` per run, in plan order) and
    `declaration` (the parsed file). Pass it to `xmodal.plan` and `xmodal.run`; the file is read
    once, so edits made after loading are not seen (load it again).
    """

    def __init__(
        self, declaration: StudyDeclaration, runs: Sequence[Run], data: StudyData, checked: bool
    ) -> None:
        self.declaration = declaration
        self.runs: tuple[Run, ...] = tuple(runs)
        self.data = data  # loaded datasets and neighbour lists, kept for plan and run
        self.checked = checked  # the data-dependent checks of `xmodal validate` were made

    @property
    def name(self) -> str:
        """The study's `[study] name`: what `connect(...).results(study=...)` filters on."""
        return self.declaration.name

    @property
    def path(self) -> Path:
        """The study file."""
        return Path(self.declaration.path)

    @property
    def description(self) -> str:
        return self.declaration.description

    @property
    def notes(self) -> tuple[str, ...]:
        """One line per old spelling the file uses (e.g. `[probes]`), read the same as the new
        one; `xmodal validate` and `xmodal run` print them, and so does `xmodal.run`."""
        return tuple(self.declaration.notes)

    def __len__(self) -> int:
        return len(self.runs)

    def __repr__(self) -> str:
        return f"<xmodal study {self.name!r} from {self.path}: {len(self.runs)} run(s)>"


def load_study(path: PathLike, *, check: bool = True, max_runs: int | None = None) -> Study:
    """Read a study file and expand it into its runs, as `xmodal validate` does.

    `check=True` also makes the checks that need the data (feature sets exist, splits are
    non-empty, every metric's k fits); `check=False` stops after the file itself (what
    `xmodal plan` does); `xmodal.run` makes the remaining checks before it writes anything.
    `max_runs` refuses a study declaring more runs (default: $XMODAL_MAX_RUNS or 10000).

    Every problem in the file is raised together as one `StudyError` (an `XmodalError`): file,
    line, key path, what is allowed. Loads the plugins, not torch.

        >>> study = xmodal.load_study("studies/quickstart.toml")
        >>> study.name, len(study.runs)
        ('quickstart', 24)
    """
    from xmodal import plugins
    from xmodal.planning import make_plan
    from xmodal.prechecks import check_runs, max_k
    from xmodal.study import load_study as parse_file
    from xmodal.studydata import StudyData

    registry = plugins.get_registry()
    declaration = parse_file(path, registry, max_runs=max_runs)
    data = StudyData(registry)
    runs = make_plan(declaration, registry, data.fingerprint)
    data.neighbors.k_hint = max_k(runs, registry)
    if check:
        check_runs(declaration, runs, data)
    return Study(declaration, runs, data, checked=check)


def _study(study: Study | PathLike, *, check: bool, max_runs: int | None = None) -> Study:
    if isinstance(study, Study):
        if check and not study.checked:
            from xmodal.prechecks import check_runs

            check_runs(study.declaration, list(study.runs), study.data)
            study.checked = True
        return study
    if isinstance(study, str | Path):
        return load_study(study, check=check, max_runs=max_runs)
    raise XmodalError(
        f"expected a study (xmodal.load_study(...)) or the path of a study file, got "
        f"{type(study).__name__}"
    )


def _db(db: PathLike | None) -> Path:
    from xmodal.store import default_db_path

    return Path(db) if db is not None else default_db_path()


# -- plan -----------------------------------------------------------------------------------------


@attrs.frozen
class PlannedRun:
    """One row of a plan: a run, what running the study would do with it, and its status.

    `action`: "train" (train or initialise it, then measure), "measure" (only the measurements it
    lacks, from its stored predictions) or "cached" (nothing to do). `status`: "new", "pending"
    (planned by an earlier version of the study, never run), "failed", "running" or "finished".
    `measurements`: how many measurements running it would make.
    """

    run: Run
    action: str
    status: str
    measurements: int

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def record(self) -> dict[str, Any]:
        """The row as `xmodal plan --json` prints it: ids, action, status and the full config."""
        return {
            "run_id": self.run.run_id,
            "action": self.action,
            "status": self.status,
            "measurements": self.measurements,
            **self.run.config(),
        }

    def row(self) -> dict[str, Any]:
        """The columns `xmodal plan` shows, flat (one data frame row): `PLAN_COLUMNS`."""
        run = self.run
        return {
            "run_id": run.run_id,
            "dataset": run.dataset,
            "input_features": run.input_features,
            "target_features": run.target_features,
            "direction": run.direction,
            "fold": run.fold,
            "mapping": run.mapping,
            "depth": run.depth,
            "loss": run.loss,
            "kind": run.kind,
            "seed": run.seed,
            "action": self.action,
            "status": self.status,
            "measurements": self.measurements,
        }


# The columns of `Plan.df()`, as `xmodal plan` shows them (`kind`: the run kind, as in `runs`).
PLAN_COLUMNS = (
    "run_id", "dataset", "input_features", "target_features", "direction", "fold", "mapping",
    "depth", "loss", "kind", "seed", "action", "status", "measurements",
)  # fmt: skip


class Plan(Sequence[PlannedRun]):
    """What `xmodal plan` shows: one `PlannedRun` per run of the study, in plan order.

    A sequence (`len`, iteration, indexing); `counts()` tallies the actions, `records()` gives
    the rows of `xmodal plan --json`, `df()` a pandas data frame of the table's columns.
    """

    def __init__(self, study: str, runs: Sequence[PlannedRun]) -> None:
        self.study = study
        self._runs = tuple(runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __getitem__(self, index: Any) -> Any:
        return self._runs[index]

    def __iter__(self) -> Iterator[PlannedRun]:
        return iter(self._runs)

    def counts(self) -> dict[str, int]:
        """How many runs would train, only be measured, or are cached (actions that occur)."""
        actions = [p.action for p in self._runs]
        return {a: actions.count(a) for a in ("train", "measure", "cached") if a in actions}

    def records(self) -> list[dict[str, Any]]:
        """Each run as `xmodal plan --json` prints it."""
        return [p.record() for p in self._runs]

    def df(self) -> Any:
        """The plan as a pandas DataFrame: one row per run, the columns of `xmodal plan`."""
        pandas = _require("pandas", "pandas", "Plan.df()")
        return pandas.DataFrame([p.row() for p in self._runs], columns=list(PLAN_COLUMNS))

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {a}" for a, n in self.counts().items()) or "nothing"
        return f"<xmodal plan of {self.study!r}: {len(self)} run(s) ({counts})>"


def plan(
    study: Study | PathLike, db: PathLike | None = None, *, max_runs: int | None = None
) -> Plan:
    """What running `study` against the results database `db` would do, run by run — the table
    of `xmodal plan`. Nothing is written.

    `study` is a `Study` (`xmodal.load_study`) or the path of a study file. `db` defaults to
    $XMODAL_DB, else xmodal.duckdb in the current directory; a missing file plans every run as new.

        >>> p = xmodal.plan("studies/quickstart.toml", db="x.duckdb")
        >>> p.counts()
        {'train': 24}
        >>> p.df()[["run_id", "mapping", "depth", "action", "status"]]
    """
    from xmodal.artifacts import ArtifactStore
    from xmodal.runner import stages

    loaded = _study(study, check=False, max_runs=max_runs)
    from xmodal.store import Store

    store = Store(_db(db))
    runs = list(loaded.runs)
    by_run = {s.run.run_id: s for s in stages(runs, store, ArtifactStore(store.path))}
    earlier = store.earlier_runs(loaded.name, loaded.declaration.source_hash)

    def status(run: Run) -> str:
        previous = by_run[run.run_id].previous
        if previous is not None:
            return previous
        return "pending" if run.run_id in earlier else "new"

    return Plan(
        loaded.name,
        [
            PlannedRun(r, by_run[r.run_id].action, status(r), len(by_run[r.run_id].missing))
            for r in runs
        ],
    )


# -- run ------------------------------------------------------------------------------------------


@attrs.frozen
class RunFailure:
    """A run that failed in `xmodal.run`: its id, a short description and the error."""

    run_id: str
    description: str
    error: str


@attrs.frozen(repr=False)
class StudySummary:
    """What `xmodal.run` did: counts of runs, the failures, and where the results are.

    `trained`: runs trained (or initialised) and measured; `measured`: runs only measured from
    their stored predictions; `cached`: runs with nothing to do; `failed`: runs that failed
    (`failures` says why; their earlier results, if any, are kept); `spooled`: finished runs
    waiting in the spool because a reader held the database (the next run records them).
    """

    study: str
    db: Path
    planned: int
    trained: int
    measured: int
    cached: int
    failed: int
    spooled: int = 0
    seconds: float = 0.0
    failures: tuple[RunFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """No run failed."""
        return self.failed == 0

    def results(self, **filters: Any) -> Relation:
        """The study's results: `xmodal.connect(db).results(study=..., **filters)`."""
        return connect(self.db).results(study=self.study, **filters)

    def __str__(self) -> str:
        """The line `xmodal run` ends with: `tiny: 6 ran, 2 cached, 0 failed in 4.2 s → db`
        (counts that are zero left out, except failed; "ran" counts runs of every kind executed
        now, trained or not)."""
        counts = [
            f"{n} {label}"
            for n, label in ((self.trained, "ran"), (self.measured, "measured"),
                             (self.cached, "cached"))
            if n
        ]  # fmt: skip
        said = ", ".join([*counts, f"{self.failed} failed"]) if self.planned else "no runs"
        from xmodal.progress import duration  # rich, only when the line is printed

        return f"{self.study}: {said} in {duration(self.seconds)} → {self.db}"

    def __repr__(self) -> str:
        lines = [f"<xmodal.run: {self}>"]
        lines += [f"  failed {f.run_id} {f.description}: {f.error}" for f in self.failures]
        return "\n".join(lines)


@attrs.frozen
class Execution:
    """How a study's runs execute: the call's (or command line's) choices over the study's
    `[execution]` table (`execution_settings`)."""

    executor: str | None  # None: the registry's default executor
    workers: int
    threads: int  # torch threads per run; 0: cores / workers


def execution_settings(
    declared: Mapping[str, Any],
    *,
    workers: int | None = None,
    executor: str | None = None,
    threads: int | None = None,
) -> Execution:
    """`workers`, `executor` and `threads` as given (`xmodal run --workers/--executor/--threads`,
    or `xmodal.run(...)`), each falling back to the study's `[execution]` table (`declared`,
    `Study.execution`), then to one worker, the default executor and one thread. The one merge
    of the two for the command line and the Python API."""
    return Execution(
        executor=executor if executor is not None else declared.get("executor"),
        workers=workers if workers is not None else declared.get("workers") or 1,
        threads=threads if threads is not None else declared.get("threads", 1),
    )


def run(
    study: Study | PathLike,
    db: PathLike | None = None,
    *,
    workers: int | None = None,
    executor: str | None = None,
    address: str | None = None,
    threads: int | None = None,
    force: bool = False,
    fail_fast: bool = False,
    wait: bool = False,
    progress: bool | Callable[[RunEvent], None] = True,
    max_runs: int | None = None,
) -> StudySummary:
    """Execute a study as `xmodal run` does, and return a `StudySummary`.

    The same runner: everything that can be known before the first run (the study and its data,
    the executor, a writable database, free disk space) is checked before the database is
    touched; one runner at a time holds the database (`wait=True` waits for another, else an
    `XmodalError` names it); finished runs are skipped (`force=True` redoes them), a new metric
    only measures stored predictions, and an interrupted call (Ctrl-C) keeps every finished run,
    so calling it again resumes.

    `study`: a `Study` or a study file's path. `db`: the results database ($XMODAL_DB, else
    xmodal.duckdb). `workers`, `executor` ("process", "ray" or another registered executor),
    `address` (a Ray cluster) and `threads` (torch threads per run; 0: cores / workers) default to
    the study's `[execution]` table, as on the command line. `fail_fast=True` stops at the first
    failed run (an `XmodalError`); otherwise failures are reported and listed in the summary.
    `progress`: True shows a progress bar (a terminal) or a progress line (a notebook) and a line
    per failed run on stderr; False is silent; a callable receives each `RunEvent` instead.

        >>> summary = xmodal.run("studies/quickstart.toml", db="x.duckdb", workers=2)
        >>> print(summary)
        quickstart: 24 ran, 0 failed in 41.3 s → x.duckdb
    """
    from xmodal.executors import require_executor
    from xmodal.progress import describe_run
    from xmodal.runner import run_study
    from xmodal.signals import sigterm_as_interrupt

    if executor is not None:  # an unknown name or a missing Ray stops here, before any loading
        require_executor(executor, address, workers=workers or 1)
    if address:  # as `xmodal run --address`: the `ray` neighbour backend uses the same cluster
        os.environ["XMODAL_RAY_ADDRESS"] = address
    loaded = _study(study, check=True, max_runs=max_runs)
    from xmodal.store import Store

    store = Store(_db(db))
    chosen = execution_settings(
        loaded.declaration.execution, workers=workers, executor=executor, threads=threads
    )
    workers, executor, threads = chosen.workers, chosen.executor, chosen.threads
    pool = _pool_problem(loaded.data.registry, workers, executor, threads, address)
    failures: list[RunFailure] = []
    if progress is True:
        for note in loaded.notes:
            print(note, file=sys.stderr)
    display = _Display(loaded.name, len(loaded.runs)) if progress is True else None
    callback = progress if callable(progress) else None

    def on_event(event: RunEvent) -> None:
        if event.kind == "fail":
            failure = RunFailure(event.run.run_id, describe_run(event.run), event.error or "")
            failures.append(failure)
            if display is not None:
                display.failed(failure)
        if display is not None:
            display.update(event)
        if callback is not None:
            callback(event)

    started = time.perf_counter()
    try:
        with sigterm_as_interrupt():
            summary = run_study(
                loaded.declaration, list(loaded.runs), store, loaded.data, force=force,
                fail_fast=fail_fast, executor=executor, workers=workers, address=address,
                wait=wait, threads=threads, on_event=on_event,
            )  # fmt: skip
    except XmodalError as exc:
        if pool is not None and "died" in str(exc):  # most likely the script's unguarded call
            raise XmodalError(f"{exc}\n  {pool}") from None
        raise
    finally:
        if display is not None:
            display.close()
    return StudySummary(
        study=loaded.name,
        db=store.path,
        planned=summary.planned,
        trained=summary.finished,
        measured=summary.measured,
        cached=summary.skipped,
        failed=summary.failed,
        spooled=summary.spooled,
        seconds=time.perf_counter() - started,
        failures=tuple(failures),
    )


def _pool_problem(
    registry: Any, workers: int, executor: str | None, threads: int, address: str | None
) -> str | None:
    """With a pool of processes on this machine (spawned: fresh interpreters that import the
    caller's main script; `ExecutorSpec.spawns`), the advice for a script; None when there is no
    such pool, or the caller is interactive (a notebook, `python -c`). A script read from
    standard input cannot be imported at all: refused before anything is written."""
    from xmodal.components import ExecutorOptions

    specs = registry.executors
    name = executor or next((n for n, s in specs.items() if s.default), None)
    spec = specs.get(name) if name is not None else None
    options = ExecutorOptions(workers=workers, threads=threads, address=address)
    if spec is None or spec.spawns is None or not spec.spawns(options):
        return None
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is None:
        return None
    advice = (
        "xmodal.run with workers > 1 starts fresh Python processes that import your main "
        'script: put the call under `if __name__ == "__main__":`, or use workers=1'
    )
    if not Path(main).is_file():
        raise XmodalError(
            f"{advice}; the script {main} is not a file they can import (read from standard "
            "input?): save it to a file first"
        )
    return advice


class _Display:
    """Progress on stderr: a rich bar in a terminal, one rewritten line in a notebook, nothing
    (but failures) elsewhere."""

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = total
        self.started = time.perf_counter()
        self.stream = sys.stderr
        self.bar: Any = None
        self.line = "ipykernel" in sys.modules and not _isatty(self.stream)
        if _isatty(self.stream):
            from rich.console import Console

            from xmodal.progress import make_progress

            self.bar = make_progress(Console(stderr=True))  # the CLI's line: fits 80 columns
            self.bar.start()
            self.task = self.bar.add_task(name, total=total)

    def update(self, event: RunEvent) -> None:
        if event.kind == "start":
            if self.bar is not None:
                from xmodal.progress import start_session

                start_session(self.bar, self.task, event.done)  # the ETA's pace starts here
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=event.done)
        elif self.line:
            elapsed = time.perf_counter() - self.started
            self.stream.write(f"\r{self.name}: {event.done}/{event.total} run(s), {elapsed:.0f} s")
            self.stream.flush()

    def failed(self, failure: RunFailure) -> None:
        text = f"failed {failure.run_id} {failure.description}: {failure.error}"
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            self.stream.write(("\n" if self.line else "") + text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.line:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- reading --------------------------------------------------------------------------------------


class Relation:
    """A read-only query on the results database, run each time its rows are asked for.

    Modelled on DuckDB's relation: `df()` (pandas), `pl()` (polars), `arrow()` (a pyarrow
    Table), `fetchall()`, `fetchone()`; `columns` and `types` describe it; `filter(sql)`,
    `order(sql)`, `limit(n)` and `select(*columns)` return a narrower relation. Each call opens
    the database read-only for as long as the query takes, so an `xmodal run` elsewhere can
    record runs between calls, and a later call sees them.
    """

    def __init__(self, connection: Connection, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection = connection
        self.sql = sql
        self.params = tuple(params)

    # -- results ----------------------------------------------------------------------------

    def df(self) -> Any:
        """The rows as a pandas DataFrame."""
        _require("pandas", "pandas", "Relation.df()")
        return self._run(lambda rel: rel.df())

    def pl(self) -> Any:
        """The rows as a polars DataFrame (needs `pip install 'xmodal[polars]'`)."""
        _require("polars", "polars", "Relation.pl()")
        _require("pyarrow", "polars", "Relation.pl()")
        return self._run(lambda rel: rel.pl())

    def arrow(self) -> Any:
        """The rows as a pyarrow Table (needs `pip install 'xmodal[arrow]'`)."""
        _require("pyarrow", "arrow", "Relation.arrow()")
        return self._run(lambda rel: rel.to_arrow_table())

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row, as tuples of Python values."""
        return self._run(lambda rel: rel.fetchall())

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row (None when there is none)."""
        rows = self.limit(1).fetchall()
        return rows[0] if rows else None

    @property
    def columns(self) -> list[str]:
        """The column names (the query is described, not run)."""
        return self._run(lambda rel: list(rel.columns), describe=True)

    @property
    def types(self) -> list[str]:
        """The DuckDB type of each column, e.g. `VARCHAR`, `DOUBLE`."""
        return self._run(lambda rel: [str(t) for t in rel.types], describe=True)

    # -- narrowing --------------------------------------------------------------------------

    def filter(self, condition: str, *params: Any) -> Relation:
        """Rows for which the SQL `condition` holds, e.g. `.filter("value > ?", 0.5)`."""
        return Relation(
            self.connection,
            f"SELECT * FROM ({self.sql}) AS _r WHERE {condition}",
            (*self.params, *params),
        )

    def order(self, expression: str) -> Relation:
        """Rows sorted by the SQL `expression`, e.g. `.order("depth, value DESC")`."""
        return Relation(
            self.connection, f"SELECT * FROM ({self.sql}) AS _r ORDER BY {expression}", self.params
        )

    def limit(self, n: int) -> Relation:
        """At most the first `n` rows."""
        return Relation(
            self.connection, f"SELECT * FROM ({self.sql}) AS _r LIMIT {int(n)}", self.params
        )

    def select(self, *columns: str) -> Relation:
        """Only these columns (names or SQL expressions), in this order."""
        if not columns:
            raise XmodalError("select() needs at least one column")
        return Relation(
            self.connection,
            f"SELECT {', '.join(columns)} FROM ({self.sql}) AS _r",
            self.params,
        )

    # -- display ----------------------------------------------------------------------------

    def show(self, n: int = 10) -> None:
        """Print the first `n` rows as a text table."""
        print(self._preview(n))

    def __repr__(self) -> str:
        try:
            return self._preview(10)
        except XmodalError as exc:
            return f"<xmodal relation: {exc}>"

    def _repr_html_(self) -> str | None:  # a table in notebooks when pandas is installed
        try:
            import pandas  # noqa: F401
        except ImportError:
            return None
        try:
            return str(self.limit(20).df().to_html(max_rows=20, index=False))
        except XmodalError as exc:
            from html import escape

            return f"<pre>{escape(str(exc))}</pre>"

    def _preview(self, n: int) -> str:
        columns = self.columns
        rows = self.limit(n + 1).fetchall()
        cells = [[_cell(v) for v in row] for row in rows[:n]]
        widths = [
            min(24, max([len(c), *(len(r[i]) for r in cells)])) for i, c in enumerate(columns)
        ]
        lines = [
            "  ".join(_fit(c, w) for c, w in zip(columns, widths, strict=True)),
            "  ".join("-" * w for w in widths),
            *("  ".join(_fit(v, w) for v, w in zip(r, widths, strict=True)) for r in cells),
        ]
        if len(rows) > n:
            lines.append("... (more rows; .df() or .fetchall() for all)")
        if not rows:
            lines.append("(no rows)")
        return "\n".join(lines)

    # -- running ----------------------------------------------------------------------------

    def _run(
        self, consume: Callable[[duckdb.DuckDBPyRelation], Any], describe: bool = False
    ) -> Any:
        return self.connection._execute(self.sql, self.params, consume, describe=describe)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("\n", " ")


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


# The tables `Connection.results/runs/measurements/curves/studies` read: each study's current
# version (the one run most recently), as the views `study_results` and `current_results` do.
_CURRENT_RUNS = (
    "FROM current_studies l JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash"
)
_SOURCES: dict[str, str] = {
    "results": "SELECT * FROM study_results",
    "runs": f"SELECT sr.study, sr.position, r.* EXCLUDE (study) {_CURRENT_RUNS} "
    "JOIN runs r ON r.run_id = sr.run_id",
    "measurements": "SELECT sm.study, m.* FROM current_studies l JOIN study_measurements sm "
    "ON sm.study = l.name AND sm.study_hash = l.hash "
    "JOIN measurements m ON m.measurement_id = sm.measurement_id",
    "curves": "SELECT sr.study, c.run_id, r.dataset, r.input_features, r.target_features, "
    "r.direction, r.fold, r.mapping, r.depth, r.loss, r.kind, r.state, r.seed, c.epoch, c.split, "
    f"c.metric, c.comparison, c.k, c.similarity, c.value {_CURRENT_RUNS} "
    "JOIN runs r ON r.run_id = sr.run_id JOIN curves c ON c.run_id = sr.run_id",
    "studies": "SELECT s.name AS study, s.hash, s.path, s.created, "
    "(SELECT count(*) FROM study_runs sr WHERE sr.study = s.name AND sr.study_hash = s.hash) "
    "AS runs FROM current_studies l JOIN studies s ON s.name = l.name AND s.hash = l.hash",
}
_ORDER: dict[str, str] = {
    "runs": "study, position",
    "measurements": "study, run_id, metric, measurement_id",
    "curves": "study, run_id, metric, comparison, k, split, epoch",
    "studies": "study",
}


class Connection:
    """A read-only handle on a results database (`xmodal.connect`).

    `results`, `runs`, `measurements`, `curves` and `studies` return a `Relation` over each
    study's current version, narrowed by keyword filters (`column=value`, `column=[v1, v2]` for
    any of several values, `column=None` for NULL); an unknown column, or a study the database
    does not hold, is a `FilterError` naming what exists. `sql(text, *params)` runs any one
    statement that reads. Nothing can be written through it, and no other file read: the
    sandbox of `xmodal query`. It holds no open connection between calls.
    """

    def __init__(self, path: PathLike, *, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout  # seconds per query (None: no limit); Ctrl-C stops one anyway
        from xmodal.store import Store, StoreError

        self._store = Store(self.path)
        if not self.path.exists():
            raise StoreError(
                f"{self.path}: no results database here yet; run a study into it first "
                f"(xmodal.run(study, db={str(self.path)!r}) or xmodal run STUDY --db PATH)"
            )
        with self._store.reading():  # exists, opens, is not from a newer xmodal
            pass

    def __repr__(self) -> str:
        return f"<xmodal connection to {self.path} (read-only)>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        """Nothing to release (each query opens and closes its own connection); kept so that
        code written for DuckDB connections works."""

    # -- tables -----------------------------------------------------------------------------

    def results(self, study: str | Sequence[str] | None = None, **filters: Any) -> Relation:
        """Results (one number each) of each study's current version, with their run's columns:
        the view `study_results`.

        Columns include study, run_id, dataset, input_features, target_features, direction,
        split_strategy, fold, mapping, depth, loss, kind (the run kind), seed, split (the split
        measured: "test" or "train"), metric, comparison, k, similarity, epoch, value,
        measurement_id, ci_low, ci_high; and the old names state (= kind), result_split
        (= split) and probe_seconds (= measure_seconds).

            >>> db.results(study="quickstart", metric="mnno", k=10, kind="trained").df()
        """
        if "split" in filters and set(_values(filters["split"])) - {"test", "train"}:
            raise FilterError(
                "results(split=...): `split` is the split a result was measured on ('test' or "
                "'train'); the run's split strategy (dataset, random, kfold, ...) is "
                "`split_strategy`, e.g. results(split_strategy='kfold')"
            )
        return self._table("results", study, filters)

    def runs(self, study: str | Sequence[str] | None = None, **filters: Any) -> Relation:
        """Runs each study's current version plans, in plan order (`position`), with their
        status, error, timings and provenance: the `runs` table plus study and position.

            >>> db.runs(study="quickstart", status="failed").df()[["run_id", "error"]]
        """
        return self._table("runs", study, filters)

    def measurements(self, study: str | Sequence[str] | None = None, **filters: Any) -> Relation:
        """Measurements (a metric with its parameters on one run) each study's current version
        owes, with status, error and seconds: the `measurements` table plus study."""
        return self._table("measurements", study, filters)

    def curves(self, study: str | Sequence[str] | None = None, **filters: Any) -> Relation:
        """Per-epoch values recorded while training (the training loss, and metrics where
        recorded), with the columns of their run that tell curves apart: study, run_id, dataset,
        input_features, target_features, direction, fold, mapping, depth, loss, kind (and its
        old name state), seed, epoch, split, metric, comparison, k, similarity, value."""
        return self._table("curves", study, filters)

    def studies(self, **filters: Any) -> Relation:
        """Each study's current version: study, hash, path, created, runs (how many it plans)."""
        return self._table("studies", None, filters)

    def sql(self, text: str, *params: Any) -> Relation:
        """Any one SQL statement that reads (SELECT, WITH, DESCRIBE, SHOW, PIVOT, ...), with `?`
        placeholders bound to `params`. Statements that write, ATTACH, COPY, SET, PRAGMA and
        reading other files are refused (`StoreError`).

            >>> db.sql("SELECT depth, avg(value) FROM study_results WHERE study = ? "
            ...        "AND metric = 'mnno' GROUP BY ALL", "quickstart").df()
        """
        if not isinstance(text, str):
            raise XmodalError(f"sql() takes the SQL text as a string, got {type(text).__name__}")
        _check(text)
        return Relation(self, text.strip().rstrip(";").rstrip(), params)

    # -- internals --------------------------------------------------------------------------

    def _table(
        self, table: str, study: str | Sequence[str] | None, filters: Mapping[str, Any]
    ) -> Relation:
        if study is not None:
            filters = {"study": study, **filters}
        source = _SOURCES[table]
        columns = Relation(self, source).columns
        where: list[str] = []
        params: list[Any] = []
        for column, value in filters.items():
            if column not in columns:
                guess = did_you_mean(column, columns)
                hint = f"did you mean {guess!r}? " if guess else ""
                raise FilterError(
                    f"{table}(): no column {column!r} to filter on; {hint}"
                    f"the columns are: {', '.join(columns)}"
                )
            clause, values = _condition(table, column, value)
            where.append(clause)
            params.extend(values)
        if "study" in filters:
            self._check_studies(table, list(_values(filters["study"])))
        sql = f"SELECT * FROM ({source}) AS _t"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if table in _ORDER:
            sql += f" ORDER BY {_ORDER[table]}"
        return Relation(self, sql, params)

    def _check_studies(self, table: str, names: list[Any]) -> None:
        known = [s for (s,) in Relation(self, "SELECT name FROM current_studies").fetchall()]
        for name in names:
            if name not in known:
                guess = did_you_mean(str(name), known)
                hint = f"; did you mean {guess!r}?" if guess else ""
                held = ", ".join(sorted(known)) if known else "none yet"
                raise FilterError(
                    f"{table}(study={name!r}): {self.path} holds no study of that name{hint} "
                    f"(studies: {held}; a study's name is its [study] name, not its file name)"
                )

    def _execute(
        self,
        sql: str,
        params: Sequence[Any],
        consume: Callable[[duckdb.DuckDBPyRelation], Any],
        *,
        describe: bool = False,
    ) -> Any:
        import duckdb

        from xmodal.store import StoreError, _execute_interruptibly, _query_problem

        _check(sql)
        with self._store.reading() as con:

            def work(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
                query = f"SELECT * FROM ({sql}) AS _d LIMIT 0" if describe else sql
                relation = con.sql(query, params=list(params) if params else None)
                if relation is None:  # pragma: no cover - _check admits only statements that read
                    raise StoreError("the statement returns no rows")
                return consume(relation)

            try:
                return _execute_interruptibly(con, sql, None if describe else self.timeout, work)
            except duckdb.Error as exc:
                raise StoreError(_reworded(_query_problem(self.path, con, exc))) from None
            except StoreError as exc:  # a timeout or Ctrl-C (QueryTimeout, QueryInterrupted)
                raise type(exc)(_reworded(str(exc))) from None


def connect(db: PathLike | None = None, *, timeout: float | None = None) -> Connection:
    """Open a results database read-only: a `Connection` whose `results`, `runs`,
    `measurements`, `curves`, `studies` and `sql` give relations with `.df()`, `.pl()`,
    `.arrow()` and `.fetchall()`.

    `db` defaults to $XMODAL_DB, else xmodal.duckdb in the current directory; a missing or
    unreadable file, or one written by a newer xmodal, is a `StoreError` now, not at the first
    query. `timeout` limits each query to that many seconds. Imports neither torch nor the
    plugins.

        >>> db = xmodal.connect("x.duckdb")
        >>> db.results(study="quickstart", metric="mnno", k=10).df().groupby("comparison").value.mean()
    """
    return Connection(_db(db), timeout=timeout)


def _values(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list | tuple | set | frozenset) else (value,)


_SCALARS = (str, int, float, bool)


def _condition(table: str, column: str, value: Any) -> tuple[str, list[Any]]:
    """A WHERE clause for `column=value`: equality, IN for a list, IS NULL for None."""
    quoted = '"' + column.replace('"', '""') + '"'
    if value is None:
        return f"{quoted} IS NULL", []
    if isinstance(value, list | tuple | set | frozenset):
        values = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        if not values:
            raise FilterError(f"{table}({column}=[]): an empty list matches no row")
        for v in values:
            _check_value(table, column, v)
        return f"{quoted} IN ({', '.join('?' * len(values))})", values
    _check_value(table, column, value)
    return f"{quoted} = ?", [value]


def _check_value(table: str, column: str, value: Any) -> None:
    if value is None or not isinstance(value, _SCALARS):
        raise FilterError(
            f"{table}({column}={value!r}): a filter value is a string, number or boolean, a "
            "list of them (any of), or None alone (NULL); for anything else use "
            ".filter(sql) or connect(...).sql(...)"
        )


def _check(sql: str) -> None:
    from xmodal.store import StoreError, check_query

    try:
        check_query(sql)
    except StoreError as exc:
        raise StoreError(_reworded(str(exc))) from None


def _reworded(message: str) -> str:
    """The sandbox's messages name `xmodal query`; here the same sandbox is a Connection's."""
    for cli, here in _REWORDED:
        message = message.replace(cli, here)
    return message


_REWORDED = (
    ("xmodal query is read-only", "an xmodal connection is read-only"),
    ("xmodal query reads", "an xmodal connection reads"),
    ("xmodal query runs", "it runs"),
    ("pass --timeout SECONDS (0 = no limit)", "connect with a larger timeout (None: no limit)"),
)


def _require(module: str, extra: str, purpose: str) -> Any:
    from xmodal.optional import require

    return require(module, extra, purpose)
