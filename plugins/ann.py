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
scores in the full space. The space is read in row blocks (a memory-mapped file stays one):
held are the projection, the graph and a block. What the projection loses shows in the
sampled recall.

With `threads = 1` (the default) the graph, and so every list, is the same on every run; more
threads build the graph in parallel, and then which neighbours are found can vary between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from xmodal import (
    NeighborBackendSpec,
    Param,
    SimilaritySpec,
    hookimpl,
    neighbor_progress,
    require,
)

PCA_SAMPLE = 50_000  # rows whose principal directions `pca` projects on
# Rows read and prepared at a time. Small enough (12 MB at 384-d) that the allocator reuses one
# block's memory for the next: fresh memory costs ~5 ms per MB at first touch on a VM whose host
# backs it lazily (docs/performance.md), and a 100 MB block would be fresh every time.
BLOCK_ROWS = 8_192
RESCORE_BYTES = 32 * 2**20  # candidates' vectors gathered at a time when rescoring
SEARCH_ROWS = 16_384  # queries per faiss search call: a progress report after each


def _faiss() -> Any:
    return require("faiss", "ann", "the `hnsw` neighbour backend", package="faiss-cpu")


def index_vectors(
    X: np.ndarray, similarity: SimilaritySpec, weight: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """(item vectors, query vectors, form_of the prepared rows): how `similarity` (of `weight`)
    is searched by faiss ('l2': by L2 distance; otherwise by inner product)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y, offset = prepared(X, slice(None), similarity)
    Y = np.ascontiguousarray(Y)
    form = form_of(Y, offset, weight)
    if form != "augmented":
        return Y, Y, form
    items = np.hstack([Y, (-offset / weight).astype(np.float32)[:, None]])
    queries = np.hstack([Y, np.ones((len(Y), 1), np.float32)])
    return items, queries, form


def check_weight(similarity: SimilaritySpec) -> float:
    weight = float(similarity.weight)
    if weight <= 0:
        raise ValueError(
            f"similarity {similarity.name!r} has weight {weight}; the hnsw backend needs a "
            "positive weight (larger dot products nearer)"
        )
    return weight


def hnsw_search(
    X: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> np.ndarray:
    """Each item's k approximate nearest neighbours (see the module docstring)."""
    faiss = _faiss()
    n = len(X)
    others = k - 1 if include_self else k
    if others <= 0:
        return np.arange(n, dtype=np.int64)[:, None][:, :k]
    weight = check_weight(similarity)
    threads = int(params["threads"])
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads if threads > 0 else previous)
    try:
        if int(params.get("pca", 0)) > 0:
            found = _projected_search(X, others, similarity, weight, params)
            if found is not None:
                return ordered_lists(*found, others, include_self)
        items, queries, form = index_vectors(X, similarity, weight)
        l2 = form == "l2"
        wanted = min(others + 1, n)
        scores, found = _graph_search(items, queries, l2, wanted, params)
    finally:
        faiss.omp_set_num_threads(previous)
    return ordered_lists(found, -scores if l2 else scores, others, include_self)


def _graph_search(
    items: np.ndarray, queries: np.ndarray, l2: bool, wanted: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """faiss's (scores, found) of each query's `wanted` nearest items in an HNSW graph."""
    faiss = _faiss()
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


def prepared(
    X: np.ndarray, rows: Any, similarity: SimilaritySpec, sq: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Y, offset) of the similarity's form for X[rows] alone (`sq`: all rows' squared norms,
    if known): a form is row by row, so the projected search prepares blocks and candidates and
    never a copy of the whole space."""
    block = np.asarray(X[rows], dtype=np.float32)
    norms = squared_norms(block) if sq is None else sq[rows]
    Y, offset = similarity.prepare(block, norms)
    return np.asarray(Y, dtype=np.float32), None if offset is None else np.asarray(offset, "f8")


def squared_norms(block: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", block, block, dtype=np.float64)


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
    n = len(X)
    wanted = min(max(int(params.get("candidates", 0)) or 2 * others, others) + 1, n)
    l2 = projection.form in ("unit", "l2")
    _, found = _graph_search(projection.items, projection.queries, l2, wanted, params)
    sq = projection.squared_norms
    del projection
    return found, _rescored(X, similarity, weight, found, sq)


@attrs.frozen(eq=False)
class Projection:
    """A space in `dims` principal directions of its similarity's form (see `project`)."""

    items: np.ndarray  # n × dims (+1 for the augmented form) float32: what is indexed
    queries: np.ndarray  # the same, or with the augmented coordinate set to 1
    form: str  # form_of the prepared rows: 'unit', 'l2', 'inner' or 'augmented'
    squared_norms: np.ndarray  # ‖X_i‖² in float64, for preparing rows again


