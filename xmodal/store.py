"""The results store: one embedded DuckDB file, long-format tables, migrations, one-writer safety.

Writers hold the database only for the short transaction that records one run, so `xmodal query`
(read-only) can open it between writes. Every run's rows land in one transaction or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import duckdb

from xmodal.errors import XmodalError
from xmodal.records import MeasurementRow, RunRow, columns
from xmodal.views import MIGRATION as REPORT_VIEWS
from xmodal.views import RESULTS_SUMMARY, RESULTS_SUMMARY_6, DeclaredView, install_views

DEFAULT_DB = "xmodal.duckdb"

# Each study's results that its current version owes (migrations 4 and 6 create the view:
# `res.*` is expanded when a view is made, so 6 makes it again after adding columns to results).
CURRENT_RESULTS = """
        SELECT sr.study, res.*
        FROM current_studies l
        JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
        JOIN results res ON res.run_id = sr.run_id
        WHERE res.measurement_id IS NULL
           OR EXISTS (SELECT 1 FROM study_measurements sm
                      WHERE sm.study = l.name AND sm.study_hash = l.hash
                        AND sm.measurement_id = res.measurement_id);
"""

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE studies (
        name VARCHAR NOT NULL,
        hash VARCHAR NOT NULL,
        path VARCHAR,
        source VARCHAR,
        created TIMESTAMP NOT NULL,
        PRIMARY KEY (name, hash)
    );
    CREATE TABLE study_runs (
        study VARCHAR NOT NULL,
        study_hash VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (study, study_hash, run_id)
    );
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        study VARCHAR,
        dataset VARCHAR,
        input_features VARCHAR,
        target_features VARCHAR,
        direction VARCHAR,
        split VARCHAR,
        fold INTEGER,
        mapping VARCHAR,
        depth INTEGER,
        loss VARCHAR,
        state VARCHAR,
        seed INTEGER,
        epochs INTEGER,
        batch_size VARCHAR,
        optimizer VARCHAR,
        lr DOUBLE,
        n_train INTEGER,
        n_test INTEGER,
        config JSON,
        status VARCHAR NOT NULL,
        error VARCHAR,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        train_seconds DOUBLE,
        probe_seconds DOUBLE,
        torch_threads INTEGER,
        xmodal_version VARCHAR,
        git_commit VARCHAR,
        torch_version VARCHAR,
        numpy_version VARCHAR
    );
    CREATE TABLE results (
        run_id VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        comparison VARCHAR NOT NULL,
        k INTEGER,
        similarity VARCHAR,
        epoch INTEGER,
        value DOUBLE
    );
    CREATE TABLE curves (
        run_id VARCHAR NOT NULL,
        epoch INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        comparison VARCHAR,
        k INTEGER,
        similarity VARCHAR,
        value DOUBLE
    );
    CREATE VIEW study_results AS
        SELECT sr.study, r.*, res.split AS result_split, res.metric, res.comparison, res.k,
               res.similarity, res.epoch, res.value
        FROM study_runs sr
        JOIN studies s ON s.name = sr.study AND s.hash = sr.study_hash
        JOIN runs r USING (run_id)
        JOIN results res USING (run_id);
    """,
    # 2: once the paper's tables and figures as views. Report plugins now declare their views
    # (hook register_report_sections, xmodal/views.py); databases that applied this keep theirs
    # until a study run or `xmodal report` replaces them with the plugin's.
    "-- (nothing: views of report plugins are created when a study runs)",
    # 3: study_results counted a result once per study version and carried runs.study twice;
    # it now covers each study's current version only (older versions: join study_runs).
    """
    CREATE VIEW current_studies AS
        SELECT name, arg_max(hash, created) AS hash, max(created) AS created
        FROM studies GROUP BY name;
    CREATE OR REPLACE VIEW study_results AS
        SELECT sr.study, r.* EXCLUDE (study), res.split AS result_split, res.metric,
               res.comparison, res.k, res.similarity, res.epoch, res.value
        FROM current_studies l
        JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
        JOIN runs r USING (run_id)
        JOIN results res USING (run_id);
    """,
    # 4: two stages per run. Runs record their data fingerprint and the artifact (stored
    # predictions) that later measurements read; results belong to measurements (run + metric +
    # parameters), and each study version lists the measurements it owes. Views show, for each
    # study's current version, only the measurements that version plans (older rows stay). (It
    # also replaced migration 2's views: now the report plugin's, created when a study runs.)
    """
    ALTER TABLE runs ADD COLUMN data_fingerprint VARCHAR;
    ALTER TABLE runs ADD COLUMN artifact VARCHAR;
    ALTER TABLE results ADD COLUMN measurement_id VARCHAR;
    CREATE TABLE measurements (
        measurement_id VARCHAR PRIMARY KEY,
        run_id VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        params JSON,
        include_self BOOLEAN,
        status VARCHAR NOT NULL,
        error VARCHAR,
        seconds DOUBLE,
        measured_at TIMESTAMP
    );
    CREATE TABLE study_measurements (
        study VARCHAR NOT NULL,
        study_hash VARCHAR NOT NULL,
        measurement_id VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        PRIMARY KEY (study, study_hash, measurement_id)
    );
    CREATE VIEW current_results AS
    """
    + CURRENT_RESULTS
    + """
    CREATE OR REPLACE VIEW study_results AS
        SELECT x.study, r.* EXCLUDE (study), x.split AS result_split, x.metric, x.comparison,
               x.k, x.similarity, x.epoch, x.value, x.measurement_id
        FROM current_results x
        JOIN runs r USING (run_id);
    """,
    # 5: the record of report plugins' views, and the core summary of every metric.
    REPORT_VIEWS,
    # 6: a result may carry a confidence interval over items (ci_low, ci_high; NULL when its
    # metric gives none; docs/statistics.md). current_results and study_results carry them;
    # results_summary averages them over folds and seeds and adds the smallest and largest value.
    """
    ALTER TABLE results ADD COLUMN ci_low DOUBLE;
    ALTER TABLE results ADD COLUMN ci_high DOUBLE;
    CREATE OR REPLACE VIEW current_results AS
    """
    + CURRENT_RESULTS
    + """
    CREATE OR REPLACE VIEW study_results AS
        SELECT x.study, r.* EXCLUDE (study), x.split AS result_split, x.metric, x.comparison,
               x.k, x.similarity, x.epoch, x.value, x.measurement_id, x.ci_low, x.ci_high
        FROM current_results x
        JOIN runs r USING (run_id);
    """
    + RESULTS_SUMMARY_6,
    # 7: the glossary's names (docs/glossary.md). runs.state -> runs.kind (the run kind),
    # runs.split -> runs.split_strategy, runs.probe_seconds -> runs.measure_seconds: the table is
    # rebuilt with the new names, and each old name stays as a generated column reading the new
    # one (queryable, never written; RunRow.OLD_NAMES). study_results.split is now the split a
    # result was measured on (results.split), as everywhere else; result_split stays beside it.
    """
    CREATE TABLE runs_7 (
        run_id VARCHAR PRIMARY KEY,
        study VARCHAR,
        dataset VARCHAR,
        input_features VARCHAR,
        target_features VARCHAR,
        direction VARCHAR,
        split_strategy VARCHAR,
        fold INTEGER,
        mapping VARCHAR,
        depth INTEGER,
        loss VARCHAR,
        kind VARCHAR,
        seed INTEGER,
        epochs INTEGER,
        batch_size VARCHAR,
        optimizer VARCHAR,
        lr DOUBLE,
        n_train INTEGER,
        n_test INTEGER,
        config JSON,
        status VARCHAR NOT NULL,
        error VARCHAR,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        train_seconds DOUBLE,
        measure_seconds DOUBLE,
        torch_threads INTEGER,
        xmodal_version VARCHAR,
        git_commit VARCHAR,
        torch_version VARCHAR,
        numpy_version VARCHAR,
        data_fingerprint VARCHAR,
        artifact VARCHAR,
        split VARCHAR GENERATED ALWAYS AS (split_strategy) VIRTUAL,
        state VARCHAR GENERATED ALWAYS AS (kind) VIRTUAL,
        probe_seconds DOUBLE GENERATED ALWAYS AS (measure_seconds) VIRTUAL
    );
    INSERT INTO runs_7 BY NAME
        SELECT * EXCLUDE (split, state, probe_seconds), split AS split_strategy, state AS kind,
               probe_seconds AS measure_seconds
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_7 RENAME TO runs;
    CREATE OR REPLACE VIEW study_results AS
        SELECT x.study, r.* EXCLUDE (study, split), x.split, x.split AS result_split, x.metric,
               x.comparison, x.k, x.similarity, x.epoch, x.value, x.measurement_id, x.ci_low,
               x.ci_high
        FROM current_results x
        JOIN runs r USING (run_id);
    """
    + RESULTS_SUMMARY,
]

