"""The views `xmodal report` reads: one core view, and the views report sections declare.

The core view `results_summary` (schema migrations 5, 6 and 7, `xmodal.store.MIGRATIONS`) aggregates
every row metric of every study's current version over the runs that differ only in fold and
seed; it knows no component by name, so it serves any metric and mapping.

Report sections (hook `register_report_sections`, `ReportSectionSpec.views`) declare further
views, name -> SELECT. They are created or replaced in the database when a study runs (in the
transaction that records the study: `Store.record_study(views=...)`) and by `xmodal report` when
one is missing or its SQL changed; `report_views` (migration 5) records each view's plugin,
section and SQL. So `xmodal query` and plain DuckDB see them, and databases written before a view
existed get it. Views should read `current_results` (each study's current version, only the
measurements it plans), never `results`, so that a metric whose parameters changed shows only its
current rows. docs/report.md describes all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from xmodal.errors import XmodalError

if TYPE_CHECKING:
    import duckdb

    from xmodal.plugins import Registry

RESULTS_SUMMARY = """
CREATE OR REPLACE VIEW results_summary AS
    SELECT x.study, r.dataset, r.input_features, r.target_features, r.direction, r.mapping,
           r.depth, r.loss, r.kind, x.split, m.metric AS measured_by, m.params, x.metric,
           x.comparison, x.k, x.similarity, r.state,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std,
           min(x.value) AS min_value, max(x.value) AS max_value,
           CASE WHEN count(x.ci_low) = count(*) THEN avg(x.ci_low) END AS ci_low,
           CASE WHEN count(x.ci_high) = count(*) THEN avg(x.ci_high) END AS ci_high
    FROM current_results x
    JOIN runs r ON r.run_id = x.run_id
    LEFT JOIN measurements m ON m.measurement_id = x.measurement_id
    WHERE r.status = 'finished'
    GROUP BY ALL;
"""

# results_summary as schema migration 6 created it (migration 7 replaces it by RESULTS_SUMMARY:
# the run kind is `kind`, with `state`, its old name, kept). Frozen: migrations never change.
RESULTS_SUMMARY_6 = """
CREATE OR REPLACE VIEW results_summary AS
    SELECT x.study, r.dataset, r.input_features, r.target_features, r.direction, r.mapping,
           r.depth, r.loss, r.state, x.split, m.metric AS measured_by, m.params, x.metric,
           x.comparison, x.k, x.similarity,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std,
           min(x.value) AS min_value, max(x.value) AS max_value,
           CASE WHEN count(x.ci_low) = count(*) THEN avg(x.ci_low) END AS ci_low,
           CASE WHEN count(x.ci_high) = count(*) THEN avg(x.ci_high) END AS ci_high
    FROM current_results x
    JOIN runs r ON r.run_id = x.run_id
    LEFT JOIN measurements m ON m.measurement_id = x.measurement_id
    WHERE r.status = 'finished'
    GROUP BY ALL;
"""

# results_summary as schema migration 5 first created it (migration 6, in xmodal.store, replaces
# it by RESULTS_SUMMARY once results have confidence intervals). Frozen: migrations never change.
_RESULTS_SUMMARY_5 = """
CREATE OR REPLACE VIEW results_summary AS
    SELECT x.study, r.dataset, r.input_features, r.target_features, r.direction, r.mapping,
           r.depth, r.loss, r.state, x.split, m.metric AS measured_by, m.params, x.metric,
           x.comparison, x.k, x.similarity,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std
    FROM current_results x
    JOIN runs r ON r.run_id = x.run_id
    LEFT JOIN measurements m ON m.measurement_id = x.measurement_id
    WHERE r.status = 'finished'
    GROUP BY ALL;
