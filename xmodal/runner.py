"""The run loop: skip finished runs, hand pending ones to an executor, record each as it ends.

Only this loop writes to the store, one transaction per run, under a lock that keeps a second
`xmodal run` off the same database; so an interrupted or killed study loses at most the runs in
flight, never a recorded one, and resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from xmodal.errors import Problem, StudyError, XmodalError
from xmodal.execute import Outcome, run_row
from xmodal.executors import Failure, make_executor
from xmodal.locking import RunLock
from xmodal.params import expand
from xmodal.plan import Cell
from xmodal.plugins import Registry
from xmodal.store import Store, now
from xmodal.study import Study
from xmodal.studydata import StudyData, probed_splits, split_key


@attrs.frozen
class RunEvent:
    """Progress of a study: a run started, finished, failed or was skipped as already finished."""

    kind: str
    cell: Cell
    done: int
    total: int
    seconds: float = 0.0
    error: str | None = None


@attrs.frozen
class RunSummary:
    planned: int
    skipped: int
    finished: int
    failed: int
    interrupted: bool = False


class Interrupted(XmodalError):
    """The user stopped the study; finished runs are kept, the interrupted one left no trace."""

    exit_code = 130


def max_k(cells: Iterable[Cell], registry: Registry) -> int:
    """The largest k any neighbour-based metric of these runs asks for (10 when none does)."""
    ks = [
        k
        for c in cells
        for name, p in c.metrics
        if registry.metrics[name].uses_neighbors
        for k in p.get("k", [])
    ]
    return max(ks, default=10)


def check_runs(study: Study, cells: list[Cell], shared: StudyData) -> None:
    """Checks that need the data: features exist, splits are non-empty, metric k fits the split."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        key = split_key(cell)
        if key in seen:
            continue
        seen.add(key)
        try:
            data = shared.data(cell)
        except XmodalError as exc:
            problems.append(Problem("data", f"dataset {cell.dataset!r} could not be loaded: {exc}"))
            continue
        except Exception as exc:
            problems.append(
                Problem(
                    "data",
                    f"dataset {cell.dataset!r} failed to load: {type(exc).__name__}: {exc}",
                )
            )
            continue
        for name in (cell.input_features, cell.target_features):
            if name not in data.features:
                problems.append(
                    Problem(
                        "data.pairs",
                        f"dataset {cell.dataset!r} has no feature set {name!r}",
                        allowed=", ".join(data.features),
                    )
                )
        try:
            shared.split(cell)
        except XmodalError as exc:
            problems.append(Problem("data.split", str(exc)))
    problems.extend(_metric_problems(study, cells, shared))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise StudyError(study.path, [attrs.evolve(p, line=study.line_of(p.path)) for p in unique])


def _metric_problems(study: Study, cells: list[Cell], shared: StudyData) -> list[Problem]:
    """Metric checks against the size of every split a run probes (probe curves included)."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        try:
            train_idx, test_idx = shared.split(cell)
        except Exception:  # reported by the data checks
            continue
        sizes = {"train": len(train_idx), "test": len(test_idx)}
        for split in probed_splits(cell):
            if (split_key(cell), split) in seen:
                continue
            seen.add((split_key(cell), split))
            info = {"n": sizes[split], "split": split, "include_self": cell.probes["include_self"]}
            for i, metric in enumerate(study.metrics):
                spec = shared.registry.metrics[metric.name]
                if spec.check is None:
                    continue
                for key, message in spec.check(expand(spec.params, metric.params)[0], info):
                    problems.append(
                        Problem(f"metric[{i}].{key}" if key else f"metric[{i}]", message)
                    )
    return problems


def run_study(
    study: Study,
    cells: list[Cell],
    store: Store,
    shared: StudyData,
    *,
    force: bool = False,
    fail_fast: bool = False,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    threads: int = 1,
    wait: bool = False,
    on_event: Callable[[RunEvent], None] | None = None,
) -> RunSummary:
    """Execute the study's pending runs, writing each run's rows as it finishes."""
    emit = on_event or (lambda event: None)
    with RunLock(store.path, study.name, wait=wait):
        ids = [c.run_id for c in cells]
        store.record_study(study.name, study.source_hash, str(Path(study.path)), study.source, ids)
        statuses = store.run_statuses(ids)
        pending = [c for c in cells if force or statuses.get(c.run_id) != "finished"]
        total, done = len(cells), len(cells) - len(pending)
        for cell in cells:
            if not force and statuses.get(cell.run_id) == "finished":
                emit(RunEvent("skip", cell, done, total))
        if not pending:
            return RunSummary(planned=total, skipped=done, finished=0, failed=0)
        shared.precompute(pending)
        finished = failed = 0
        started: dict[str, Any] = {}
        runner = make_executor(executor, shared, workers, threads, address)

        def on_start(cell: Cell) -> None:
            store.mark_running({**run_row(cell, "running", started=now()), "study": study.name})
            started[cell.run_id] = time.perf_counter()
            emit(RunEvent("start", cell, done, total))

        try:
            for cell, result in runner.run(pending, on_start):
                done += 1
                seconds = time.perf_counter() - started.pop(cell.run_id)
                if isinstance(result, Failure):
                    failed += 1
                    error = result.error
                    if statuses.get(cell.run_id) == "finished":
                        # A forced redo that fails must not wipe the results it was to replace
                        # (mark_running left a finished row as it was).
                        error += " (its earlier finished results are kept)"
                    else:
                        row = run_row(cell, "failed", started=None, error=result.error)
                        row["error"] = f"{result.error}\n{result.traceback}"
                        store.record_run({**row, "study": study.name}, [], [])
                    emit(RunEvent("fail", cell, done, total, seconds, error=error))
                    if fail_fast:
                        raise XmodalError(f"run {cell.run_id} failed (--fail-fast): {result.error}")
                else:
                    _record(store, study, result)
                    finished += 1
                    emit(RunEvent("finish", cell, done, total, seconds))
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {finished} run(s) finished in this session are saved; "
                f"run the same command again to resume ({total - done} left)"
            ) from None
        finally:
            # Runs still in flight when the loop stops (Ctrl-C, --fail-fast, a dead worker)
            # were never recorded: forget their `running` marks so they do not look stale.
            store.clear_running(list(started))
            runner.close()
    return RunSummary(planned=total, skipped=total - len(pending), finished=finished, failed=failed)


def _record(store: Store, study: Study, outcome: Outcome) -> None:
    try:
        store.record_run({**outcome.run, "study": study.name}, outcome.results, outcome.curves)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted while saving a run; it was rolled back and will be redone"
        ) from None
