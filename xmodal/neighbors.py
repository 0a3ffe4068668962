"""Exact k-nearest neighbours inside one space, and the mean nearest-neighbour overlap (mNNO).

mNNO^K(V, Z) = 1/(K·N) · Σ_i |NN^K(v_i) ∩ NN^K(z_i)| (Collell & Moens, ACL 2018), where NN^K(v_i)
are the indices of the K nearest neighbours of item i inside its own space.

How the neighbours are found (docs/performance.md has the measurements):

- Everything is float32. Cosine normalises the rows once; Euclidean uses ||a||² + ||b||² − 2·a·b.
- A space's self-similarity is symmetric, so only the upper-triangle b×b tiles are multiplied
  (torch, which keeps OpenBLAS threads from spinning next to torch training in the same process).
  Each tile feeds both its rows' lists and its columns' lists. Memory is O(N·k + b²), never N×N.
- Order is exactly (−similarity, index). Neighbour indices reach an item's list in increasing
  order (earlier column blocks first), so a stable sort that keeps old entries before new ones
  breaks ties by the lower index without sorting on it, and a newcomer equal to a list's last
  value always loses. The item itself is excluded by index (its diagonal entry is -inf).
- Every item keeps a running, sorted list of its best k+1 candidates. A tile element can only enter
  it if it beats the list's last value, so after the first tile one vectorised comparison rejects
  almost everything; the few survivors are merged with a stable sort. The first tile of a list
  uses that tile's own (k+1)-th value, found with torch.topk, as the bar (ties at it included).
- All tiles have the same shape, a multiple of 32 (zero rows pad the last block). The BLAS
  rounds differently at tiny matrix edges (measured: any dimension below 16); with one shape,
  duplicate rows got bit-identical similarities wherever they sat, so their ties are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

__all__ = ["NeighborError", "Neighbors", "knn", "mnno", "overlap", "overlap_per_item"]

SIMILARITIES = ("cosine", "euclidean")
DEFAULT_BLOCK = 1536
_ALIGN = 32
_SHOW = 5  # how many offending row indices an error message lists


class NeighborError(ValueError):
    """Input that kNN or mNNO cannot work with; the message names the problem."""


@attrs.frozen(eq=False)
class Neighbors:
    """The k nearest neighbours of every item of one space (arrays are read-only).

    indices: int64, N×k, best first, ordered by (−similarity, index).
    similarities: float32, N×k, aligned with `indices`: the cosine similarity, or for "euclidean"
        the negative squared Euclidean distance (larger is nearer in both cases). With
        include_self=True the first column is the item itself, with similarity 1.0 (cosine) or
        0.0 (euclidean).
    ties_at_k: how many items have a tie at the boundary: the last neighbour in their list and the
        best candidate left out have equal similarity, so another equally near item was dropped by
        the index tie-break. The item itself never counts. 0 when no candidate is left out.
    """

    indices: np.ndarray
    similarities: np.ndarray
    ties_at_k: int
    similarity: str
    include_self: bool

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


def knn(
    X: Any,
    k: int,
    similarity: str = "cosine",
    include_self: bool = False,
    *,
    block_size: int = DEFAULT_BLOCK,
) -> Neighbors:
    """Exact k nearest neighbours of every row of X among the other rows of X.

    X: N×d array (numpy, or anything `np.asarray` takes; a torch tensor is detached first).
    similarity: "cosine" or "euclidean".
    include_self: False follows the paper (the item is not its own neighbour, k <= N−1). True
        reproduces the authors' released code: the item is always first in its own list and the
        other k−1 are its nearest others (k <= N).
    block_size: tile edge, rounded to a multiple of 32. Working memory is a float32 copy of X
        plus about 10·block_size² bytes. The neighbours do not depend on it (beyond rounding of
        the matrix product in the last bit); the default was the fastest on a 2-core CPU.
    """
    sim = _check_similarity(similarity)
    return _knn(_as_matrix(X, "X"), k, sim, include_self, block_size, "X", "knn")


def _knn(
    X32: np.ndarray, k: int, sim: str, include_self: bool, block_size: int, name: str, where: str
) -> Neighbors:
    n = X32.shape[0]
    _check_k(k, n, include_self, where)
    m = k - 1 if include_self else k  # neighbours other than the item itself
    slots = min(m + 1, n - 1)  # one extra to detect a tie at the boundary

    scale = _row_scale(X32, sim, name)
    if m == 0:
        vals = np.empty((n, 0), np.float32)
        idx = np.empty((n, 0), np.int64)
    else:
        vals, idx = _top_others(X32, scale, sim, slots, block_size)

    ties = int(np.count_nonzero(vals[:, m - 1] == vals[:, m])) if 0 < m < slots else 0
    vals, idx = vals[:, :m], idx[:, :m]
    if include_self:
        self_sim = np.float32(1.0 if sim == "cosine" else 0.0)
        vals = np.hstack([np.full((n, 1), self_sim, np.float32), vals])
        idx = np.hstack([np.arange(n, dtype=np.int64)[:, None], idx])
    vals = np.ascontiguousarray(vals)
    idx = np.ascontiguousarray(idx)
    vals.setflags(write=False)
    idx.setflags(write=False)
    return Neighbors(idx, vals, ties, sim, bool(include_self))


def mnno(
    A: Any,
    B: Any,
    k: int | Sequence[int] = 10,
    similarity: str = "cosine",
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
    sim = _check_similarity(similarity)
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


def _check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise NeighborError(
            f"unknown similarity {similarity!r}; allowed: {', '.join(map(repr, SIMILARITIES))}"
        )
    return similarity


def _as_matrix(X: Any, name: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        X = (X.float() if X.dtype in (torch.float16, torch.bfloat16) else X).numpy()
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


def _nonfinite_rows(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind != "f":
        return np.zeros(0, np.int64)
    return np.flatnonzero(~np.isfinite(arr).all(axis=1))


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
    step = max(1, (1 << 22) // X.shape[1])
    for s in range(0, X.shape[0], step):
        c = X[s : s + step].astype(np.float64)
        out[s : s + step] = np.einsum("ij,ij->i", c, c)
    return out


def _row_scale(X: np.ndarray, similarity: str, name: str) -> np.ndarray:
    """Per row: the norm to divide by (cosine) or the squared norm to subtract (euclidean)."""
    sq = _row_sq_norms(X)
    if similarity == "cosine":
        zero = np.flatnonzero(sq == 0)
        if zero.size:
            raise NeighborError(
                f"{name} has {zero.size} all-zero row(s) (first at rows {_first(zero)}); cosine "
                f"similarity is undefined for a zero vector: drop those items or use 'euclidean'"
            )
        return np.sqrt(sq).astype(np.float32)
    big = np.flatnonzero(~np.isfinite(4 * sq.astype(np.float32)))
    if big.size:
        raise NeighborError(
            f"{name} has rows whose squared norms overflow float32 (first at rows {_first(big)}); "
            f"rescale the vectors"
        )
    return sq.astype(np.float32)


def _top_others(
    X: np.ndarray, scale: np.ndarray, similarity: str, slots: int, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `slots` best other rows, sorted by (−similarity, index)."""
    n, d = X.shape
    block = max(int(block_size), _ALIGN)
    nb = math.ceil(n / block)
    b = _ALIGN * math.ceil(math.ceil(n / nb) / _ALIGN)
    padded = np.zeros((nb * b, d), np.float32)
    T = torch.from_numpy(padded)
    tile_t = torch.empty((b, b), dtype=torch.float32)
    tile = tile_t.numpy()
    euclidean = similarity == "euclidean"
    if euclidean:
        padded[:n] = X
        sq = np.zeros(nb * b, np.float32)
        sq[:n] = scale
        sum_buf = np.empty((b, b), np.float32)
    else:
        np.divide(X, scale[:, None], out=padded[:n])

    lists = _Lists(n, slots)
    for bi in range(nb):
        r0 = bi * b
        nr = min(b, n - r0)
        if nr <= 0:
            break
        for bj in range(bi, nb):
            c0 = bj * b
            nc = min(b, n - c0)
            if nc <= 0:
                break
            torch.mm(T[r0 : r0 + b], T[c0 : c0 + b].T, out=tile_t)
            if euclidean:
                # −((‖a‖² + ‖b‖²) − 2ab): the norm sum commutes, so the tile stays symmetric.
                np.multiply(tile, 2, out=tile)
                np.add.outer(sq[r0 : r0 + b], sq[c0 : c0 + b], out=sum_buf)
                np.subtract(tile, sum_buf, out=tile)
            S = tile[:nr, :nc]
            if bi == bj:
                np.fill_diagonal(S, -np.inf)
            lists.offer_rows(S, r0, c0)
            if bj > bi:
                lists.offer_cols(S, c0, r0)
    return lists.finish()