"""

# Schema migration 5: the table that records the views report sections declared, and the core
# summary view (any metric, any mapping).
MIGRATION: str = (
    """
    CREATE TABLE report_views (
        name VARCHAR PRIMARY KEY,
        plugin VARCHAR,
        section VARCHAR,
        sql VARCHAR NOT NULL,
        installed_at TIMESTAMP
    );
    """
    + _RESULTS_SUMMARY_5
)


class ViewError(XmodalError):
    """A report section declares a view that cannot be created: a core name, two definitions
    of one name, a cycle, or SQL that DuckDB refuses."""


@attrs.frozen
class DeclaredView:
    """One view a report section declares: `name`, its SELECT `sql`, and who declared it."""

    name: str
    sql: str
    section: str
    plugin: str
    fix: str = ""

    @property
    def create(self) -> str:
        """The statement that creates (or replaces) it."""
        return f"CREATE OR REPLACE VIEW {self.name} AS\n    {self.sql.strip().rstrip(';')};"


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).rstrip(";") == " ".join(b.split()).rstrip(";")


def _core_objects() -> set[str]:
    from xmodal.store import schema_objects  # store imports this module

    tables, views = schema_objects()
    return {*tables, *views, "schema_migrations"}


def declared_views(registry: Registry) -> list[DeclaredView]:
    """Every view the registered report sections declare, each once, in an order that creates
    the views a view reads before it. Raises `ViewError` for a core name, one name with two
    different definitions, or views that read each other in a cycle."""
    sections = sorted(registry.report_sections.values(), key=lambda s: (s.order, s.name))
    core = _core_objects()
    found: dict[str, DeclaredView] = {}
    for section in sections:
        plugin = registry.owners.get(("report_sections", section.name), "?")
        for name, sql in section.views.items():
            fix = registry.plugin_filter.skip_fix(plugin)
            view = DeclaredView(name, sql, section.name, plugin, fix)
            if name in core:
                raise ViewError(
                    f"report section {section.name!r} (plugin {plugin!r}) declares a view "
                    f"{name!r}, which is a table or view of xmodal's own; rename the view"
                )
            other = found.get(name)
            if other is None:
                found[name] = view
            elif not _same(other.sql, sql):
                raise ViewError(
                    f"report sections {other.section!r} (plugin {other.plugin!r}) and "
                    f"{section.name!r} (plugin {plugin!r}) declare the view {name!r} with "
                    "different SQL; rename one of them"
                )
    return _dependency_order(list(found.values()))


def _reads(view: DeclaredView, names: Iterable[str]) -> set[str]:
    text = re.sub(r"--[^\n]*|'(?:[^']|'')*'", " ", view.sql)  # comments and string literals
    return {n for n in names if n != view.name and re.search(rf"\b{re.escape(n)}\b", text)}


def _dependency_order(views: list[DeclaredView]) -> list[DeclaredView]:
    by_name = {v.name: v for v in views}
    needs = {v.name: _reads(v, by_name) for v in views}
    ordered: list[DeclaredView] = []
    done: set[str] = set()
    while len(ordered) < len(views):
        ready = [v for v in views if v.name not in done and needs[v.name] <= done]
        if not ready:
            cycle = sorted(n for n in by_name if n not in done)
            raise ViewError(
                f"report views read each other in a cycle: {', '.join(cycle)}; "
                "each view may read only views declared without reading it"
            )
        for v in ready:
            ordered.append(v)
            done.add(v.name)
    return ordered


def install_views(con: duckdb.DuckDBPyConnection, views: Sequence[DeclaredView], when: Any) -> None:
    """Create or replace `views` (in order) and record them in `report_views`, on a connection
    inside a write transaction. SQL that DuckDB refuses raises `ViewError` naming the view, its
    section and plugin (the transaction is then rolled back by the caller)."""
    import duckdb

    for view in views:
        try:  # quoted: a name that is also an SQL keyword still works
            con.execute(view.create.replace(f"VIEW {view.name} AS", f'VIEW "{view.name}" AS', 1))
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ViewError(
                f"the view {view.name!r} of report section {view.section!r} (plugin "
                f"{view.plugin!r}) cannot be created: {first}\n"
                f"  fix its SQL{', or ' + view.fix if view.fix else ''}"
            ) from None
        con.execute(
            "INSERT OR REPLACE INTO report_views VALUES (?, ?, ?, ?, ?)",
            [view.name, view.plugin, view.section, view.sql.strip(), when],
        )


def outdated(con: duckdb.DuckDBPyConnection, views: Sequence[DeclaredView]) -> list[str]:
    """The names of `views` that the database lacks or recorded with other SQL."""
    if not views:
        return []
    present = {
        name
        for (name,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    }
    recorded: dict[str, str] = {}
    has_table = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'report_views'"
    ).fetchone()[0]
    if has_table:
        recorded = dict(con.execute("SELECT name, sql FROM report_views").fetchall())
    return [
        v.name
        for v in views
        if v.name not in present or v.name not in recorded or not _same(recorded[v.name], v.sql)
    ]
