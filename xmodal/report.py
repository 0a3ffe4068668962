"""`xmodal report`: a study's results, laid out by report sections.

A report is a header (the study, its runs, the software) and then the sections plugins register
(hook `register_report_sections`, `ReportSectionSpec`), in `order`, each rendering blocks
(`ReportTable`, `ReportFigure`, `ReportText`) from SQL views; the core adds the last one, "All
measurements": every row metric no rendered section presents, per comparison, by configuration,
with a by-depth figure where runs have a depth. Nothing here knows a component by name: labels
and digits come from the metrics' specs (`MetricSpec.label`, `digits`, `higher_is_better`,
`outputs`) or from the data. Every number is read from a view (xmodal/views.py,
docs/report.md), so it can be re-queried with `xmodal query`.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from xmodal.components import MetricDisplay, MetricSpec, ReportSectionSpec
from xmodal.errors import XmodalError

if TYPE_CHECKING:
    from xmodal.plugins import Registry
    from xmodal.store import Store

Row = dict[str, Any]

# The spaces a comparison names (`<space>-<space>`), as the report writes them.
SPACE_SYMBOLS = {"pred": "f(X)", "input": "X", "target": "Y"}
# The configuration columns of `results_summary`, in the order tables show them.
CONFIG = (
    "dataset", "pair", "direction", "mapping", "depth", "loss", "kind", "split", "k",
    "similarity", "params",
)  # fmt: skip
HEADERS = {"pair": "input → target", "params": "parameters"}
LINES_PER_FIGURE = 10


class ReportError(XmodalError):
    """The report cannot be made: unknown study, no results, or an unwritable directory."""


# -- what sections return -------------------------------------------------------------------------


@attrs.frozen
class ReportTable:
    """A titled table of text cells: Markdown in report.md (a heading of `level` #, the table,
    then `note`). With `headline=True` it is not written to report.md: `xmodal report` prints
    the report's first headline table on the terminal (keep it within 80 columns)."""

    title: str
    columns: tuple[str, ...] = attrs.field(converter=tuple)
    rows: tuple[tuple[str, ...], ...] = attrs.field(
        converter=lambda rows: tuple(tuple(str(c) for c in r) for r in rows)
    )
    note: str = ""
    headline: bool = False
    level: int = 2

    def markdown(self) -> str:
        lines = [
            f"{'#' * self.level} {self.title}",
            "",
            "| " + " | ".join(self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@attrs.frozen
class ReportFigure:
    """A figure the section wrote (to `context.path(name)`): a heading, the image, a caption."""

    path: Path = attrs.field(converter=Path)
    title: str
    caption: str = ""
    alt: str = ""
    level: int = 3

    def markdown(self) -> str:
        parts = [
            f"{'#' * self.level} {self.title}",
            f"![{self.alt or self.title}]({self.path.name})",
        ]
        if self.caption:
            parts.append(self.caption)
        return "\n\n".join(parts)


@attrs.frozen
class ReportText:
    """Markdown text, as written."""

    markdown_text: str

    def markdown(self) -> str:
        return self.markdown_text


Block = ReportTable | ReportFigure | ReportText | str


@attrs.frozen
class ReportContext:
    """What a section's `render` receives.

    `con` is a read-only DuckDB connection to the results database; `study` the study's name
    (views hold every study: filter by it); `out` the report's directory; `metrics` the
    registered metrics; `covered` the row metrics that sections rendered before this one present.
    """

    con: Any
    study: str
    out: Path
    metrics: Mapping[str, MetricSpec] = attrs.field(factory=dict)
    covered: frozenset[str] = frozenset()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a query as dicts (column name -> value)."""
        cursor = self.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def path(self, name: str) -> Path:
        """Where to write the file `name` (e.g. "depth.png") in the report's directory."""
        if not name or Path(name).name != name:
            raise ValueError(f"a report file name must be a plain file name, not {name!r}")
        return self.out / name

    def display(self, row_metric: str, measured_by: str | None = None) -> MetricDisplay:
        """How to show rows whose `metric` is `row_metric` (written by the metric `measured_by`,
        when known): from the spec that declares it, else the name with 3 digits."""
        spec = self.metrics.get(measured_by or "")
        if spec is None:
            spec = self.metrics.get(row_metric) or next(
                (s for s in self.metrics.values() if row_metric in s.outputs), None
            )
        if spec is None:
            return MetricDisplay(row_metric)
        return spec.display(row_metric)


@attrs.frozen
class Report:
    """What `build_report` wrote, the headline table to print, and the sections that failed."""

    study: str
    directory: Path
    markdown: Path
    figures: tuple[Path, ...]
    headline: ReportTable | None
    problems: tuple[str, ...] = ()


# -- formatting helpers (also for sections) --------------------------------------------------------


def number(value: Any, digits: int = 3) -> str:
    """A value with `digits` decimals; — for NULL."""
    if value is None:
        return "—"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def mean_std(mean: Any, std: Any, digits: int = 3) -> str:
    """`mean ± std` (the mean alone when there is no std)."""
    text = number(mean, digits)
    if std is None or mean is None or math.isnan(float(std)):
        return text
    return f"{text} ± {float(std):.{digits}f}"


def comparison_label(comparison: str) -> str:
    """`pred-target` -> `f(X), Y`; a paired difference `pred-input:pred-target` ->
    `(f(X), X) − (f(X), Y)`; comparisons of other spaces are shown as written."""
    if ":" in comparison:
        return " − ".join(f"({comparison_label(part)})" for part in comparison.split(":"))
    left, sep, right = comparison.partition("-")
    if not sep:
        return comparison
    return f"{SPACE_SYMBOLS.get(left, left)}, {SPACE_SYMBOLS.get(right, right)}"


def sort_key(value: Any) -> tuple[bool, Any]:
    """Sorts values of one column with NULL last (never compares None with a number)."""
    return (value is None, "" if value is None else value)


# -- the report -----------------------------------------------------------------------------------


def build_report(store: Store, study: str, out: Path, registry: Registry | None = None) -> Report:
    """Write `out`/report.md and the figures of `study` (latest version) from the store."""
    from xmodal import plugins
    from xmodal.views import declared_views

    registry = registry if registry is not None else plugins.get_registry(strict=False)
    views = declared_views(registry)
    _ensure_views(store, views)
    sections = sorted(
        [*registry.report_sections.values(), CORE_SECTION], key=lambda s: (s.order, s.name)
    )
    with store.reading() as con:
        context = ReportContext(con, study, out, dict(registry.metrics))
        meta = _study_row(context, store)
        counts = context.fetch(
            """SELECT count(*) AS planned,
                      count(*) FILTER (WHERE r.status = 'finished') AS finished,
                      count(*) FILTER (WHERE r.status = 'failed') AS failed
               FROM study_runs sr LEFT JOIN runs r USING (run_id)
               WHERE sr.study = ? AND sr.study_hash = ?""",
            [study, meta["hash"]],
        )[0]
        if not counts["finished"]:
            where = f" `xmodal run {meta['path']}`" if meta["path"] else " `xmodal run STUDY.toml`"
            raise ReportError(
                f"study {study!r} has no finished runs in {store.path} "
                f"({counts['planned']} planned, {counts['failed']} failed): run it first with{where}"
            )
        runs = context.fetch(
            """SELECT DISTINCT r.dataset, r.xmodal_version, r.git_commit, r.torch_version,
                      r.numpy_version
               FROM current_studies l
               JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
               JOIN runs r USING (run_id)
               WHERE l.name = ? AND r.status = 'finished'""",
            [study],
        )
        _prepare(out)
        parts = [_header(meta, counts, runs)]
        written: list[Path] = []
        headline: ReportTable | None = None
        problems: list[str] = []
        covered: set[str] = set()
        for section in sections:
            owner = registry.owners.get(("report_sections", section.name), "xmodal")
            here = attrs.evolve(context, covered=frozenset(covered))
            try:
                blocks = list(section.render(here) or ())
                for block in blocks:
                    if not isinstance(block, (ReportTable, ReportFigure, ReportText, str)):
                        raise TypeError(
                            f"render returned {type(block).__name__}; sections return "
                            "ReportTable, ReportFigure, ReportText or str blocks"
                        )
            except Exception as exc:
                text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                problem = (
                    f"report section {section.name!r} (plugin {owner!r}) failed and is left "
                    f"out: {text.rstrip(': ')}"
                )
                problems.append(problem)
                parts.append(f"> {problem}")
                continue
            if blocks:
                covered.update(section.metrics)
            for block in blocks:
                if isinstance(block, ReportTable) and block.headline:
                    headline = headline or block
                    continue
                if isinstance(block, ReportFigure):
                    written.append(block.path)
                parts.append(block if isinstance(block, str) else block.markdown())
    markdown = out / "report.md"
    try:
        markdown.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {markdown}: {exc.strerror or exc}") from None
    return Report(study, out, markdown, tuple(written), headline, tuple(problems))


def _ensure_views(store: Store, views: Sequence[Any]) -> None:
    """Create the report views the database lacks (an older database, or a plugin installed
    since the last run), and bring an older schema up to date."""
    from xmodal.store import MIGRATIONS, schema_version
    from xmodal.views import outdated

    with store.reading() as con:
        has_studies = bool(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'studies'"
            ).fetchone()[0]
        )
        if not has_studies:
            raise ReportError(f"{store.path}: no studies recorded yet (run one with `xmodal run`)")
        stale = outdated(con, views) or (schema_version(con) or 0) < len(MIGRATIONS)
    if stale:
        store.install_views(views)  # opening for writing also applies pending migrations


def _study_row(context: ReportContext, store: Store) -> Row:
    names = [r["name"] for r in context.fetch("SELECT DISTINCT name FROM studies ORDER BY 1")]
    study = context.study
    if study not in names:
        close = difflib.get_close_matches(study, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(names) if names else "none"
        raise ReportError(
            f"no study named {study!r} in {store.path}{hint}\n"
            f"  studies there: {known}\n"
            "  (STUDY is the [study] name from the TOML file, as `xmodal status` lists it)"
        )
    return context.fetch(
        "SELECT name, hash, path, source, created FROM studies WHERE name = ? "
        "ORDER BY created DESC LIMIT 1",
        [study],
    )[0]


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"--out {out}: cannot create the directory ({exc.strerror or exc}); "
            "choose a directory you can write to"
        ) from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(
            f"--out {out}: not a writable directory; choose a directory you can write to"
        )


def _header(meta: Row, counts: Row, runs: list[Row]) -> str:
    versions = sorted({f"xmodal {p['xmodal_version']}, torch {p['torch_version']}, "
                       f"numpy {p['numpy_version']}" for p in runs})  # fmt: skip
    commits = sorted({(p["git_commit"] or "unknown")[:12] for p in runs})
    datasets = sorted({str(p["dataset"]) for p in runs})
    description = ""
    for line in (meta["source"] or "").splitlines():
        stripped = line.strip()
        if stripped.startswith("description"):
            description = stripped.split("=", 1)[1].strip().strip('"')
            break
    lines = [
        f"# {meta['name']}: report",
        "",
        *([description, ""] if description else []),
        f"- study file: `{meta['path']}` (version {meta['hash'][:12]}, recorded "
        f"{str(meta['created'])[:19]})",
        f"- dataset: {', '.join(datasets)}",
        f"- runs: {counts['finished']} finished of {counts['planned']} planned"
        + (f", {counts['failed']} failed" if counts["failed"] else ""),
        f"- software: {'; '.join(versions)}; git commit {', '.join(commits)}",
        "",
        "Means and ± sample standard deviations are over the runs that differ only in fold and "
        "seed (n runs). Every number comes from a view (docs/report.md); e.g. "
        f"`xmodal query \"SELECT * FROM results_summary WHERE study = '{meta['name']}'\"`.",
    ]
    return "\n".join(lines)


# -- the core section: every metric, any mapping ----------------------------------------------------


def _config_value(row: Row, column: str) -> Any:
    if column == "pair":
        return f"{row['input_features']} → {row['target_features']}"
    value = row.get(column)
    if column == "params" and value in ("{}", "null"):
        return None  # a metric without parameters
    return value


def _shown(value: Any) -> str:
    return "—" if value is None else str(value)


def all_measurements(context: ReportContext) -> list[Block]:
    """The core section: per row metric (by its label) and comparison, mean ± std by
    configuration; a by-depth figure per metric when runs have two depths or more."""
    rows = [
        r
        for r in context.fetch("SELECT * FROM results_summary WHERE study = ?", [context.study])
        if r["metric"] not in context.covered
    ]
    if not rows:
        return []
    by_metric: dict[str, list[Row]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    blocks: list[Block] = [
        ReportText(
            "## All measurements\n\n"
            "Every metric of the study that no section above presents: one table per metric and "
            "comparison (X: the mapping's inputs, Y: the paired targets, f(X): the predictions), "
            "mean ± std over folds × seeds, n runs. Columns that are the same on every row are "
            "named in the title. Source: view `results_summary`."
        )
    ]
    for metric in sorted(by_metric):
        mine = by_metric[metric]
        measured_by = next((r["measured_by"] for r in mine if r["measured_by"]), None)
        shown = context.display(metric, measured_by)
        label = shown.label or metric
        better = {True: ", higher is better", False: ", lower is better"}.get(
            shown.higher_is_better, ""
        )
        name = f" (`{metric}`)" if label != metric else ""
        blocks.append(ReportText(f"### {label}{name}{better}"))
        spec = context.metrics.get(measured_by or "") or context.metrics.get(metric)
        declared = list(spec.compares) if spec is not None else []
        for comparison in sorted(
            {r["comparison"] for r in mine},
            key=lambda c: (declared.index(c) if c in declared else len(declared), c),
        ):
            table = _metric_table(
                [r for r in mine if r["comparison"] == comparison], label, comparison, shown
            )
            blocks.append(table)
            if not any(isinstance(b, ReportTable) and b.headline for b in blocks):
                blocks.append(_compact(table))  # the section's first table, for the terminal
        # A row metric declared plot=False (a chance level, a p-value) is in the tables only.
        figure = _depth_figure(context, mine, metric, label, measured_by) if shown.plot else None
        if figure is not None:
            blocks.append(figure)
    return blocks


def _varying(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
    varying, constant = [], []
    for column in CONFIG:
        values = {_shown(_config_value(r, column)) for r in rows}
        (varying if len(values) > 1 else constant).append(column)
    return varying, constant


def _metric_table(
    rows: list[Row], label: str, comparison: str, shown: MetricDisplay
) -> ReportTable:
    varying, constant = _varying(rows)
    rows = sorted(rows, key=lambda r: tuple(sort_key(_config_value(r, c)) for c in varying))
    best = None
    means = [float(r["mean"]) for r in rows if r["mean"] is not None and not math.isnan(r["mean"])]
    if shown.higher_is_better is not None and len(means) > 1:
        best = max(means) if shown.higher_is_better else min(means)
    body = []
    for r in rows:
        cell = mean_std(r["mean"], r["std"], shown.digits)
        if best is not None and r["mean"] is not None and float(r["mean"]) == best:
            cell = f"**{cell}**"
        body.append((*(_shown(_config_value(r, c)) for c in varying), cell, str(r["n"])))
    fixed = [
        f"{HEADERS.get(c, c)} {_shown(_config_value(rows[0], c))}"
        for c in constant
        if _config_value(rows[0], c) is not None
    ]
    note = "Bold: the best mean." if best is not None else ""
    return ReportTable(
        title=f"{label}({comparison_label(comparison)})"
        + (f": {', '.join(fixed)}" if fixed else ""),
        columns=(*(HEADERS.get(c, c) for c in varying), label, "n"),
        rows=body,
        note=note,
        level=4,
    )


def _compact(table: ReportTable) -> ReportTable:
    """The headline for an 80-column terminal: the table without its ± std and bold."""
    rows = [(*row[:-2], row[-2].strip("*").split(" ± ")[0], row[-1]) for row in table.rows[:40]]
    return attrs.evolve(table, rows=rows, headline=True, note="mean over n runs (report.md: ± std)")


def _depth_figure(
    context: ReportContext, rows: list[Row], metric: str, label: str, measured_by: str | None
) -> ReportFigure | None:
    placed = [r for r in rows if r["depth"] is not None and r["mean"] is not None]
    if len({r["depth"] for r in placed}) < 2:
        return None
    from xmodal import figures

    varying = [c for c in _varying(placed)[0] if c != "depth"]
    panels: dict[str, dict[str, list[tuple[int, float, float, float]]]] = {}
    for r in placed:
        line = " · ".join(f"{_shown(_config_value(r, c))}" for c in varying) or label
        panels.setdefault(comparison_label(r["comparison"]), {}).setdefault(line, []).append(
            (int(r["depth"]), float(r["mean"]), *error_bar(r)[:2])
        )
    shown_lines = sorted({line for lines in panels.values() for line in lines})[:LINES_PER_FIGURE]
    panels = {
        p: {line: pts for line, pts in lines.items() if line in shown_lines}
        for p, lines in panels.items()
    }
    spec = context.metrics.get(measured_by or "") or context.metrics.get(metric)
    # The row metric's own range (e.g. a difference in [-1, 1]) in place of its spec's.
    limits = context.display(metric, measured_by).value_range
    if limits is None and spec is not None:
        limits = spec.value_range
    if limits is not None and not all(math.isfinite(v) for v in limits):
        limits = None
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in metric)
    path = figures.depth_figure(
        panels,
        context.path(f"depth-{safe}.png"),
        title=f"{context.study}: {label} by depth",
        ylabel=label,
        legend_title=", ".join(HEADERS.get(c, c) for c in varying),
        limits=limits,
    )
    total = len({line for lines in panels.values() for line in lines})
    more = len({r_line for r_line in _all_lines(placed, varying, label)}) - total
    return ReportFigure(
        path,
        title=f"Figure: {label} by depth",
        caption="The mean over folds × seeds, one panel per comparison; error bars: "
        + error_bars_text(placed)
        + ". Mappings without a depth are in the tables only."
        + (f" {more} more line(s) are in the tables." if more > 0 else ""),
        level=4,
    )


def error_bar(row: Row) -> tuple[float, float, bool]:
    """The error bar of a `results_summary` row: (below, above, is_interval) — from the mean down
    to `ci_low` and up to `ci_high` (the confidence interval over items: the mean of the runs'
    bounds, docs/statistics.md "Folds and seeds"), or ± the std over runs where the row has no
    interval (NaN when neither: no bar)."""
    mean = float(row["mean"])
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is not None and high is not None and not math.isnan(low) and not math.isnan(high):
        # A percentile bootstrap's bounds need not contain the mean: the bar stops at the point.
        return max(0.0, mean - float(low)), max(0.0, float(high) - mean), True
    spread = math.nan if row.get("std") is None else float(row["std"])
    return spread, spread, False


def error_bars_text(rows: Sequence[Row]) -> str:
    """What the error bars of figures drawn from `rows` (via `error_bar`) show, for a caption."""
    kinds = {error_bar(r)[2] for r in rows}
    interval = "the confidence interval over items (mean of the runs' bounds)"
    if kinds == {True}:
        return interval
    if kinds == {False}:
        return "± one std over folds × seeds (the runs have no intervals)"
    return f"{interval}; ± one std over folds × seeds where the runs have no interval"


def _all_lines(rows: Iterable[Row], varying: list[str], label: str) -> set[str]:
    return {" · ".join(_shown(_config_value(r, c)) for c in varying) or label for r in rows}


CORE_SECTION = ReportSectionSpec(
    name="all-measurements",
    render=all_measurements,
    order=1000,
    description="every metric no other section presents, by comparison and configuration",
)

__all__ = [
    "Block",
    "Report",
    "ReportContext",
    "ReportError",
    "ReportFigure",
    "ReportTable",
    "ReportText",
    "build_report",
    "comparison_label",
    "mean_std",
    "number",
    "sort_key",
]
