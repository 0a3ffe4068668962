"""A reader holding the database never costs a finished run: the runner spools it and goes on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import xmodal.recorder
import xmodal.runner
from tests.conftest import TINY_STUDY, rows
from xmodal.spool import Spool
from xmodal.store import RESULT_COLUMNS, RunRecord, Store

REAL_RECORD_STUDY = Store.record_study

READER = """
import duckdb, os, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
deadline = time.monotonic() + float(sys.argv[3])
while os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


@pytest.fixture
def reader_after_study_is_recorded(monkeypatch, tmp_path):
    """Once the runner has recorded its study, a reader process opens the database and holds it
    while `flag` exists (at most `hold` seconds)."""
    flag = tmp_path / "hold"
    flag.touch()
    started: list[subprocess.Popen] = []
    real = Store.record_study

    def then_hold(self, *args, **kwargs):
        real(self, *args, **kwargs)
        proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(self.path), str(flag), "120"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        started.append(proc)

    monkeypatch.setattr(Store, "record_study", then_hold)
    monkeypatch.setattr(xmodal.recorder, "WRITE_WAIT", 0.2)
    yield flag, started
    flag.unlink(missing_ok=True)
    for proc in started:
        proc.wait(timeout=30)


def test_runs_finished_while_a_reader_holds_the_database_are_spooled_then_recorded(
    cli, write_study, db, monkeypatch, reader_after_study_is_recorded
):
    flag, readers = reader_after_study_is_recorded
    monkeypatch.setattr(xmodal.recorder, "FINAL_WAIT", 0.5)
    study = write_study()
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "8 ran" in result.output and "8 finished run(s) wait in" in result.output
    assert "Traceback" not in result.output
    assert len(Spool(db)) == 8
    assert "8 finished run(s) wait in the spool" in cli("status", "--db", db).output

    flag.unlink()  # the reader goes away
    readers[0].wait(timeout=30)
    monkeypatch.setattr(Store, "record_study", REAL_RECORD_STUDY)
    result = cli("run", study, "--db", db)
    assert ": 8 cached, 0 failed in " in result.output
    assert len(Spool(db)) == 0
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(8,)]
    duplicates = rows(
        db,
        "SELECT count(*) FROM (SELECT measurement_id, split, metric, comparison, k "
        "FROM results GROUP BY ALL HAVING count(*) > 1)",
    )
    assert duplicates == [(0,)]


def test_a_reader_that_lets_go_before_the_study_ends_loses_nothing(
    cli, write_study, db, monkeypatch, reader_after_study_is_recorded
):
    flag, _ = reader_after_study_is_recorded
    monkeypatch.setattr(xmodal.recorder, "FINAL_WAIT", 60.0)
    study = write_study(TINY_STUDY.replace("epochs = 3", "epochs = 6"))
    start = time.monotonic()

    def release_soon(event):  # the reader lets go while runs are still going on
        if event.kind == "finish" or time.monotonic() - start > 3:
            flag.unlink(missing_ok=True)

    real_run_study = xmodal.runner.run_study

    def run_study(*args, **kwargs):
        inner = kwargs["on_event"]
        kwargs["on_event"] = lambda e: (release_soon(e), inner(e))
        return real_run_study(*args, **kwargs)

    monkeypatch.setattr("xmodal.runner.run_study", run_study)  # cli imports it per call
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "wait in" not in result.output and len(Spool(db)) == 0
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(8,)]


def test_spooled_runs_of_a_killed_runner_are_recorded_by_the_next_one(cli, write_study, db):
    """The spool belongs to the database, not the process: the next `xmodal run` flushes it
    before deciding what to run, so a spooled run is not trained again."""
    study = write_study()
    assert cli("run", study, "--db", db).code == 0

    def fetch(con, sql, run_id):
        cursor = con.execute(sql, [run_id])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # What a runner killed after spooling a run leaves: the run in the spool, not in the database.
    with duckdb.connect(str(db)) as con:
        run_id = con.execute("SELECT min(run_id) FROM runs").fetchone()[0]
        (run,) = fetch(con, "SELECT * FROM runs WHERE run_id = ?", run_id)
        run["config"] = json.loads(run["config"])
        measurements = fetch(con, "SELECT * FROM measurements WHERE run_id = ?", run_id)
        for m in measurements:
            m["params"] = json.loads(m["params"])
        results = [
            tuple(r[c] for c in RESULT_COLUMNS)
            for r in fetch(con, "SELECT * FROM results WHERE run_id = ?", run_id)
        ]
        for table in ("results", "measurements", "curves", "runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    Spool(db).put(run_id, RunRecord(run_id, run, measurements, results, []))

    result = cli("run", study, "--db", db)
    assert ": 8 cached, 0 failed in " in result.output
    assert len(Spool(db)) == 0
    assert rows(db, f"SELECT count(*) FROM results WHERE run_id = '{run_id}'") == [(len(results),)]


def test_nothing_is_spooled_without_a_reader(cli, write_study, db):
    assert cli("run", write_study(), "--db", db).code == 0
    assert not Path(str(Spool(db).path)).exists() or len(Spool(db)) == 0
