"""The `xmodal` command line: parse arguments, call one function below, render with rich."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

try:  # Ctrl-C while the command line starts: one line, as in main(), not a traceback
    import typer
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text
    from typer.core import TyperCommand

    from xmodal.errors import XmodalError
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

# Start-up time: `xmodal --help`, `query`, `status`, `plugins` and `validate` must answer in well
# under a second, so this module imports only typer, rich and the plugin manager; each command
# imports what it needs in its body (the runner, numpy, the store and duckdb...), and torch is
# imported only where a run trains or computes neighbours. tests/test_cli_startup.py checks it.
if TYPE_CHECKING:
    from xmodal import plugins
    from xmodal.planning import Run
    from xmodal.runner import RunEvent
    from xmodal.store import Store
    from xmodal.study import Study
    from xmodal.studydata import StudyData

app = typer.Typer(
    name="xmodal",
    help="Do cross-modal mappings bridge modalities? Declare, run and query mNNO studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata

        typer.echo(f"xmodal {importlib.metadata.version('xmodal')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Do cross-modal mappings bridge modalities? Declare, run and query mNNO studies."""


console = Console()
err = Console(stderr=True)

StudyPath = Annotated[Path, typer.Argument(help="study TOML file", show_default=False)]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="results database (default: $XMODAL_DB or xmodal.duckdb)", show_default=False
    ),
]


def _store(db: Path | None) -> Store:
    from xmodal.store import Store, default_db_path

    return Store(db or default_db_path())


MaxRunsOption = Annotated[
    int | None,
    typer.Option(
        "--max-runs",
        min=1,
        help="refuse a study that declares more runs (default: $XMODAL_MAX_RUNS or 10000)",
        show_default=False,
    ),
]


def _load(
    path: Path, *, deep: bool, max_runs: int | None = None
) -> tuple[Study, list[Run], StudyData]:
    from xmodal.api import load_study  # one loader for the CLI and the Python API

    loaded = load_study(path, check=deep, max_runs=max_runs)
    for note in loaded.notes:  # old spellings, read the same: say how to update the file
        err.print(note, markup=False, highlight=False, soft_wrap=True)
    return loaded.declaration, list(loaded.runs), loaded.data


@app.command()
def validate(study: StudyPath, max_runs: MaxRunsOption = None) -> None:
    """Check a study file and every run it expands to, before anything runs."""
    loaded, runs, _ = _load(study, deep=True, max_runs=max_runs)
    console.print(
        f"[green]ok[/green] {escape(str(study))}: study {loaded.name!r}, {len(runs)} run(s)"
    )


@app.command()
def plan(
    study: StudyPath,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    max_runs: MaxRunsOption = None,
) -> None:
    """Show the expanded grid: one row per run, its id, and what running it will do.

    action: train (train or initialise, then measure), measure (only the measurements it lacks,
    from its stored predictions) or cached. status: new, pending (planned by an earlier version,
    never run), failed, running or finished.
    """
    from xmodal import api  # the plan xmodal.plan() returns: one source for both

    loaded = api.load_study(study, check=False, max_runs=max_runs)
    for note in loaded.notes:  # old spellings (on stderr: `--json` output stays clean)
        err.print(note, markup=False, highlight=False, soft_wrap=True)
    planned = api.plan(loaded, db=db)
    if as_json:
        typer.echo(json.dumps(planned.records(), indent=2, default=str))
        return
    runs = [p.run for p in planned]
    actions = [p.action for p in planned]
    states = [p.status for p in planned]
    counts = ", ".join(f"{n} {a}" for a, n in planned.counts().items())
    table = Table(title=f"{planned.study}: {len(runs)} run(s) ({counts})")
    for column in (
        "run id",
        "dataset",
        "input→target",
        "dir",
        "fold",
        "mapping",
        "depth",
        "loss",
        "kind",
        "seed",
        "action",
    ):
        table.add_column(column)
    colours = {"cached": "green", "failed": "red", "new": "cyan", "running": "magenta",
               "measure": "blue", "train": "yellow", "finished": "green"}  # fmt: skip

    def coloured(text: str) -> str:
        style = colours.get(text, "yellow")
        return f"[{style}]{text}[/{style}]"

    for c, status, action in zip(runs, states, actions, strict=True):
        table.add_row(
            *map(escape, (  # names come from the study file: shown as text, not rich markup
                c.run_id, c.dataset, f"{c.input_features}→{c.target_features}", c.direction,
                "" if c.fold is None else str(c.fold), c.mapping,
                "" if c.depth is None else str(c.depth), c.loss or "-", c.kind, str(c.seed))),
            coloured(action) + (f" ({status})" if action == "train" else ""),
        )  # fmt: skip
    console.print(table)