# The `runs` and `measurements` columns are the fields of their records (xmodal.records); results
# and curves rows are tuples in the order of these names. Every insert names its columns.
RUN_COLUMNS = columns(RunRow)
MEASUREMENT_COLUMNS = columns(MeasurementRow)
RESULT_COLUMNS = (
    "run_id", "measurement_id", "split", "metric", "comparison", "k", "similarity", "epoch", "value",
    "ci_low", "ci_high",
)  # fmt: skip
# Result tuples spooled by versions before schema 6 end at "value": recorded with no interval.
_RESULT_COLUMNS_5 = RESULT_COLUMNS[:-2]
CURVE_COLUMNS = ("run_id", "epoch", "split", "metric", "comparison", "k", "similarity", "value")


@attrs.frozen
class RunRecord:
    """What one job hands the store: the run's row (when it trained), its curves, and the
    measurements it made with their result rows. `replace_all` (a forced redo) also forgets the
    run's measurements that this record does not carry. (Plain dicts in place of the row
    records are what older versions spooled; they are converted when written.)"""

    run_id: str
    run: RunRow | Mapping[str, Any] | None
    measurements: Sequence[MeasurementRow | Mapping[str, Any]]
    results: list[tuple[Any, ...]]
    curves: list[tuple[Any, ...]]
    replace_all: bool = False


