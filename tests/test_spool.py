"""The spool keeps finished runs the database could not take yet, and hands each over exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pytest

from xmodal.backoff import is_lock_conflict, try_write
from xmodal.errors import XmodalError
from xmodal.spool import Spool, SpoolError, SpoolWarning, check_free_space, free_bytes, spool_dir


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.duckdb"


class FakeStore:
    """An idempotent writer: each write replaces everything known about the key."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}
        self.calls: list[str] = []

    def write(self, key: str, payload: Any) -> None:
        self.calls.append(key)
        self.rows[key] = payload


def test_flush_writes_in_put_order_and_empties_the_spool(db: Path) -> None:
    spool = Spool(db)
    for key in ["r3", "r1", "r2"]:
        spool.put(key, {"run": key, "values": [1.5, 2.5]})
    assert [key for key, _ in spool.pending()] == ["r3", "r1", "r2"]
    store = FakeStore()
    assert spool.flush(store.write) == 3
    assert store.calls == ["r3", "r1", "r2"]
    assert store.rows["r1"] == {"run": "r1", "values": [1.5, 2.5]}
    assert spool.pending() == []
    assert spool.flush(store.write) == 0
    assert store.calls == ["r3", "r1", "r2"]


def test_flush_of_a_database_without_a_spool_does_nothing(db: Path) -> None:
    assert Spool(db).flush(FakeStore().write) == 0
    assert not spool_dir(db).exists()


def test_a_write_that_fails_midway_leaves_the_rest_for_the_next_flush(db: Path) -> None:
    spool = Spool(db)
    for key in ["a", "b", "c"]:
        spool.put(key, key.upper())
    store = FakeStore()

    def flaky(key: str, payload: Any) -> None:
        if key == "b":
            raise RuntimeError("database went away")
        store.write(key, payload)

    with pytest.raises(RuntimeError, match="went away"):
        spool.flush(flaky)
    assert [key for key, _ in spool.pending()] == ["b", "c"]
    assert spool.flush(store.write) == 2
    assert store.calls == ["a", "b", "c"]  # each written once


def test_a_crash_between_write_and_removal_writes_the_same_payload_again(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(db)
    spool.put("a", 1)
    store = FakeStore()

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise KeyboardInterrupt  # the process stops after the write, before the unlink

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", crash)
        with pytest.raises(KeyboardInterrupt):
            spool.flush(store.write)
    assert spool.flush(store.write) == 1
    assert store.calls == ["a", "a"]
    assert store.rows == {"a": 1}  # idempotent write: one result in effect


def test_a_later_put_with_the_same_key_supersedes_the_earlier(db: Path) -> None:
    spool = Spool(db)
    spool.put("a", "old")
    spool.put("b", "b")
    spool.put("a", "new")
    assert [key for key, _ in spool.pending()] == ["b", "a"]
    assert len(list(spool.path.glob("*.pkl"))) == 2
    store = FakeStore()
    spool.flush(store.write)
    assert store.calls == ["b", "a"]
    assert store.rows["a"] == "new"


def test_supersede_survives_a_crash_before_the_old_entry_was_removed(db: Path) -> None:
    spool = Spool(db)
    old = spool.put("a", "old")
    saved = old.read_bytes()
    spool.put("a", "new")
    old.write_bytes(saved)  # as if killed right after the new entry's rename
    assert len(spool.pending()) == 1
    store = FakeStore()
    assert spool.flush(store.write) == 1
    assert store.rows == {"a": "new"}
    assert list(spool.path.glob("*.pkl")) == []


def test_order_holds_even_if_the_clock_goes_back(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(db)
    spool.put("first", 1)
    monkeypatch.setattr("time.time_ns", lambda: 5)  # a clock set far back, in a new process
    Spool(db).put("second", 2)
    assert [key for key, _ in spool.pending()] == ["first", "second"]


PUT_THEN_DIE = textwrap.dedent(
    """
    import os, sys
    from xmodal.spool import Spool
    spool = Spool(sys.argv[1])
    spool.put("kept", "finished before the crash")
    os.rename = lambda *a, **k: os._exit(9)  # killed after the temp file, before its rename
    spool.put("lost", "in flight")
    """
)


def test_a_put_killed_midway_leaves_nothing_a_flush_would_use(db: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PUT_THEN_DIE, str(db)], capture_output=True)
    assert proc.returncode == 9, proc.stderr
    spool = Spool(db)
    leftovers = [p.name for p in spool.path.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1
    assert [key for key, _ in spool.pending()] == ["kept"]
    store = FakeStore()
    assert spool.flush(store.write) == 1
    assert store.rows == {"kept": "finished before the crash"}
    assert list(spool.path.iterdir()) == []  # the temp file is gone too


def test_a_temp_file_of_a_live_put_in_another_process_is_left_alone(db: Path) -> None:
    spool = Spool(db)
    spool.put("a", 1)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        temp = spool.path / f".tmp-{sleeper.pid}-1.pkl"
        temp.write_bytes(b"half")
        spool.flush(FakeStore().write)
        assert temp.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    spool.flush(FakeStore().write)
    assert not temp.exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="bit-flip"),
        pytest.param(lambda data: b"not a spool entry", id="foreign"),
    ],
)
def test_a_damaged_entry_is_quarantined_not_dropped(db: Path, damage: Any) -> None:
    spool = Spool(db)
    spool.put("a", 1)
    broken = spool.put("b", 2)
    spool.put("c", 3)
    broken.write_bytes(damage(broken.read_bytes()))
    store = FakeStore()
    with pytest.warns(SpoolWarning, match="moved to"):
        assert spool.flush(store.write) == 2
    assert store.calls == ["a", "c"]
    assert [p.name for p in spool.bad()] == [broken.name]
    assert spool.pending() == []