@app.command()
def run(
    study: StudyPath,
    db: DbOption = None,
    force: Annotated[bool, typer.Option("--force", help="redo finished runs too")] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="stop at the first failed run")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, help="parallel runs (default: the study's, or 1)"),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="where runs execute: a registered executor, e.g. process or ray "
            "(default: the study's [execution] executor, else the default one)"
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            envvar="XMODAL_RAY_ADDRESS",
            help="Ray cluster address (with --executor ray); never taken from the study file",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=0, help="torch threads per run; 0 = cores / workers (default: 1)"),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="if another run holds the database, wait for it")
    ] = False,
    max_runs: MaxRunsOption = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="log one line per run: status, run id, seconds, description"
        ),
    ] = False,
) -> None:
    """Execute a study: finished runs are skipped, each run's results are saved as it ends."""
    from xmodal.executors import require_executor
    from xmodal.runner import run_study
    from xmodal.signals import sigterm_as_interrupt
    from xmodal.spool import Spool

    if executor is not None:  # an unknown name or a missing Ray stops here, before any loading
        require_executor(executor, address, workers=workers or 1)
    if address:  # the `ray` neighbour backend (here or in worker processes) uses the same cluster
        os.environ["XMODAL_RAY_ADDRESS"] = address
    loaded, runs, shared = _load(study, deep=True, max_runs=max_runs)
    store = _store(db)
    from xmodal.api import execution_settings  # the Python API's merge of these with [execution]

    chosen = execution_settings(
        loaded.execution, workers=workers, executor=executor, threads=threads
    )
    # run_study checks the executor (and that the database can be written) before any write.
    from xmodal import progress as shown

    began = time.monotonic()
    # SIGTERM stops the study like Ctrl-C: finished runs kept, no stale marks or temp data.
    with sigterm_as_interrupt(), shown.make_progress(err) as progress:
        task = progress.add_task(loaded.name, total=len(runs))

        def on_event(event: RunEvent) -> None:
            described = shown.describe_run(event.run)
            if event.kind == "start":
                shown.start_session(progress, task, event.done)
                progress.update(task, description=f"{loaded.name}: {described}")
                return
            if event.kind == "fail":
                line = shown.run_line("failed", event.run.run_id, described, event.seconds)
                progress.console.print(
                    Text.assemble(("failed", "red"), line[len("failed") :], f": {event.error}"),
                    highlight=False,
                    soft_wrap=True,
                )
            elif verbose:
                status = "cached" if event.kind == "skip" else "finished"
                seconds = None if event.kind == "skip" else event.seconds
                line = shown.run_line(status, event.run.run_id, described, seconds)
                progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
            progress.update(task, completed=event.done)

        # A long kNN computed in this process (a space's lists) gets a line of its own.
        from xmodal.neighbors import report_progress

        with report_progress(shown.tile_progress(progress) if err.is_terminal else None):
            summary = run_study(
                loaded, runs, store, shared, force=force, fail_fast=fail_fast,
                executor=chosen.executor, workers=chosen.workers, address=address or None,
                wait=wait, threads=chosen.threads, on_event=on_event,
            )  # fmt: skip
        progress.update(task, description=loaded.name)
    phrases = shown.summary_phrases(
        loaded.name, trained=summary.finished, measured=summary.measured, cached=summary.skipped,
        failed=summary.failed, seconds=time.monotonic() - began, db=str(store.path),
    )  # fmt: skip
    for line in shown.fit(phrases, console.width):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if summary.spooled:
        err.print(
            f"{summary.spooled} finished run(s) wait in {Spool(store.path).path}: the database "
            "stayed busy (a reader holds it); the next `xmodal run` or `xmodal gc` on it records "
            "them",
            markup=False,
        )
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def status(db: DbOption = None) -> None:
    """Per study: planned, finished, failed, running (or stale) and pending runs."""
    from xmodal.locking import holder
    from xmodal.spool import Spool

    store = _store(db)
    rows = store.study_status()
    if not rows:
        console.print("no studies recorded yet")
        return
    live = holder(store.path)
    table = Table(title="studies")
    for column in (
        "study",
        "version",
        "planned",
        "finished",
        "failed",
        "running",
        "stale",
        "pending",
        "recorded",
    ):
        table.add_column(column)
    for name, version, planned, finished, failed, running, pending, created in rows:
        # A run marked running while no xmodal run holds the database was left by a dead process.
        alive = live is not None and live.get("study") == name
        table.add_row(
            escape(str(name)), escape(str(version)), str(planned), f"[green]{finished}[/green]",
            f"[red]{failed}[/red]" if failed else "0",
            str(running if alive else 0), f"[yellow]{running}[/yellow]" if running and not alive else "0",
            str(pending), str(created)[:19],
        )  # fmt: skip
    console.print(table)
    if live:
        console.print(
            f"xmodal run in progress: study {live.get('study')!r}, pid {live.get('pid')}",
            markup=False,
        )
    if any(r[5] for r in rows) and live is None:
        console.print("stale runs were left by a process that died; `xmodal run` redoes them")
    waiting = len(Spool(store.path))
    if waiting:
        console.print(
            f"{waiting} finished run(s) wait in the spool {Spool(store.path).path} "
            "(the database was busy); the next `xmodal run` or `xmodal gc` records them",
            markup=False,
        )


