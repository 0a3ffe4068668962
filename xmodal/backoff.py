"""Waiting out a busy database: retry a write with exponential backoff until a deadline.

DuckDB lets one process write a database file, and not while another process has it open read-only
(a long `xmodal query`, a notebook). The runner must not give up a finished run because of that:
it tries the write for a while (`try_write`), and when the database is still busy it puts the run
in the spool (`xmodal.spool`) and keeps computing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import duckdb

FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def try_write(
    write: Callable[[], None],
    is_busy: Callable[[BaseException], bool],
    deadline_s: float,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Call `write()` until it succeeds (True) or `deadline_s` seconds have passed (False).

    An exception for which `is_busy` is true means "try again": the wait doubles from
    `first_delay` up to `max_delay` and never sleeps past the deadline. Any other exception
    propagates at once. `write` is tried at least once, even with a deadline of 0, and once more
    at the deadline itself.
    """
    deadline = clock() + max(deadline_s, 0.0)
    delay = first_delay
    while True:
        try:
            write()
            return True
        except BaseException as exc:
            if not is_busy(exc):
                raise
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether `exc` says another process holds the DuckDB file ("Could not set lock ...").

    Recognises DuckDB's own `IOException` and errors that wrap its message (the store's
    `StoreError`), following `__cause__`/`__context__`.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if isinstance(current, duckdb.IOException) and "lock" in text:
            return True
        if "could not set lock" in text or "conflicting lock" in text:
            return True
        current = current.__cause__ or current.__context__
    return False
