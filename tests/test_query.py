"""Reading the results: `xmodal query` can change nothing and read no other file, shows data as it
is, stops on a timeout or Ctrl-C, and the store explains damaged, newer and unwritable databases."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from xmodal.store import (
    MIGRATIONS,
    QueryInterrupted,
    QueryTimeout,
    Store,
    StoreError,
    schema_objects,
)

SOURCE = '[study]\nname = "demo"\n'
# Long enough that it is still running when interrupted (10^14 row pairs).
ENDLESS = "SELECT sum(a.range * b.range) FROM range(10000000) a, range(10000000) b"


@pytest.fixture
def results_db(tmp_path: Path) -> Path:
    """A migrated database with one study (its TOML source starts with `[study]`) and results."""
    path = tmp_path / "results.duckdb"
    with Store(path).writing() as con:
        con.execute(
            "INSERT INTO studies (name, hash, path, source, created) VALUES (?, ?, ?, ?, now())",
            ["demo", "h1", "demo.toml", SOURCE],
        )
        con.execute(
            "INSERT INTO runs (run_id, study, status) SELECT 'r' || i, 'demo', 'finished' "
            "FROM range(3) t(i)"
        )
        con.execute(
            "INSERT INTO results (run_id, split, metric, comparison, k, value) "
            "SELECT 'r' || (i % 3), 'test', 'mnno', 'pred-input', 10, i / 10 FROM range(30) t(i)"
        )
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count(path: Path, table: str = "results") -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# -- nothing is written, no other file is read ----------------------------------------------------


def attacks(db: Path, tmp: Path) -> list[str]:
    link = tmp / "same-file.duckdb"
    return [
        f"ATTACH '{link}' AS w (READ_WRITE)",
        f"ATTACH '{link}' AS w (READ_WRITE); DELETE FROM w.results",
        f"ATTACH '{tmp / 'new.duckdb'}' AS n",
        "DELETE FROM results",
        "SELECT 1; DELETE FROM results",
        "UPDATE runs SET status = 'failed'",
        "DROP VIEW study_results",
        "CREATE TEMP TABLE t AS SELECT 1",
        f"COPY results TO '{tmp / 'out.csv'}'",
        f"EXPORT DATABASE '{tmp / 'export'}'",
        "SET threads = 1",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA threads = 1",
        "CHECKPOINT",
        "FORCE CHECKPOINT",
        "VACUUM",
        "ANALYZE",
        "INSTALL httpfs",
        "UPDATE EXTENSIONS",
        f"IMPORT DATABASE '{tmp / 'export'}'",
        "ALTER TABLE runs ADD COLUMN x INT",
        "CREATE SECRET s (TYPE s3)",
        "LOAD httpfs",
        "DETACH results",
        "USE memory",
        "BEGIN TRANSACTION",
        f"SELECT * FROM read_text('{tmp / 'secret.txt'}')",
        f"SELECT * FROM read_csv('{tmp / 'secret.txt'}')",
        f"SELECT * FROM read_blob('{link}')",
        f"SELECT * FROM glob('{tmp}/*')",
        f"SELECT * FROM read_text('{db}.tmp/../secret.txt')",
    ]


def test_every_statement_that_writes_or_reaches_another_file_is_refused(cli, results_db, tmp_path):
    os.link(results_db, tmp_path / "same-file.duckdb")  # the tester's hard link to the same file
    (tmp_path / "secret.txt").write_text("root:secret\n")
    before, files = digest(results_db), sorted(p.name for p in tmp_path.iterdir())
    for sql in attacks(results_db, tmp_path):
        result = cli("query", sql, "--db", results_db)
        assert result.code == 1, sql
        assert "Traceback" not in result.output and "secret" not in result.out, sql
        assert "read-only" in result.err or "reads the results database only" in result.err, (
            sql,
            result.err,
        )
    assert digest(results_db) == before and count(results_db) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no file written, none created


# Statements DuckDB accepts on a read-only connection, as no-ops that change no file.
HARMLESS_ON_READ_ONLY = ("SELECT 1;", "CREATE TEMP", "CHECKPOINT", "FORCE CHECKPOINT", "VACUUM",
                         "ANALYZE", "BEGIN")  # fmt: skip


def test_duckdb_itself_refuses_on_the_read_connection(results_db, tmp_path):
    """The statement check is one layer; the connection's own configuration is the other."""
    os.link(results_db, tmp_path / "same-file.duckdb")
    (tmp_path / "secret.txt").write_text("root:secret\n")
    before, files = digest(results_db), sorted(p.name for p in tmp_path.iterdir())
    with Store(results_db).reading() as con:
        for sql in attacks(results_db, tmp_path):
            if sql.startswith(HARMLESS_ON_READ_ONLY):
                with contextlib.suppress(duckdb.Error):
                    con.execute(sql).fetchall()
            else:
                with pytest.raises(duckdb.Error):
                    con.execute(sql).fetchall()
    assert digest(results_db) == before and count(results_db) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_the_database_file_itself_is_the_one_file_a_query_can_read(cli, results_db):
    """docs/queries.md: read_blob/read_text still reach the database and its own WAL/temp files."""
    sql = f"SELECT size FROM read_blob('{results_db}')"
    result = cli("query", sql, "--db", results_db, "--format", "csv")
    assert result.code == 0 and result.out.splitlines()[1] == str(results_db.stat().st_size)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM results",
        "WITH t AS (SELECT 1 AS n) SELECT * FROM t",
        "FROM results SELECT count(*) AS n",
        "DESCRIBE results",
        "SHOW TABLES",
        "SUMMARIZE results",
        "PIVOT results ON comparison USING count(*)",
        "EXPLAIN SELECT 1",
        "SELECT * FROM duckdb_settings() WHERE name = 'enable_external_access'",
    ],
)
def test_statements_that_read_are_accepted(cli, results_db, sql):
    result = cli("query", sql, "--db", results_db, "--format", "csv")
    assert result.code == 0, result.err