@app.command()
def gc(
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only say what would be removed")
    ] = False,
) -> None:
    """Remove stored predictions that no study version refers to (and leftover temporary files).

    Runs whose predictions are removed keep their results; a metric added to them later
    retrains them first (the plan then shows `train`).
    """
    from xmodal.artifacts import ArtifactStore
    from xmodal.locking import RunLock
    from xmodal.recorder import Recorder

    store = _store(db)
    artifacts = ArtifactStore(store.path)
    with RunLock(store.path, "(xmodal gc)"):
        recorder = Recorder(store)
        if not recorder.flush(store.lock_timeout):
            raise XmodalError(
                f"{store.path} is busy (a reader holds it) and {recorder.waiting()} finished "
                "run(s) wait in the spool, whose predictions must be kept; try again later"
            )
        report = artifacts.gc(store.referenced_artifacts(), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{artifacts.root}: {verb} {report.removed} unreferenced artifact(s) and "
        f"{report.temporary} temporary file(s), {report.removed_bytes / 1e6:.1f} MB; "
        f"kept {report.kept}",
        markup=False,
    )


QUERY_SUMMARY = "Query the results with one read-only SQL statement (docs/queries.md)."


def _query_help() -> str:
    from xmodal.store import schema_objects

    tables, views = schema_objects()
    return (
        f"{QUERY_SUMMARY}\n\n"
        f"Tables: {', '.join(tables)}.\n\n"
        f"Views: {', '.join(views)}. study_results holds every study's current version: "
        "filter it by study (WHERE study = 'NAME') so that studies do not mix. Report sections "
        "add views of their own when a study runs (the table report_views lists them; "
        "docs/report.md).\n\n"
        "Nothing can be written and no other file read (ATTACH, COPY, SET, PRAGMA ... are "
        "refused)."
    )


QUERY_FORMATS = ("table", "csv", "json", "markdown", "parquet")


class _QueryCommand(TyperCommand):
    """`xmodal query`, whose help lists the database's tables and views. That text is made when
    it is shown: reading the schema imports xmodal.store and duckdb, which `xmodal --help` and
    every other command would otherwise pay for at start-up."""

    @property  # type: ignore[override]
    def help(self) -> str:
        return _query_help()

    @help.setter
    def help(self, value: str | None) -> None:
        pass  # typer passes the docstring; the property above is the help