class StoreError(XmodalError):
    """The database cannot be opened, is locked, or refused a statement."""


def default_db_path() -> Path:
    return Path(os.environ.get("XMODAL_DB", DEFAULT_DB))


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """The DuckDB file of a project. Connections are short-lived; writes retry while locked."""

    def __init__(self, path: str | Path, lock_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise StoreError(
                f"{self.path}: no results database here yet (run a study first, or pass --db)"
            )
        if not read_only:
            parent = self.path.resolve().parent
            if not parent.is_dir():
                raise StoreError(f"{self.path}: directory {parent} does not exist")
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.02
        config = READ_CONFIG if read_only else {}
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only, config=dict(config))
            except duckdb.IOException as exc:
                text = str(exc)
                if not _is_lock_conflict(text) or time.monotonic() > deadline:
                    raise StoreError(
                        _database_problem(self.path, "cannot open the results database", exc)
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                raise StoreError(
                    _database_problem(self.path, "cannot open the results database", exc)
                ) from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection that can reach no file but the database.

        DuckDB refuses statements that write, and with external access disabled and the
        configuration locked (READ_CONFIG) it also refuses ATTACH, COPY, EXPORT, reading other
        files, extensions and SET. A database written by a newer xmodal is refused.
        """
        con = self._connect(read_only=True)
        try:
            check_schema_version(con, self.path)
            yield con
        except duckdb.Error as exc:
            raise StoreError(_read_problem(self.path, con, exc)) from None
        finally:
            _close_quietly(con)

    @contextlib.contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A migrated read-write connection inside one transaction (rolled back on any error)."""
        con = self._connect(read_only=False)
        try:
            check_schema_version(con, self.path)  # before migrate() touches a newer schema
            migrate(con)
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                # After a failed commit (full disk, I/O error) DuckDB has already ended the
                # transaction, and rollback() would raise "no transaction is active" in place
                # of the error that matters: report the original one.
                _rollback_quietly(con)
                raise
        except RuntimeError as exc:
            # DuckDB turns a Ctrl-C (or the SIGTERM handler's KeyboardInterrupt) that lands
            # inside a statement into "Query interrupted"; it is the user's stop, not an error.
            if "interrupted" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.Error as exc:
            raise StoreError(_database_problem(self.path, "write failed", exc)) from None
        finally:
            # Closing may checkpoint; a failure there loses nothing committed (the WAL keeps it)
            # and must not replace the error being raised.
            _close_quietly(con)

    # -- writes ---------------------------------------------------------------------------------

    def record_study(
        self,
        name: str,
        study_hash: str,
        path: str,
        source: str,
        run_ids: Sequence[str],
        measurements: Sequence[tuple[str, str]] = (),
        views: Sequence[DeclaredView] = (),
    ) -> None:
        """Remember a study version, the runs it plans and the measurements (measurement id,
        run id) it owes (idempotent); create or replace the report `views` in the same
        transaction (`xmodal.views.declared_views`)."""
        with self.writing() as con:
            install_views(con, views, now())
            con.execute(
                # `created` is refreshed whenever a version is run, so going back to an earlier
                # version of a study makes it the current one again.
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name, hash) DO UPDATE SET created = excluded.created",
                [name, study_hash, path, source, now()],
            )
            for table in ("study_runs", "study_measurements"):
                con.execute(
                    f"DELETE FROM {table} WHERE study = ? AND study_hash = ?", [name, study_hash]
                )
            if run_ids:
                con.executemany(
                    "INSERT INTO study_runs VALUES (?, ?, ?, ?)",
                    [[name, study_hash, rid, i] for i, rid in enumerate(run_ids)],
                )
            if measurements:
                con.executemany(
                    "INSERT INTO study_measurements VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [[name, study_hash, mid, rid] for mid, rid in measurements],
                )

    def install_views(self, views: Sequence[DeclaredView]) -> None:
        """Create or replace report `views` in one transaction (xmodal.views)."""
        with self.writing() as con:
            install_views(con, views, now())

    def record(self, record: RunRecord) -> None:
        """Write what one job produced, in one transaction (idempotent: it replaces the run's
        row and curves when it carries them, and each measurement it carries)."""
        self.record_many([record])

    def record_many(self, records: Sequence[RunRecord]) -> None:
        """Write several jobs' records in one transaction (each as `record` would)."""
        if len({r.run_id for r in records}) < len(records):
            for one in records:  # the same run twice: in order, each replacing the one before
                self.record_many([one])
            return
        runs: list[RunRow] = []
        measurements: list[MeasurementRow] = []
        curves: list[tuple[Any, ...]] = []
        results: list[tuple[Any, ...]] = []
        with self.writing() as con:
            for record in records:
                if record.run is not None:
                    tables = ("results", "measurements") if record.replace_all else ()
                    for table in (*tables, "curves", "runs"):
                        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [record.run_id])
                    runs.append(_as_row(RunRow, record.run))
                    curves.extend(record.curves)
                made = [_as_row(MeasurementRow, m) for m in record.measurements]
                if made:
                    for table in ("results", "measurements"):
                        con.execute(
                            f"DELETE FROM {table} WHERE measurement_id IN (SELECT unnest(?))",
                            [[m.measurement_id for m in made]],
                        )
                    measurements.extend(made)
                results.extend(_with_interval(r) for r in record.results)
            _insert_rows(con, runs)
            _insert(con, "curves", CURVE_COLUMNS, curves)
            _insert_rows(con, measurements)
            _insert(con, "results", RESULT_COLUMNS, results)

    def mark_running(self, run: RunRow) -> None:
        """Record that a run has started; a finished run being redone keeps its results until then."""
        with self.writing() as con:
            con.execute(
                f"{RunRow.insert_sql()} "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'running', started_at = excluded.started_at, "
                "error = NULL WHERE runs.status <> 'finished'",
                _as_row(RunRow, run).values(),
            )

    def forget_artifact(self, run_id: str) -> None:
        """The run's stored predictions are unusable: its next run trains it again."""
        with self.writing() as con:
            con.execute("UPDATE runs SET artifact = NULL WHERE run_id = ?", [run_id])

    def clear_running(self, run_ids: Sequence[str]) -> None:
        """Forget the `running` marks of runs that were stopped cleanly before they ended."""
        if run_ids:
            with self.writing() as con:
                con.execute(
                    "DELETE FROM runs WHERE status = 'running' AND run_id IN (SELECT unnest(?))",
                    [list(run_ids)],
                )

    # -- reads ----------------------------------------------------------------------------------

    def run_statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Status of each of `run_ids` that the store knows ('finished', 'failed', 'running')."""
        return {rid: status for rid, (status, _) in self.run_states(run_ids).items()}

    def run_states(self, run_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """(status, artifact digest) of each of `run_ids` that the store knows."""
        if not self.path.exists() or not run_ids:
            return {}
        with self.reading() as con:
            if not _has_table(con, "runs"):
                return {}
            artifact = "artifact" if _has_column(con, "runs", "artifact") else "NULL"
            rows = con.execute(
                f"SELECT run_id, status, {artifact} FROM runs WHERE run_id IN (SELECT unnest(?))",
                [list(run_ids)],
            ).fetchall()
        return {rid: (status, digest) for rid, status, digest in rows}

    def measurement_statuses(self, measurement_ids: Sequence[str]) -> dict[str, str]:
        """Status ('finished' or 'failed') of each of `measurement_ids` that the store knows."""
        if not self.path.exists() or not measurement_ids:
            return {}
        with self.reading() as con:
            if not _has_table(con, "measurements"):
                return {}
            rows = con.execute(
                "SELECT measurement_id, status FROM measurements "
                "WHERE measurement_id IN (SELECT unnest(?))",
                [list(measurement_ids)],
            ).fetchall()
        return dict(rows)

    def referenced_artifacts(self) -> set[str]:
        """Artifact digests of runs that some study version plans (what `xmodal gc` keeps)."""
        if not self.path.exists():
            return set()
        with self.reading() as con:
            if not _has_column(con, "runs", "artifact"):
                return set()
            rows = con.execute(
                "SELECT DISTINCT r.artifact FROM runs r JOIN study_runs sr USING (run_id) "
                "WHERE r.artifact IS NOT NULL"
            ).fetchall()
        return {digest for (digest,) in rows}

    def query(
        self, sql: str, timeout: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only SQL statement; return column names and rows.

        Only statements that read are accepted (`check_query`), on a `reading()` connection that
        can reach no other file. `timeout` seconds (None or 0: no limit) interrupt the query;
        Ctrl-C interrupts it at once (QueryInterrupted). Nothing is ever written.
        """
        result = self.query_result(sql, timeout)
        return result.columns, result.rows

    def query_result(self, sql: str, timeout: float | None = None) -> QueryResult:
        """`query`, with the DuckDB type of each column (to tell numbers from text)."""
        check_query(sql)
        with self.reading() as con:
            try:
                return _execute_interruptibly(con, sql, timeout)
            except duckdb.Error as exc:
                raise StoreError(_query_problem(self.path, con, exc)) from None

    def query_to_parquet(self, sql: str, path: Path, timeout: float | None = None) -> int:
        """Run one read-only statement as `query` does and write its result to a Parquet file at
        `path` (replaced whole, or left as it was if the query fails); return the rows written.

        The statement runs on the sandboxed read connection. Its result reaches the file through
        an Arrow stream read by a second, in-memory connection that runs no user SQL: the query
        itself still cannot write (a COPY in it is refused), and column types are kept.
        """
        check_query(sql)
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.xmodal-tmp")
        writer = duckdb.connect(":memory:")
        try:
            with self.reading() as con:

                def write(con: duckdb.DuckDBPyConnection, sql: str) -> int:
                    relation = con.sql(sql)
                    if relation is None:  # pragma: no cover - check_query admits only reads
                        raise StoreError("the statement returns no result to write")
                    try:
                        writer.from_arrow(_ArrowStream(relation)).write_parquet(str(temporary))
                    except duckdb.Error as exc:
                        if "Arrow source" in str(exc) or "Interrupt" in str(exc):
                            # the query's own error (or the timeout's), reported as such
                            inner = re.sub(r"^.*?Arrow source failed: \w+: ", "", str(exc))
                            raise type(exc)(inner) from None
                        raise StoreError(f"{path}: cannot write the Parquet file ({exc})") from None
                    found = writer.execute("SELECT count(*) FROM read_parquet(?)", [str(temporary)])
                    return int(found.fetchone()[0])  # type: ignore[index]

                try:
                    rows = _execute_interruptibly(con, sql, timeout, write, also=(writer,))
                except duckdb.Error as exc:
                    raise StoreError(_query_problem(self.path, con, exc)) from None
            os.replace(temporary, path)
            return rows
        finally:
            writer.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def earlier_runs(self, study: str, current_hash: str) -> set[str]:
        """Run ids planned by earlier versions of a study (to tell new runs from old pending ones)."""
        if not self.path.exists():
            return set()
        with self.reading() as con:
            if not _has_table(con, "study_runs"):
                return set()
            rows = con.execute(
                "SELECT DISTINCT run_id FROM study_runs WHERE study = ? AND study_hash <> ?",
                [study, current_hash],
            ).fetchall()
        return {r for (r,) in rows}

    def study_status(self) -> list[tuple[Any, ...]]:
        """Per study (latest version): planned, finished, failed, running and pending run counts.

        A run counts as finished when it is trained and every measurement the version owes is
        made; failed when its training or one of those measurements failed; pending otherwise.
        """
        sql = """
            WITH owed AS (
                SELECT sm.study, sm.study_hash, sm.run_id, count(*) AS owed,
                       count(*) FILTER (WHERE m.status = 'finished') AS made,
                       count(*) FILTER (WHERE m.status = 'failed') AS broken
                FROM study_measurements sm LEFT JOIN measurements m USING (measurement_id)
                GROUP BY ALL
            )
            SELECT l.name, l.hash, count(sr.run_id) AS planned,
                   count(*) FILTER (WHERE r.status = 'finished'
                                    AND coalesce(o.made, 0) = coalesce(o.owed, 0)) AS finished,
                   count(*) FILTER (WHERE r.status = 'failed' OR coalesce(o.broken, 0) > 0)
                       AS failed,
                   count(*) FILTER (WHERE r.status = 'running') AS running,
                   count(*) FILTER (WHERE sr.run_id IS NOT NULL AND (r.status IS NULL
                                    OR (r.status = 'finished' AND coalesce(o.broken, 0) = 0
                                        AND coalesce(o.made, 0) < coalesce(o.owed, 0))))
                       AS pending,
                   l.created
            FROM current_studies l
            LEFT JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
            LEFT JOIN runs r USING (run_id)
            LEFT JOIN owed o ON o.study = l.name AND o.study_hash = l.hash AND o.run_id = sr.run_id
            GROUP BY ALL ORDER BY l.name
        """
        if not self.path.exists():
            return []
        with self.reading() as con:
            if not _has_table(con, "studies"):
                return []
            if not _has_table(con, "study_measurements"):
                raise StoreError(
                    f"{self.path}: this database predates measurements; "
                    "run any study once (`xmodal run`) to update it"
                )
            return con.execute(sql).fetchall()


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = ? AND column_name = ?",
            [table, column],
        ).fetchone()[0]
    )


