"""The tile-level work of the exact kNN, memory-mapped input and progress.

- Tiles computed in any disjoint runs (`TileGrid.chunks`) and merged (`TileLists.merge`) in any
  order give the lists of `knn` itself, bit for bit: values, indices and ties at k.
- A memory-mapped float32 matrix gives the same lists and is read in row blocks: the extra
  memory is the lists and a few blocks, not a prepared copy of the whole matrix.
- `progress` sees every tile; `report_progress` reaches kNN calls without their own.

Comparisons are between two computations of this code on this machine (same float32 products),
never against the last bit of another BLAS.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tests.conftest import assert_same_lists
from xmodal import neighbors
from xmodal.neighbors import TileGrid, TileLists, compute_tiles, knn, report_progress


def spaces_with_ties(n: int, d: int, seed: int) -> np.ndarray:
    """Gaussian rows with copies (equal rows tie everywhere) and small-integer rows (exact
    products: ties between different vectors)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[5] = X[1]
    X[n - 1] = X[1]
    X[n // 2 : n // 2 + 4] = X[2]
    X[10:40] = rng.integers(-2, 3, (30, d)).astype(np.float32) + 0.5  # no zero rows
    return X


def merged_in(order: str, parts: int, tiles: str = "columns"):
    """A tile runner: `parts` runs of tiles (in `tiles` order) computed one by one, merged in
    `order`."""

    def run(space, slots, progress):
        chunks = space.grid.chunks(parts, tiles)
        if order == "reversed":
            chunks = chunks[::-1]
        elif order == "shuffled":
            chunks = [chunks[i] for i in np.random.default_rng(0).permutation(len(chunks))]
        lists = TileLists(0, space.grid.n, slots)
        for chunk in chunks:
            part = compute_tiles(space, chunk, slots)
            lists.merge(part.lo, part.vals, part.idx)
        return lists.finish()

    return run


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize(
    ("n", "d", "block", "parts", "order"),
    [
        (700, 16, 64, 5, "reversed"),
        (1000, 33, 96, 13, "shuffled"),
        (257, 8, 32, 40, "shuffled"),  # more parts than tiles
        (1500, 24, 1536, 3, "reversed"),  # a single tile
    ],
)
def test_tiles_merged_in_any_runs_and_order_give_the_lists_of_knn(
    n, d, block, parts, order, similarity, include_self
):
    X = spaces_with_ties(n, d, seed=n)
    whole = knn(X, 9, similarity, include_self, block_size=block)
    for tiles in ("columns", "rows"):
        runner = merged_in(order, parts, tiles)
        assert_same_lists(
            whole, knn(X, 9, similarity, include_self, block_size=block, runner=runner)
        )


def with_floors(parts: int):
    """A tile runner in two waves, as the ray backend: the diagonal tiles, then the others in
    `parts` column-major runs that keep only candidates above the floors the first wave set."""

    def run(space, slots, progress):
        grid = space.grid
        lists = TileLists(0, grid.n, slots)
        diagonal = compute_tiles(space, [(i, i) for i in range(grid.blocks)], slots)
        lists.merge(diagonal.lo, diagonal.vals, diagonal.idx)
        floor = lists.floors()
        others = [t for t in grid.tiles("columns") if t[0] != t[1]]
        for i in range(parts):
            run = others[len(others) * i // parts : len(others) * (i + 1) // parts]
            part = compute_tiles(space, run, slots, floor=floor)
            lists.merge(part.lo, part.vals, part.idx)
        return lists.finish()

    return run


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_runs_above_the_floors_of_the_diagonal_tiles_give_the_lists_of_knn(
    similarity, include_self
):
    X = spaces_with_ties(1100, 12, seed=11)
    for block, parts in ((64, 6), (128, 2), (32, 50)):
        runner = with_floors(parts)
        assert_same_lists(
            knn(X, 9, similarity, include_self, block_size=block),
            knn(X, 9, similarity, include_self, block_size=block, runner=runner),
        )


def test_chunks_cover_every_upper_triangle_tile_once_in_order():
    grid = TileGrid.of(10_000, 1536)
    rows, columns = grid.tiles("rows"), grid.tiles("columns")
    assert len(rows) == grid.blocks * (grid.blocks + 1) // 2
    assert rows == sorted(rows) and all(j >= i for i, j in rows)
    assert columns == sorted(rows, key=lambda t: (t[1], t[0]))
    for order, tiles in (("rows", rows), ("columns", columns)):
        for count in (1, 3, 7, 100):
            chunks = grid.chunks(count, order)
            assert [t for c in chunks for t in c] == tiles
            sizes = [len(c) for c in chunks]
            assert max(sizes) - min(sizes) <= 1


def test_a_merge_breaks_equal_similarities_by_the_lower_index():
    lists = TileLists(0, 1, 3)
    lists.merge(0, np.array([[0.9, 0.5, 0.5]], np.float32), np.array([[7, 4, 9]]))
    lists.merge(0, np.array([[0.5, 0.5, -np.inf]], np.float32), np.array([[2, 8, -1]]))
    vals, idx = lists.finish()
    assert idx.tolist() == [[7, 2, 4]]
    np.testing.assert_array_equal(vals, np.array([[0.9, 0.5, 0.5]], np.float32))


# --- memory-mapped input -------------------------------------------------------------------------


@pytest.fixture
def mapped(tmp_path):
    def make(X: np.ndarray) -> np.memmap:
        path = tmp_path / f"x{len(X)}.npy"
        np.save(path, X)
        return np.load(path, mmap_mode="r")

    return make


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_a_memory_mapped_matrix_gives_the_lists_of_the_array_in_memory(
    mapped, monkeypatch, similarity, include_self
):
    monkeypatch.setattr(neighbors, "_STREAM_ELEMENTS", 5_000)  # many row blocks
    X = spaces_with_ties(900, 20, seed=3)
    M = mapped(X)
    for block in (64, 1536):
        assert_same_lists(
            knn(X, 8, similarity, include_self, block_size=block),
            knn(M, 8, similarity, include_self, block_size=block),
        )
    # A slice of a map (rows 100 onwards) is still a map of the same file.
    assert isinstance(M[100:], np.memmap)
    assert_same_lists(knn(np.array(X[100:]), 8, similarity), knn(M[100:], 8, similarity))


def test_a_memory_mapped_matrix_is_read_in_row_blocks_not_copied(mapped, monkeypatch):
    """Peak memory traced while kNN runs: the lists and a few blocks for a map; a prepared copy
    of the whole matrix for the same rows in memory (the control that shows the test can see a
    copy)."""
    monkeypatch.setattr(neighbors, "_STREAM_ELEMENTS", 1 << 16)
    n, d = 6000, 256  # 6 MB of float32; lists 6000 × 11 × 12 B = 0.8 MB
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    M = mapped(X)

    def peak(A) -> int:
        knn(A[:300], 3, block_size=256)  # torch's first-call allocations are not the test's
        tracemalloc.start()
        try:
            knn(A, 10, block_size=256)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(M) < 0.5 * X.nbytes
    assert peak(X) > X.nbytes


def test_non_finite_values_in_a_map_are_reported_by_row(mapped):
    X = np.ones((50, 4), np.float32)
    X[:, 0] = np.arange(50)
    X[17, 2] = np.nan
    with pytest.raises(neighbors.NeighborError, match=r"NaN or inf in 1 row.*rows 17"):
        knn(mapped(X), 3)


# --- progress ------------------------------------------------------------------------------------


def test_progress_sees_every_tile_once_in_order():
    X = np.random.default_rng(1).standard_normal((1000, 8)).astype(np.float32)
    seen = []
    knn(X, 5, block_size=128, progress=lambda done, total: seen.append((done, total)))
    tiles = len(TileGrid.of(1000, 128).tiles())
    assert seen == [(i, tiles) for i in range(1, tiles + 1)]


def test_report_progress_reaches_knn_calls_without_their_own():
    X = np.random.default_rng(2).standard_normal((600, 8)).astype(np.float32)
    started, seen = [], []

    def start(total, unit):
        assert unit == "tiles"
        started.append(total)
        return (lambda done, total: seen.append(done)) if total > 5 else None

    with report_progress(start):
        knn(X, 5, block_size=64)  # 10 blocks: 55 tiles
        knn(X[:100], 5, block_size=64)  # 2 blocks: 3 tiles, not shown
    knn(X, 5, block_size=64)  # outside the block: nothing reported
    assert started == [55, 3]
    assert seen == list(range(1, 56))


def test_a_tile_progress_line_is_added_and_removed_in_the_study_progress():
    from rich.console import Console

    from xmodal.progress import make_progress, tile_progress

    progress = make_progress(Console(width=80, force_terminal=False))
    start = tile_progress(progress, min_tiles=10)
    assert start(9) is None and not progress.tasks
    report = start(20)
    assert report is not None
    (task,) = progress.tasks
    assert task.total == 20 and "neighbours" in task.description
    report(7, 20)
    assert progress.tasks[0].completed == 7
    report(20, 20)
    assert not progress.tasks
    # A backend's other units (neighbor_progress) have their own threshold and name.
    start = tile_progress(progress, min_tiles=10, min_items=1000)
    assert start(999, "items") is None and not progress.tasks
    assert start(1000, "items") is not None
    assert progress.tasks[0].description == "nearest neighbours (items)"


def test_neighbor_progress_is_none_where_nothing_shows_it():
    from xmodal import neighbor_progress

    assert neighbor_progress(10**6, "items") is None  # outside report_progress
    with report_progress(lambda total, unit: None):
        assert neighbor_progress(10**6, "items") is None
    with report_progress(lambda total, unit: (lambda done, all_: None) if total > 5 else None):
        assert neighbor_progress(6, "items") is not None


def test_ctrl_c_in_a_tile_stops_the_computation():
    X = np.random.default_rng(3).standard_normal((800, 8)).astype(np.float32)

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        knn(X, 5, block_size=64, progress=interrupt)
    assert knn(X, 5, block_size=64).indices.shape == (800, 5)  # nothing left half-done