def project(
    X: np.ndarray, similarity: SimilaritySpec, weight: float, dims: int
) -> Projection | None:
    """X's prepared rows in `dims` principal directions of a seeded sample of PCA_SAMPLE items,
    read from X in row blocks of BLOCK_ROWS; None when `dims` is not below the form's dimension.

    Distance forms (euclidean; cosine, whose rows are unit) are projected on the sample's centred
    principal directions and searched by L2; other inner products on the uncentred ones (a
    centring would change their ranking), with the augmented coordinate of the module docstring
    kept as it is.
    """
    n = len(X)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, PCA_SAMPLE), replace=False))
    form, moments, total = None, None, None
    for start in range(0, len(sample), BLOCK_ROWS):  # the sample's moments, block by block
        rows = sample[start : start + BLOCK_ROWS]
        Y, offset = prepared(X, rows, similarity)
        if dims >= Y.shape[1]:
            return None
        form = _same_form(form, form_of(Y, offset, weight), similarity, rows)
        Y64 = Y.astype(np.float64)
        moments = Y64.T @ Y64 if moments is None else moments + Y64.T @ Y64
        total = Y64.sum(axis=0) if total is None else total + Y64.sum(axis=0)
    if form != "inner":
        mean = total / len(sample)
        moments -= len(sample) * np.outer(mean, mean)
    _, vectors = np.linalg.eigh(moments)
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)
    items = np.empty((n, dims + (form == "augmented")), np.float32)
    sq = np.empty(n, np.float64)
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n))
        block = np.asarray(X[rows], dtype=np.float32)
        sq[rows] = squared_norms(block)
        Y, offset = prepared(block, slice(None), similarity, sq[rows])
        _same_form(form, form_of(Y, offset, weight), similarity, np.arange(rows.start, rows.stop))
        np.matmul(Y, basis, out=items[rows, :dims])
        if form == "augmented":
            items[rows, dims] = -offset / weight
    queries = items
    if form == "augmented":
        queries = items.copy()
        queries[:, dims] = 1.0
    return Projection(items, queries, form, sq)


def _same_form(form: str | None, found: str, similarity: SimilaritySpec, rows: np.ndarray) -> str:
    if form is not None and found != form:
        raise ValueError(
            f"similarity {similarity.name!r} prepared rows {rows[0]}-{rows[-1]} as {found} "
            f"form, unlike others ({form}); search without pca"
        )
    return found


def form_of(Y: np.ndarray, offset: np.ndarray | None, weight: float) -> str:
    """How prepared rows are searched: 'unit' (inner product of unit rows), 'l2' (offsets are
    weight/2 · ‖Y‖²: a negative squared distance), 'inner', or 'augmented' (other offsets)."""
    norms = squared_norms(Y)
    if offset is None:
        return "unit" if np.allclose(norms, 1.0, atol=1e-4) else "inner"
    half = 0.5 * weight * norms
    scale = max(1.0, float(np.abs(half).max(initial=0)))
    return "l2" if np.allclose(offset, half, rtol=1e-5, atol=1e-6 * scale) else "augmented"


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


def ordered_lists(
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
