"""Exact neighbour backend `ray`: xmodal's blocked kNN with its tiles computed as Ray tasks.

`[neighbors] backend = "ray"` gives the lists of `xmodal.knn`, bit for bit on the same machine:
`knn` itself checks the space, merges equal rows and handles include_self; only the tiles of the
symmetric grid (`TileGrid`) are farmed out, in two waves (`RayTiles`): the diagonal tiles, whose
lists give each item a floor, then the other tiles in rectangular regions of the grid, about two
per task (`tasks_per_cpu` × the cluster's CPUs tasks). Each task multiplies its tiles with
`compute_tiles` (the single-process code) and returns the best `slots` candidates of the items
of the blocks it touched; the driver merges them as they arrive with `TileLists.merge`, by
(−similarity, index). The tiles' products are the same float32 GEMMs on the
same block shapes, so on one machine the lists are identical; on a cluster of different CPUs,
only float32 near-ties between different vectors may be ordered differently (docs/metrics.md).

The prepared space goes to Ray's object store once (workers on a node share it); a memory-mapped
input (np.load(..., mmap_mode="r")) is not copied: each task maps the same file again and reads
its row blocks (the file must be visible to the workers: one machine, or a shared file system).

Where it runs: inside a Ray task (`xmodal run --executor ray --address ...`), or in any process
already connected to Ray, the tiles go to that cluster; else to `XMODAL_RAY_ADDRESS` if set (what
`xmodal run --address` sets); else to a local Ray instance started on first use with
`local_cpus` CPUs and kept until the process ends. The address is never read from a study file.

Ctrl-C (or SIGTERM under `xmodal run`) while the tiles run cancels the tasks and re-raises, so the
run stops as usual (exit 130). Progress: `knn`'s progress callback, once per finished task.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import (
    NeighborBackendSpec,
    NeighborError,
    Param,
    SimilaritySpec,
    TileLists,
    TileSpace,
    XmodalError,
    compute_tiles,
    hookimpl,
    knn,
    require,
)

# The exact backend's block size: the same grid, the same tiles.
DEFAULT_BLOCK = inspect.signature(knn).parameters["block_size"].default

ADDRESS_VARIABLE = "XMODAL_RAY_ADDRESS"


def _tile_task(
    space: TileSpace,
    Y: np.ndarray | None,
    tiles: list[tuple[int, int]],
    slots: int,
    threads: int,
    floor: np.ndarray | None,
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], float, float]:
    """One Ray task: `compute_tiles` over some tiles; the partial lists of the blocks they touch,
    as (first item, values, indices) per run of adjacent blocks; its seconds and CPU seconds."""
    import torch

    torch.set_num_threads(threads)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():  # Y is read-only shared memory; the tiles only read it
        warnings.filterwarnings("ignore", message=".*not writable.*")
        lists = compute_tiles(space.with_rows(Y), tiles, slots, floor=floor)
    b, n = space.grid.b, space.grid.n
    touched = sorted({i for tile in tiles for i in tile})
    parts = []
    for run in np.split(touched, np.flatnonzero(np.diff(touched) > 1) + 1):
        lo, hi = int(run[0]) * b - lists.lo, min(n, (int(run[-1]) + 1) * b) - lists.lo
        parts.append((lists.lo + lo, lists.vals[lo:hi].copy(), lists.idx[lo:hi].copy()))
    return parts, time.perf_counter() - start, time.process_time() - cpu


class RayTiles:
    """A `knn` tile runner: the tiles as Ray tasks, merged by (−similarity, index).

    Two waves: the diagonal tiles first (one per row block, in up to `tasks` runs); their
    merged lists give every item a floor, just below its best `slots` within its own block,
    which its final list can only beat. Then the other tiles, in about `tasks` rectangular
    regions of the grid (`_regions`), keep only candidates above the floors: a task's first tile
    in a block need not set up the block's lists (a partial sort of the tile, which costs about
    as much as the tile's product), and it returns only the lists of the blocks it touched.

    `stats` (after a call): tasks, tiles, each task's seconds and CPU seconds (`task_seconds`,
    `task_cpu`, inside the task) and tiles (`task_tiles`), in the order they finished, bytes put
    into the object store
    (`bytes_in`: the prepared rows, offsets and floors) and bytes returned by the tasks
    (`bytes_out`: their partial lists).
    """

    def __init__(self, ray: Any, tasks: int, threads: int = 1) -> None:
        self.ray = ray
        self.tasks = max(1, int(tasks))
        self.threads = max(1, int(threads))
        self.stats: dict[str, Any] = {}
        # num_cpus=1: the scheduler runs one task per CPU; the name finds them in `ray list`/ps.
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_tile_task).options(
            name="xmodal_tiles"
        )

    def __call__(
        self, space: TileSpace, slots: int, progress: Callable[[int, int], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        ray = self.ray
        grid = space.grid
        nb = grid.blocks
        diagonal = [(i, i) for i in range(nb)]
        waves = [_runs(diagonal, self.tasks), _regions(nb, self.tasks)]
        stats: dict[str, Any] = {
            "tasks": sum(map(len, waves)),
            "tiles": sum(len(run) for wave in waves for run in wave),
            "task_seconds": [],
            "task_cpu": [],
            "task_tiles": [],
            "bytes_in": 0,
            "bytes_out": 0,
        }
        self.stats = stats
        stats["bytes_in"] += space.Y.nbytes if space.Y is not None else 0
        stats["bytes_in"] += 0 if space.offset is None else space.offset.nbytes
        y_ref = ray.put(space.Y) if space.Y is not None else None
        space_ref = ray.put(space.without_rows())
        lists = TileLists(0, grid.n, slots)
        done = [0]
        floor_ref = None
        for wave in waves:
            self._wave(wave, (space_ref, y_ref, floor_ref), slots, lists, done, progress)
            if floor_ref is None:
                floor = lists.floors()
                stats["bytes_in"] += floor.nbytes
                floor_ref = ray.put(floor)
        return lists.finish()

    def _wave(
        self,
        runs: list[list[tuple[int, int]]],
        refs: tuple[Any, Any, Any],
        slots: int,
        lists: TileLists,
        done: list[int],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        ray, stats = self.ray, self.stats
        space_ref, y_ref, floor_ref = refs
        size: dict[Any, int] = {}
        pending: list[Any] = []
        try:
            for run in runs:
                ref = self._remote.remote(space_ref, y_ref, run, slots, self.threads, floor_ref)
                size[ref] = len(run)
                pending.append(ref)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                parts, took, cpu = _result(ray, ready[0])
                for lo, vals, idx in parts:
                    lists.merge(lo, vals, idx)
                    stats["bytes_out"] += vals.nbytes + idx.nbytes
                stats["task_seconds"].append(took)
                stats["task_cpu"].append(cpu)
                stats["task_tiles"].append(size[ready[0]])
                done[0] += size[ready[0]]
                if progress is not None:
                    progress(done[0], stats["tiles"])
        except BaseException:  # Ctrl-C, SIGTERM under `xmodal run`, a failed task: stop them all
            for ref in pending:
                with contextlib.suppress(Exception):  # already finished or gone
                    ray.cancel(ref, force=True)
            stats["cancelled"] = list(pending)
            raise


def _regions(blocks: int, count: int) -> list[list[tuple[int, int]]]:
    """The off-diagonal tiles of a grid of `blocks` row blocks in about 2·`count` rectangular
    regions, largest first (g groups of blocks, g·(g+1)/2 regions; those on the diagonal are
    triangles, half the others; two per task balance the workers): a region of row groups I and
    column groups J touches the items of I and J only, so a task returns few lists. Tiles in
    row-major order."""
    g = max(1, min(blocks, round((4 * max(1, count)) ** 0.5)))
    edges = np.linspace(0, blocks, g + 1).round().astype(int).tolist()
    groups = [range(a, b) for a, b in itertools.pairwise(edges) if b > a]
    regions = []
    for gi, rows in enumerate(groups):
        for cols in groups[gi:]:
            tiles = [(i, j) for i in rows for j in cols if j > i]
            if tiles:
                regions.append(tiles)
    return sorted(regions, key=len, reverse=True)


def _runs(tiles: list[tuple[int, int]], count: int) -> list[list[tuple[int, int]]]:
    """`tiles` cut into up to `count` runs of consecutive tiles of near-equal length."""
    count = max(1, min(count, len(tiles)))
    edges = np.linspace(0, len(tiles), count + 1).round().astype(int).tolist()
    return [tiles[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _result(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        raise NeighborError(f"the ray neighbour backend: a tile task failed: {cause}") from None


# -- connection ------------------------------------------------------------------------------------

_started_here = False


def connect(local_cpus: int = 0) -> Any:
    """The `ray` module, connected: to the cluster this process already uses, else to
    XMODAL_RAY_ADDRESS, else to a local instance started now (kept until the process ends)."""
    global _started_here
    from xmodal import ray_problem  # here: xmodal.executors imports duckdb

    ray = require("ray", "ray", "the `ray` neighbour backend")
    if ray.is_initialized():
        return ray
    address = os.environ.get(ADDRESS_VARIABLE) or None
    problem = ray_problem(address)  # a clear error for an address that does not answer
    if problem:
        raise XmodalError(f"the ray neighbour backend: {problem}")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            cpus = local_cpus or os.cpu_count() or 1
            ray.init(address="local", num_cpus=cpus, **options)
    except (Exception, SystemExit) as exc:  # Ray exits the process on some failures
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise XmodalError(
            f"the ray neighbour backend cannot start or connect to {where}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not _started_here:
        _started_here = True
        atexit.register(_shutdown)
    return ray


def _shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def ray_search(
    X: Any, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> np.ndarray:
    """The exact lists of `xmodal.knn`, their tiles computed as Ray tasks."""
    ray = connect(int(params["local_cpus"]))
    runner = RayTiles(ray, cluster_cpus(ray) * int(params["tasks_per_cpu"]), params["threads"])
    found = knn(
        X,
        k,
        similarity=similarity,
        include_self=include_self,
        block_size=int(params["block_size"]),
        runner=runner,
    )
    return found.indices


def check_params(params: Mapping[str, Any], context: Any) -> Iterator[tuple[str, str]]:
    if params["block_size"] % 32:
        yield (
            "block_size",
            f"block_size = {params['block_size']} is rounded to whole 32-row blocks; "
            "give a multiple of 32",
        )


@hookimpl
def register_neighbor_backends(register: Callable[[NeighborBackendSpec], None]) -> None:
    register(
        NeighborBackendSpec(
            name="ray",
            search=ray_search,
            exact=True,
            check=check_params,
            params={
                "block_size": Param(
                    int,
                    default=DEFAULT_BLOCK,
                    min=32,
                    max=16384,
                    doc="tile edge (rows); the same grid as the exact backend's by default",
                ),
                "tasks_per_cpu": Param(
                    int,
                    default=2,
                    min=1,
                    max=256,
                    doc="tasks per cluster CPU (the second wave cuts about twice as many "
                    "regions): more balance uneven workers, fewer move fewer bytes",
                ),
                "threads": Param(int, default=1, min=1, max=256, doc="torch threads per task"),
                "local_cpus": Param(
                    int,
                    default=0,
                    min=0,
                    max=4096,
                    doc="CPUs of the local Ray instance started when no cluster is connected "
                    "or named by XMODAL_RAY_ADDRESS; 0: this machine's",
                ),
            },
            description="exact, distributed: the blocked kNN's tiles as Ray tasks (needs the "
            "`ray` extra); the lists of `exact`, bit for bit on one machine",
        )
    )
