"""A crash-safe spool beside the database for finished runs that could not be written yet.

When a reader holds the results database (a long `xmodal query`, a notebook's read-only
connection), DuckDB refuses the runner's write. The runner then puts the finished run here and
keeps computing; the next write that gets through (this runner's, or the next runner's) flushes
the spool into the database first.

Layout: `<real path of the db>.spool/` holds one file per entry, `<seq>-<key>.pkl`, where `seq`
is a zero-padded number that increases with every put (so name order is put order, across
processes and reboots) and `key` is the percent-encoded key (a run id). Each file is
`MAGIC + sha256(body) + body`, body being the pickle of `(key, payload)`.

Guarantees, all with `kill -9` at any moment:

- `put` writes a temporary file, fsyncs it, renames it to its final name and fsyncs the
  directory: an entry is either absent or complete. Temporary files (`.tmp-*`) are never read.
- A later put with the same key supersedes earlier ones (only the newest is written).
- `flush` writes each entry through the caller's `write(key, payload)` and only then removes the
  file. The caller's write must be idempotent (replace everything about `key` in one
  transaction): a crash between write and removal writes the same payload again next time, so
  every entry lands exactly once in effect.
- An entry that fails its checksum or cannot be unpickled is moved to `bad/` and reported, never
  dropped silently.

One process uses a spool at a time: the runner holding the database's run lock
(`xmodal.locking.RunLock`). Spool files are unpickled, so the directory is created private
(0700) and a spool directory that other users can write to is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import shutil
import stat
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError
from xmodal.locking import real_db_path

MAGIC = b"XMODAL-SPOOL-1\n"
_DIGEST = 32
_FINAL = re.compile(r"^(\d{20})-(.+)\.pkl$")
_TEMP_PREFIX = ".tmp-"
_MAX_KEY = 180  # encoded; file names are limited to 255 bytes


class SpoolError(XmodalError):
    """The spool cannot be used (unsafe permissions, a write that failed, no room)."""


class SpoolWarning(UserWarning):
    """An entry could not be read and was moved to the spool's `bad/` directory."""


def spool_dir(db: str | Path) -> Path:
    """The spool of `db`: beside the real database file, whatever path (symlink) names it."""
    real = real_db_path(db)
    return real.with_name(real.name + ".spool")


