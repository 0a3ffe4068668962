"""Approximate neighbour backend `hnsw`: faiss's HNSW graph (IndexHNSWFlat), for spaces too large
for the exact blocked kNN (its cost grows as N²·d; HNSW's about as N·log N·d).

Needs the `ann` extra (faiss-cpu), imported when a list is first searched. Chosen over hnswlib
and usearch on measured recall and speed (docs/performance.md, "Approximate neighbours").

How a similarity becomes an index (s(i, j) = weight · Y[i]·Y[j] − offset[i] − offset[j], from
the `SimilaritySpec`'s `prepare`): without offsets, inner product on Y (cosine: unit rows);
offsets equal to weight/2 · ‖Y‖² make s a negative squared distance, searched with L2 on Y
(euclidean); any other offset is searched as an inner product of augmented vectors, [Y_j,
−offset_j / weight] for the items and [Y_i, 1] for the queries, which ranks j for item i as s
does. Each item searches k + 1 candidates; the item itself is dropped by index (or put first
with `include_self`) and the rest ordered by (−score, index).

With `pca = m`, the graph is built and searched in m principal directions of the space (for
spaces whose variance lies in fewer dimensions than they have: each distance costs m instead of
d), each item takes `candidates` (2·k) candidates from it, and they are ranked by their exact
scores in the full space. What the projection loses shows in the sampled recall.

With `threads = 1` (the default) the graph, and so every list, is the same on every run; more
threads build the graph in parallel, and then which neighbours are found can vary between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import NeighborBackendSpec, Param, SimilaritySpec, hookimpl, require

PCA_SAMPLE = 50_000  # rows whose principal directions `pca` projects on
BLOCK_ROWS = 65_536
RESCORE_BYTES = 32 * 2**20  # candidates' vectors gathered at a time when rescoring


def _faiss() -> Any:
    return require("faiss", "ann", "the `hnsw` neighbour backend", package="faiss-cpu")


def _index_form(X: np.ndarray, similarity: SimilaritySpec) -> tuple[np.ndarray, np.ndarray, bool]:
    """(item vectors, query vectors, is_l2): how `similarity` is searched by faiss."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    Y, offset = similarity.prepare(X, sq)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    weight = float(similarity.weight)
    if weight <= 0:
        raise ValueError(
            f"similarity {similarity.name!r} has weight {weight}; the hnsw backend needs a "
            "positive weight (larger dot products nearer)"
        )
    if offset is None:
        return Y, Y, False
    off = np.asarray(offset, dtype=np.float64)
    half = 0.5 * weight * np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    if np.allclose(off, half, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(half).max(initial=0)))):
        return Y, Y, True
    items = np.hstack([Y, (-off / weight).astype(np.float32)[:, None]])
    queries = np.hstack([Y, np.ones((len(Y), 1), np.float32)])
    return items, queries, False


def hnsw_search(
    X: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> np.ndarray:
    """Each item's k approximate nearest neighbours (see the module docstring)."""
    faiss = _faiss()
    n = len(X)
    items, queries, l2 = _index_form(X, similarity)
    others = k - 1 if include_self else k
    if others <= 0:
        return np.arange(n, dtype=np.int64)[:, None][:, :k]
    full = items.shape[1] - (0 if items is queries else 1)  # without the augmented coordinate
    dims = int(params.get("pca", 0))
    if dims >= full:
        dims = 0  # nothing to project away: search the space itself
    wanted = min(others + 1, n)
    if dims:
        wanted = min(max(int(params.get("candidates", 0)) or 2 * others, others) + 1, n)
    threads = int(params["threads"])
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads if threads > 0 else previous)
    try:
        if dims:
            search_items, search_queries, search_l2 = _projected(items, queries, l2, dims)
        else:
            search_items, search_queries, search_l2 = items, queries, l2
        metric = faiss.METRIC_L2 if search_l2 else faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexHNSWFlat(search_items.shape[1], int(params["M"]), metric)
        index.hnsw.efConstruction = int(params["ef_construction"])
        index.add(search_items)
        index.hnsw.efSearch = max(int(params["ef_search"]), wanted)
        scores, found = index.search(search_queries, wanted)
        del index
    finally:
        faiss.omp_set_num_threads(previous)
    if dims:
        scores = _rescored(items, queries, l2, found)
    elif l2:
        scores = -scores
    return _lists(found, scores, others, include_self)


