"""What `xmodal run` shows: at 80 columns the bar, the count, the elapsed time and the ETA stay
visible (the run's description is cut first, with an ellipsis); `--verbose` logs one line per
run; the summary fits one line, and breaks only between phrases when it cannot."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from xmodal import progress as shown

LONG = "quickstart: " + "text→image mlp3 max_margin trained seed 0 fold 4 " * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def render(width: int, *, done: int, total: int = 24, cached: int = 0, minutes: float = 1.0):
    """The progress line after `done` runs (the first `cached` of them found finished at once),
    `minutes` after this session's first run started."""
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    clock = Clock()
    progress = shown.make_progress(console, clock=clock)
    task = progress.add_task("quickstart", total=total)
    progress.update(task, completed=cached)
    shown.start_session(progress, task, cached)
    progress.update(task, description=LONG)
    clock.now += minutes * 60
    progress.update(task, completed=done)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.export_text().rstrip("\n").splitlines()


@pytest.mark.parametrize("width", [80, 100, 60])
def test_bar_count_elapsed_and_eta_stay_visible_and_the_description_is_cut(width):
    [line] = render(width, done=6)
    assert len(line) <= width
    assert " 6/24 " in line and "0:01:00" in line  # count and elapsed
    assert line.endswith("ETA 0:03:00")  # 1 min for 6 runs: 3 min for the 18 left
    assert "━" in line  # the bar
    assert line.startswith("quickstart: ") and "…" in line  # cut, with an ellipsis
    if width >= 80:
        assert line.startswith("quickstart: text→image mlp3")


def render_new(description: str, *, width: int, total: int) -> str:
    """The progress table of one task just added with this description."""
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    progress = shown.make_progress(console, clock=Clock())
    progress.add_task(description, total=total)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.export_text()


def test_a_description_that_fits_is_not_cut():
    shown_text = render_new("tiny: text→image mlp2 mse trained seed 0", width=120, total=8)
    assert "tiny: text→image mlp2 mse trained seed 0 " in shown_text


def test_runs_found_finished_do_not_make_the_eta_optimistic():
    # 20 cached at once, then 2 runs in 1 minute: 2 left take another minute, not seconds.
    [line] = render(80, done=22, cached=20)
    assert line.endswith("ETA 0:01:00")


def test_eta_is_unknown_until_a_run_ends_and_done_at_the_end():
    assert render(80, done=0)[0].endswith("ETA -:--:--")
    assert render(80, done=24)[0].endswith(" done")


def test_markup_in_a_description_is_text():
    assert "[bold]study[/]" in render_new("[bold]study[/]", width=80, total=2)


def test_the_summary_fits_one_line_and_breaks_only_between_phrases():
    def summary(db: str = "xmodal.duckdb", **counts: int) -> list[str]:
        numbers = {"trained": 0, "measured": 0, "cached": 0, "failed": 0, **counts}
        return shown.fit(shown.summary_phrases("quickstart", seconds=372.4, db=db, **numbers), 80)

    assert summary(trained=240) == ["quickstart: 240 ran, 0 failed in 6 min 12 s → xmodal.duckdb"]
    assert summary(trained=118, cached=120, failed=2) == [
        "quickstart: 118 ran, 120 cached, 2 failed in 6 min 12 s → xmodal.duckdb"
    ]
    assert summary(measured=240) == [
        "quickstart: 240 measured, 0 failed in 6 min 12 s → xmodal.duckdb"
    ]
    assert summary() == ["quickstart: no runs in 6 min 12 s → xmodal.duckdb"]
    long_db = "/home/someone/projects/collell-moens-2018/results/iapr-tc12-depth-sweep.duckdb"
    assert summary(long_db, trained=118, measured=1, cached=120, failed=2) == [
        "quickstart: 118 ran, 1 measured, 120 cached, 2 failed in 6 min 12 s",
        f"→ {long_db}",  # longer than 80 itself: a line of its own, never cut
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.25, "4.2 s"), (59.94, "59.9 s"), (372.4, "6 min 12 s"),
                          (3840, "1 h 04 min")],
)  # fmt: skip
def test_durations_are_short(seconds, text):
    assert shown.duration(seconds) == text


def test_run_prints_lines_that_fit_80_columns_and_verbose_logs_each_run(
    cli, write_study, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    study = write_study()
    result = cli("run", study, "--db", "results.duckdb", "--verbose")
    assert result.code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    [summary] = result.out.splitlines()
    assert re.fullmatch(r"tiny: 8 ran, 0 failed in [\d.]+ s → results\.duckdb", summary)
    logged = [line for line in result.err.splitlines() if line.startswith("finished ")]
    assert len(logged) == 8
    for line in logged:
        assert re.fullmatch(r"finished [0-9a-f]{16} +[\d.]+ s  \S+→\S+ .* seed 0", line), line
    progress = [line for line in result.err.splitlines() if " 8/8 " in line]
    assert progress and progress[-1].startswith("tiny ") and progress[-1].endswith("done")

    again = cli("run", study, "--db", "results.duckdb")  # not verbose: no per-run lines
    assert again.code == 0
    assert "finished " not in again.err and "cached " not in again.err
    assert again.out.startswith("tiny: 8 cached, 0 failed in ")
