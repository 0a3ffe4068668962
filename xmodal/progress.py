"""What `xmodal run` shows while a study runs: one progress line, per-run log lines, a summary.

The progress line keeps what matters visible at any width down to 80 columns: the bar, the count
of runs done, the time elapsed and the estimated time left. The run's description takes the
width that remains and is cut first, with an ellipsis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

if TYPE_CHECKING:
    from xmodal.planning import Run

BAR_WIDTH = 20


def describe_run(run: Run) -> str:
    """One line naming a run: pairing, mapping, loss, run kind, seed and fold."""
    # A depth the mapping declares tells its variants apart (mlp2); 0 or none adds nothing.
    mapping = f"{run.mapping}{run.depth}" if run.depth else run.mapping
    fold = f" fold {run.fold}" if run.fold is not None else ""
    loss = run.loss or "-"
    return f"{run.input_features}→{run.target_features} {mapping} {loss} {run.kind} seed {run.seed}{fold}"


class EtaColumn(TimeRemainingColumn):
    """`ETA 0:03:12`: the time left at the pace of the runs done in this session.

    Runs found finished (cached) complete at once and say nothing about the pace, so the estimate
    is (time since this session's first run started) / (runs done since) x (runs left), from the
    task fields `session_start` (a `clock()` value; `start_session` sets both) and `session_base`
    (runs done before it). With parallel workers this is the observed throughput. `ETA -:--:--` until a run ends,
    `done` once all have.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        if task.finished:
            return Text("done", style="progress.elapsed")
        start = task.fields.get("session_start")
        done_here = task.completed - task.fields.get("session_base", 0)
        if start is None or done_here <= 0:
            return Text("ETA -:--:--", style="progress.remaining")
        seconds = (self.clock() - start) / done_here * (task.total - task.completed)
        minutes, secs = divmod(int(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"ETA {hours:d}:{minutes:02d}:{secs:02d}", style="progress.remaining")


def make_progress(console: Console, clock: Callable[[], float] = time.monotonic) -> Progress:
    """The study's progress line: description (cut first), bar, done/total, elapsed, ETA.
    `clock` (seconds, monotonic) is there for tests."""
    description = TextColumn(
        "{task.description}",
        markup=False,  # names come from the study file: text, never markup
        table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=4),
    )
    return Progress(
        description,
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        EtaColumn(clock),
        console=console,
        get_time=clock,
        transient=False,
        expand=True,
    )


def start_session(progress: Progress, task_id: int, done: int) -> None:
    """Mark the moment this session's first run starts, with `done` runs already finished."""
    task = next(t for t in progress.tasks if t.id == task_id)
    if "session_start" not in task.fields:
        progress.update(task_id, session_start=progress.get_time(), session_base=done)


# A neighbour search of at least this many tiles gets a progress line (tile_progress): about
# 16,000 items at the default block size, a few seconds on a 2-core CPU. One reported in other
# units (a backend's items) gets one from MIN_ITEMS of them.
MIN_TILES = 64
MIN_ITEMS = 16_000


def tile_progress(
    progress: Progress, *, min_tiles: int = MIN_TILES, min_items: int = MIN_ITEMS
) -> Callable[[int, str], Callable[[int, int], None] | None]:
    """For `xmodal.neighbors.report_progress`: each neighbour search of at least `min_tiles`
    tiles (or `min_items` units of another kind) gets its own line in `progress` while it runs
    (`nearest neighbours (unit)`, bar, done/all, elapsed, ETA at its pace so far), removed when
    it finishes."""

    def start(total: int, unit: str = "tiles") -> Callable[[int, int], None] | None:
        if total < (min_tiles if unit == "tiles" else min_items):
            return None
        task = progress.add_task(f"nearest neighbours ({unit})", total=total)
        start_session(progress, task, 0)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done)
            if done >= total:
                progress.remove_task(task)

        return report

    return start


def duration(seconds: float) -> str:
    """`4.2 s`, `3 min 12 s`, `1 h 04 min`: short and unambiguous."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_line(status: str, run_id: str, description: str, seconds: float | None) -> str:
    """One run's log line (`xmodal run --verbose`): status, run id, seconds, description."""
    took = "" if seconds is None else f"{seconds:7.1f} s"
    return f"{status:<8} {run_id}  {took:>9}  {description}"


def summary_phrases(
    name: str,
    *,
    trained: int,
    measured: int,
    cached: int,
    failed: int,
    seconds: float,
    db: str,
) -> list[str]:
    """The end-of-study summary as phrases that are never split across lines:
    `quickstart: 22 ran, 2 cached, 0 failed in 6 min 12 s → xmodal.duckdb`.

    Counts that are zero are left out, except failed (always said); `trained` counts the runs
    executed now, of every kind (said "ran": they need not train); `measured` counts runs only
    measured from their stored predictions (a metric added to a finished study).
    """
    counts = [
        f"{n} {label}"
        for n, label in ((trained, "ran"), (measured, "measured"), (cached, "cached"))
        if n
    ]
    total = trained + measured + cached + failed
    said = ", ".join([*counts, f"{failed} failed"]) if total else "no runs"
    return [f"{name}:", said, f"in {duration(seconds)}", f"→ {db}"]


def fit(phrases: Sequence[str], width: int) -> list[str]:
    """Phrases joined by spaces into as few lines of at most `width` as they allow: a line
    breaks only between phrases (one longer than `width` gets a line of its own)."""
    lines: list[str] = []
    for phrase in phrases:
        if lines and len(lines[-1]) + 1 + len(phrase) <= width:
            lines[-1] += " " + phrase
        else:
            lines.append(phrase)
    return lines
