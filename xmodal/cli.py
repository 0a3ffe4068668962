"""The `xmodal` command line: parse arguments, call one function below, render with rich."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xmodal import plugins
from xmodal.errors import XmodalError
from xmodal.locking import holder
from xmodal.plan import Cell, make_plan
from xmodal.runner import RunEvent, check_runs, max_k, run_study
from xmodal.store import Store, default_db_path
from xmodal.study import Study, load_study
from xmodal.studydata import StudyData

app = typer.Typer(
    name="xmodal",
    help="Do cross-modal mappings bridge modalities? Declare, run and query mNNO studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
    return Store(db or default_db_path())


def _load(path: Path, *, deep: bool) -> tuple[Study, list[Cell], StudyData]:
    registry = plugins.get_registry()
    study = load_study(path, registry)
    cells = make_plan(study, registry)
    shared = StudyData(registry, k_hint=max_k(cells, registry))
    if deep:
        check_runs(study, cells, shared)
    return study, cells, shared


def _describe(cell: Cell) -> str:
    mapping = (
        cell.mapping
        if cell.depth is None or cell.mapping == "linear"
        else f"{cell.mapping}{cell.depth}"
    )
    fold = f" fold {cell.fold}" if cell.fold is not None else ""
    loss = cell.loss or "-"
    return f"{cell.input_features}→{cell.target_features} {mapping} {loss} {cell.probe} seed {cell.seed}{fold}"


@app.command()
def validate(study: StudyPath) -> None:
    """Check a study file and every run it expands to, before anything runs."""
    loaded, cells, _ = _load(study, deep=True)
    console.print(f"[green]ok[/green] {study}: study {loaded.name!r}, {len(cells)} run(s)")


@app.command()
def plan(
    study: StudyPath,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Show the expanded grid: one row per run, its id, and whether it is cached, pending or new."""
    loaded, cells, _ = _load(study, deep=False)
    store = _store(db)
    statuses = store.run_statuses([c.run_id for c in cells])
    earlier = store.earlier_runs(loaded.name, loaded.source_hash)

    def state(cell: Cell) -> str:
        status = statuses.get(cell.run_id)
        if status == "finished":
            return "cached"
        if status is not None:
            return status
        return "pending" if cell.run_id in earlier or not earlier else "new"

    if as_json:
        rows = [{"run_id": c.run_id, "status": state(c), **c.config()} for c in cells]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    states = [state(c) for c in cells]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    table = Table(title=f"{loaded.name}: {len(cells)} run(s) ({counts})")
    for column in (
        "run id",
        "dataset",
        "input→target",
        "dir",
        "fold",
        "mapping",
        "depth",
        "loss",
        "state",
        "seed",
        "status",
    ):
        table.add_column(column)
    colours = {"cached": "green", "failed": "red", "new": "cyan", "running": "magenta"}
    for c, status in zip(cells, states, strict=True):
        style = colours.get(status, "yellow")
        table.add_row(
            c.run_id, c.dataset, f"{c.input_features}→{c.target_features}", c.direction,
            "" if c.fold is None else str(c.fold), c.mapping, "" if c.depth is None else str(c.depth),
            c.loss or "-", c.probe, str(c.seed), f"[{style}]{status}[/{style}]",
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
        str | None, typer.Option(help="local, process or ray (default: the study's, or local)")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --executor ray)")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=0, help="torch threads per run; 0 = cores / workers (default: 1)"),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="if another run holds the database, wait for it")
    ] = False,
) -> None:
    """Execute a study: finished runs are skipped, each run's results are saved as it ends."""
    loaded, cells, shared = _load(study, deep=True)
    store = _store(db)
    settings = loaded.execution
    workers = workers or settings.get("workers", 1)
    executor = executor or settings.get("executor", "local")
    if executor not in ("local", "process", "ray"):
        raise XmodalError(f"--executor {executor!r} is not one of local, process, ray")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(loaded.name, total=len(cells))

        def on_event(event: RunEvent) -> None:
            if event.kind == "start":
                progress.update(task, description=f"{loaded.name}: {_describe(event.cell)}")
            elif event.kind == "fail":
                progress.console.print(
                    f"[red]failed[/red] {event.cell.run_id} {_describe(event.cell)}: {event.error}"
                )
            if event.kind != "start":
                progress.update(task, completed=event.done)

        summary = run_study(
            loaded, cells, store, shared, force=force, fail_fast=fail_fast, executor=executor,
            workers=workers, address=address or settings.get("address") or None, wait=wait,
            threads=settings.get("threads", 1) if threads is None else threads, on_event=on_event,
        )  # fmt: skip
        progress.update(task, description=loaded.name)
    console.print(
        f"{loaded.name}: {summary.finished} finished, {summary.skipped} skipped (already finished), "
        f"{summary.failed} failed, of {summary.planned} run(s) → {store.path}"
    )
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def status(db: DbOption = None) -> None:
    """Per study: planned, finished, failed, running (or stale) and pending runs."""
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
            name, version, str(planned), f"[green]{finished}[/green]",
            f"[red]{failed}[/red]" if failed else "0",
            str(running if alive else 0), f"[yellow]{running}[/yellow]" if running and not alive else "0",
            str(pending), str(created)[:19],
        )  # fmt: skip
    console.print(table)
    if live:
        console.print(f"xmodal run in progress: study {live.get('study')!r}, pid {live.get('pid')}")
    if any(r[5] for r in rows) and live is None:
        console.print("stale runs were left by a process that died; `xmodal run` redoes them")


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="one SQL statement (read-only)")],
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="rows to show in table format (0 = all)")] = 200,
) -> None:
    """Query the results with SQL (tables: studies, study_runs, runs, results, curves)."""
    if fmt not in ("table", "csv", "json"):
        raise XmodalError(f"--format {fmt!r} is not one of table, csv, json")
    columns, rows = _store(db).query(sql)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    elif fmt == "json":
        typer.echo(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2, default=str)
        )
    else:
        table = Table(*columns)
        for row in rows if limit == 0 else rows[:limit]:
            table.add_row(*(_cell_text(v) for v in row))
        console.print(table)
        if limit and len(rows) > limit:
            console.print(f"… {len(rows) - limit} more row(s); use --limit 0 or --format csv")


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
            table.add_row(*row)
        console.print(table)
        if made.headline.note:
            console.print(made.headline.note)
    for path in (made.markdown, *made.figures):
        console.print(f"wrote {path}")


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "NULL" if value is None else str(value)


@app.command("plugins")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Which plugins are loaded and what each registered."""
    registry = plugins.get_registry()
    listing = {name: registry.registered_by(name) for name in registry.plugins}
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    kinds_shown = ("datasets", "encoders", "mappings", "losses", "metrics")
    table = Table(title="plugins")
    for column in ("plugin", *kinds_shown):
        table.add_column(column)
    for name, kinds in listing.items():
        table.add_row(name, *(", ".join(kinds[k]) for k in kinds_shown))
    console.print(table)


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

    from xmodal.catalog import as_json as catalog_json
    from xmodal.catalog import catalog

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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors are shown on one screen with a non-zero exit, no traceback."""
    global _commands_registered
    try:
        if not _commands_registered:
            plugins.get_manager().hook.register_commands(cli=app)
            _commands_registered = True
        app(args=argv, prog_name="xmodal")
    except XmodalError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
