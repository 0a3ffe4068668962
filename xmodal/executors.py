"""Where runs execute: in this process, in a local process pool, or on a Ray cluster.

Every executor takes the pending cells, calls `on_start(cell)` just before a run is handed out,
and yields `(cell, outcome or failure)` as runs end; only the driving process writes to the store. The executor is not part of a run's identity: the same
study gives the same run ids, and the same numbers, whichever executes it.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import torch

from xmodal.errors import XmodalError
from xmodal.execute import Outcome, execute
from xmodal.plan import Cell
from xmodal.plugins import get_registry
from xmodal.studydata import DataHandle, StudyData

EXECUTORS = ("local", "process", "ray")
OnStart = Callable[[Cell], None]


@attrs.frozen
class Failure:
    """A run that raised: its error line and a short traceback."""

    error: str
    traceback: str


def _attempt(cell: Cell, shared: StudyData) -> Outcome | Failure:
    try:
        return execute(cell, shared)
    except Exception as exc:
        return Failure(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6))


def threads_per_run(workers: int, threads: int = 0) -> int:
    """Torch threads for each run: `threads`, or with 0 as many as fit the cores among workers."""
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class LocalExecutor:
    """Runs cells one after another in this process (the default)."""

    workers = 1

    def __init__(self, shared: StudyData, threads: int) -> None:
        self.shared = shared
        self.threads = threads

    def run(self, cells: list[Cell], on_start: OnStart) -> Iterator[tuple[Cell, Outcome | Failure]]:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for cell in cells:
                on_start(cell)
                yield cell, _attempt(cell, self.shared)
        finally:
            torch.set_num_threads(previous)

    def close(self) -> None:
        pass


# -- process pool --------------------------------------------------------------------------------

_worker_data: StudyData | None = None


def _init_process(handle: DataHandle, threads: int) -> None:
    global _worker_data
    torch.set_num_threads(threads)
    _worker_data = StudyData.attach(handle, get_registry())


def _run_in_process(cell: Cell) -> Outcome | Failure:
    assert _worker_data is not None
    return _attempt(cell, _worker_data)


class ProcessExecutor:
    """A pool of worker processes on this machine; the study's data is memory-mapped by all."""

    def __init__(self, shared: StudyData, workers: int, threads: int) -> None:
        self.workers = workers
        self._tmp = tempfile.TemporaryDirectory(prefix="xmodal-")
        handle = shared.export(Path(self._tmp.name))
        self._pool = futures.ProcessPoolExecutor(
            max_workers=workers,
            # spawn, not fork: forking a process whose torch/OpenMP threads have run can deadlock.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(handle, threads),
        )

    def run(self, cells: list[Cell], on_start: OnStart) -> Iterator[tuple[Cell, Outcome | Failure]]:
        pending = iter(cells)
        running: dict[futures.Future, Cell] = {}

        def submit_next() -> None:
            cell = next(pending, None)
            if cell is not None:
                on_start(cell)
                running[self._pool.submit(_run_in_process, cell)] = cell

        for _ in range(self.workers + 1):
            submit_next()
        while running:
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                try:
                    result = future.result()
                except futures.process.BrokenProcessPool as exc:
                    raise XmodalError(
                        f"a worker process died while running {cell.run_id}: {exc}"
                    ) from None
                submit_next()
                yield cell, result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._tmp.cleanup()


# -- Ray -----------------------------------------------------------------------------------------

_ray_data: dict[str, StudyData] = {}


def _run_on_ray(handle_id: str, handle: DataHandle, cell: Cell, threads: int) -> Outcome | Failure:
    # Ray reuses worker processes: attach the study's data once per process, not once per run.
    if handle_id not in _ray_data:
        _ray_data.clear()  # a long-lived cluster worker keeps only the current study's data
        torch.set_num_threads(threads)
        _ray_data[handle_id] = StudyData.attach(handle, get_registry())
    return _attempt(cell, _ray_data[handle_id])


class RayExecutor:
    """Runs cells as Ray tasks; the study's data goes to Ray's object store once."""

    def __init__(self, shared: StudyData, workers: int, threads: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise XmodalError(
                "the ray executor needs Ray: pip install 'xmodal[ray]' (or pip install ray)"
            ) from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers, **options)
        self.workers = workers if not address else int(ray.cluster_resources().get("CPU", workers))
        self.threads = threads
        self._handle = ray.put(shared.export(None))
        self._handle_id = os.urandom(8).hex()
        self._task = ray.remote(num_cpus=1)(_run_on_ray)

    def run(self, cells: list[Cell], on_start: OnStart) -> Iterator[tuple[Cell, Outcome | Failure]]:
        ray = self._ray
        pending = iter(cells)
        running: dict[Any, Cell] = {}
        threads = self.threads

        def submit_next() -> None:
            cell = next(pending, None)
            if cell is not None:
                on_start(cell)
                running[self._task.remote(self._handle_id, self._handle, cell, threads)] = cell

        for _ in range(self.workers + 1):
            submit_next()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            cell = running.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                result = Failure(f"ray: {type(exc).__name__}: {exc}", "")
            submit_next()
            yield cell, result

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(
    name: str, shared: StudyData, workers: int, threads: int = 1, address: str | None = None
) -> Any:
    """The executor called `name` ("local", "process" or "ray"), `threads` torch threads per run."""
    threads = threads_per_run(workers, threads)
    if name == "local" and workers <= 1:
        return LocalExecutor(shared, threads)
    if name in ("local", "process"):
        return ProcessExecutor(shared, max(1, workers), threads)
    if name == "ray":
        return RayExecutor(shared, max(1, workers), threads, address)
    raise XmodalError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