def _as_row(record: type[Any], row: Any) -> Any:
    """`row` as a `record` (a plain dict of column values is converted)."""
    return row if isinstance(row, record) else record.from_mapping(row)


def _with_interval(result: Sequence[Any]) -> Sequence[Any]:
    """A results tuple spooled before schema 6 (no ci_low, ci_high) gets NULL bounds."""
    return (*result, None, None) if len(result) == len(_RESULT_COLUMNS_5) else result


def _insert_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[RunRow | MeasurementRow]) -> None:
    """Insert records into their table by column name (`INSERT ... BY NAME`)."""
    if rows:
        con.executemany(type(rows[0]).insert_sql(), [row.values() for row in rows])


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Any]
) -> None:
    """Insert tuples by column name, so a column added later never shifts the values."""
    if rows:
        con.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [list(r) for r in rows],
        )


# -- safe reading ----------------------------------------------------------------------------------

# Every read-only connection: no file but the database itself (no ATTACH, COPY, EXPORT, read_csv
# of other files, extensions, secrets), and no SET/PRAGMA that could turn that back on.
READ_CONFIG: dict[str, Any] = {"enable_external_access": False, "lock_configuration": True}

# Statement kinds `xmodal query` runs. SELECT covers WITH, FROM-first, VALUES, DESCRIBE, SHOW,
# SUMMARIZE and UNPIVOT; PIVOT parses as MULTI; EXPLAIN [ANALYZE] runs a SELECT.
QUERY_STATEMENTS = ("SELECT", "EXPLAIN", "MULTI")
QUERY_HELP = (
    "xmodal query runs one statement that reads: SELECT (or WITH, FROM, VALUES, DESCRIBE, SHOW, "
    "SUMMARIZE, PIVOT, EXPLAIN)"
)


