"""The `ray` neighbour backend: the exact kNN's tiles as Ray tasks, on a local 2-CPU Ray instance.

- Its lists are `xmodal.knn`'s, bit for bit (values, indices, ties at k): several shapes, copies
  and exact ties, both similarities, include_self on and off, a memory-mapped input.
- It is validated like any backend, and a study that names it stores what the exact backend
  stores.
- Ctrl-C cancels the tasks still queued or running; under `xmodal run` it stops the study with
  exit 130 and no traceback, and Ray's tile workers end.

Comparisons are between two computations of this code on this machine (the same float32 tile
products), never against another BLAS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_same_lists

ray = pytest.importorskip("ray")

from tests.test_hook_neighbor_backends import neighbor_study, values  # noqa: E402
from xmodal import knn  # noqa: E402
from xmodal.neighbors import TileGrid  # noqa: E402
from xmodal.plugins import get_registry  # noqa: E402
from xmodal_plugins.ray_neighbors import RayTiles, _regions  # noqa: E402

PARAMS = {"block_size": 1536, "tasks_per_cpu": 2, "threads": 1, "local_cpus": 2}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs, shared by this module's tests."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def reference(X, *args, **kwargs):
    """`knn` in this process with the workers' one torch thread: the same GEMM configuration as
    the tasks' (a BLAS may round a product differently with another thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return knn(X, *args, **kwargs)
    finally:
        torch.set_num_threads(before)


def with_ties(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[3] = X[0]  # copies: equal rows tie everywhere, the lower index first
    X[n - 1] = X[0]
    X[20:50] = rng.integers(-2, 3, (30, d)).astype(np.float32) + 0.5  # exact products: ties
    return X


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize(
    ("n", "d", "block", "tasks"),
    [(1200, 16, 128, 7), (2000, 40, 256, 3), (300, 5, 32, 64), (900, 12, 1536, 4)],
)
def test_the_ray_tasks_give_the_lists_of_knn_bit_for_bit(
    cluster, n, d, block, tasks, similarity, include_self
):
    X = with_ties(n, d, seed=n + d)
    runner = RayTiles(cluster, tasks)
    got = knn(X, 10, similarity, include_self, block_size=block, runner=runner)
    assert_same_lists(got, reference(X, 10, similarity, include_self, block_size=block))
    grid = TileGrid.of(n, block)
    assert runner.stats["tiles"] == len(grid.tiles()) == sum(runner.stats["task_tiles"])
    # the diagonal tiles in up to `tasks` runs, then the others in regions of the grid
    assert runner.stats["tasks"] == min(tasks, grid.blocks) + len(_regions(grid.blocks, tasks))


def test_the_registered_backend_returns_knn_indices(cluster):
    registry = get_registry()
    spec = registry.neighbor_backends["ray"]
    assert spec.exact and not spec.default
    X = with_ties(3000, 24, seed=5)
    for similarity in ("cosine", "euclidean"):
        got = spec.search(X, 7, registry.similarities[similarity], False, PARAMS)
        np.testing.assert_array_equal(got, reference(X, 7, similarity).indices)


def test_a_memory_mapped_input_is_read_by_the_workers_from_its_file(cluster, tmp_path):
    X = with_ties(2500, 32, seed=6)
    np.save(tmp_path / "x.npy", X)
    M = np.load(tmp_path / "x.npy", mmap_mode="r")
    runner = RayTiles(cluster, 5)
    for rows in (slice(None), slice(700, None)):
        got = knn(M[rows], 10, "euclidean", block_size=256, runner=runner)
        assert_same_lists(got, reference(np.array(X[rows]), 10, "euclidean", block_size=256))
        # Only the offsets and the floors went to the object store: the rows stay in the file.
        grid = TileGrid.of(len(np.unique(X[rows], axis=0)), 256)  # copies are merged first
        assert runner.stats["bytes_in"] == grid.blocks * 256 * 4 + grid.n * 4


def test_the_other_tiles_are_cut_into_regions_covering_each_once():
    for blocks, count in ((33, 4), (33, 8), (5, 4), (1, 4), (2, 64), (40, 1)):
        regions = _regions(blocks, count)
        tiles = [t for region in regions for t in region]
        assert sorted(tiles) == [(i, j) for i in range(blocks) for j in range(i + 1, blocks)]
        assert all(region == sorted(region) for region in regions)  # row-major in each
        assert [len(r) for r in regions] == sorted(map(len, regions), reverse=True)


def test_progress_counts_the_tiles_as_tasks_finish(cluster):
    X = with_ties(1500, 8, seed=7)
    seen = []
    knn(X, 5, block_size=128, runner=RayTiles(cluster, 6), progress=lambda d, t: seen.append(d))
    tiles = len(TileGrid.of(1500, 128).tiles())
    tasks = min(6, TileGrid.of(1500, 128).blocks) + len(_regions(TileGrid.of(1500, 128).blocks, 6))
    assert len(seen) == tasks and seen == sorted(seen) and seen[-1] == tiles


def test_ctrl_c_cancels_the_tasks_not_finished(cluster):
    X = with_ties(3000, 8, seed=8)
    runner = RayTiles(cluster, 12)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        knn(X, 5, block_size=64, runner=runner, progress=interrupt)
    cancelled = runner.stats["cancelled"]
    assert len(cancelled) == 11  # every task of the first wave but the one that had reported
    stopped = 0
    for ref in cancelled:
        try:
            ray.get(ref, timeout=60)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError):
            stopped += 1
    assert stopped >= 1  # 2 CPUs: most of the 11 had not even started
    assert_same_lists(knn(X, 5, block_size=64, runner=runner), reference(X, 5, block_size=64))


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("block_size = 100", ["neighbors.block_size", "multiple of 32"]),
        ("tasks_per_cpu = 0", ["neighbors.tasks_per_cpu"]),
        ('threads = "two"', ["neighbors.threads"]),
        ("blocksize = 64", ["neighbors.blocksize", "did you mean 'block_size'"]),
    ],
)
def test_the_ray_backend_is_validated_like_any_component(xmodal_tester, table, expected):
    study = neighbor_study(name="v", neighbors=f'[neighbors]\nbackend = "ray"\n{table}')
    result = xmodal_tester.validate(study)
    assert result.code != 0
    for text in expected:
        assert text in result.output
    assert "Traceback" not in result.output


