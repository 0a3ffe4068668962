"""One `xmodal run` per results database at a time, and a way to tell a live run from a dead one.

The lock is keyed on the database **file**, not on how its path is spelled: it is an advisory
`flock` on the database file itself, so a symlink, a relative path, `..` or a hard link to the
same file all meet the same lock. The kernel releases it when the holder dies, even by
`kill -9`, so runs still marked `running` while nobody holds the lock are known to be stale.

Who holds it (pid, host, study, since) is written to `<real path of the db>.lock`, which
`xmodal status` shows through `holder()`.

Two facts about Linux locks shape this module:

- `flock(2)` locks and the POSIX `fcntl` record locks DuckDB takes are independent on local
  filesystems, so flocking the database file does not stop DuckDB from opening it, read-write or
  read-only, in this process or any other.
- Closing *any* descriptor of a file drops *every* POSIX lock the process holds on that file. A
  process that opened the database file for flock and closed it again would silently release the
  lock of its own open DuckDB connection (`tests/test_locking.py` shows it). So descriptors of
  database files opened here are never closed: after use they go back to a per-file pool and are
  reused by the next `RunLock` or `holder()` in this process (those of deleted files are closed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from xmodal.errors import XmodalError


class Busy(XmodalError):
    """Another `xmodal run` is writing to the same database."""


def real_db_path(db: str | Path) -> Path:
    """The database file's canonical path: symlinks, `..` and relative parts resolved."""
    return Path(os.path.realpath(os.fspath(db)))


def lock_path(db: str | Path) -> Path:
    """Where the holder of `db`'s run lock is described: beside the real file, not the symlink."""
    real = real_db_path(db)
    return real.with_name(real.name + ".lock")


def holder(db: str | Path) -> dict[str, Any] | None:
    """Who holds the run lock of `db` (pid, host, study, since), or None when nobody does.

    An empty dict means the lock is held but its holder did not describe itself under this
    name (it opened the same file through another hard link).
    """
    real = real_db_path(db)
    try:
        identity = _identity(real)
        fd = _pool.take(real, identity)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(lock_path(real), identity)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        _pool.give(identity, fd)


class RunLock:
    """Held by the process that runs a study, for as long as it runs.

    Creates the database (a valid, empty DuckDB file) when it does not exist yet, so that there
    is a file to lock.
    """

    def __init__(self, db: str | Path, study: str, wait: bool = False, poll: float = 1.0) -> None:
        self.db, self.study, self.wait, self.poll = Path(db), study, wait, poll
        self.real = real_db_path(db)
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def __enter__(self) -> RunLock:
        ensure_database(self.db)
        # `holder()` (xmodal status) takes the lock shared for a moment: retry briefly before
        # deciding that another runner holds it.
        grace = time.monotonic() + 1.0
        while True:
            identity = self._open_identity()
            try:
                fd = _pool.take(self.real, identity)
            except FileNotFoundError:
                continue  # replaced while being opened: look again
            except OSError as exc:
                raise XmodalError(
                    f"{self.db}: cannot open the results database to lock it: {exc.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _pool.give(identity, fd)
                if not self.wait and time.monotonic() < grace:
                    time.sleep(0.05)
                    continue
                if not self.wait:
                    info = _read_info(lock_path(self.real), identity)
                    raise Busy(
                        f"{self.db} is in use by another xmodal run ({_describe(info)}); "
                        "wait for it to finish, or pass --wait to queue behind it"
                    ) from None
                time.sleep(self.poll)
                continue
            # The file may have been replaced between stat and flock: then the lock is on a file
            # nobody else will look at. Start again on the file now at that path.
            if self._open_identity() != identity:
                fcntl.flock(fd, fcntl.LOCK_UN)
                _pool.give(identity, fd)
                continue
            break
        self._fd, self._identity = fd, identity
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "study": self.study,
            "since": time.time(),
            "db": str(self.real),
            "dev": identity[0],
            "ino": identity[1],
        }
        try:
            _write_info(lock_path(self.real), info)
        except OSError as exc:
            self._release()
            raise XmodalError(
                f"{self.db}: cannot write the run lock's holder file {lock_path(self.real)}: "
                f"{exc.strerror}; make its directory writable"
            ) from None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            # Remove the description before unlocking: the next holder writes its own after.
            with contextlib.suppress(OSError):
                os.unlink(lock_path(self.real))
            self._release()

    def _release(self) -> None:
        if self._fd is not None and self._identity is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            _pool.give(self._identity, self._fd)
        self._fd = self._identity = None

    def _open_identity(self) -> tuple[int, int]:
        try:
            return _identity(self.real)
        except OSError as exc:
            raise XmodalError(
                f"{self.db}: cannot open the results database to lock it: {exc.strerror}"
            ) from None