class _Lists:
    """Every item's best candidates so far: values (desc) and indices, `slots` per item."""

    def __init__(self, n: int, slots: int) -> None:
        self.slots = slots
        self.vals = np.full((n, slots), -np.inf, np.float32)
        self.idx = np.full((n, slots), -1, np.int64)

    def _thresholds(self, S: np.ndarray, items: slice, axis: int) -> np.ndarray:
        """Per item, a value that a tile element must exceed to enter the item's list.

        For a full list that is its last value: an equal newcomer has a higher index than every
        entry already there, so it loses the tie. This keeps tie-heavy data (duplicate rows)
        from flooding the merge.
        """
        tau = self.vals[items, -1].copy()
        empty = np.flatnonzero(tau == -np.inf)
        if empty.size:
            # A list that is not full accepts anything but this tile's own slots-th best can
            # only lose to other elements of the tile, so keep everything >= that value.
            width = S.shape[1 - axis]
            if width >= self.slots:
                sub = S[empty] if axis == 0 else S[:, empty].T
                kth = torch.topk(torch.from_numpy(np.ascontiguousarray(sub)), self.slots, dim=1)
                tau[empty] = np.nextafter(kth.values[:, -1].numpy(), np.float32(-np.inf))
        return tau

    def offer_rows(self, S: np.ndarray, item0: int, nbr0: int) -> None:
        """Offer S[r, c] to item item0 + r as neighbour nbr0 + c."""
        tau = self._thresholds(S, slice(item0, item0 + S.shape[0]), axis=0)
        flat = np.flatnonzero(np.greater(S, tau[:, None]))
        if flat.size == 0:
            return
        r, c = np.divmod(flat, S.shape[1])
        v = S[r, c]
        # Row-major order already groups by item with neighbours ascending.
        self._merge(r + item0, c + nbr0, v)

    def offer_cols(self, S: np.ndarray, item0: int, nbr0: int) -> None:
        """Offer S[r, c] to item item0 + c as neighbour nbr0 + r."""
        tau = self._thresholds(S, slice(item0, item0 + S.shape[1]), axis=1)
        flat = np.flatnonzero(np.greater(S, tau[None, :]))
        if flat.size == 0:
            return
        r, c = np.divmod(flat, S.shape[1])
        order = np.argsort(c, kind="stable")  # group by item, neighbours stay ascending
        r, c = r[order], c[order]
        self._merge(c + item0, r + nbr0, S[r, c])

    def _merge(self, items: np.ndarray, nbrs: np.ndarray, v: np.ndarray) -> None:
        # No threshold is below -inf, so the masked diagonal never gets here.
        starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
        counts = np.diff(np.r_[starts, items.size])
        uniq = items[starts]
        group = np.repeat(np.arange(uniq.size), counts)
        rank = np.arange(items.size) - np.repeat(starts, counts)
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

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if (self.idx < 0).any():  # cannot happen while slots <= N - 1
            raise AssertionError("a neighbour list was left incomplete")
        return self.vals, self.idx