# -- data is shown verbatim -----------------------------------------------------------------------


def test_text_that_looks_like_markup_is_shown_as_it_is(cli, results_db):
    sql = "SELECT '[/]' AS x, '[bold]y[/bold]' AS \"[red]z\", source FROM studies"
    table = cli("query", sql, "--db", results_db)
    assert table.code == 0, table.err
    for text in ("[/]", "[bold]y[/bold]", "[red]z", "[study]", 'name = "demo"'):
        assert text in table.out
    csv_out = cli("query", sql, "--db", results_db, "--format", "csv").out
    assert csv_out.startswith('x,[red]z,source\n[/],[bold]y[/bold],"[study]\nname = ""demo""\n"')
    json_out = cli("query", sql, "--db", results_db, "--format", "json").out
    assert '"x": "[/]"' in json_out and '"[red]z": "[bold]y[/bold]"' in json_out
    assert '"source": "[study]\\nname = \\"demo\\"\\n"' in json_out


def test_status_shows_names_from_the_database_verbatim(cli, results_db):
    with duckdb.connect(str(results_db)) as con:
        con.execute("INSERT INTO studies (name, hash, created) VALUES ('[/]', '[bold]h', now())")
    result = cli("status", "--db", results_db)
    assert result.code == 0, result.err
    assert "[/]" in result.out and "[bold]h" in result.out


def test_control_characters_cannot_drive_the_terminal(cli, results_db):
    result = cli("query", "SELECT chr(27) || '[2J' || chr(7) AS e", "--db", results_db)
    assert "\x1b[2J" not in result.out and "\x07" not in result.out
    assert "\\x1b[2J\\x07" in result.out


# -- a query stops: timeout and Ctrl-C ------------------------------------------------------------


def test_a_query_that_runs_too_long_is_interrupted(cli, results_db):
    result = cli("query", ENDLESS, "--db", results_db, "--timeout", "0.5")
    assert result.code == 1
    assert "query timed out after 0.5 s" in result.err and "Traceback" not in result.output


def test_a_timeout_leaves_quick_queries_alone(results_db):
    assert Store(results_db).query("SELECT count(*) FROM results", timeout=30) == (
        ["count_star()"],
        [(30,)],
    )
    with pytest.raises(QueryTimeout):
        Store(results_db).query(ENDLESS, timeout=0.2)


def interrupt_once_the_query_runs() -> threading.Thread:
    """Send this process SIGINT once the query's worker thread exists (as Ctrl-C would)."""

    def send() -> None:
        while not any(t.name == "xmodal-query" for t in threading.enumerate()):
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def test_ctrl_c_interrupts_a_running_query(results_db):
    sender = interrupt_once_the_query_runs()
    with pytest.raises(QueryInterrupted) as caught:
        Store(results_db).query(ENDLESS, timeout=None)
    sender.join()
    assert caught.value.exit_code == 130 and "interrupted" in str(caught.value)
    assert count(results_db) == 30  # and the connection was closed: the file opens again


