"""One `xmodal run` per results database at a time, and a way to tell a live run from a dead one.

The lock is an advisory `flock` on `<db>.lock`: the kernel releases it when the holder dies, even
by `kill -9`, so runs still marked `running` while nobody holds the lock are known to be stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from xmodal.errors import XmodalError


class Busy(XmodalError):
    """Another `xmodal run` is writing to the same database."""


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def holder(db: Path) -> dict[str, Any] | None:
    """Who holds the run lock of `db` (pid, host, study, since), or None when nobody does."""
    path = lock_path(db)
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                return json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                return {}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class RunLock:
    """Held by the process that runs a study, for as long as it runs."""

    def __init__(self, db: Path, study: str, wait: bool = False, poll: float = 1.0) -> None:
        self.db, self.study, self.wait, self.poll = db, study, wait, poll
        self._handle: Any = None

    def __enter__(self) -> RunLock:
        path = lock_path(self.db)
        try:
            handle = open(path, "a+")
        except OSError as exc:
            raise XmodalError(
                f"{self.db}: cannot create the run lock {path}: {exc.strerror}"
            ) from None
        # `holder()` (xmodal status) takes the lock shared for a moment: retry briefly before
        # deciding that another runner holds it.
        grace = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not self.wait and time.monotonic() < grace:
                    time.sleep(0.05)
                    continue
                if not self.wait:
                    handle.seek(0)
                    info = handle.read()
                    handle.close()
                    raise Busy(
                        f"{self.db} is in use by another xmodal run ({_describe(info)}); "
                        "wait for it to finish, or pass --wait to queue behind it"
                    ) from None
                time.sleep(self.poll)
        handle.seek(0)
        handle.truncate()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "study": self.study,
            "since": time.time(),
        }
        handle.write(json.dumps(info))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _describe(raw: str) -> str:
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        return "unknown process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return (
        f"pid {info.get('pid')} on {info.get('host')}, study {info.get('study')!r}, since {since}"
    )
