"""The run lock belongs to the database file, whatever path names it, and never gets in DuckDB's way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from xmodal.errors import XmodalError
from xmodal.locking import Busy, RunLock, holder, lock_path

HOLD = textwrap.dedent(
    """
    import sys, time
    from xmodal.locking import RunLock
    with RunLock(sys.argv[1], "held-elsewhere"):
        print("locked", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results.duckdb"
    duckdb.connect(str(path)).close()
    return path


@pytest.fixture
def other_process(db: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the run lock of `db` until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    with proc:  # closes its pipe
        proc.wait()


def _can_open_read_write(db: Path) -> bool:
    """Whether another process can open `db` read-write right now (DuckDB's own lock)."""
    code = f"import duckdb; duckdb.connect({str(db)!r}).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_symlink_to_the_database_meets_the_same_lock(db: Path) -> None:
    link = db.with_name("link.duckdb")
    link.symlink_to(db.name)
    with RunLock(db, "first"), pytest.raises(Busy, match="study 'first'"), RunLock(link, "second"):
        pass


def test_a_hard_link_to_the_database_meets_the_same_lock(db: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    other_name = tmp_path / "elsewhere" / "same-file.duckdb"
    os.link(db, other_name)
    with RunLock(db, "first"), pytest.raises(Busy, match="another name"), RunLock(other_name, "x"):
        pass
    with RunLock(other_name, "first"), pytest.raises(Busy), RunLock(db, "second"):
        pass


def test_a_relative_spelling_meets_the_same_lock(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with RunLock(db, "first"), pytest.raises(Busy), RunLock(Path("../results.duckdb"), "second"):
        pass


def test_a_runner_in_another_process_holds_it_through_a_symlink(
    db: Path, other_process: subprocess.Popen[str]
) -> None:
    link = db.with_name("link.duckdb")
    link.symlink_to(db)
    with pytest.raises(Busy, match=f"pid {other_process.pid}"), RunLock(link, "second"):
        pass


def test_different_database_files_do_not_exclude_each_other(tmp_path: Path) -> None:
    with RunLock(tmp_path / "a.duckdb", "a"), RunLock(tmp_path / "b.duckdb", "b"):
        assert holder(tmp_path / "a.duckdb")["study"] == "a"
        assert holder(tmp_path / "b.duckdb")["study"] == "b"


def test_holder_seen_through_a_symlink(db: Path, other_process: subprocess.Popen[str]) -> None:
    link = db.with_name("link.duckdb")
    link.symlink_to(db)
    info = holder(link)
    assert info is not None
    assert info["pid"] == other_process.pid
    assert info["study"] == "held-elsewhere"
    assert lock_path(link) == lock_path(db) == db.with_name("results.duckdb.lock")


def test_holder_through_a_hard_link_knows_the_lock_is_held(db: Path) -> None:
    other_name = db.with_name("hard.duckdb")
    os.link(db, other_name)
    with RunLock(db, "first"):
        assert holder(other_name) == {}  # held; described under the other name only
    assert holder(other_name) is None


def test_lock_released_when_the_holder_is_killed(
    db: Path, other_process: subprocess.Popen[str]
) -> None:
    assert holder(db) is not None
    other_process.send_signal(signal.SIGKILL)
    other_process.wait()
    assert holder(db) is None  # the stale holder file is not taken for a live holder
    with RunLock(db, "next"):
        assert holder(db)["study"] == "next"


def test_released_on_exit_and_the_holder_file_removed(db: Path) -> None:
    with RunLock(db, "first"):
        assert lock_path(db).exists()
    assert holder(db) is None
    assert not lock_path(db).exists()
    with RunLock(db, "again"):
        pass


def test_two_locks_in_one_process_exclude_each_other(db: Path) -> None:
    with RunLock(db, "first"), pytest.raises(Busy), RunLock(db, "second"):
        pass


def test_duckdb_opens_a_locked_database_read_write_and_read_only(
    db: Path, other_process: subprocess.Popen[str]
) -> None:
    with RunLock(db.with_name("mine.duckdb"), "mine"):
        pass
    # The run lock is a flock; DuckDB's locks are fcntl record locks: independent.
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.close()
    assert _can_open_read_write(db)


def test_locking_never_drops_the_processes_own_duckdb_lock(db: Path) -> None:
    """Closing any descriptor of a file drops the process's fcntl locks on it: we never close."""
    con = duckdb.connect(str(db))
    try:
        assert not _can_open_read_write(db)
        with RunLock(db, "mine"):
            pass
        holder(db)
        with RunLock(db, "again"):
            pass
        assert not _can_open_read_write(db), "DuckDB's lock was dropped by the run lock"
    finally:
        con.close()
    assert _can_open_read_write(db)


def test_a_missing_database_is_created_as_a_valid_duckdb_file(tmp_path: Path) -> None:
    link = tmp_path / "link.duckdb"
    link.symlink_to("target.duckdb")  # dangling
    with RunLock(link, "first"):
        assert (tmp_path / "target.duckdb").is_file()
        con = duckdb.connect(str(tmp_path / "target.duckdb"), read_only=True)
        con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.duckdb", "target.duckdb"]


def test_unusable_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(XmodalError, match="is a directory"), RunLock(tmp_path, "x"):
        pass
    missing = tmp_path / "no" / "such" / "results.duckdb"
    with pytest.raises(XmodalError, match="does not exist"), RunLock(missing, "x"):
        pass


def test_descriptors_of_deleted_databases_are_not_kept(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        db = tmp_path / f"{i}.duckdb"
        with RunLock(db, "s"):
            holder(db)
        db.unlink()
    with RunLock(tmp_path / "last.duckdb", "s"):
        pass
    assert len(os.listdir("/proc/self/fd")) <= before + 2