@app.command(cls=_QueryCommand, short_help=QUERY_SUMMARY)
def query(
    sql: Annotated[
        str,
        typer.Argument(help="one SQL statement that reads (SELECT, WITH, ...); a final ; is fine"),
    ],
    db: DbOption = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, csv, json, markdown or parquet (parquet needs --out)",
            show_default=True,
        ),
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write to FILE instead of the screen (replaced whole)"),
    ] = None,
    limit: Annotated[int, typer.Option(help="rows to show in table format (0 = all)")] = 200,
    timeout: Annotated[
        float,
        typer.Option(min=0, help="interrupt the query after SECONDS (0 = no limit)"),
    ] = 60.0,
) -> None:
    from xmodal import queryformat
    from xmodal.store import QueryInterrupted

    store = _store(db)
    _check_query_output(fmt, out, store.path)  # before the database is opened
    try:
        if fmt == "parquet":
            assert out is not None
            written = store.query_to_parquet(sql, out, timeout=timeout or None)
            console.print(f"wrote {written} row(s) to {out}", markup=False, highlight=False)
            return
        result = store.query_result(sql, timeout=timeout or None)
    except KeyboardInterrupt:  # Ctrl-C while waiting for the database, before the query ran
        raise QueryInterrupted("query interrupted (Ctrl-C); a query changes nothing") from None
    columns, rows = result.columns, result.rows
    if fmt == "csv":
        text = queryformat.to_csv(columns, rows)
    elif fmt == "json":
        text = queryformat.to_json(columns, rows)
    elif fmt == "markdown":
        text = queryformat.to_markdown(columns, result.types, rows)
    else:
        # Text, not markup: '[/]' or a study's '[study]' line are data and shown as they are.
        table = Table()
        for column, kind in zip(columns, result.types, strict=True):
            numeric = queryformat.is_numeric(kind)
            table.add_column(Text(_visible(column)), justify="right" if numeric else "left")
        for row in rows if limit == 0 else rows[:limit]:
            table.add_row(*(_cell_text(v) for v in row))
        more = (
            f"… {len(rows) - limit} more row(s); use --limit 0 or --format csv"
            if limit and len(rows) > limit
            else None
        )
        if out is None:
            console.print(table)
            if more:
                console.print(more, markup=False, highlight=False)
            return
        page = Console(file=io.StringIO(), width=100_000, color_system=None, highlight=False)
        page.print(table)
        if more:
            page.print(more, markup=False)
        text = "\n".join(line.rstrip() for line in page.file.getvalue().splitlines()) + "\n"
    if out is None:
        _write_stdout(text)
        return
    try:
        out.write_bytes(text.encode("utf-8"))
    except OSError as exc:
        raise XmodalError(
            f"{out}: cannot write the query's result ({exc.strerror or exc})"
        ) from None
    console.print(f"wrote {len(rows)} row(s) to {out}", markup=False, highlight=False)


def _check_query_output(fmt: str, out: Path | None, db: Path) -> None:
    """The format is known, parquet has a file, and the file can be written: all before the
    query runs (a long query must not end in 'no such directory')."""
    if fmt not in QUERY_FORMATS:
        raise XmodalError(f"--format {fmt!r} is not one of {', '.join(QUERY_FORMATS)}")
    if out is None:
        if fmt == "parquet":
            raise XmodalError(
                "--format parquet writes a binary file: add --out FILE (e.g. --out results.parquet)"
            )
        return
    if out.is_dir():
        raise XmodalError(f"--out {out}: is a directory; give a file name (e.g. {out / 'result'})")
    if not out.resolve().parent.is_dir():
        raise XmodalError(f"--out {out}: directory {out.resolve().parent} does not exist")
    database = db.resolve()
    companions = {database, *(database.with_name(database.name + s) for s in (".wal", ".lock"))}
    if out.resolve() in companions:
        raise XmodalError(f"--out {out}: that is the results database; give another file name")