class QueryInterrupted(StoreError):
    """Ctrl-C stopped a running query (nothing is written by a query, so nothing is lost)."""

    exit_code = 130


class QueryTimeout(StoreError):
    """A query ran longer than its --timeout and was interrupted."""


def schema_objects() -> tuple[list[str], list[str]]:
    """The tables and the views the migrations create (and do not drop), in order of creation."""
    names: dict[str, str] = {}
    position: dict[str, int] = {}  # a name's first creation (kept when a table is rebuilt)
    pattern = re.compile(
        r"\b(CREATE(?:\s+OR\s+REPLACE)?|DROP)\s+(TABLE|VIEW)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(\w+)",
        re.IGNORECASE,
    )
    renamed = re.compile(r"\bALTER\s+TABLE\s+(\w+)\s+RENAME\s+TO\s+(\w+)", re.IGNORECASE)
    for sql in MIGRATIONS:
        for verb, kind, name in pattern.findall(sql):
            if verb.upper() == "DROP":
                names.pop(name, None)
            else:
                names.setdefault(name, kind.upper())
                position.setdefault(name, len(position))
        for old, new in renamed.findall(sql):
            names[new] = names.pop(old)
            position.setdefault(new, len(position))
    ordered = sorted(names, key=position.__getitem__)
    return [n for n in ordered if names[n] == "TABLE"], [n for n in ordered if names[n] == "VIEW"]


