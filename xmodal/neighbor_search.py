"""Neighbour lists through the study's neighbour backend, and the recall of approximate ones.

A study's `[neighbors]` table names a backend (`NeighborBackendSpec`, hook
`register_neighbor_backends`); `Backend` is that choice resolved against the registry. Exact
backends return the lists of `xmodal.knn`. For an approximate backend, `search` also draws a
seeded sample of items, finds their exact lists (`exact_rows`: one block of the similarity
matrix at a time, never N×N) and keeps them, so that the recall@k of the backend's lists can be
computed for every k up to the one searched (`Recall.at`) and stored with the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    from xmodal.components import NeighborBackendSpec, SimilaritySpec

# What a study without [neighbors] (and a NeighborCache built without a backend) uses.
DEFAULT_SAMPLE = 1000
# exact_rows: sampled items and items of X scored at a time (a 16 MB float32 block of
# similarities, reused; blocks of X of 6 MB at 384-d).
_BLOCK_ROWS = 1024
_BLOCK_COLUMNS = 4096


class BackendError(Exception):
    """A neighbour backend returned something that is not an N×k array of item indices."""


@attrs.frozen
class Backend:
    """A study's neighbour backend: its spec, its parameters (defaults filled), and how the recall
    of an approximate backend is sampled."""

    spec: NeighborBackendSpec
    params: Mapping[str, Any] = attrs.field(factory=dict)
    recall_sample: int = DEFAULT_SAMPLE
    recall_seed: int = 0

    @property
    def exact(self) -> bool:
        return self.spec.exact

    @property
    def token(self) -> tuple[Any, ...]:
        """Tells the lists of this backend apart from exact ones in a cache (exact: empty)."""
        if self.exact:
            return ()
        from xmodal.planning import canonical_hash

        return (canonical_hash(self.identity()),)

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.spec.name,
            "params": dict(self.params),
            "recall_sample": self.recall_sample,
            "recall_seed": self.recall_seed,
        }


def resolve_backend(
    config: Mapping[str, Any] | None, backends: Mapping[str, NeighborBackendSpec]
) -> Backend | None:
    """The backend a run's `neighbors` config names; None for the default exact search (no config,
    or a config naming the default backend when it is exact, as the built-in one is), which the
    caller does with `xmodal.knn` itself."""
    name = config.get("backend") if config else None
    if name is None:
        return None
    spec = backends.get(name)
    if spec is None:
        from xmodal.errors import XmodalError, not_registered

        raise XmodalError(not_registered("neighbour backend", name, backends))
    if spec.exact and spec.default:
        return None
    return Backend(
        spec,
        dict(config.get("params", {})),
        int(config.get("recall_sample", DEFAULT_SAMPLE)),
        int(config.get("recall_seed", 0)),
    )


@attrs.frozen(eq=False)
class Recall:
    """Exact lists of a seeded sample of items (`rows`), to score a backend's lists against."""

    rows: np.ndarray  # sampled item indices, sorted
    exact: np.ndarray  # len(rows) × k exact neighbour indices, best first

    def at(self, lists: np.ndarray, k: int) -> float:
        """Recall@k: the mean, over the sampled items, of |approximate ∩ exact| / k for the first
        k neighbours (k at most the sample's list length)."""
        if k > self.exact.shape[1]:
            raise ValueError(f"recall@{k} asked of lists sampled at k = {self.exact.shape[1]}")
        return float(np.mean(_overlap_rows(np.asarray(lists)[self.rows, :k], self.exact[:, :k])))

    def stacked(self) -> np.ndarray:
        """One int64 array (rows in column 0) for export to workers; `unstack` reverses it."""
        return np.column_stack([self.rows, self.exact]).astype(np.int64)

    @classmethod
    def unstack(cls, array: np.ndarray) -> Recall:
        array = np.asarray(array)
        return cls(np.ascontiguousarray(array[:, 0]), np.ascontiguousarray(array[:, 1:]))