def test_a_study_on_the_ray_backend_stores_what_the_exact_backend_stores(cluster, xmodal_tester):
    exact = xmodal_tester.run(neighbor_study(name="e"))
    exact.assert_ok()
    on_ray = xmodal_tester.run(
        neighbor_study(name="r", neighbors='[neighbors]\nbackend = "ray"\nblock_size = 64')
    )
    on_ray.assert_ok()
    assert values(on_ray) == values(exact) and values(exact)
    assert not on_ray.results(metric="neighbor_recall")  # exact: no recall to measure


# --- Ctrl-C under `xmodal run` ---------------------------------------------------------------------

BIG_STUDY = """\
[study]
name = "big"
seeds = [0]

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = ["forward"]

[data.params]
n_items = 60000
dim_text = 32
dim_image = 32

[[mapping]]
name = "linear"

[train]
epochs = 1

[[metric]]
name = "mnno"
k = [10]

[neighbors]
backend = "ray"
block_size = 256
local_cpus = 2
"""


def tile_workers() -> list[int]:
    """Processes running (or just having run) a tile task: Ray names them after the task."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"xmodal_tiles" in command:
                found.append(int(entry.name))
    return found


def test_ctrl_c_under_xmodal_run_stops_the_study_with_exit_130(tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds Ray's workers through /proc")
    before = set(tile_workers())
    study = tmp_path / "big.toml"
    study.write_text(BIG_STUDY)
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("XMODAL_RAY_ADDRESS", None)
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "xmodal", "run", str(study), "--db", str(tmp_path / "r.db")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group, as a terminal gives a command
        )
    try:
        deadline = time.monotonic() + 300
        while not set(tile_workers()) - before:
            assert process.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "no tile task ever started"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    err = err_path.read_text()
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    deadline = time.monotonic() + 60
    while set(tile_workers()) - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(tile_workers()) - before, "Ray's tile workers outlived the study"
