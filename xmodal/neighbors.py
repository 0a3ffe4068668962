"""Exact k-nearest neighbours inside one space, and the mean nearest-neighbour overlap (mNNO).

mNNO^K(V, Z) = 1/(K·N) · Σ_i |NN^K(v_i) ∩ NN^K(z_i)| (Collell & Moens, ACL 2018), where NN^K(v_i)
are the indices of the K nearest neighbours of item i inside its own space.

The contract (docs/metrics.md, "Ties"):

- Order is exactly (−similarity, index); the item itself is excluded by index, never by value.
- Items with equal vectors (equal as float32, with -0.0 equal to 0.0) are one point, by
  construction: the rows are deduplicated before any matrix product, so the similarity of every
  such item to every other item is one number, computed once. Equal items therefore tie with
  each other everywhere, on every CPU, BLAS kernel, tile position, block size and thread count,
  and the tie goes to the lower index. An item's equal copies are at exactly the similarity's
  self-similarity: 1.0 (cosine) or 0.0 (euclidean, the negative squared distance), the value
  include_self gives the item itself.
- Similarities between *different* vectors are the float32 matrix product's, as the BLAS rounds
  them: two different vectors whose similarities to a third agree only up to rounding may be
  ordered either way on another CPU (a float32 near-tie, not a tie).

How the neighbours are found (docs/performance.md has the measurements):

- Equal rows are found once: a 64-bit hash of a few sampled columns flags candidate rows (on
  data without duplicates that is usually all, and the plain path below runs unchanged);
  candidates are grouped by a hash of the whole row and compared with their group's first row
  (a hash collision falls back to grouping by exact bytes). With duplicates, the kNN runs on
  the distinct rows only and each list is expanded afterwards (below), so duplicate-heavy data
  gets faster.
- Similarities are plugins (`SimilaritySpec`, hook `register_similarities`; cosine and euclidean
  are the built-in plugin `similarities`). Each turns a space once into the form the tiles use:
  s(i, j) = weight · (Y[i] · Y[j]) − offset[i] − offset[j]. Cosine is (X / ‖X‖, no offset),
  Euclidean (X, ‖X‖², weight 2): the negative squared distance ||a||² + ||b||² − 2·a·b.
- Everything is float32.
- A space's self-similarity is symmetric, so only the upper-triangle b×b tiles are multiplied
  (torch, which keeps OpenBLAS threads from spinning next to torch training in the same process).
  Each tile feeds both its rows' lists and its columns' lists. Memory is O(N·k + b²), never N×N.
- Neighbour indices reach an item's list in increasing order (earlier column blocks first), so a
  stable sort that keeps old entries before new ones breaks ties by the lower index without
  sorting on it, and a newcomer equal to a list's last value always loses. The item's own
  diagonal entry is -inf.
- Every item keeps a running, sorted list of its best k+1 candidates. A tile element can only enter
  it if it beats the list's last value, so after the first tile one vectorised comparison rejects
  almost everything; the few survivors are merged with a stable sort. The first tile of a list
  uses that tile's own (k+1)-th value, found with torch.topk, as the bar (ties at it included).
- All tiles have the same shape, a multiple of 32 (zero rows pad the last block): one GEMM shape
  per call. Ties do not rest on that (equal rows are merged before), only the speed does.
- The tiles are the unit of work (`TileGrid`, `TileSpace`, `compute_tiles`, `TileLists`): the
  lists of any disjoint runs of tiles, merged by (−similarity, index) with `TileLists.merge` in
  any order, are the lists of the whole grid. `knn(..., runner=...)` hands the tiles to someone
  else (the `ray` backend's tasks) and does everything else itself, so the lists are the same.
- A memory-mapped float32 input (np.load(path, mmap_mode="r")) is checked and prepared one row
  block at a time, and each tile prepares the blocks it multiplies (a similarity's `prepare`
  works row by row): no prepared copy of the whole matrix, a few percent more time.
- Expansion: each distinct vector's k+1 nearest distinct vectors (ties by first index), plus its
  own group at the exact self-similarity, become a list of items sorted by (−similarity, index),
  from which each item drops itself by index. k+1 distinct neighbours always suffice, whatever
  the group sizes and ties (the argument is in _top_others_grouped); an item without copies
  whose k+1 neighbours have none either keeps the distinct list as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    from xmodal.components import SimilaritySpec

# torch is imported where neighbours are computed, not here: `from xmodal import knn` (every
# metric plugin) and `xmodal validate` must not pay the seconds torch takes to import.

__all__ = [
    "NeighborError",
    "Neighbors",
    "TileGrid",
    "TileLists",
    "TileSpace",
    "compute_tiles",
    "knn",
    "mnno",
    "overlap",
    "overlap_per_item",
    "report_progress",
]

DEFAULT_BLOCK = 1536
# The similarity the public `knn`, `mnno` and `Probe.neighbors` use when none is named: the
# built-in `similarities` plugin's `cosine`, the paper's (any registered name may be passed). The
# one place the core names a built-in similarity (tests/test_no_builtin_names.py allows it here).
DEFAULT_SIMILARITY = "cosine"
_ALIGN = 32
_SHOW = 5  # how many offending row indices an error message lists
_KEY_COLUMNS = 16  # sampled columns whose hash flags candidate duplicate rows
_MIX = np.uint64(0x9E3779B97F4A7C15)
# Elements of one row block read from a memory-mapped input while it is checked and prepared
# (float32: 16 MB).
_STREAM_ELEMENTS = 1 << 22


class NeighborError(ValueError):
    """Input that kNN or mNNO cannot work with; the message names the problem."""


@attrs.frozen(eq=False)
class Neighbors:
    """The k nearest neighbours of every item of one space (arrays are read-only).

    indices: int64, N×k, best first, ordered by (−similarity, index).
    similarities: float32, N×k, aligned with `indices`: the cosine similarity, or for "euclidean"
        the negative squared Euclidean distance (larger is nearer for every similarity). With
        include_self=True the first column is the item itself, at the similarity's
        self-similarity (1.0 cosine, 0.0 euclidean); an item's exact copies (equal vectors) have
        that same similarity.
    ties_at_k: how many items have a tie at the boundary: the last neighbour in their list and the
        best candidate left out have equal similarity, so another equally near item was dropped by
        the index tie-break. The item itself never counts. 0 when no candidate is left out.
    """

    indices: np.ndarray
    similarities: np.ndarray
    ties_at_k: int
    similarity: str  # the similarity's registered name
    include_self: bool

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


def knn(
    X: Any,
    k: int,
    similarity: str | SimilaritySpec = DEFAULT_SIMILARITY,
    include_self: bool = False,
    *,
    block_size: int = DEFAULT_BLOCK,
    progress: Progress | None = None,
    runner: TileRunner | None = None,
) -> Neighbors:
    """Exact k nearest neighbours of every row of X among the other rows of X.

    X: N×d array (numpy, or anything `np.asarray` takes; a torch tensor is detached first).
    similarity: a registered similarity's name ("cosine", "euclidean", or a plugin's; see
        `xmodal plugins`), or a `SimilaritySpec` itself.
    include_self: False follows the paper (the item is not its own neighbour, k <= N−1). True
        reproduces the authors' released code: the item is always first in its own list and the
        other k−1 are its nearest others (k <= N).
    block_size: tile edge, rounded to a multiple of 32. Working memory is a float32 copy of X
        plus about 10·block_size² bytes. The neighbours do not depend on it (beyond rounding of
        the matrix product in the last bit, which can only reorder different vectors whose
        similarities are float32 near-ties; equal vectors always tie, see the module docstring);
        the default was the fastest on a 2-core CPU.
    progress: called as progress(tiles done, tiles in all) while the tiles are computed
        (`xmodal.progress.tile_progress` shows a bar on a terminal).
    runner: computes the tiles elsewhere: runner(space, slots, progress) must return what
        `compute_tiles` over all of `space.grid.tiles()` and `TileLists.finish` return, e.g. the
        `ray` backend's tasks merged with `TileLists.merge`. Everything else (checks, equal rows,
        include_self) is this function's, so the lists are the same as without a runner.

    A memory-mapped float32 X (`np.load(path, mmap_mode="r")`) is read and prepared in row
    blocks: the extra memory is the lists, a few blocks and a few numbers per item, never a
    copy of X.
    """
    spec = resolve_similarity(similarity)
    return _knn(_as_matrix(X, "X"), k, spec, include_self, block_size, "X", "knn", progress, runner)


def _knn(
    X32: np.ndarray,
    k: int,
    spec: SimilaritySpec,
    include_self: bool,
    block_size: int,
    name: str,
    where: str,
    progress: Progress | None = None,
    runner: TileRunner | None = None,
) -> Neighbors:
    n = X32.shape[0]
    _check_k(k, n, include_self, where)
    m = k - 1 if include_self else k  # neighbours other than the item itself
    slots = min(m + 1, n - 1)  # one extra to detect a tie at the boundary

    form = _prepare(X32, spec, name)
    if m == 0:
        vals = np.empty((n, 0), np.float32)
        idx = np.empty((n, 0), np.int64)
    else:
        groups = _equal_rows(X32)
        if groups is None:
            vals, idx = _top_others(form, slots, block_size, runner, progress)
        else:
            vals, idx = _top_others_grouped(form, slots, block_size, groups, runner, progress)

    ties = int(np.count_nonzero(vals[:, m - 1] == vals[:, m])) if 0 < m < slots else 0
    vals, idx = vals[:, :m], idx[:, :m]
    if include_self:
        vals = np.hstack([np.full((n, 1), form.self_sim, np.float32), vals])
        idx = np.hstack([np.arange(n, dtype=np.int64)[:, None], idx])
    vals = np.ascontiguousarray(vals)
    idx = np.ascontiguousarray(idx)
    vals.setflags(write=False)
    idx.setflags(write=False)
    return Neighbors(idx, vals, ties, spec.name, bool(include_self))


def mnno(
    A: Any,
    B: Any,
    k: int | Sequence[int] = 10,
    similarity: str | SimilaritySpec = DEFAULT_SIMILARITY,
    include_self: bool = False,
    *,
    block_size: int = DEFAULT_BLOCK,
) -> float | dict[int, float]:
    """Mean nearest-neighbour overlap of two row-aligned spaces (row i of A and of B is item i).

    k: one neighbourhood size (returns a float) or a list/tuple of sizes (returns {k: value}, in
    the given order). The neighbours are computed once, for the largest k, and each smaller k uses
    the first k columns, so the values equal separate calls.
    """
    ks = _check_ks(k)
    sim = resolve_similarity(similarity)
    A32 = _as_matrix(A, "A")
    B32 = _as_matrix(B, "B")
    if A32.shape[0] != B32.shape[0]:
        raise NeighborError(
            f"mnno needs row-aligned spaces: A has {A32.shape[0]} rows but B has {B32.shape[0]}"
        )
    k_max = max(ks)
    _check_k(k_max, A32.shape[0], include_self, "mnno")
    nn_a = _knn(A32, k_max, sim, include_self, block_size, "A", "mnno").indices
    nn_b = _knn(B32, k_max, sim, include_self, block_size, "B", "mnno").indices
    values = {kk: overlap(nn_a, nn_b, kk) for kk in ks}
    return values[ks[0]] if isinstance(k, (int, np.integer)) else values


def overlap_per_item(nn_a: np.ndarray, nn_b: np.ndarray, k: int) -> np.ndarray:
    """|NN^k(a_i) ∩ NN^k(b_i)| for every item i (int64, length N).

    nn_a, nn_b: N×K neighbour index arrays (K >= k, best first); their first k columns are used.
    """
    a, b = _check_lists(nn_a, nn_b, k)
    n = a.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    a = np.sort(a, axis=1)
    b = np.sort(b, axis=1)
    if k > 1 and ((a[:, 1:] == a[:, :-1]).any() or (b[:, 1:] == b[:, :-1]).any()):
        raise NeighborError("a neighbour list repeats an index within one row")
    # Offset each row into its own range so one global searchsorted does every row at once.
    span = int(max(a.max(), b.max())) + 1
    offset = np.arange(n, dtype=np.int64)[:, None] * span
    flat_a = (a + offset).ravel()
    flat_b = (b + offset).ravel()
    pos = np.minimum(np.searchsorted(flat_a, flat_b), flat_a.size - 1)
    hit = flat_a[pos] == flat_b
    return hit.reshape(n, k).sum(axis=1, dtype=np.int64)


def overlap(nn_a: np.ndarray, nn_b: np.ndarray, k: int) -> float:
    """mNNO^k from two precomputed neighbour index arrays (N×K, K >= k, best first)."""
    counts = overlap_per_item(nn_a, nn_b, k)
    if counts.size == 0:
        raise NeighborError("overlap of empty neighbour lists (N = 0)")
    return float(counts.sum() / (counts.size * k))


# --- validation ---------------------------------------------------------------------------------


def resolve_similarity(
    similarity: str | SimilaritySpec, known: Mapping[str, SimilaritySpec] | None = None
) -> SimilaritySpec:
    """The `SimilaritySpec` a name stands for: from `known`, else from the loaded plugins'
    registry (`xmodal.get_registry`, built on first use); a spec is returned as it is."""
    if not isinstance(similarity, str):
        from xmodal.components import SimilaritySpec

        if isinstance(similarity, SimilaritySpec):
            return similarity
        raise NeighborError(
            f"similarity must be a registered name or a SimilaritySpec, got {similarity!r}"
        )
    notes = ""
    if known is None:
        from xmodal.plugins import get_registry

        registry = get_registry(strict=False)
        known = registry.similarities
        notes = "".join(f"; {note}" for note in registry.filter_notes("similarities"))
    spec = known.get(similarity)
    if spec is None:
        from xmodal.errors import did_you_mean

        guess = did_you_mean(similarity, known)
        raise NeighborError(
            f"unknown similarity {similarity!r}"
            + (f" (did you mean {guess!r}?)" if guess else "")
            + f"; allowed: {', '.join(map(repr, sorted(known))) or 'none are registered'}"
            + notes
        )
    return spec


def _as_matrix(X: Any, name: str) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    if torch is not None and isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        X = (X.float() if X.dtype in (torch.float16, torch.bfloat16) else X).numpy()
    if _streamable(X):  # read in row blocks, never copied whole (docs/performance.md)
        bad = _nonfinite_rows(X)
        if bad.size:
            raise NeighborError(
                f"{name} contains NaN or inf in {bad.size} row(s), first at rows {_first(bad)}"
            )
        return X
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise NeighborError(f"{name} is not a numeric array: {exc}") from None
    if arr.ndim != 2:
        raise NeighborError(
            f"{name} must be a 2-D array (items × dimensions), got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise NeighborError(f"{name} has {arr.shape[0]} rows but no columns")
    if arr.dtype.kind not in "biuf":
        raise NeighborError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    bad = _nonfinite_rows(arr)
    if bad.size:
        raise NeighborError(
            f"{name} contains NaN or inf in {bad.size} row(s), first at rows {_first(bad)}"
        )
    with np.errstate(over="ignore"):
        arr32 = np.ascontiguousarray(arr, dtype=np.float32)
    bad = _nonfinite_rows(arr32)
    if bad.size:
        raise NeighborError(
            f"{name} has values too large for float32 in {bad.size} row(s), first at rows "
            f"{_first(bad)}"
        )
    return arr32


def _streamable(X: Any) -> bool:
    """A memory-mapped float32 matrix (np.load(..., mmap_mode="r")): kNN reads and prepares it
    in row blocks, so the whole matrix is never copied into memory."""
    return (
        isinstance(X, np.memmap)
        and X.ndim == 2
        and X.shape[1] > 0
        and X.dtype == np.float32
        and X.flags.c_contiguous
    )


def _nonfinite_rows(arr: np.ndarray) -> np.ndarray:
    """Rows holding NaN or inf, checked in row blocks (no N×d temporary)."""
    if arr.dtype.kind != "f":
        return np.zeros(0, np.int64)
    step = max(1, _STREAM_ELEMENTS // max(arr.shape[1], 1))
    bad = [
        s + np.flatnonzero(~np.isfinite(arr[s : s + step]).all(axis=1))
        for s in range(0, arr.shape[0], step)
    ]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def _first(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOW])
    return shown + (", ..." if rows.size > _SHOW else "")


def _check_k(k: Any, n: int, include_self: bool, where: str) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise NeighborError(f"{where}: k must be an integer, got {k!r}")
    if k < 1:
        raise NeighborError(f"{where}: k must be at least 1, got {k}")
    limit = n if include_self else n - 1
    if k > limit:
        rule = (
            "k <= N when the item counts as its own neighbour (include_self=True)"
            if include_self
            else "k <= N - 1 because an item is not its own neighbour (include_self=False)"
        )
        raise NeighborError(f"{where}: k = {k} is too large for N = {n} items; need {rule}")


def _check_ks(k: Any) -> list[int]:
    ks = list(k) if isinstance(k, (list, tuple)) else [k]
    if not ks:
        raise NeighborError("mnno: the list of k is empty")
    for kk in ks:
        if isinstance(kk, bool) or not isinstance(kk, (int, np.integer)):
            raise NeighborError(f"mnno: k must be an integer or a list of integers, got {kk!r}")
        if kk < 1:
            raise NeighborError(f"mnno: k must be at least 1, got {kk}")
    return [int(kk) for kk in ks]


def _check_lists(nn_a: Any, nn_b: Any, k: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(nn_a)
    b = np.asarray(nn_b)
    for name, arr in (("nn_a", a), ("nn_b", b)):
        if arr.ndim != 2:
            raise NeighborError(f"{name} must be a 2-D index array (N×K), got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise NeighborError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if a.shape[0] != b.shape[0]:
        raise NeighborError(
            f"overlap needs row-aligned lists: nn_a has {a.shape[0]} rows but nn_b {b.shape[0]}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise NeighborError(f"overlap: k must be a positive integer, got {k!r}")
    if k > min(a.shape[1], b.shape[1]):
        raise NeighborError(
            f"overlap: k = {k} but the lists have only {a.shape[1]} and {b.shape[1]} columns"
        )
    a = a[:, :k].astype(np.int64, copy=False)
    b = b[:, :k].astype(np.int64, copy=False)
    if a.size and min(a.min(), b.min()) < 0:
        raise NeighborError("overlap: neighbour indices must be non-negative")
    return a, b


# --- computation --------------------------------------------------------------------------------


def _row_sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared row norms, accumulated in float64 in chunks (no N×d float64 copy)."""
    out = np.empty(X.shape[0], np.float64)
    step = max(1, (_STREAM_ELEMENTS >> 2) // X.shape[1])  # 8 MB of float64 by default
    for s in range(0, X.shape[0], step):
        c = X[s : s + step].astype(np.float64)
        out[s : s + step] = np.einsum("ij,ij->i", c, c)
    return out


@attrs.define(eq=False)
class _Form:
    """A space as the tiles use it: s(i, j) = weight · (Y[i] · Y[j]) − offset[i] − offset[j].

    Y is in memory, or, for a memory-mapped input, `stream` prepares its row blocks when a tile
    reads them (the prepared matrix never exists whole).
    `owned`: Y is an array only this computation holds (not the caller's X), so the tiles may
    grow it in place into their zero-padded buffer instead of copying it (`_padded`).
    """

    Y: np.ndarray | None  # N×d' float32 (None once handed over to the tiles, or streamed)
    offset: np.ndarray | None  # N float32, or None
    weight: float
    self_sim: Any  # np.float32, or an N×1 float32 array (a per-vector self-similarity)
    owned: bool = False
    stream: _Stream | None = None

    def rows(self, rows: np.ndarray) -> _Form:
        self_sim = self.self_sim if np.ndim(self.self_sim) == 0 else self.self_sim[rows]
        offset = None if self.offset is None else self.offset[rows]
        if self.stream is not None:
            return _Form(None, offset, self.weight, self_sim, stream=self.stream.rows(rows))
        assert self.Y is not None
        return _Form(self.Y[rows], offset, self.weight, self_sim, owned=True)


class _Stream:
    """Row blocks of a memory-mapped float32 matrix (all its rows, or `selected` ones in that
    order), each prepared by the similarity when read. A similarity's `prepare` works row by row,
    so a block is the same float32 numbers as the same rows of the whole prepared matrix.

    Pickled (to a Ray worker on the same machine or a shared file system) as the file's name and
    the matrix's place in it; the worker maps the file again."""

    def __init__(
        self,
        X: np.ndarray,
        spec: SimilaritySpec,
        sq: np.ndarray,
        selected: np.ndarray | None = None,
    ) -> None:
        self.X = X
        self.spec = spec
        self.sq = sq  # squared norms of all rows of X (float64), computed once
        self.selected = selected

    def __len__(self) -> int:
        return int(self.X.shape[0] if self.selected is None else self.selected.size)

    def rows(self, rows: np.ndarray) -> _Stream:
        chosen = rows if self.selected is None else self.selected[rows]
        return _Stream(self.X, self.spec, self.sq, np.asarray(chosen, np.int64))

    def raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows start..stop−1 of this stream and their squared norms."""
        if self.selected is None:
            return np.asarray(self.X[start:stop]), self.sq[start:stop]
        rows = self.selected[start:stop]
        return np.asarray(self.X[rows]), self.sq[rows]

    def block(self, i: int, b: int) -> np.ndarray:
        """Row block i (rows i·b ...), prepared, zero rows padding it to b rows."""
        x, sq = self.raw(i * b, (i + 1) * b)
        Y, _ = _call_prepare(self.spec, x, sq, "X")
        Y = np.asarray(Y, dtype=np.float32)
        out = np.zeros((b, Y.shape[1]), np.float32)
        out[: len(Y)] = Y
        return out

    def __getstate__(self) -> dict[str, Any]:
        import mmap

        X = self.X
        mapped = getattr(X, "_mmap", None)
        if mapped is None or not getattr(X, "filename", None):
            raise NeighborError("a streamed matrix must be a memory map of a file")
        start = int(X.offset) - int(X.offset) % mmap.ALLOCATIONGRANULARITY
        base = np.frombuffer(mapped, np.uint8).ctypes.data
        return {
            "file": str(X.filename),
            "offset": start + (X.ctypes.data - base),
            "shape": tuple(X.shape),
            "spec": self.spec,
            "sq": self.sq,
            "selected": self.selected,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.X = np.memmap(
            state["file"], np.float32, "r", offset=state["offset"], shape=state["shape"]
        )
        self.spec = state["spec"]
        self.sq = state["sq"]
        self.selected = state["selected"]


def _padded(form: _Form, rows: int) -> np.ndarray:
    """form.Y followed by zero rows, `rows` in all. A Y the form owns is grown in place (no
    second N×d copy) unless something else still refers to it; the form lets go of Y."""
    Y = form.Y
    assert Y is not None
    form.Y = None
    if form.owned and Y.flags.owndata and Y.flags.c_contiguous:
        try:
            Y.resize((rows, Y.shape[1]), refcheck=True)  # new rows are zeros
            return Y
        except ValueError:  # another reference to Y: copy it instead
            pass
    padded = np.zeros((rows, Y.shape[1]), np.float32)
    padded[: Y.shape[0]] = Y
    return padded


def zero_alternatives() -> str:
    """Registered similarities defined for zero vectors, for messages ('' when unknown)."""
    try:
        from xmodal.plugins import get_registry

        names = sorted(
            n for n, s in get_registry(strict=False).similarities.items() if not s.rejects_zero_rows
        )
    except Exception:
        return ""
    return ", ".join(map(repr, names))


def _call_prepare(spec: SimilaritySpec, X: np.ndarray, sq: np.ndarray, name: str) -> Any:
    try:
        return spec.prepare(X, sq)
    except NeighborError:
        raise
    except Exception as exc:
        raise NeighborError(
            f"{name}: similarity {spec.name!r} cannot prepare the vectors: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _prepare(X: np.ndarray, spec: SimilaritySpec, name: str) -> _Form:
    """Turn X into the similarity's tile form, with the checks every similarity gets.

    A memory-mapped X (`_streamable`) is checked one row block at a time and kept as a
    `_Stream`: only its offsets and self-similarities (N numbers each) are held in memory."""
    sq = _row_sq_norms(X)
    if spec.rejects_zero_rows:
        zero = np.flatnonzero(sq == 0)
        if zero.size:
            others = zero_alternatives()
            raise NeighborError(
                f"{name} has {zero.size} all-zero row(s) (first at rows {_first(zero)}); "
                f"{spec.name} similarity is undefined for a zero vector: drop those items or use "
                + (others or "a similarity defined for zero vectors")
            )
    n = X.shape[0]
    streamed = _streamable(X)
    step = max(1, _STREAM_ELEMENTS // X.shape[1]) if streamed else max(n, 1)
    offsets: list[np.ndarray] = []
    self_sims: list[np.ndarray] = []
    Y_all: np.ndarray | None = None
    owned = False
    for s in range(0, max(n, 1), step):
        x = X[s : s + step] if streamed else X
        m = x.shape[0]
        Y, offset = _call_prepare(spec, x, sq[s : s + m], name)
        same = Y is x
        Y = np.ascontiguousarray(Y, dtype=np.float32)
        if Y.ndim != 2 or Y.shape[0] != m or Y.shape[1] == 0:
            raise NeighborError(
                f"similarity {spec.name!r}: prepare returned vectors of shape {Y.shape}, "
                f"expected ({m}, d) with d >= 1"
            )
        if offset is not None:
            offset = np.ascontiguousarray(offset, dtype=np.float32)
            if offset.shape != (m,):
                raise NeighborError(
                    f"similarity {spec.name!r}: prepare returned offsets of shape "
                    f"{offset.shape}, expected ({m},)"
                )
            offsets.append(offset)
        # The products must not overflow: |Y[i] · Y[j]| <= max ‖Y‖², so bound 2·weight·‖Y‖².
        sq_y = sq[s : s + m].astype(np.float32) if same else np.einsum("ij,ij->i", Y, Y)
        with np.errstate(over="ignore", invalid="ignore"):
            bad = ~np.isfinite(np.float32(2 * spec.weight) * sq_y)
            if offset is not None:
                bad |= ~np.isfinite(offset)
        big = np.flatnonzero(bad) + s
        if big.size:
            raise NeighborError(
                f"{name} has rows whose squared norms overflow float32 (first at rows "
                f"{_first(big)}); rescale the vectors"
            )
        if spec.self_similarity is None:
            # per vector: weight · ‖y‖² − 2·offset, in float64 (equal vectors get equal values)
            per_row = spec.weight * (sq[s : s + m] if same else _row_sq_norms(Y))
            if offset is not None:
                per_row = per_row - 2 * offset.astype(np.float64)
            self_sims.append(per_row.astype(np.float32)[:, None])
        if not streamed:
            Y_all = Y
            owned = not same and Y is not X and Y.base is None and Y.flags.owndata
    offset_all = (
        None if not offsets else offsets[0] if len(offsets) == 1 else np.concatenate(offsets)
    )
    if spec.self_similarity is not None:
        self_sim: Any = np.float32(spec.self_similarity)
    else:
        self_sim = self_sims[0] if len(self_sims) == 1 else np.concatenate(self_sims)
    if streamed:
        return _Form(None, offset_all, float(spec.weight), self_sim, stream=_Stream(X, spec, sq))
    return _Form(Y_all, offset_all, float(spec.weight), self_sim, owned)


@attrs.frozen(eq=False)
class _Groups:
    """Items grouped by equal vectors; group ids follow first occurrence (lowest index)."""

    inv: np.ndarray  # N: item -> group id
    first: np.ndarray  # G: each group's lowest item index (the row that represents it)
    counts: np.ndarray  # G: group sizes
    starts: np.ndarray  # G: where each group begins in `members`
    members: np.ndarray  # N: items ordered by group, increasing index within a group


def _equal_rows(X: np.ndarray) -> _Groups | None:
    """Groups of rows that are equal as float32 (-0.0 == 0.0), or None if all rows differ."""
    n, d = X.shape
    if n < 2:
        return None
    # Stage 1: hash a few sampled columns; a row whose hash is unique has no equal row.
    cols = np.unique(np.linspace(0, d - 1, min(d, _KEY_COLUMNS)).astype(np.int64))
    key = (X[:, cols] + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0
    h = np.zeros(n, np.uint64)
    for j in range(key.shape[1]):
        np.bitwise_xor(h, key[:, j], out=h)
        np.multiply(h, _MIX, out=h)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = hs[1:] == hs[:-1]
    if not same.any():
        return None
    cand = np.sort(order[np.r_[same, False] | np.r_[False, same]])
    # Stage 2: a hash of the whole row (sparse rows often agree on the sampled columns), then
    # each row is compared with the lowest-index row of its hash bucket.
    h = _row_hashes(X, cand)
    order = np.argsort(h, kind="stable")  # within a bucket, rows stay in index order
    rows, hs = cand[order], h[order]
    new = np.r_[True, hs[1:] != hs[:-1]]
    first_of = rows[np.maximum.accumulate(np.where(new, np.arange(rows.size), 0))]
    rep = np.arange(n, dtype=np.int64)
    rep[rows] = first_of
    equal = _rows_equal(X, rows, first_of)
    if not equal.all():  # a hash collision: group those buckets by their exact bytes
        bucket = np.cumsum(new) - 1
        redo = np.sort(rows[np.isin(bucket, bucket[~equal])])
        seen: dict[bytes, int] = {}
        for i in redo.tolist():
            rep[i] = seen.setdefault((X[i] + np.float32(0)).tobytes(), i)
    if (rep[cand] == cand).all():
        return None
    first, inv = np.unique(rep, return_inverse=True)
    counts = np.bincount(inv, minlength=first.size)
    members = np.argsort(inv, kind="stable")
    starts = np.cumsum(counts) - counts
    return _Groups(inv, first, counts, starts, members)


def _row_hashes(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each of X[rows]: Σ bits_j · w_j mod 2^64 (fixed odd weights)."""
    d = X.shape[1]
    w = np.random.default_rng(d).integers(0, 1 << 62, d, dtype=np.uint64) * np.uint64(2) + 1
    out = np.empty(rows.size, np.uint64)
    step = max(1, (1 << 18) // d)
    for s in range(0, rows.size, step):
        bits = (X[rows[s : s + step]] + np.float32(0)).view(np.uint32)
        out[s : s + step] = bits.astype(np.uint64) @ w  # integer matmul wraps mod 2^64
    return out


def _rows_equal(X: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """X[a[i]] == X[b[i]] elementwise (as floats: -0.0 == 0.0), for every i."""
    out = np.empty(a.size, bool)
    step = max(1, (1 << 18) // X.shape[1])
    for s in range(0, a.size, step):
        out[s : s + step] = (X[a[s : s + step]] == X[b[s : s + step]]).all(axis=1)
    return out


def _top_others_grouped(
    form: _Form,
    slots: int,
    block_size: int,
    groups: _Groups,
    runner: TileRunner | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """_top_others for data with equal rows: kNN of the distinct rows, then expanded to items."""
    distinct = form.rows(groups.first)
    form.Y = None  # only the distinct rows are multiplied
    n_u = groups.first.size
    # `slots` distinct neighbours always suffice, whatever the group sizes and ties: the first
    # (lowest-index) item of every fetched group beats every item of every group left out.
    # Groups are ranked by (−similarity, group id) and group ids follow first indices, so a
    # group left out has a lower similarity than the last fetched group, or the same one and a
    # higher first index than every fetched group tied with it. Each item thus has `slots`
    # others that beat everything left out, and its best `slots` are all fetched.
    width = min(slots, n_u - 1)
    if width > 0:
        uv, ui = _top_others(distinct, width, block_size, runner, progress)
    else:  # a single distinct vector: every other item is an equal copy
        uv, ui = np.empty((n_u, 0), np.float32), np.empty((n_u, 0), np.int64)
    return _expand(groups, uv, ui, slots, distinct.self_sim)


def _expand(
    groups: _Groups, uv: np.ndarray, ui: np.ndarray, slots: int, self_sim: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's `slots` best other items, from its group's list of distinct neighbours.

    uv, ui: per group, its nearest other groups (values descending, ties by group id).
    self_sim: the self-similarity, one value or one per group (G×1).
    """
    n_u, width = uv.shape
    n = groups.inv.size
    vals = np.empty((n, slots), np.float32)
    idx = np.empty((n, slots), np.int64)
    # An item without copies whose first `slots` neighbours have none either: its list is the
    # distinct list itself (ties between single items are already in index order).
    simple = groups.counts == 1
    if width >= slots:
        simple &= (groups.counts[ui[:, :slots]] == 1).all(axis=1)
    else:
        simple[:] = False
    one = np.flatnonzero(simple)
    if one.size:
        vals[groups.first[one]] = uv[one, :slots]
        idx[groups.first[one]] = groups.first[ui[one, :slots]]
    rest = np.flatnonzero(~simple)
    if rest.size == 0:
        return vals, idx
    own_sim = self_sim if np.ndim(self_sim) == 0 else self_sim[rest]
    g_val, g_idx = _group_lists(groups, uv[rest], ui[rest], rest, slots + 1, own_sim)
    # Per item: its group's list without the item itself (or without the last entry).
    where = np.full(n_u, -1, np.int64)
    where[rest] = np.arange(rest.size)
    items = np.flatnonzero(~simple[groups.inv])
    row = where[groups.inv[items]]
    cand_idx, cand_val = g_idx[row], g_val[row]
    drop = cand_idx == items[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    vals[items] = cand_val[keep].reshape(items.size, slots)
    idx[items] = cand_idx[keep].reshape(items.size, slots)
    return vals, idx


def _group_lists(
    groups: _Groups,
    uv: np.ndarray,
    ui: np.ndarray,
    own: np.ndarray,
    need: int,
    self_sim: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The `need` best items (values, indices) for each group in `own`, its members included.

    uv, ui: the distinct lists of those groups (rows aligned with `own`).
    self_sim: the self-similarity, one value or one per group of `own` (rows aligned, G×1).
    """
    n_g, width = uv.shape
    # The group's own members join its list at the self-similarity, after any equal values.
    at = np.count_nonzero(uv >= self_sim, axis=1)[:, None]
    col = np.arange(width + 1)
    own_col = col == at
    if width:
        src = np.clip(col - (col > at), 0, width - 1)
        cv = np.where(own_col, self_sim, np.take_along_axis(uv, src, axis=1))
        cg = np.where(own_col, own[:, None], np.take_along_axis(ui, src, axis=1))
    else:
        cv = np.full((n_g, 1), self_sim, np.float32)
        cg = own[:, None].copy()
    # A group never contributes more than `need` members (its lowest indices). Keep columns
    # down to the value at which `need` items are reached, and every column tied with it.
    take = np.minimum(groups.counts[cg], need)
    enough = np.cumsum(take, axis=1) >= need
    if not enough[:, -1].all():  # cannot happen: width = slots or every group is present
        raise AssertionError("a distinct-neighbour list is too short to expand")
    cut = cv[np.arange(n_g), np.argmax(enough, axis=1)]
    kept = cv >= cut[:, None]
    rows, cols = np.nonzero(kept)  # per row, columns in descending value
    t = take[rows, cols]
    e_val = np.repeat(cv[rows, cols], t)
    offset = np.arange(e_val.size) - np.repeat(np.cumsum(t) - t, t)
    e_item = groups.members[np.repeat(groups.starts[cg[rows, cols]], t) + offset]
    per_row = np.bincount(rows, weights=t, minlength=n_g).astype(np.int64)
    row_start = np.cumsum(per_row) - per_row
    # Entries are in (−similarity, index) order already, unless two kept columns of a row have
    # equal values: then their members interleave by index. Sort only those rows.
    tied = np.flatnonzero((kept[:, 1:] & (cv[:, 1:] == cv[:, :-1])).any(axis=1))
    if tied.size:
        size = per_row[tied]
        e_row = np.repeat(tied, size)
        sel = np.repeat(row_start[tied] - (np.cumsum(size) - size), size) + np.arange(e_row.size)
        order = np.lexsort((e_item[sel], -e_val[sel], e_row))
        e_val[sel] = e_val[sel][order]
        e_item[sel] = e_item[sel][order]
    pick = row_start[:, None] + np.arange(need)
    return e_val[pick], e_item[pick]


def _top_others(
    form: _Form,
    slots: int,
    block_size: int,
    runner: TileRunner | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `slots` best other rows, sorted by (−similarity, index)."""
    n = form.Y.shape[0] if form.Y is not None else len(form.stream)  # type: ignore[arg-type]
    space = _tile_space(form, TileGrid.of(n, block_size))
    if progress is None:
        progress = neighbor_progress(len(space.grid.tiles()), "tiles")
    if runner is None:
        return compute_tiles(space, space.grid.tiles(), slots, progress).finish()
    vals, idx = runner(space, slots, progress)
    return vals, idx


# --- tiles: the unit of work, in this process or on a cluster -----------------------------------

# progress(tiles done, tiles in all), called as tiles finish.
Progress = Callable[[int, int], None]
# runner(space, slots, progress) -> (values, indices), N×slots: what `compute_tiles` over all
# of space.grid's tiles and `TileLists.finish` give, computed elsewhere (the `ray` backend).
TileRunner = Callable[["TileSpace", int, "Progress | None"], tuple[np.ndarray, np.ndarray]]
# Where neighbour searches without a `progress` of their own report (`report_progress`).
_REPORTER: contextvars.ContextVar[Callable[[int, str], Progress | None] | None] = (
    contextvars.ContextVar("xmodal_knn_progress", default=None)
)


@contextlib.contextmanager
def report_progress(start: Callable[[int, str], Progress | None] | None) -> Iterator[None]:
    """Within this block, each neighbour search in this thread without its own `progress` (a
    kNN, or a backend calling `neighbor_progress`) calls start(units in all, unit name) and
    reports to the callback it returns (None: that one is not shown). `xmodal run` passes
    `xmodal.progress.tile_progress` on a terminal; None does nothing."""
    token = _REPORTER.set(start)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def neighbor_progress(total: int, unit: str) -> Progress | None:
    """For a neighbour backend's search: a callback progress(done, total) to call as `done` of
    `total` units of work (tiles, items, ...; `unit` names them, plural) are finished, or None
    when nothing shows progress (outside `xmodal run` on a terminal, or too small a search).
    Under `xmodal run` it draws a line of its own with an ETA, removed when done reaches total.
    Cheap: call it once per search. The built-in backends report tiles (`exact`, `ray`) and
    items (`hnsw`: each item once added to the graph, once searched)."""
    start = _REPORTER.get()
    return None if start is None else start(total, unit)


@attrs.frozen
class TileGrid:
    """The symmetric tile grid over n rows: row blocks of b rows (b a multiple of 32; zero rows
    pad the last block) and the upper-triangle tiles (bi, bj), bj >= bi."""

    n: int
    b: int

    @classmethod
    def of(cls, n: int, block_size: int = DEFAULT_BLOCK) -> TileGrid:
        """The grid `knn` uses for n rows and a `block_size` (rounded to equal blocks)."""
        nb = max(1, math.ceil(n / max(int(block_size), _ALIGN)))
        return cls(n, _ALIGN * math.ceil(max(1, math.ceil(n / nb)) / _ALIGN))

    @property
    def blocks(self) -> int:
        return math.ceil(self.n / self.b)

    def rows(self, block: int) -> tuple[int, int]:
        """(first row, rows) of a row block."""
        return block * self.b, min(self.b, self.n - block * self.b)

    def tiles(self, order: str = "rows") -> list[tuple[int, int]]:
        """The upper-triangle tiles in row-major ("rows") or column-major ("columns") order."""
        nb = self.blocks
        if order == "columns":
            return [(i, j) for j in range(nb) for i in range(j + 1)]
        return [(i, j) for i in range(nb) for j in range(i, nb)]

    def chunks(self, count: int, order: str = "columns") -> list[list[tuple[int, int]]]:
        """The tiles cut into `count` runs of consecutive tiles (in `order`) of near-equal length
        (fewer if there are fewer tiles). Column-major runs touch few column blocks: a run's
        first tile in a block finds the block's items with empty lists, and setting their bars
        costs more for column items than for row items."""
        tiles = self.tiles(order)
        count = max(1, min(int(count), len(tiles)))
        edges = np.linspace(0, len(tiles), count + 1).round().astype(int)
        return [tiles[a:b] for a, b in itertools.pairwise(edges.tolist())]


@attrs.define(eq=False)
class TileSpace:
    """A space as its tiles read it: s(i, j) = weight · (Y[i] · Y[j]) − offset[i] − offset[j].

    Row blocks are slices of `Y` (zero-padded to whole blocks) or, for a memory-mapped input,
    read and prepared one block at a time (`stream`): the same float32 numbers either way.
    Pickles (for a worker) with `Y`; a runner may ship `Y` apart (`without_rows`,
    `with_rows`)."""

    grid: TileGrid
    weight: float
    offset: np.ndarray | None  # grid.blocks · b float32 (zero-padded), or None
    Y: np.ndarray | None = None  # grid.blocks · b × d' float32
    stream: _Stream | None = None

    def block(self, i: int) -> np.ndarray:
        """Row block i, b × d' float32."""
        b = self.grid.b
        if self.Y is not None:
            return self.Y[i * b : (i + 1) * b]
        assert self.stream is not None
        return self.stream.block(i, b)

    @property
    def nbytes(self) -> int:
        """Bytes of the prepared rows (in memory, or as they will be read from the map)."""
        if self.Y is not None:
            return int(self.Y.nbytes)
        assert self.stream is not None
        return len(self.stream) * int(self.stream.X.shape[1]) * 4

    def without_rows(self) -> TileSpace:
        return TileSpace(self.grid, self.weight, self.offset, None, self.stream)

    def with_rows(self, Y: np.ndarray | None) -> TileSpace:
        return TileSpace(self.grid, self.weight, self.offset, Y, self.stream)


def _tile_space(form: _Form, grid: TileGrid) -> TileSpace:
    rows = grid.blocks * grid.b
    offset = None
    if form.offset is not None:
        offset = np.zeros(rows, np.float32)
        offset[: grid.n] = form.offset
    if form.stream is not None:
        return TileSpace(grid, form.weight, offset, stream=form.stream)
    return TileSpace(grid, form.weight, offset, Y=_padded(form, rows))


def compute_tiles(
    space: TileSpace,
    tiles: Sequence[tuple[int, int]],
    slots: int,
    progress: Progress | None = None,
    *,
    done: int = 0,
    total: int | None = None,
    floor: np.ndarray | None = None,
) -> TileLists:
    """Multiply the given tiles (bi, bj), bj >= bi, of `space` and keep, for every item they
    touch, its best `slots` candidates among them: tile (bi, bj) offers each row item of block bi
    its columns and, off the diagonal, each column item of block bj its rows.

    Tiles must come in row-major or column-major order (`TileGrid.tiles`, `chunks`): then each
    item meets its candidates in increasing index, which the lists' tie-break rests on. Lists of
    disjoint sets of tiles combine with `TileLists.merge` into the lists of all of them: over the
    whole grid, the lists of `knn`.

    progress(done + tiles finished here, total) is called after each tile. `floor` (N float32):
    see `TileLists`.
    """
    import torch

    grid = space.grid
    n, b = grid.n, grid.b
    lo = min((bi for bi, _ in tiles), default=grid.blocks) * b
    hi = (max((bj for _, bj in tiles), default=-1) + 1) * b
    lo, hi = min(lo, n), max(min(hi, n), min(lo, n))
    lists = TileLists(lo, hi, slots, None if floor is None else floor[lo:hi])
    total = len(tiles) if total is None else total
    tile_t = torch.empty((b, b), dtype=torch.float32)
    tile = tile_t.numpy()
    weighted = space.weight != 1.0
    if space.offset is not None:
        sq = space.offset
        sum_buf = np.empty((b, b), np.float32)
    held: dict[int, Any] = {}  # the last row and column blocks (a run keeps one of them)
    for bi, bj in tiles:
        r0, nr = grid.rows(bi)
        c0, nc = grid.rows(bj)
        for block in (bi, bj):
            if block not in held:
                if len(held) >= 2:
                    held = {k: v for k, v in held.items() if k in (bi, bj)}
                held[block] = torch.from_numpy(space.block(block))
        R, C = held[bi], held[bj]
        torch.mm(R, C.T, out=tile_t)
        if weighted:
            np.multiply(tile, np.float32(space.weight), out=tile)
        if space.offset is not None:
            # Euclidean: −((‖a‖² + ‖b‖²) − 2ab): the offset sum commutes, so the tile stays
            # symmetric.
            np.add.outer(sq[r0 : r0 + b], sq[c0 : c0 + b], out=sum_buf)
            np.subtract(tile, sum_buf, out=tile)
        S = tile[:nr, :nc]
        if bi == bj:
            np.fill_diagonal(S, -np.inf)
        lists.offer_rows(S, r0, c0)
        if bj > bi:
            lists.offer_cols(S, c0, r0)
        done += 1
        if progress is not None:
            progress(done, total)
    return lists


class TileLists:
    """The best `slots` candidates so far of items lo..hi−1: values (descending) and indices
    (−inf and −1 where a list is not full yet), in (−similarity, index) order.

    `floor` (items lo..hi−1, float32; −inf: none): a value below each item's final slots-th
    best, e.g. just below the slots-th best of the item's own diagonal tile (`floors`). Only
    candidates above it are kept, so lists of a run of tiles need not be set up from each of
    the run's first tiles (a list may then stay short: only its candidates above the floor)."""

    def __init__(self, lo: int, hi: int, slots: int, floor: np.ndarray | None = None) -> None:
        self.lo = lo
        self.slots = slots
        self.vals = np.full((hi - lo, slots), -np.inf, np.float32)
        self.idx = np.full((hi - lo, slots), -1, np.int64)
        self.floor = floor

    def _thresholds(self, S: np.ndarray, items: slice, axis: int) -> np.ndarray:
        """Per item, a value that a tile element must exceed to enter the item's list.

        For a full list that is its last value: an equal newcomer has a higher index than every
        entry already there, so it loses the tie. This keeps tie-heavy data (duplicate rows)
        from flooding the merge.
        """
        tau = self.vals[items, -1].copy()
        if self.floor is not None:
            np.maximum(tau, self.floor[items], out=tau)
        empty = np.flatnonzero(tau == -np.inf)
        if empty.size:
            # A list that is not full accepts anything but this tile's own slots-th best can
            # only lose to other elements of the tile, so keep everything >= that value.
            width = S.shape[1 - axis]
            if width >= self.slots:
                if axis == 0:
                    sub = S if empty.size == S.shape[0] else S[empty]
                else:  # columns as rows: torch's transposing copy is 3x numpy's
                    import torch

                    T = torch.from_numpy(S).t().contiguous().numpy()
                    sub = T if empty.size == T.shape[0] else T[empty]
                # The slots-th largest of each row (np.partition: 2x faster than torch.topk).
                kth = np.partition(sub, width - self.slots, axis=1)[:, width - self.slots]
                tau[empty] = np.nextafter(kth, np.float32(-np.inf))
        return tau

    def offer_rows(self, S: np.ndarray, item0: int, nbr0: int) -> None:
        """Offer S[r, c] to item item0 + r as neighbour nbr0 + c."""
        at = item0 - self.lo
        tau = self._thresholds(S, slice(at, at + S.shape[0]), axis=0)
        flat = np.flatnonzero(np.greater(S, tau[:, None]))
        if flat.size == 0:
            return
        r, c = np.divmod(flat, S.shape[1])
        v = S[r, c]
        # Row-major order already groups by item with neighbours ascending.
        self._merge(r + at, c + nbr0, v)

    def offer_cols(self, S: np.ndarray, item0: int, nbr0: int) -> None:
        """Offer S[r, c] to item item0 + c as neighbour nbr0 + r."""
        at = item0 - self.lo
        tau = self._thresholds(S, slice(at, at + S.shape[1]), axis=1)
        flat = np.flatnonzero(np.greater(S, tau[None, :]))
        if flat.size == 0:
            return
        r, c = np.divmod(flat, S.shape[1])
        order = np.argsort(c, kind="stable")  # group by item, neighbours stay ascending
        r, c = r[order], c[order]
        self._merge(c + at, r + nbr0, S[r, c])

    def _merge(self, rows: np.ndarray, nbrs: np.ndarray, v: np.ndarray) -> None:
        # rows: list rows (item − lo), grouped, each group's neighbours ascending and all higher
        # than those already in its list. No threshold is below -inf, so the masked diagonal
        # never gets here.
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        counts = np.diff(np.r_[starts, rows.size])
        uniq = rows[starts]
        group = np.repeat(np.arange(uniq.size), counts)
        rank = np.arange(rows.size) - np.repeat(starts, counts)
        s = self.slots
        width = s + int(counts.max())
        dv = np.full((uniq.size, width), -np.inf, np.float32)
        di = np.full((uniq.size, width), -1, np.int64)
        dv[:, :s] = self.vals[uniq]
        di[:, :s] = self.idx[uniq]
        dv[group, s + rank] = v
        di[group, s + rank] = nbrs
        # Old entries sit left of new ones and have lower indices, new ones are in index order:
        # a stable sort on −value alone gives the (−similarity, index) order.
        order = np.argsort(-dv, axis=1, kind="stable")[:, :s]
        self.vals[uniq] = np.take_along_axis(dv, order, axis=1)
        self.idx[uniq] = np.take_along_axis(di, order, axis=1)

    def merge(self, lo: int, vals: np.ndarray, idx: np.ndarray) -> None:
        """Take in the lists of items lo.. found over other tiles (`compute_tiles` on a disjoint
        set of tiles): each item keeps its best `slots` of both, by (−similarity, index)."""
        at = lo - self.lo
        rows = slice(at, at + len(vals))
        cur_v, cur_i = self.vals[rows], self.idx[rows]
        last_v, last_i = cur_v[:, -1:], cur_i[:, -1:]
        # A candidate enters if it beats the list's last entry (an empty slot: any candidate).
        beats = (vals > last_v) | ((vals == last_v) & (idx >= 0) & ((idx < last_i) | (last_i < 0)))
        hit = np.flatnonzero(beats.any(axis=1))
        if hit.size == 0:
            return
        cv = np.concatenate([cur_v[hit], vals[hit]], axis=1)
        ci = np.concatenate([cur_i[hit], idx[hit]], axis=1)
        # Empty slots (−inf, −1) go last: they sort by +inf, then by an index pushed past all.
        order = np.lexsort((np.where(ci < 0, np.iinfo(np.int64).max, ci), -cv), axis=1)
        order = order[:, : self.slots]
        cur_v[hit] = np.take_along_axis(cv, order, axis=1)
        cur_i[hit] = np.take_along_axis(ci, order, axis=1)

    def floors(self) -> np.ndarray:
        """Per item, just below its list's last value (−inf for a list not full): a `floor`
        for the other tiles, if these lists came from tiles the final lists also take in."""
        return np.nextafter(self.vals[:, -1], np.float32(-np.inf))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if (self.idx < 0).any():  # cannot happen while slots <= N - 1
            raise AssertionError("a neighbour list was left incomplete")
        return self.vals, self.idx