def _projected(
    items: np.ndarray, queries: np.ndarray, l2: bool, dims: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The search form in `dims` principal directions of a seeded sample of the items.

    Distances (euclidean, and cosine as distances of unit rows) are projected on the sample's
    centred principal directions; other inner products on the uncentred ones (a centring would
    change their ranking), with the augmented coordinate of the module docstring kept as it is.
    """
    unit = not l2 and items is queries and _unit_rows(items)
    augmented = not l2 and items is not queries
    Y = items[:, :-1] if augmented else items
    rows = np.random.default_rng(0).choice(len(Y), min(len(Y), PCA_SAMPLE), replace=False)
    sample = Y[np.sort(rows)].astype(np.float64)
    if l2 or unit:
        sample -= sample.mean(axis=0)
    _, vectors = np.linalg.eigh(sample.T @ sample)
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)
    projected = np.empty((len(Y), dims), np.float32)
    for start in range(0, len(Y), BLOCK_ROWS):
        np.matmul(Y[start : start + BLOCK_ROWS], basis, out=projected[start : start + BLOCK_ROWS])
    if l2 or unit:
        return projected, projected, True
    if not augmented:
        return projected, projected, False
    return (
        np.hstack([projected, items[:, -1:]]),
        np.hstack([projected, queries[:, -1:]]),
        False,
    )


def _unit_rows(Y: np.ndarray) -> bool:
    norms = np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    return bool(np.allclose(norms, 1.0, atol=1e-4))


def _rescored(items: np.ndarray, queries: np.ndarray, l2: bool, found: np.ndarray) -> np.ndarray:
    """The exact scores of each item's candidates in the full space, -inf where none was found."""
    scores = np.empty(found.shape, np.float64)
    rows = max(1, RESCORE_BYTES // (4 * items.shape[1] * found.shape[1]))
    for start in range(0, len(found), rows):
        cand = found[start : start + rows]
        gathered = items[np.maximum(cand, 0)]
        q = queries[start : start + rows, :, None]
        if l2:
            s = -np.square(gathered - q[:, None, :, 0]).sum(axis=2, dtype=np.float64)
        else:
            s = np.matmul(gathered, q)[..., 0]
        scores[start : start + rows] = np.where(cand < 0, -np.inf, s)
    return scores


def _lists(found: np.ndarray, scores: np.ndarray, others: int, include_self: bool) -> np.ndarray:
    """Drop each item from its candidates, order the rest by (−score, index), keep `others`."""
    n = len(found)
    me = np.arange(n, dtype=np.int64)[:, None]
    found = found.astype(np.int64)
    scores = np.where(found == me, -np.inf, scores.astype(np.float64))
    scores = np.where(found < 0, -np.inf, scores)  # not found: last
    order = np.lexsort((found, -scores), axis=1)
    found = np.take_along_axis(found, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    if np.isneginf(scores[:, :others]).any():
        # The graph gave fewer than `others` neighbours: -1 marks them, and xmodal refuses the
        # lists (a larger ef_search finds more).
        found = np.where(np.isneginf(scores), -1, found)
    out = found[:, :others]
    return np.hstack([me, out]) if include_self else np.ascontiguousarray(out)


def check_params(params: Mapping[str, Any], context: Any) -> Iterator[tuple[str, str]]:
    if params["ef_construction"] < params["M"]:
        yield (
            "ef_construction",
            f"ef_construction = {params['ef_construction']} is smaller than M = {params['M']}; "
            "the graph would be poor (use at least M, typically 2·M or more)",
        )
    if params["candidates"] and not params["pca"]:
        yield (
            "candidates",
            f"candidates = {params['candidates']} only applies to the projected search; set "
            "pca = m (principal directions to search in) or remove candidates",
        )


@hookimpl
def register_neighbor_backends(register: Callable[[NeighborBackendSpec], None]) -> None:
    register(
        NeighborBackendSpec(
            name="hnsw",
            search=hnsw_search,
            exact=False,
            check=check_params,
            params={
                "M": Param(int, default=16, min=4, max=256, doc="graph links per item"),
                "ef_construction": Param(
                    int, default=40, min=4, max=4096, doc="candidates kept while building"
                ),
                "ef_search": Param(
                    int,
                    default=32,
                    min=1,
                    max=4096,
                    doc="candidates kept while searching (at least k + 1 are)",
                ),
                "pca": Param(
                    int,
                    default=0,
                    min=0,
                    max=65536,
                    doc="0: search the space itself. Otherwise search candidates in this many "
                    "principal directions of the space (from a seeded sample of 50,000 items), then "
                    "rank them exactly in the full space: cheaper distances, for spaces whose "
                    "variance lies in fewer dimensions (the sampled recall shows what it costs)",
                ),
                "candidates": Param(
                    int,
                    default=0,
                    min=0,
                    max=4096,
                    doc="with `pca`: candidates per item ranked exactly in the full space; 0: 2·k",
                ),
                "threads": Param(
                    int,
                    default=1,
                    min=0,
                    max=1024,
                    doc="faiss threads; 0: faiss's default. More than 1 builds the graph in "
                    "parallel, so the lists can differ between runs",
                ),
            },
            description="approximate: faiss HNSW graph (needs the `ann` extra); recall is "
            "measured and stored",
        )
    )