def test_ctrl_c_stops_the_command_with_exit_130(results_db, tmp_path):
    """The real thing: SIGINT to an `xmodal query` process while its query runs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmodal",
            "query",
            ENDLESS,
            "--db",
            str(results_db),
            "--timeout",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fds = Path(f"/proc/{proc.pid}/fd")
        while proc.poll() is None and not any(  # wait until it holds the database open
            os.path.realpath(fd) == str(results_db.resolve()) for fd in _listdir(fds)
        ):
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # a hang guard, not a timing claim
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "query interrupted" in err and "Traceback" not in err


def _listdir(fds: Path) -> list[str]:
    try:
        return [str(p) for p in fds.iterdir()]
    except OSError:
        return []


# -- damaged, newer and older databases -----------------------------------------------------------


def newer(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [len(MIGRATIONS) + 2])
    return path


def test_a_database_from_a_newer_xmodal_is_refused_on_read(cli, results_db):
    newer(results_db)
    expected = (
        f"written by a newer xmodal (schema {len(MIGRATIONS) + 2}, this xmodal knows up to "
        f"{len(MIGRATIONS)}); upgrade xmodal"
    )
    for args in (("query", "SELECT 1"), ("status",)):
        result = cli(*args, "--db", results_db)
        assert result.code == 1 and expected in result.err, result.output
        assert "Traceback" not in result.output


def test_a_database_from_a_newer_xmodal_is_refused_before_any_write(results_db):
    newer(results_db)
    before = digest(results_db)
    with pytest.raises(StoreError, match="written by a newer xmodal"):
        Store(results_db).record_study("other", "h2", "other.toml", SOURCE, ["r0"])
    with pytest.raises(StoreError, match="written by a newer xmodal"), Store(results_db).writing():
        pass  # not even the migrations run
    assert digest(results_db) == before and count(results_db, "studies") == 1


def test_a_database_from_an_older_xmodal_says_how_to_upgrade_it(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
        )
        con.execute(MIGRATIONS[0])
        con.execute("INSERT INTO schema_migrations VALUES (1, now())")
    with pytest.raises(StoreError) as caught:
        Store(path).query("SELECT * FROM current_studies")
    message = str(caught.value)
    assert "schema 1, written by an older xmodal" in message
    assert "The next `xmodal run` on it upgrades it" in message


def damaged_blocks(path: Path) -> Path:
    with Store(path).writing() as con:
        con.execute(
            "INSERT INTO results (run_id, split, metric, comparison, k, value) "
            "SELECT 'r' || (i % 100), 'test', 'mnno', 'pred-input', 10, random() "
            "FROM range(300000) t(i)"
        )
    size = path.stat().st_size
    with path.open("r+b") as f:  # garbage over the middle of the file: the results' data blocks
        f.seek(size // 3)
        f.write(bytes(range(256)) * (size // 3 // 256))
    return path


@pytest.mark.parametrize("damage", ["random bytes", "empty", "truncated", "bad blocks"])
def test_a_damaged_file_is_called_damaged(cli, results_db, damage):
    if damage == "random bytes":
        results_db.write_bytes(os.urandom(20000))
    elif damage == "empty":
        results_db.write_bytes(b"")
    elif damage == "truncated":
        os.truncate(results_db, 5000)
    else:
        damaged_blocks(results_db)
    result = cli("query", "SELECT sum(value) FROM results", "--db", results_db)
    assert result.code == 1 and "Traceback" not in result.output
    assert "damaged" in result.err and "Restore it from a backup" in result.err, result.err
    assert "older" not in result.err


def test_opening_a_damaged_file_for_writing_is_called_damaged(results_db):
    results_db.write_bytes(os.urandom(20000))
    with pytest.raises(StoreError, match="the file is damaged"):
        Store(results_db).record_study("demo", "h2", "demo.toml", SOURCE, [])


# -- write errors keep their cause ----------------------------------------------------------------

FULL_DISK = """
import resource, signal, sys
from xmodal.store import Store, StoreError

