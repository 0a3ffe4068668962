"""Approximate neighbour backend `hnsw`: faiss's HNSW graph (IndexHNSWFlat), for spaces too large
for the exact blocked kNN (its cost grows as N²·d; HNSW's about as N·log N·d).

Needs the `ann` extra (faiss-cpu), imported when a list is first searched. Chosen over hnswlib
and usearch on measured recall and speed (docs/performance.md, "Approximate neighbours").

How a similarity becomes an index: `xmodal_plugins.support.approximate.index_vectors` (inner
product for cosine's unit rows and plain inner products, L2 for euclidean, augmented vectors for
other offsets). Each item searches k + 1 candidates; the item itself is dropped by index (or put
first with `include_self`) and the rest ordered by (−score, index).

With `pca = m`, the graph is built and searched in m principal directions of the space (for
spaces whose variance lies in fewer dimensions than they have: each distance costs m instead of
d), each item takes `candidates` (2·k) candidates from it, and they are ranked by their exact
scores in the full space. The space is read in row blocks (a memory-mapped file stays one):
held are the projection, the graph and a block. What the projection loses shows in the
sampled recall.

With `threads = 1` (the default) the graph, and so every list, is the same on every run; more
threads build the graph in parallel, and then which neighbours are found can vary between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import NeighborBackendSpec, Param, SimilaritySpec, hookimpl, neighbor_progress
from xmodal_plugins.support.approximate import (
    SEARCH_ROWS,
    candidates_wanted,
    check_weight,
    faiss_module,
    faiss_threads,
    index_vectors,
    prepared,
    project,
)

RESCORE_BYTES = 32 * 2**20  # candidates' vectors gathered at a time when rescoring


def hnsw_search(
    X: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> np.ndarray:
    """Each item's k approximate nearest neighbours (see the module docstring)."""
    faiss = faiss_module("hnsw")
    n = len(X)
    others = k - 1 if include_self else k
    if others <= 0:
        return np.arange(n, dtype=np.int64)[:, None][:, :k]
    weight = check_weight(similarity, "hnsw")
    with faiss_threads(faiss, int(params["threads"])):
        if int(params.get("pca", 0)) > 0:
            found = _projected_search(X, others, similarity, weight, params)
            if found is not None:
                return _ordered_lists(*found, others, include_self)
        items, queries, form = index_vectors(X, similarity, weight)
        l2 = form == "l2"
        wanted = min(others + 1, n)
        scores, found = _graph_search(items, queries, l2, wanted, params)
    return _ordered_lists(found, -scores if l2 else scores, others, include_self)


def _graph_search(
    items: np.ndarray, queries: np.ndarray, l2: bool, wanted: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """faiss's (scores, found) of each query's `wanted` nearest items in an HNSW graph."""
    faiss = faiss_module("hnsw")
    metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(items.shape[1], int(params["M"]), metric)
    index.hnsw.efConstruction = int(params["ef_construction"])
    # Progress counts each item twice: added (in one call: adding in parts would change the
    # graph), then searched, in parts (each query's search is its own: the same lists).
    total = len(items) + len(queries)
    progress = neighbor_progress(total, "items")
    index.add(items)
    if progress is not None:
        progress(len(items), total)
    index.hnsw.efSearch = max(int(params["ef_search"]), wanted)
    scores, found = [], []
    for start in range(0, len(queries), SEARCH_ROWS):
        part = index.search(queries[start : start + SEARCH_ROWS], wanted)
        scores.append(part[0])
        found.append(part[1])
        if progress is not None:
            progress(len(items) + start + len(part[1]), total)
    return np.vstack(scores), np.vstack(found)


def _projected_search(
    X: np.ndarray,
    others: int,
    similarity: SimilaritySpec,
    weight: float,
    params: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray] | None:
    """(found, exact scores) of each item's candidates from a graph of `pca` principal
    directions (`project`); None when `pca` is not below the form's dimension."""
    projection = project(X, similarity, weight, int(params["pca"]))
    if projection is None:
        return None
    wanted = candidates_wanted(params, others, len(X))
    items, queries = projection.items, projection.queries
    _, found = _graph_search(items, queries, projection.by_l2, wanted, params)
    sq = projection.squared_norms
    del projection, items, queries
    return found, _rescored(X, similarity, weight, found, sq)


def _rescored(
    X: np.ndarray, similarity: SimilaritySpec, weight: float, found: np.ndarray, sq: np.ndarray
) -> np.ndarray:
    """s(i, j) of each item i's candidates j in the full space; -inf where none was found."""
    scores = np.empty(found.shape, np.float64)
    block = max(1, RESCORE_BYTES // (4 * X.shape[1] * found.shape[1]))
    for start in range(0, len(found), block):
        cand = found[start : start + block]
        Yq, off_q = prepared(X, slice(start, start + len(cand)), similarity, sq)
        Yc, off_c = prepared(X, np.maximum(cand, 0).ravel(), similarity, sq)
        products = np.matmul(Yc.reshape(*cand.shape, -1), Yq[:, :, None])[..., 0]
        s = weight * products.astype(np.float64)
        if off_q is not None:
            s -= off_q[:, None] + off_c.reshape(cand.shape)
        scores[start : start + len(cand)] = np.where(cand < 0, -np.inf, s)
    return scores


def _ordered_lists(
    found: np.ndarray, scores: np.ndarray, others: int, include_self: bool
) -> np.ndarray:
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
