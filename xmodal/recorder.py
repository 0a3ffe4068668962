"""The runner's one way to write: a finished run goes to the database, or, while a reader holds the
database, to the crash-safe spool beside it; spooled runs are written before anything newer.

A busy database never throws a finished run away: the runner waits a little (`write_wait`), then
spools the run and goes on computing. Every later write first flushes the spool; the end of the
study waits longer (`final_wait`); whatever is still spooled then is written by the next
`xmodal run` (or `xmodal gc`) on the database. Writes are idempotent per run, so a crash between a
spooled run's write and its removal from the spool writes it again, never twice in effect.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from xmodal.backoff import is_lock_conflict, try_write
from xmodal.spool import Spool
from xmodal.store import RunRecord, Store

WRITE_WAIT = 5.0  # seconds a finished run waits for a busy database before it is spooled
FINAL_WAIT = 60.0  # seconds the end of a study waits for the database to take the spool
# Measure-only records are written together, at most this many seconds after the first of them
# finished: one transaction costs ~0.1 s, a measurement often less. A kill -9 loses at most these
# measurements (their predictions are stored; the next run measures them again), never training.
BATCH_SECONDS = 1.0


class Recorder:
    """Writes one study's runs to `store`, spooling them while the database is busy."""

    def __init__(
        self, store: Store, write_wait: float | None = None, final_wait: float | None = None
    ) -> None:
        # Each connection attempt gives up at once on a lock; `try_write` does the waiting.
        self.store = Store(store.path, lock_timeout=0.0)
        self.spool = Spool(store.path)
        self.write_wait = WRITE_WAIT if write_wait is None else write_wait
        self.final_wait = FINAL_WAIT if final_wait is None else final_wait
        self.spooled = 0  # runs put in the spool by this recorder
        self._batch: list[RunRecord] = []
        self._batch_started = 0.0

    def waiting(self) -> int:
        """How many finished runs wait in the spool."""
        return len(self.spool)

    def flush(self, wait: float = 0.0) -> bool:
        """Write every spooled run, oldest first; False if the database stayed busy."""
        if not self.waiting():
            return True
        return try_write(
            lambda: self.spool.flush(lambda _key, record: self.store.record(record)),
            is_lock_conflict,
            wait,
        )

    def record(self, record: RunRecord, *, batch: bool = False) -> bool:
        """Write `record` (after the spool and any batched records), or spool them; True if it
        reached the database. With `batch`, the record may wait up to `BATCH_SECONDS` to be
        written together with the next ones."""
        if batch:
            if not self._batch:
                self._batch_started = time.monotonic()
            self._batch.append(record)
            if time.monotonic() - self._batch_started < BATCH_SECONDS:
                return False
            return self.write_batch()
        self._batch.append(record)
        return self.write_batch()

    def write_batch(self) -> bool:
        """Write the records waiting in this recorder now (or spool them)."""
        records, self._batch = self._batch, []
        if not records:
            return True
        try:
            if self.flush(0.0) and try_write(
                lambda: self.store.record_many(records), is_lock_conflict, self.write_wait
            ):
                return True
        except KeyboardInterrupt:
            # Stopped while waiting for the database: these runs are finished, keep them.
            for one in records:
                self._put(one)
            raise
        for one in records:
            self._put(one)
        return False

    def finish(self) -> int:
        """At the end of a study: write what waits, wait for the database to take the spool;
        return how many runs are still waiting in it."""
        self.write_batch()
        self.flush(self.final_wait)
        return self.waiting()

    def best_effort(self, write: Callable[[], None]) -> None:
        """A write that only keeps the database tidy (a `running` mark): skipped while busy."""
        try_write(write, is_lock_conflict, 0.5)

    def _put(self, record: RunRecord) -> None:
        self.spool.put(record.run_id, record)
        self.spooled += 1