class Spool:
    """Finished runs waiting for the database, in put order, at most one entry per key."""

    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)
        self.path = spool_dir(db)
        self.bad_path = self.path / "bad"
        self._last_seq = 0

    # -- writing --------------------------------------------------------------------------------

    def put(self, key: str, payload: Any) -> Path:
        """Store `payload` under `key` durably; return the entry's file. Supersedes `key`'s
        earlier entries."""
        name = _encode(key)
        body = pickle.dumps((key, payload), protocol=pickle.HIGHEST_PROTOCOL)
        data = MAGIC + hashlib.sha256(body).digest() + body
        self._ensure_dir()
        earlier = [path for k, path in self._entries() if k == key]
        seq = self._next_seq()
        final = self.path / f"{seq:020d}-{name}.pkl"
        temp = self.path / f"{_TEMP_PREFIX}{os.getpid()}-{seq}.pkl"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
            _fsync_dir(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise SpoolError(
                f"{self.path}: cannot keep finished run {key} in the spool: {exc.strerror}; "
                "free some disk space (the run is lost only if this process stops too)"
            ) from None
        # The new entry is durable: the ones it supersedes can go.
        for path in earlier:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if earlier:
            _fsync_dir(self.path)
        return final

    # -- reading --------------------------------------------------------------------------------

    def pending(self) -> list[tuple[str, Path]]:
        """The entries a flush would write: the newest per key, in put order."""
        newest: dict[str, Path] = {}
        for key, path in self._entries():
            newest[key] = path  # _entries is in seq order: the last one wins
        return sorted(((k, p) for k, p in newest.items()), key=lambda item: item[1].name)

    def __len__(self) -> int:
        return len(self.pending())

    def bad(self) -> list[Path]:
        """Entries that could not be read (quarantined by `flush`), oldest first."""
        if not self.bad_path.is_dir():
            return []
        return sorted(p for p in self.bad_path.iterdir() if p.is_file())

    def flush(
        self,
        write: Callable[[str, Any], None],
        on_bad: Callable[[Path, str], None] | None = None,
    ) -> int:
        """Write every pending entry through `write(key, payload)`, in put order; return how
        many were written.

        An entry is removed only after its write returned. If `write` raises, the flush stops
        and the exception propagates: the entries not yet written stay for the next flush.
        Unreadable entries go to `bad/` and are reported to `on_bad(path, reason)` (a
        `SpoolWarning` when not given).
        """
        if not self.path.is_dir():
            return 0
        self._check_private()
        self._remove_dead_temp_files()
        entries = self._entries()
        by_key: dict[str, list[Path]] = {}
        for key, path in entries:
            by_key.setdefault(key, []).append(path)
        written = 0
        for key, path in self.pending():
            try:
                payload = self._load(key, path)
            except _Unreadable as exc:
                self._quarantine(path, str(exc), on_bad)
                continue
            write(key, payload)
            written += 1
            for done in by_key[key]:  # the entry and any it superseded
                with contextlib.suppress(FileNotFoundError):
                    done.unlink()
            _fsync_dir(self.path)
        return written

    # -- helpers --------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[str, Path]]:
        """Every complete entry, (key, path), in put order; temporary files are not entries."""
        if not self.path.is_dir():
            return []
        found = []
        for entry in os.scandir(self.path):
            match = _FINAL.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((entry.name, urllib.parse.unquote(match.group(2)), Path(entry.path)))
        found.sort()
        return [(key, path) for _, key, path in found]

    def _next_seq(self) -> int:
        # Wall-clock nanoseconds, but never below an entry already here (a clock set back, a
        # reboot) nor a number this spool handed out before.
        floor = self._last_seq
        for entry in os.scandir(self.path):
            match = _FINAL.match(entry.name)
            if match:
                floor = max(floor, int(match.group(1)))
        self._last_seq = max(time.time_ns(), floor + 1)
        return self._last_seq

    def _load(self, key: str, path: Path) -> Any:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _Unreadable(f"cannot read it: {exc.strerror}") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _DIGEST:
            raise _Unreadable("not a spool entry (bad header)")
        digest = data[len(MAGIC) : len(MAGIC) + _DIGEST]
        body = data[len(MAGIC) + _DIGEST :]
        if hashlib.sha256(body).digest() != digest:
            raise _Unreadable("checksum mismatch (the file is damaged)")
        try:
            stored_key, payload = pickle.loads(body)
        except Exception as exc:  # unpickling can raise nearly anything
            raise _Unreadable(f"cannot unpickle it: {type(exc).__name__}: {exc}") from None
        if stored_key != key:
            raise _Unreadable(f"its name says key {key!r} but it holds {stored_key!r}")
        return payload

    def _quarantine(
        self, path: Path, reason: str, on_bad: Callable[[Path, str], None] | None
    ) -> None:
        self.bad_path.mkdir(mode=0o700, exist_ok=True)
        target = self.bad_path / path.name
        os.replace(path, target)
        _fsync_dir(self.bad_path)
        _fsync_dir(self.path)
        if on_bad is not None:
            on_bad(target, reason)
        else:
            warnings.warn(
                f"{path}: {reason}; moved to {target} and not written to {self.db}",
                SpoolWarning,
                stacklevel=3,
            )

    def _remove_dead_temp_files(self) -> None:
        """Leftovers of a put killed before its rename (never an entry)."""
        for entry in os.scandir(self.path):
            if not entry.name.startswith(_TEMP_PREFIX):
                continue
            pid_text = entry.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else None
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue  # a put in progress in another process
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)

    def _ensure_dir(self) -> None:
        if self.path.is_dir():
            self._check_private()
            return
        try:
            self.path.mkdir(mode=0o700)
        except FileExistsError:
            if not self.path.is_dir():
                raise SpoolError(
                    f"{self.path}: exists and is not a directory; the runner keeps finished "
                    "runs there while the database is busy, so move that file away"
                ) from None
        except OSError as exc:
            raise SpoolError(
                f"{self.path}: cannot create the spool directory: {exc.strerror}; make "
                f"{self.path.parent} writable"
            ) from None
        _fsync_dir(self.path.parent)
        self._check_private()

    def _check_private(self) -> None:
        st = os.lstat(self.path)
        if not stat.S_ISDIR(st.st_mode):
            raise SpoolError(f"{self.path}: is not a directory (a symlink?); move it away")
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise SpoolError(
                f"{self.path}: the spool must belong to you and be writable only by you "
                f"(owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); its files are "
                f"unpickled. Fix: chmod 700 {self.path}"
            )


class _Unreadable(Exception):
    pass


def _encode(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"spool keys are non-empty strings, not {key!r}")
    name = urllib.parse.quote(key, safe="")
    if len(name) > _MAX_KEY:
        raise ValueError(f"spool key too long ({len(name)} characters encoded, at most {_MAX_KEY})")
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- disk space -----------------------------------------------------------------------------------


def free_bytes(path: str | Path) -> int:
    """Bytes free for this user on the filesystem that holds `path` (or would hold it)."""
    existing = Path(os.path.realpath(os.fspath(path)))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_free_space(path: str | Path, needed_bytes: int, what: str = "the spool") -> None:
    """Raise a clear `SpoolError` unless `needed_bytes` fit on the filesystem holding `path`."""
    free = free_bytes(path)
    if free < needed_bytes:
        raise SpoolError(
            f"{path}: {_size(free)} free on its disk, {what} may need {_size(needed_bytes)}; "
            "free some space, or pass --db with a path on another disk"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