def _write_stdout(text: str) -> None:
    """Data to standard output as UTF-8 bytes: `\n` stays `\n` on every platform."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8"))
        buffer.flush()


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="study name (as `xmodal status` lists it)")],
    db: DbOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory for report.md and PNGs (default: report-STUDY)"),
    ] = None,
) -> None:
    """Write a paper-style report (Markdown tables, PNG figures) of a study's results."""
    from xmodal.report import build_report

    made = build_report(_store(db), study, out or Path(f"report-{study}"))
    if made.headline is not None:
        table = Table(*made.headline.columns, title=made.headline.title)
        for row in made.headline.rows:
            table.add_row(*map(escape, row))
        console.print(table)
        if made.headline.note:
            console.print(made.headline.note)
    for path in (made.markdown, *made.figures):
        console.print(f"wrote {path}", markup=False)
    for problem in made.problems:
        err.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)


def _cell_text(value: Any) -> Text:
    """A query value as shown in a table: verbatim (no rich markup), control characters visible;
    a float as the query computed it (round() in SQL shortens it)."""
    from xmodal import queryformat

    return Text("NULL" if value is None else queryformat.visible(queryformat.text(value)))


def _visible(text: str) -> str:
    """Control characters (an ESC could drive the terminal) as escapes; newlines and tabs kept."""
    from xmodal import queryformat

    return queryformat.visible(text)


