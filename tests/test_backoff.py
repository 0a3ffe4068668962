"""try_write: retry while the database is busy, give up at the deadline, never swallow other errors."""

from __future__ import annotations

import duckdb
import pytest

from xmodal.backoff import is_lock_conflict, try_write
from xmodal.store import StoreError


class Busy(Exception):
    pass


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def busy_for(n: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        if len(calls) <= n:
            raise Busy("Could not set lock on file")

    return calls, write


def run(write: object, deadline: float, clock: FakeClock) -> bool:
    return try_write(
        write,  # type: ignore[arg-type]
        lambda exc: isinstance(exc, Busy),
        deadline,
        sleep=clock.sleep,
        clock=clock,
    )


def test_a_free_database_is_written_at_once() -> None:
    clock = FakeClock()
    calls, write = busy_for(0)
    assert run(write, 10.0, clock)
    assert calls == [1]
    assert clock.sleeps == []


def test_waits_double_up_to_the_cap_until_the_write_goes_through() -> None:
    clock = FakeClock()
    calls, write = busy_for(8)
    assert run(write, 60.0, clock)
    assert len(calls) == 9
    assert clock.sleeps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_still_busy_at_the_deadline_returns_false_without_sleeping_past_it() -> None:
    clock = FakeClock()
    calls, write = busy_for(10**6)
    assert not run(write, 5.0, clock)
    assert clock.now == pytest.approx(105.0)
    assert max(clock.sleeps) <= 2.0
    assert len(calls) == len(clock.sleeps) + 1  # one last try at the deadline


def test_a_zero_deadline_still_tries_once() -> None:
    clock = FakeClock()
    calls, write = busy_for(10**6)
    assert not run(write, 0.0, clock)
    assert calls == [1]
    assert clock.sleeps == []


def test_other_errors_propagate_at_once() -> None:
    clock = FakeClock()

    def write() -> None:
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        run(write, 60.0, clock)
    assert clock.sleeps == []


def test_lock_conflicts_are_recognised_directly_and_wrapped() -> None:
    message = 'IO Error: Could not set lock on file "x.duckdb": Conflicting lock is held in ...'
    assert is_lock_conflict(duckdb.IOException(message))
    assert is_lock_conflict(StoreError(f"x.duckdb: cannot open the results database: {message}"))
    try:
        try:
            raise duckdb.IOException(message)
        except duckdb.IOException as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert is_lock_conflict(outer)
    assert not is_lock_conflict(duckdb.IOException("IO Error: No space left on device"))
    assert not is_lock_conflict(ValueError("lock"))
