"""Never lose a result: kill -9 at any moment, stale runs, one runner per database, readers while
writing, changed study files, unwritable databases."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import TINY_STUDY, rows
from xmodal.store import Store, StoreError

# Twelve runs of a few tenths of a second each: long enough to be killed in the middle of one.
SLOW_STUDY = (
    TINY_STUDY.replace("depth = 2", "depth = [1, 2, 3]")
    .replace("epochs = 3", "epochs = 12")
    .replace('[[mapping]]\nname = "linear"\n', "")
)


def start_run(study: Path, db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xmodal", "run", str(study), "--db", str(db), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def read(db: Path, sql: str, timeout: float = 30.0) -> list[tuple]:
    """Read while another process may be writing: retry while the writer holds the file."""
    return Store(db, lock_timeout=timeout).query(sql)[1]


def wait_for(db: Path, sql: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if read(db, sql)[0][0]:
                    return
            except StoreError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def finished_runs(db: Path) -> dict[str, object]:
    return dict(read(db, "SELECT run_id, finished_at FROM runs WHERE status = 'finished'"))


def test_kill_9_at_random_moments_then_resume_gives_exactly_one_result_set_per_run(write_study, db):
    study = write_study(SLOW_STUDY)
    rng = random.Random(20181)
    kept: dict[str, object] = {}
    for attempt in range(3):
        process = start_run(study, db)
        wait_for(db, "SELECT count(*) FROM runs WHERE status IN ('running', 'finished')")
        time.sleep(rng.uniform(0.0, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        now_finished = finished_runs(db)
        # No finished run was redone or lost by the attempts so far.
        assert {k: now_finished[k] for k in kept} == kept, f"attempt {attempt}"
        kept = now_finished
    final = start_run(study, db)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, out + err
    done = finished_runs(db)
    assert len(done) == 12
    assert {k: done[k] for k in kept} == kept
    duplicates = read(
        db,
        "SELECT run_id, split, metric, comparison, k, count(*) FROM results GROUP BY ALL HAVING count(*) > 1",
    )
    assert duplicates == []
    per_run = read(db, "SELECT count(*) FROM results GROUP BY run_id")
    assert len(per_run) == 12 and len(set(per_run)) == 1
    assert read(db, "SELECT count(*) FROM runs WHERE status <> 'finished'") == [(0,)]


def test_a_run_left_running_by_a_dead_process_is_shown_stale_and_redone(cli, write_study, db):
    study = write_study(SLOW_STUDY)
    process = start_run(study, db)
    wait_for(db, "SELECT count(*) FROM runs WHERE status = 'running'")
    process.send_signal(signal.SIGKILL)
    process.wait()
    stale_ids = {r for (r,) in read(db, "SELECT run_id FROM runs WHERE status = 'running'")}
    assert stale_ids
    status = cli("status", "--db", db).out
    assert "stale runs were left by a process that died" in status
    assert cli("run", study, "--db", db).code == 0
    assert read(
        db,
        "SELECT count(*) FROM runs WHERE status = 'finished' AND run_id IN (SELECT unnest(?::VARCHAR[]))".replace(
            "?::VARCHAR[]", repr(sorted(stale_ids)).replace('"', "'")
        ),
    ) == [(len(stale_ids),)]


def test_a_second_runner_on_the_same_database_stops_with_a_clear_message(write_study, db):
    # The first runner's study takes minutes; it is killed once the others have been tried.
    first = start_run(write_study(SLOW_STUDY.replace("epochs = 12", "epochs = 5000")), db)
    try:
        wait_for(db, "SELECT count(*) FROM runs WHERE status = 'running'")
        second = start_run(write_study(SLOW_STUDY, "other.toml"), db)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1
        assert "is in use by another xmodal run" in err
        assert f"pid {first.pid}" in err and "--wait" in err
        waiting = start_run(write_study(SLOW_STUDY, "other.toml"), db, "--wait")
        time.sleep(6)
        assert waiting.poll() is None, "--wait should queue behind the first runner"
    finally:
        first.kill()
        first.wait()
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert "12 ran" in out


def test_queries_work_while_a_study_is_writing(write_study, db):
    study = write_study(SLOW_STUDY)
    process = start_run(study, db)
    wait_for(db, "SELECT count(*) FROM runs")
    counts = []
    while process.poll() is None:
        result = subprocess.run([sys.executable, "-m", "xmodal", "query", "SELECT count(*) FROM results", "--db", str(db), "--format", "csv"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        counts.append(int(result.stdout.splitlines()[1]))
    assert process.returncode == 0
    assert counts and counts == sorted(counts)


def test_a_changed_study_gets_new_ids_only_for_changed_runs_and_keeps_old_results(
    cli, write_study, db
):
    path = write_study()
    cli("run", path, "--db", db)
    old_ids = {r for (r,) in rows(db, "SELECT run_id FROM runs")}
    write_study(TINY_STUDY.replace("hidden = 32", "hidden = 48"))
    plan = {
        r["run_id"]: (r["action"], r["status"])
        for r in json.loads(cli("plan", path, "--db", db, "--json").out)
    }
    assert sorted(plan.values()).count(("cached", "finished")) == 4
    assert sorted(plan.values()).count(("train", "new")) == 4
    assert cli("run", path, "--db", db).output.count(": 4 ran, 4 cached, 0 failed in ") == 1
    assert old_ids <= {r for (r,) in rows(db, "SELECT run_id FROM runs")}
    assert rows(db, "SELECT count(DISTINCT hash) FROM studies WHERE name = 'tiny'") == [(2,)]


@pytest.mark.parametrize("where", ["no-such-dir/results.duckdb", "a-file/results.duckdb"])
def test_an_unwritable_database_path_is_a_clear_error(cli, write_study, tmp_path, where):
    (tmp_path / "a-file").write_text("not a directory")
    result = cli("run", write_study(), "--db", tmp_path / where)
    assert result.code == 1
    assert "Traceback" not in result.output and "results.duckdb" in result.output


def test_a_full_disk_stops_the_study_and_keeps_every_recorded_run(
    cli, write_study, db, monkeypatch
):
    real = Store.record_many
    calls = {"n": 0}

    def record_until_full(self, records):
        calls["n"] += 1
        if calls["n"] == 3:
            raise StoreError(f"{self.path}: write failed: IO Error: No space left on device")
        return real(self, records)

    monkeypatch.setattr(Store, "record_many", record_until_full)
    result = cli("run", write_study(), "--db", db)
    assert result.code == 1 and "No space left on device" in result.output
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(2,)]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT run_id) FROM results").fetchone() == (2,)