@app.command("plugins")
def list_plugins(
    component: Annotated[
        str | None,
        typer.Argument(
            help="with --params: only the component(s) of this name", show_default=False
        ),
    ] = None,
    params: Annotated[
        bool,
        typer.Option(
            "--params", help="list each component's parameters: type, default, range, choices"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Which plugins are loaded and what each registered; plugin problems exit with status 1.

    With --params: every component's parameters (docs/reference.md lists the built-in ones).
    """
    from xmodal import plugins

    registry = plugins.get_registry(strict=False)
    warned = plugins.load_problems()  # main() showed these
    for problem in registry.problems:
        if problem not in warned:
            err.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)
    if component is not None and not params:
        raise XmodalError(
            f"xmodal plugins {component}: a component name goes with --params "
            f"(xmodal plugins --params {component})"
        )
    if params:
        _parameter_listing(registry, component, as_json)
    elif as_json:
        listing = {name: registry.registered_by(name) for name in registry.plugins}
        typer.echo(json.dumps(listing, indent=2))
    else:
        _plugin_table(registry)
    if registry.problems:
        raise typer.Exit(1)


def _plugin_table(registry: plugins.Registry) -> None:
    """One row per plugin and kind it registered something of: any number of kinds fits."""
    table = Table(title="plugins")
    for column in ("plugin", "kind", "components"):
        table.add_column(column, overflow="fold")
    built_in = sorted(set(registry.owners.values()) - set(registry.plugins))  # e.g. executors
    for name in [*built_in, *registry.plugins]:
        registered = [(k, names) for k, names in registry.registered_by(name).items() if names]
        if not registered:
            table.add_row(escape(name), "", "(nothing)")
        for i, (kind, names) in enumerate(registered):
            table.add_row(escape(name) if i == 0 else "", kind, escape(", ".join(names)))
        table.add_section()
    console.print(table)


def _parameter_listing(registry: plugins.Registry, name: str | None, as_json: bool) -> None:
    from xmodal import reference
    from xmodal.errors import did_you_mean

    found = reference.components(registry, name)
    if name is not None and not found:
        names = {c.name for c in reference.components(registry)}
        guess = did_you_mean(name, names)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise XmodalError(
            f"xmodal plugins --params {name}: no component of that name; {hint}"
            "`xmodal plugins` lists them all"
        )
    if as_json:
        typer.echo(reference.as_json(found))
        return
    from rich import box

    for kind in reference.kinds():
        members = [c for c in found if c.kind == kind]
        if not members:
            continue
        console.rule(Text(kind.replace("_", " "), style="bold"), align="left")
        for c in members:
            head = Text.assemble((c.name, "bold"), (f" (plugin {c.plugin})", "dim"))
            if c.description:
                head.append(f": {c.description}")
            if not c.params:
                head.append(" - no parameters", style="dim")
            console.print(head)
            if not c.params:
                continue
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 2))
            for column in ("parameter", "default", "type, allowed", "description"):
                table.add_column(column, overflow="fold")
            for p in c.params:
                allowed = p.allowed_text()
                table.add_row(
                    Text(p.name),
                    Text(p.default_text()),
                    Text(f"{p.type_text()}, {allowed}" if allowed else p.type_text()),
                    Text(p.doc),
                )
            console.print(table)
        console.print()


@app.command("datasets")
def list_datasets(
    study: Annotated[
        Path | None,
        typer.Option("--study", help="describe the dataset as this study configures it"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Every dataset and feature set: items, dimensions, origin. Nothing is loaded or encoded."""
    from rich.markup import escape

    from xmodal import plugins
    from xmodal.catalog import as_json as catalog_json
    from xmodal.catalog import catalog
    from xmodal.study import load_study

    registry = plugins.get_registry()
    params = {}
    if study is not None:
        loaded = load_study(study, registry)
        params = {loaded.dataset.name: loaded.dataset.params}
    entries = catalog(registry, params)
    if study is not None:
        entries = [e for e in entries if e.name in params]
    if as_json:
        typer.echo(json.dumps(catalog_json(entries), indent=2, default=str))
        return
    table = Table(title="datasets")
    for column in ("dataset", "feature set", "items", "dims", "from", "note"):
        table.add_column(column, overflow="fold")
    for e in entries:
        if e.problem:
            table.add_row(
                e.name, "", "", "", escape(e.description), f"[yellow]{escape(e.problem)}[/yellow]"
            )
        for i, f in enumerate(e.feature_sets):
            size = lambda v: "?" if v is None else str(v)  # noqa: E731
            table.add_row(
                e.name if i == 0 else "",
                f.name,
                size(f.n_items),
                size(f.dim),
                escape(f.source),
                escape(f.note),
            )
        table.add_section()
    console.print(table)


_commands_registered = False

# Commands that use no component. For them main() registers no plugin command, so no plugin module
# is imported (start-up time: tests/test_cli_startup.py), and a broken plugin cannot get in their
# way. Every other command line loads the plugins first: a plugin's own command, `--help` (which
# lists the plugins' commands too) and the commands that use components.
PLUGIN_FREE_COMMANDS = frozenset({"query", "status", "gc"})


def needs_plugins(argv: Sequence[str]) -> bool:
    """Whether `xmodal ARGV` may use the plugins: False only when it runs a command of
    PLUGIN_FREE_COMMANDS or prints the version. The command is the first argument that is no
    option (the top level takes only the flags --help and --version); of --help and --version,
    the first one given wins, as click runs it first."""
    for arg in argv:
        if arg == "--version":
            return False
        if arg == "--help":
            return True
        if not arg.startswith("-"):
            return arg not in PLUGIN_FREE_COMMANDS
    return True  # no command: the help is shown, with the plugins' commands


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors are shown on one screen with a non-zero exit, no traceback.

    A broken plugin (or an `XMODAL_LOAD_PLUGINS` typo) is a warning line here, so that `--help`
    and `plugins` still run; commands that need components stop at `plugins.get_registry()` with
    an error that refers to these warnings. `--version`, `query`, `status` and `gc` load no plugin
    at all (`needs_plugins`).
    """
    global _commands_registered
    warned: list[plugins.PluginProblem] = []
    args = sys.argv[1:] if argv is None else argv
    try:
        if needs_plugins(args):
            from xmodal import plugins

            if not _commands_registered:
                plugins.register_commands(plugins.get_manager(), app)
                _commands_registered = True
            warned = plugins.load_problems()
            for problem in warned:
                err.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)
        app(args=args, prog_name="xmodal")
    except XmodalError as exc:
        # A plugin problem can only come from the plugin manager, so it is loaded by then.
        loaded = sys.modules.get("xmodal.plugins")
        if loaded is not None and isinstance(exc, loaded.PluginError):
            text = exc.render(shown=warned)
        else:
            text = str(exc)
        err.print(text, markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # e.g. while the plugins load, before a command runs
        err.print("interrupted", markup=False, highlight=False)
        sys.exit(130)