def test_quarantine_reports_to_the_callback(db: Path) -> None:
    spool = Spool(db)
    spool.put("a", 1).write_bytes(b"garbage")
    reports: list[tuple[Path, str]] = []
    spool.flush(FakeStore().write, on_bad=lambda path, why: reports.append((path, why)))
    assert len(reports) == 1
    assert reports[0][0].parent == spool.path / "bad"
    assert "bad header" in reports[0][1]


def test_a_symlinked_database_uses_the_same_spool(db: Path) -> None:
    link = db.with_name("link.duckdb")
    link.symlink_to(db.name)
    Spool(link).put("a", 1)
    assert spool_dir(link) == spool_dir(db) == db.with_name("results.duckdb.spool")
    assert [key for key, _ in Spool(db).pending()] == ["a"]


def test_keys_with_any_characters_round_trip(db: Path) -> None:
    spool = Spool(db)
    keys = ["run/1", "run 2", "ü-3", "%41", ".tmp-99"]
    for key in keys:
        spool.put(key, key)
    store = FakeStore()
    spool.flush(store.write)
    assert store.rows == {key: key for key in keys}
    with pytest.raises(ValueError, match="non-empty"):
        spool.put("", 1)


def test_a_spool_others_can_write_to_is_refused(db: Path) -> None:
    spool = Spool(db)
    spool.put("a", 1)
    assert spool.path.stat().st_mode & 0o777 == 0o700
    os.chmod(spool.path, 0o777)
    with pytest.raises(SpoolError, match="chmod 700"):
        spool.flush(FakeStore().write)


def test_free_space_check_is_a_clear_error(db: Path) -> None:
    assert free_bytes(db) > 0  # the file need not exist
    check_free_space(db, 1)
    with pytest.raises(XmodalError, match=r"free on its disk, the spool may need .* --db"):
        check_free_space(db, free_bytes(db) * 1000 + 10**15)


# -- a real DuckDB reader blocking the writer ------------------------------------------------------

READER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    print("open", flush=True)
    sys.stdin.readline()
    con.close()
    """
)


def _write_rows(db: Path, key: str, rows: list[float]) -> None:
    """The idempotent writer a runner uses: replace the run's rows in one transaction."""
    con = duckdb.connect(str(db))
    try:
        con.begin()
        con.execute("DELETE FROM results WHERE run_id = ?", [key])
        con.executemany("INSERT INTO results VALUES (?, ?)", [(key, value) for value in rows])
        con.commit()
    finally:
        con.close()


def test_a_reader_holding_the_database_is_waited_out_and_the_spool_flushed_once(db: Path) -> None:
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE results (run_id VARCHAR, value DOUBLE)")
    con.close()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "open"
        seen: list[BaseException] = []

        def busy(exc: BaseException) -> bool:
            seen.append(exc)
            return is_lock_conflict(exc)

        assert not try_write(lambda: _write_rows(db, "run-1", [0.5]), busy, deadline_s=0.3)
        assert seen and all(isinstance(e, duckdb.IOException) for e in seen)
        assert "lock" in str(seen[0]).lower()

        spool = Spool(db)
        spool.put("run-1", [0.5, 0.25])
        spool.put("run-2", [0.75])
        spool.put("run-1", [0.5, 0.125])  # a forced redo of run-1 supersedes
        assert not try_write(lambda: spool.flush(lambda k, v: _write_rows(db, k, v)), busy, 0.2)
        assert len(spool.pending()) == 2

        reader.stdin.write("close\n")
        reader.stdin.flush()
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
        with reader:  # closes its pipes
            reader.wait()

    flushed = try_write(
        lambda: spool.flush(lambda k, v: _write_rows(db, k, v)), is_lock_conflict, deadline_s=30
    )
    assert flushed
    assert spool.pending() == []
    assert spool.flush(lambda k, v: _write_rows(db, k, v)) == 0
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT run_id, value FROM results ORDER BY run_id, value").fetchall()
    con.close()
    assert rows == [("run-1", 0.125), ("run-1", 0.5), ("run-2", 0.75)]


PUT_FOREVER = textwrap.dedent(
    """
    import sys
    from xmodal.spool import Spool
    spool = Spool(sys.argv[1])
    for i in range(100000):
        spool.put(f"run-{i % 50}", list(range(i, i + 1000)))
        print(i, flush=True)
    """
)


def test_kill_9_during_a_stream_of_puts_leaves_only_complete_entries(db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PUT_FOREVER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(60):
        last = int(proc.stdout.readline())
    proc.kill()  # somewhere inside a later put
    proc.wait()
    proc.stdout.close()
    store = FakeStore()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no entry may be damaged
        written = Spool(db).flush(store.write)
    assert written == 50  # every key once, its newest durable payload
    assert store.rows[f"run-{last % 50}"][0] >= last
    assert all(rows == list(range(rows[0], rows[0] + 1000)) for rows in store.rows.values())
    assert list(spool_dir(db).iterdir()) == []
