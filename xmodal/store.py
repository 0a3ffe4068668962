"""The results store: one embedded DuckDB file, long-format tables, migrations, one-writer safety.

Writers hold the database only for the short transaction that records one run, so `xmodal query`
(read-only) can open it between writes. Every run's rows land in one transaction or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from xmodal.errors import XmodalError
from xmodal.views import MIGRATION as PAPER_VIEWS

DEFAULT_DB = "xmodal.duckdb"

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
    # 2: the paper's tables and figures as views (xmodal/views.py, docs/report.md).
    PAPER_VIEWS,
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
]

RUN_COLUMNS = (
    "run_id", "study", "dataset", "input_features", "target_features", "direction", "split",
    "fold", "mapping", "depth", "loss", "state", "seed", "epochs", "batch_size", "optimizer", "lr",
    "n_train", "n_test", "config", "status", "error", "started_at", "finished_at", "train_seconds",
    "probe_seconds", "torch_threads", "xmodal_version", "git_commit", "torch_version", "numpy_version",
)  # fmt: skip
RESULT_COLUMNS = ("run_id", "split", "metric", "comparison", "k", "similarity", "epoch", "value")
CURVE_COLUMNS = ("run_id", "epoch", "split", "metric", "comparison", "k", "similarity", "value")


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
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower() or time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.path}: cannot open the results database: {text}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                raise StoreError(f"{self.path}: cannot open the results database: {exc}") from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection: statements that write are refused by DuckDB itself."""
        con = self._connect(read_only=True)
        try:
            yield con
        except duckdb.Error as exc:
            raise StoreError(
                f"{self.path}: {exc} (run `xmodal run` once to update an older database)"
            ) from None
        finally:
            con.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A migrated read-write connection inside one transaction (rolled back on any error)."""
        con = self._connect(read_only=False)
        try:
            migrate(con)
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from None
        finally:
            con.close()

    # -- writes ---------------------------------------------------------------------------------

    def record_study(
        self, name: str, study_hash: str, path: str, source: str, run_ids: Sequence[str]
    ) -> None:
        """Remember a study version and the runs it plans (idempotent)."""
        with self.writing() as con:
            con.execute(
                # `created` is refreshed whenever a version is run, so going back to an earlier
                # version of a study makes it the current one again.
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name, hash) DO UPDATE SET created = excluded.created",
                [name, study_hash, path, source, now()],
            )
            con.execute(
                "DELETE FROM study_runs WHERE study = ? AND study_hash = ?", [name, study_hash]
            )
            if run_ids:
                con.executemany(
                    "INSERT INTO study_runs VALUES (?, ?, ?, ?)",
                    [[name, study_hash, rid, i] for i, rid in enumerate(run_ids)],
                )

    def record_run(
        self, run: dict[str, Any], results: Sequence[Sequence[Any]], curves: Sequence[Sequence[Any]]
    ) -> None:
        """Replace everything known about one run with this outcome, in one transaction."""
        row = [json.dumps(run[c]) if c == "config" else run.get(c) for c in RUN_COLUMNS]
        with self.writing() as con:
            for table in ("results", "curves", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run["run_id"]])
            con.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(RUN_COLUMNS))})", row)
            if results:
                con.executemany(
                    f"INSERT INTO results VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
                    list(results),
                )
            if curves:
                con.executemany(
                    f"INSERT INTO curves VALUES ({', '.join('?' * len(CURVE_COLUMNS))})",
                    list(curves),
                )

    def mark_running(self, run: dict[str, Any]) -> None:
        """Record that a run has started; a finished run being redone keeps its results until then."""
        row = [json.dumps(run[c]) if c == "config" else run.get(c) for c in RUN_COLUMNS]
        with self.writing() as con:
            con.execute(
                f"INSERT INTO runs VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'running', started_at = excluded.started_at, "
                "error = NULL WHERE runs.status <> 'finished'",
                row,
            )

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
        """Status of each of `run_ids` that the store knows ('finished' or 'failed')."""
        if not self.path.exists() or not run_ids:
            return {}
        with self.reading() as con:
            if not _has_table(con, "runs"):
                return {}
            rows = con.execute(
                "SELECT run_id, status FROM runs WHERE run_id IN (SELECT unnest(?))",
                [list(run_ids)],
            ).fetchall()
        return dict(rows)

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only SQL statement; return column names and rows."""
        with self.reading() as con:
            try:
                cursor = con.execute(sql)
            except duckdb.Error as exc:
                text = str(exc)
                if "read-only" in text or "read only" in text:
                    raise StoreError(
                        "xmodal query is read-only: statements that change the database are refused"
                    ) from None
                raise StoreError(f"query failed: {text}") from None
            if cursor.description is None:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()

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
        """Per study (latest version): planned, finished, failed, running and pending run counts."""
        sql = """
            SELECT l.name, l.hash, count(sr.run_id) AS planned,
                   count(*) FILTER (WHERE r.status = 'finished') AS finished,
                   count(*) FILTER (WHERE r.status = 'failed') AS failed,
                   count(*) FILTER (WHERE r.status = 'running') AS running,
                   count(*) FILTER (WHERE r.status IS NULL) AS pending,
                   l.created
            FROM current_studies l
            LEFT JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
            LEFT JOIN runs r USING (run_id)
            GROUP BY ALL ORDER BY l.name
        """
        if not self.path.exists():
            return []
        with self.reading() as con:
            if not _has_table(con, "studies"):
                return []
            return con.execute(sql).fetchall()


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