def _overlap_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i ∩ b_i| / k per row, for two m×k arrays of distinct indices per row."""
    k = a.shape[1]
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    return (both[:, 1:] == both[:, :-1]).sum(axis=1) / k


def search(
    backend: Backend, X: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool
) -> tuple[np.ndarray, Recall | None]:
    """The backend's N×k lists of `X`, checked, and for an approximate backend its sampled
    recall (None for an exact one)."""
    lists = backend.spec.search(X, k, similarity, include_self, dict(backend.params))
    lists = _checked(backend.spec.name, lists, len(X), k)
    if backend.exact:
        return lists, None
    n = len(X)
    m = min(backend.recall_sample, n)
    rows = np.sort(np.random.default_rng(backend.recall_seed).choice(n, m, replace=False))
    return lists, Recall(rows, exact_rows(X, rows, k, similarity, include_self))


def _checked(name: str, lists: Any, n: int, k: int) -> np.ndarray:
    try:
        array = np.asarray(lists)
    except Exception:  # whatever it returned: say what it was
        array = None
    if array is None or array.shape != (n, k) or not np.issubdtype(array.dtype, np.integer):
        shown = "an object" if array is None else f"{array.dtype} {array.shape}"
        raise BackendError(
            f"neighbour backend {name!r} returned {shown}; search must return an "
            f"{n}×{k} integer array of item indices"
        )
    if n and (array.min() < 0 or array.max() >= n):
        raise BackendError(
            f"neighbour backend {name!r} returned indices outside 0..{n - 1} (e.g. "
            f"{int(array.min()) if array.min() < 0 else int(array.max())}): it found fewer "
            "than k neighbours for some items"
        )
    return array.astype(np.int64, copy=False)


def exact_rows(
    X: np.ndarray, rows: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool
) -> np.ndarray:
    """Exact k nearest neighbours of the items `rows` among all rows of `X`, best first.

    The similarity is computed as the spec defines it (weight · Y[i]·Y[j] − offset[i] −
    offset[j], in float32 like `xmodal.knn`), the item excluded by index
    (first with `include_self`), ties broken by lower index. It serves as the reference for a
    recall sample: equal vectors are not merged first as in `xmodal.knn`, so for near-ties and
    copies the order may differ from `knn`'s in the last place of a list.

    X is read and prepared once, in blocks of _BLOCK_COLUMNS items (a memory-mapped X stays
    one), each scored against _BLOCK_ROWS sampled items at a time in one reused buffer; each
    block's best k + 1 are merged into the running best by (−similarity, index).
    """
    import torch  # on first use, like xmodal.knn

    rows = np.asarray(rows, dtype=np.int64)
    n, m = len(X), len(rows)
    take = min(k + 1, n)  # one more than needed, so a tie at the k-th goes to the lower index
    chunks = [rows[first : first + _BLOCK_ROWS] for first in range(0, m, _BLOCK_ROWS)]
    sampled = [_prepared(X, chunk, similarity) for chunk in chunks]
    best = [(np.empty((len(c), 0), np.float32), np.empty((len(c), 0), np.int64)) for c in chunks]
    S = torch.empty((min(_BLOCK_ROWS, m), min(_BLOCK_COLUMNS, n)), dtype=torch.float32)
    for start in range(0, n, _BLOCK_COLUMNS):
        stop = min(start + _BLOCK_COLUMNS, n)
        Yb, off_b = _prepared(X, slice(start, stop), similarity)
        for c, (mine, (Yr, off_r)) in enumerate(zip(chunks, sampled, strict=True)):
            block = S[: len(mine), : stop - start]
            torch.mm(torch.from_numpy(Yr), torch.from_numpy(Yb).T, out=block)
            if similarity.weight != 1:
                block *= float(np.float32(similarity.weight))
            if off_r is not None:
                block -= torch.from_numpy(off_r)[:, None]
                block -= torch.from_numpy(off_b)[None, :]
            here = np.flatnonzero((mine >= start) & (mine < stop))
            at = torch.from_numpy(mine[here] - start)
            block[torch.from_numpy(here), at] = np.inf if include_self else -np.inf
            vals, cand = block.topk(min(take, stop - start), dim=1)
            best_s = np.hstack([best[c][0], vals.numpy()])
            best_i = np.hstack([best[c][1], cand.numpy() + start])
            order = np.lexsort((best_i, -best_s), axis=1)[:, :take]
            best[c] = (np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1))
    out = np.empty((m, k), dtype=np.int64)
    for first, (_, best_i) in zip(range(0, m, _BLOCK_ROWS), best, strict=True):
        out[first : first + len(best_i)] = best_i[:, :k]
    return out


def _prepared(
    X: np.ndarray, rows: Any, similarity: SimilaritySpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Y, offset) of X[rows] in float32, as `similarity.prepare` gives them."""
    block = np.ascontiguousarray(X[rows], dtype=np.float32)
    Y, offset = similarity.prepare(block, np.einsum("ij,ij->i", block, block, dtype=np.float64))
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    if not Y.flags.writeable:  # a read-only map's rows, returned as they are: torch wants a copy
        Y = Y.copy()
    return Y, None if offset is None else np.ascontiguousarray(offset, dtype=np.float32)