store = Store(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit is an error, not a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # the WAL cannot grow past 100 kB
try:
    with store.writing() as con:
        con.execute(
            "INSERT INTO results (run_id, split, metric, comparison, value) "
            "SELECT 'x' || i, 'test', 'mnno', 'pred-input', random() FROM range(50000) t(i)"
        )
except StoreError as exc:
    print(exc)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ")
def test_a_failed_commit_reports_its_cause_not_the_failed_rollback(results_db):
    """The commit itself fails (the WAL cannot be written); DuckDB then has no transaction to roll
    back, and that second error used to replace the first."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), str(results_db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "write failed" in done.stdout and "File too large" in done.stdout, done.stdout
    assert "no transaction is active" not in done.stdout
    assert count(results_db) == 30  # nothing half-written, everything before kept


def test_a_failing_rollback_does_not_mask_the_error(results_db, monkeypatch):
    """The same through a stand-in connection: commit fails, then rollback fails too."""

    class FullDisk:
        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self.con = con

        def __getattr__(self, name: str) -> object:
            return getattr(self.con, name)

        def commit(self) -> None:
            self.con.rollback()
            raise duckdb.IOException("IO Error: No space left on device")

        def rollback(self) -> None:
            raise duckdb.TransactionException("cannot rollback - no transaction is active")

    real = Store._connect
    monkeypatch.setattr(Store, "_connect", lambda self, read_only: FullDisk(real(self, read_only)))
    with pytest.raises(StoreError) as caught:
        Store(results_db).record_study("other", "h2", "other.toml", SOURCE, [])
    message = str(caught.value)
    assert "write failed: IO Error: No space left on device" in message
    assert "Free disk space" in message and "no transaction is active" not in message


# -- help, README and .gitignore ------------------------------------------------------------------


def test_help_lists_every_table_and_view(cli, tmp_path):
    with Store(tmp_path / "fresh.duckdb").writing():
        pass
    with duckdb.connect(str(tmp_path / "fresh.duckdb"), read_only=True) as con:
        found = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    names = {n for (n,) in found}
    names.discard("schema_migrations")
    tables, views = schema_objects()
    assert names == set(tables) | set(views)
    help_text = " ".join(cli("query", "--help").out.split())
    for name in ("study_results", "current_studies", "results_summary", *names):
        assert name in help_text, name
    assert "WHERE study = 'NAME'" in help_text


def test_the_readmes_first_query_filters_by_study():
    first = next(
        line for line in (REPO / "README.md").read_text().splitlines() if "xmodal query" in line
    )
    assert "FROM study_results WHERE study = 'quickstart' AND" in first


@pytest.mark.parametrize(
    "name",
    ["x.duckdb", "x.duckdb.wal", "x.duckdb.lock", "x.duckdb.spool/a", "x.duckdb.artifacts/b"],
)
def test_gitignore_covers_the_database_and_its_companions(name):
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", name], cwd=REPO, capture_output=True
    )
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert done.returncode == 0, f"{name} is not ignored"


def test_numbers_are_shown_as_the_query_computed_them(cli, db):
    Store(db).record_study("s", "h", "s.toml", "", [])
    out = cli("query", "SELECT round(0.83703704, 3) AS a, 1 / 4 AS b", "--db", db).out
    assert "0.837 " in out and "0.8370" not in out and "0.25 " in out


def test_version_is_printed(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.startswith("xmodal ")


# -- a SQL front end: one statement, formats, --out ----------------------------------------------


def test_two_statements_are_refused_not_answered_with_the_last(cli, results_db):
    result = cli("query", "SELECT 1 AS first; SELECT 2 AS second", "--db", results_db)
    assert result.code == 1 and result.out == ""
    assert "runs one statement at a time; 2 were given" in result.err


@pytest.mark.parametrize(
    "sql", ["SELECT 41 + 1 AS n;", "SELECT 41 + 1 AS n ;\n", "SELECT 41 + 1 AS n"]
)
def test_a_trailing_semicolon_is_fine(cli, results_db, sql):
    result = cli("query", sql, "--db", results_db, "--format", "csv")
    assert result.code == 0, result.err
    assert result.out == "n\n42\n"


VALUES_SQL = (
    "SELECT round(0.83703704, 3) AS mnno, 1 / 4 AS quarter, 1.50::DECIMAL(4, 2) AS price, "
    "'a|b' AS piped, '[bold]x' AS markup, NULL AS nothing, 'nan'::DOUBLE AS undefined"
)


def test_csv_lines_end_in_newline_bytes(results_db, tmp_path):
    """Not `\\r\\n` (the csv module's default): what the process writes, byte for byte."""
    args = [sys.executable, "-m", "xmodal", "query", VALUES_SQL, "--db", str(results_db)]
    done = subprocess.run([*args, "--format", "csv"], cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = (
        b"mnno,quarter,price,piped,markup,nothing,undefined\n0.837,0.25,1.50,a|b,[bold]x,,nan\n"
    )
    assert done.stdout == expected
    out = tmp_path / "result.csv"
    written = subprocess.run(
        [*args, "--format", "csv", "--out", str(out)], cwd=REPO, capture_output=True, timeout=300
    )
    assert written.returncode == 0, written.stderr
    assert out.read_bytes() == expected
    assert b"wrote 1 row(s) to" in written.stdout and b"0.837" not in written.stdout


def test_json_holds_the_numbers_the_query_computed(cli, results_db):
    import json

    result = cli("query", VALUES_SQL, "--db", results_db, "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == [
        {"mnno": 0.837, "quarter": 0.25, "price": 1.5, "piped": "a|b", "markup": "[bold]x",
         "nothing": None, "undefined": None}  # NaN has no JSON spelling: null
    ]  # fmt: skip


def test_markdown_is_a_pipe_table(cli, results_db):
    result = cli("query", VALUES_SQL, "--db", results_db, "--format", "markdown")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "| mnno | quarter | price | piped | markup | nothing | undefined |",
        "| ---: | ---: | ---: | --- | --- | --- | ---: |",
        "| 0.837 | 0.25 | 1.50 | a\\|b | [bold]x | NULL | nan |",
    ]
    multiline = cli(
        "query", "SELECT source FROM studies", "--db", results_db, "--format", "markdown"
    )
    assert multiline.out.splitlines()[2] == '| [study]<br>name = "demo"<br> |'


def test_parquet_is_written_by_xmodal_with_the_querys_types(cli, results_db, tmp_path):
    out = tmp_path / "result.parquet"
    result = cli("query", VALUES_SQL, "--db", results_db, "--format", "parquet", "--out", out)
    assert result.code == 0, result.err
    assert "wrote 1 row(s) to" in result.out
    with duckdb.connect() as con:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{out}')").fetchall()
        [row] = con.execute(f"SELECT * FROM read_parquet('{out}')").fetchall()
    types = {name: kind for name, kind, *_ in described}
    assert types["mnno"].startswith("DECIMAL") and types["price"] == "DECIMAL(4,2)"
    assert types["piped"] == "VARCHAR" and types["undefined"] == "DOUBLE"
    assert str(row[0]) == "0.837" and str(row[2]) == "1.50" and row[3] == "a|b" and row[5] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.parquet", "results.duckdb"]


def test_parquet_needs_a_file_and_copy_stays_refused(cli, results_db, tmp_path):
    no_file = cli("query", "SELECT 1", "--db", results_db, "--format", "parquet")
    assert no_file.code == 1 and "add --out FILE" in no_file.err
    before = sorted(p.name for p in tmp_path.iterdir())
    copy = f"COPY (SELECT 1) TO '{tmp_path / 'x.parquet'}' (FORMAT parquet)"
    result = cli("query", copy, "--db", results_db, "--format", "parquet", "--out", tmp_path / "y")
    assert result.code == 1 and "read-only" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_failed_or_timed_out_query_leaves_the_out_file_as_it_was(cli, results_db, tmp_path):
    out = tmp_path / "kept.parquet"
    out.write_bytes(b"earlier result")
    for fmt, sql, extra in (
        ("parquet", "SELECT * FROM no_such_table", ()),
        ("parquet", ENDLESS, ("--timeout", "0.5")),
        ("csv", "SELECT * FROM no_such_table", ()),
    ):
        result = cli("query", sql, "--db", results_db, "--format", fmt, "--out", out, *extra)
        assert result.code == 1 and "Traceback" not in result.output, result.output
        assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.parquet", "results.duckdb"]


@pytest.mark.parametrize(
    ("fmt", "out", "message"),
    [
        ("xml", None, "--format 'xml' is not one of table, csv, json, markdown, parquet"),
        ("csv", "missing/dir/x.csv", "does not exist"),
        ("csv", ".", "is a directory"),
        ("csv", "results.duckdb", "that is the results database"),
        ("parquet", "results.duckdb.wal", "that is the results database"),
    ],
)
def test_output_mistakes_are_one_line_before_the_query_runs(
    cli, results_db, monkeypatch, fmt, out, message
):
    monkeypatch.chdir(results_db.parent)
    before = digest(results_db)
    args = ["--out", out] if out else []
    result = cli("query", "SELECT 1", "--db", results_db, "--format", fmt, *args)
    assert result.code == 1 and message in result.err and "Traceback" not in result.output
    assert message in result.err.strip().splitlines()[-1]  # one line (after any plugin warning)
    assert digest(results_db) == before


def test_table_out_writes_the_whole_table_as_plain_text(cli, results_db, tmp_path):
    out = tmp_path / "table.txt"
    sql = "SELECT '[red]x' AS label, 0.25 AS v, repeat('w', 150) AS wide"
    result = cli("query", sql, "--db", results_db, "--out", out)
    assert result.code == 0, result.err
    written = out.read_text()
    assert "[red]x" in written and "0.25" in written and "w" * 150 in written  # not wrapped
    assert "\x1b" not in written