def check_query(sql: str) -> None:
    """Refuse anything but one statement that reads, before the database is opened."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {exc}") from None
    if not statements:
        raise StoreError(f"no SQL statement given; {QUERY_HELP}")
    if len(statements) > 1:
        raise StoreError(
            f"xmodal query is read-only and runs one statement at a time; {len(statements)} "
            f"were given. {QUERY_HELP}."
        )
    try:
        kind = statements[0].type.name
    except ValueError:  # a statement kind the Python binding has no name for (UPDATE EXTENSIONS)
        kind = "this kind of"
    if kind not in QUERY_STATEMENTS or (kind == "MULTI" and not _starts_with(sql, "PIVOT")):
        raise StoreError(
            f"xmodal query is read-only: {kind} statements are refused; {QUERY_HELP}.\n"
            "  (tables and settings: DESCRIBE runs, SHOW TABLES, SELECT * FROM duckdb_settings())"
        )


def _starts_with(sql: str, keyword: str) -> bool:
    return sql.lstrip(" \t\r\n(").upper().startswith(keyword)


@attrs.frozen
class QueryResult:
    """What a query returned: column names, their DuckDB types (e.g. `DOUBLE`, `VARCHAR`,
    `DECIMAL(4,2)`) and the rows, as DuckDB's Python values."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def _fetch_all(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    cursor = con.execute(sql)
    if cursor.description is None:
        return QueryResult([], [], [])
    described = cursor.description
    return QueryResult([d[0] for d in described], [str(d[1]) for d in described], cursor.fetchall())


