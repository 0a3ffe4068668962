"""SIGTERM handled like Ctrl-C while a study runs.

`kill PID`, a closed terminal session manager, `timeout` or a batch scheduler stop a process with
SIGTERM, whose default action ends it on the spot: the runs in flight would stay marked
`running` and a process pool's exported data would stay in $TMPDIR. Inside
`sigterm_as_interrupt()` the first SIGTERM raises KeyboardInterrupt in the main thread instead, so
the runner's Ctrl-C path runs: finished runs are kept, in-flight runs' marks are cleared, workers
are stopped and temporary data removed. Further SIGTERMs are ignored while that cleanup runs
(`kill -9` still ends the process; the next `xmodal run` then tidies up).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by a SIGTERM received inside `sigterm_as_interrupt()`."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within this block, the first SIGTERM raises `Terminated` (a KeyboardInterrupt) in the
    main thread; later ones are ignored. Outside the main thread this does nothing (Python only
    lets the main thread set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        if received:
            return
        received = True
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