def ensure_database(db: str | Path) -> Path:
    """Create `db` as a valid, empty DuckDB database if nothing is there; return its real path.

    An empty file is not a DuckDB database (DuckDB refuses to open it), so the file is made by
    DuckDB under a temporary name and hard-linked into place: other processes see either no file
    or a complete one, and two runners creating it at once both end up with the same file.
    """
    real = real_db_path(db)
    if real.exists():
        if real.is_dir():
            raise XmodalError(
                f"{db}: is a directory, not a results database; pass --db with a file name "
                "(e.g. --db results.duckdb)"
            )
        return real
    parent = real.parent
    if not parent.is_dir():
        raise XmodalError(
            f"{db}: directory {parent} does not exist; create it or pass --db with another path"
        )
    temp = parent / f".{real.name}.creating-{os.getpid()}-{threading.get_ident()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        duckdb.connect(str(temp)).close()
        try:
            os.link(temp, real)
        except FileExistsError:
            pass  # another runner created it first: use theirs
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links on this filesystem: an exclusive rename is not available either,
            # so check-then-rename (the window is one syscall wide).
            if not real.exists():
                os.rename(temp, real)
    except OSError as exc:
        raise XmodalError(
            f"{db}: cannot create the results database: {exc.strerror}; check that "
            f"{parent} is writable"
        ) from None
    except duckdb.Error as exc:
        raise XmodalError(f"{db}: cannot create the results database: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
        with contextlib.suppress(OSError):
            Path(f"{temp}.wal").unlink()
    return real


def _identity(real: Path) -> tuple[int, int]:
    st = os.stat(real)
    return st.st_dev, st.st_ino


class _DescriptorPool:
    """Open descriptors of database files, per (device, inode), that are never closed.

    Each `take` returns a descriptor with its own open file description (flock locks belong to
    those), so two `RunLock`s on one file in one process still exclude each other.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[int, int], list[int]] = {}
        self._mutex = threading.Lock()

    def take(self, real: Path, identity: tuple[int, int]) -> int:
        with self._mutex:
            idle = self._idle.get(identity)
            if idle:
                return idle.pop()
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            # Replaced between stat and open. The new file's descriptor is pooled under its own
            # identity (closing it could drop DuckDB's locks on it); the caller re-stats.
            self.give((st.st_dev, st.st_ino), fd)
            raise FileNotFoundError(errno.ENOENT, "replaced while being opened", str(real))
        return fd

    def give(self, identity: tuple[int, int], fd: int) -> None:
        with self._mutex:
            self._idle.setdefault(identity, []).append(fd)
            self._prune()

    def _prune(self) -> None:
        """Close the idle descriptors of deleted files: no other process can open those by name,
        so dropping this process's locks on them cannot matter."""
        for identity, fds in list(self._idle.items()):
            keep = []
            for fd in fds:
                if os.fstat(fd).st_nlink == 0:
                    os.close(fd)
                else:
                    keep.append(fd)
            if keep:
                self._idle[identity] = keep
            else:
                del self._idle[identity]


_pool = _DescriptorPool()


def _write_info(path: Path, info: dict[str, Any]) -> None:
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(info))
    os.replace(temp, path)


def _read_info(path: Path, identity: tuple[int, int]) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(info, dict):
        return {}
    if "ino" in info and (info.get("dev"), info.get("ino")) != identity:
        return {}
    return info


def _describe(info: dict[str, Any]) -> str:
    if not info.get("pid"):
        return "a process that opened it under another name, e.g. a hard link"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return (
        f"pid {info.get('pid')} on {info.get('host')}, study {info.get('study')!r}, since {since}"
    )