class _ArrowStream:
    """A relation as an Arrow C stream (PyCapsule) alone, so that another connection reads its
    rows (executing it on its own connection) without pyarrow and without seeing the relation."""

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self._relation = relation

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._relation.__arrow_c_stream__(requested_schema)


def _execute_interruptibly(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    timeout: float | None,
    consume: Callable[[duckdb.DuckDBPyConnection, str], Any] = _fetch_all,
    also: Sequence[duckdb.DuckDBPyConnection] = (),
) -> Any:
    """Run `consume(con, sql)` (by default: execute and fetch every row as a `QueryResult`) in a
    helper thread so that a timeout or Ctrl-C can `interrupt()` it, and the connections in `also`
    that it uses, promptly.

    DuckDB releases the GIL while it works, but the main thread only sees SIGINT between Python
    bytecodes: executing there would leave Ctrl-C waiting for the query to end.
    """
    outcome: dict[str, Any] = {}
    # An Event, not Thread.join(): a join interrupted by Ctrl-C can leave is_alive() False while
    # the thread still runs (CPython 3.11), and the connection must not be closed under it.
    done = threading.Event()
    connections = (con, *also)

    def work() -> None:
        try:
            outcome["value"] = consume(con, sql)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name="xmodal-query", daemon=True)
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = False
    worker.start()
    try:
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                for each in connections:
                    each.interrupt()
                break
            wait = 0.1 if deadline is None else min(0.1, max(deadline - time.monotonic(), 0.0))
            done.wait(wait)
    except KeyboardInterrupt:
        _stop(connections, done)
        raise QueryInterrupted("query interrupted (Ctrl-C); a query changes nothing") from None
    _stop(connections, done)
    if "value" in outcome:
        return outcome["value"]  # finished just as the timeout struck: keep the answer
    if timed_out:
        raise QueryTimeout(
            f"query timed out after {timeout:g} s (interrupted; nothing was changed); "
            "narrow it, or pass --timeout SECONDS (0 = no limit)"
        )
    raise outcome["error"]


def _stop(connections: Sequence[duckdb.DuckDBPyConnection], done: threading.Event) -> None:
    """Wait for an interrupted query's thread to end, so the connections are closed only then."""
    while not done.is_set():
        for con in connections:
            con.interrupt()
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C only repeats the request
            done.wait(0.1)


def _query_problem(path: Path, con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    text = str(exc)
    if any(marker in text.lower() for marker in _DAMAGE):
        return _database_problem(path, "query failed", exc)
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in text:
        first = text.splitlines()[0] if text else type(exc).__name__
        return (
            "xmodal query reads the results database only: other files, ATTACH, COPY, EXPORT, "
            f"extensions and secrets are refused ({first})"
        )
    if "read-only" in text or "read only" in text or "configuration has been locked" in text:
        return f"xmodal query is read-only: statements that change anything are refused ({text})"
    return f"query failed: {text}{_older_schema_hint(con, exc)}"


def _is_lock_conflict(text: str) -> bool:
    """Another process holds the file (DuckDB's wording), as opposed to any other I/O error."""
    low = text.lower()
    return "could not set lock" in low or "conflicting lock" in low


_DAMAGE = (
    "not a valid duckdb database",
    "corrupt",
    "checksum",
    "could not read enough bytes",
    "invalid block",
    "serialization error",
)


def _database_problem(path: Path, action: str, exc: BaseException) -> str:
    """One message for an error on the database file, with the fix its cause calls for."""
    text = str(exc)
    low = text.lower()
    if any(marker in low for marker in _DAMAGE):
        return (
            f"{path}: {action}: the file is damaged or is not an xmodal results database "
            f"({text.splitlines()[0]}).\n"
            "  Restore it from a backup, or move it aside: the next `xmodal run` starts a new "
            "database (finished runs are computed again)."
        )
    if "no space left" in low or "disk full" in low or "quota" in low:
        return (
            f"{path}: {action}: {text}\n"
            "  Free disk space and run the same command again: every run recorded before is kept."
        )
    return f"{path}: {action}: {text}"


def _read_problem(path: Path, con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    """A failed internal read: a damaged file, an older schema, or the plain DuckDB error."""
    hint = _older_schema_hint(con, exc)
    if hint:
        return f"{path}: {exc}{hint}"
    return _database_problem(path, "cannot read the results database", exc)


def _older_schema_hint(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    """When a table or view is missing from a database an older xmodal wrote: how to upgrade it."""
    if not isinstance(exc, duckdb.CatalogException):
        return ""
    try:
        version = schema_version(con)
    except duckdb.Error:
        return ""
    if version is None or version >= len(MIGRATIONS):
        return ""
    return (
        f"\n  This database has schema {version}, written by an older xmodal; this xmodal writes "
        f"schema {len(MIGRATIONS)}. The next `xmodal run` on it upgrades it."
    )


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The newest migration applied to this database (None: not an xmodal database yet)."""
    if not _has_table(con, "schema_migrations"):
        return None
    # fetchall: a finished result, so that the connection can run a relation next (a fetchone
    # would leave it "in use" for DuckDB 2's relation and Arrow APIs)
    [(version,)] = con.execute("SELECT max(version) FROM schema_migrations").fetchall()
    return version


def check_schema_version(con: duckdb.DuckDBPyConnection, path: Path | str | None = None) -> None:
    """Refuse a database written by a newer xmodal: its tables may not mean what ours do."""
    try:
        version = schema_version(con)
    except duckdb.Error as exc:
        raise StoreError(
            _database_problem(Path(path or "?"), "cannot read the results database", exc)
        ) from None
    known = len(MIGRATIONS)
    if version is not None and version > known:
        where = f"{path}: " if path is not None else ""
        raise StoreError(
            f"{where}written by a newer xmodal (schema {version}, this xmodal knows up to "
            f"{known}); upgrade xmodal to read or add to it"
        )


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.rollback()


def _close_quietly(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.close()


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0]
    )


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring the schema up to date; each migration is applied once, in order, in a transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
    )
    applied = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, sql in enumerate(MIGRATIONS, start=1):
        if version in applied:
            continue
        con.begin()
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, now()])
            con.commit()
        except BaseException:
            con.rollback()
            raise
