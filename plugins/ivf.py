"""Approximate neighbour backend `ivf`: a partition of the space into k-means lists (faiss's
IndexIVFFlat), searched in a few principal directions and ranked exactly in the full space.

Needs the `ann` extra (faiss-cpu), imported when a list is first searched. How it works:

1. **Projection.** The similarity's form (cosine: unit rows; euclidean; other inner products,
   augmented: `xmodal_plugins.support.approximate`) in `pca` principal directions of a seeded
   sample (`project`), read from the space in row blocks; `pca = 0` (or at least the form's
   dimension) keeps the prepared space itself.
2. **Lists.** k-means (`iterations` Lloyd steps, torch products) on a seeded sample of
   TRAIN_PER_LIST items per list, then every item in the list of its nearest centroid (L2 for
   distance forms, the largest inner product otherwise, as faiss's quantizer assigns).
3. **Candidates.** faiss searches each item's `candidates` nearest in the `probes` lists whose
   centroids are nearest to it.
4. **Ranking.** The items of one list are ranked together: their candidates, and the list's
   items themselves, are prepared once from the full space and scored with one matrix product
   (s = weight · Y_i·Y_j − offset_i − offset_j), in parts of RANK_BYTES of scores, and each
   item keeps its best k by (−score, index). An item thus also sees what its list's other
   items found.

Every step is seeded, so the same space gives the same lists on every run on one machine.
faiss's threads (`threads`) split the queries, each searched alone, so the lists do not depend
on their number either; the k-means and probe products run on torch's threads, whose number a
study does not change between runs. Recall is measured against exact search on a sample and
stored, like any approximate backend's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import NeighborBackendSpec, Param, SimilaritySpec, hookimpl, neighbor_progress
from xmodal_plugins.support.approximate import (
    DISTANCE_FORMS,
    SEARCH_ROWS,
    candidates_wanted,
    check_weight,
    faiss_module,
    faiss_threads,
    index_vectors,
    prepared,
    project,
)

TRAIN_PER_LIST = 16  # k-means sample: items per list (docs/performance.md: recall and time)
# Centroid products held at a time: small enough for the allocator to reuse (fresh memory costs
# ~5 ms per MB at first touch here; docs/performance.md).
ASSIGN_BYTES = 8 * 2**20
RANK_BYTES = 32 * 2**20  # scores of a list's items against its pool held at a time
SEED = 0
ITEMS_PER_LIST = 64  # lists = 0: about this many items per list


def ivf_search(
    X: np.ndarray, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> np.ndarray:
    """Each item's k approximate nearest neighbours (see the module docstring)."""
    faiss = faiss_module("ivf")
    n = len(X)
    others = k - 1 if include_self else k
    if others <= 0:
        return np.arange(n, dtype=np.int64)[:, None][:, :k]
    weight = check_weight(similarity, "ivf")
    items, queries, l2, sq = _searched_space(X, similarity, weight, int(params["pca"]))
    lists = min(int(params["lists"]) or max(1, round(n / ITEMS_PER_LIST)), n)
    with faiss_threads(faiss, int(params["threads"])):
        centroids = _kmeans(items, lists, int(params["iterations"]), l2)
        probed, distances = _probes(queries, centroids, l2, min(int(params["probes"]), lists))
        # Items are their own queries but for the augmented form (another last coordinate).
        assignment = probed[:, 0] if queries is items else _nearest(items, centroids, l2)
        wanted = candidates_wanted(params, others, n)
        progress = neighbor_progress(2 * n, "items")
        members = _members(assignment, lists)
        found = _candidates(
            items, queries, centroids, members, probed, distances, l2, wanted, progress
        )
    del items, queries, centroids, probed, distances
    best = _ranked_by_list(X, similarity, weight, sq, found, members, others, progress)
    return np.hstack([np.arange(n)[:, None], best]) if include_self else best


def _searched_space(
    X: np.ndarray, similarity: SimilaritySpec, weight: float, dims: int
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray | None]:
    """(items, queries, by L2?, X's squared row norms if known): the vectors of the lists."""
    projection = project(X, similarity, weight, dims) if dims > 0 else None
    if projection is not None:
        return projection.items, projection.queries, projection.by_l2, projection.squared_norms
    items, queries, form = index_vectors(X, similarity, weight)
    return items, queries, form in DISTANCE_FORMS, None


def _centroid_scores(
    vectors: np.ndarray, centroids: np.ndarray, l2: bool
) -> Iterator[tuple[int, Any, Any]]:
    """(start, scores, rows) for blocks of vectors: each row's score against every centroid,
    larger nearer (x·c − ‖c‖²/2 for L2, which ranks as −‖x − c‖²; x·c otherwise), computed as
    one product of [x, 1] and [c, −‖c‖²/2 or 0] into buffers of ASSIGN_BYTES. The buffers are
    reused: what is yielded holds until the next block only."""
    import torch

    n, dims = vectors.shape
    extra = -0.5 * np.einsum("ij,ij->i", centroids, centroids) if l2 else np.zeros(len(centroids))
    augmented = torch.from_numpy(np.hstack([centroids, extra[:, None]]).astype(np.float32))
    block = min(n, max(1, ASSIGN_BYTES // (4 * len(centroids))))
    rows = np.ones((block, dims + 1), np.float32)
    out = np.empty((block, len(centroids)), np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        rows[:m, :dims] = vectors[start : start + m]
        torch.mm(torch.from_numpy(rows[:m]), augmented.T, out=torch.from_numpy(out[:m]))
        yield start, out[:m], rows[:m, :dims]


def _nearest(vectors: np.ndarray, centroids: np.ndarray, l2: bool) -> np.ndarray:
    """Each vector's list: its nearest centroid."""
    labels = np.empty(len(vectors), np.int64)
    for start, scores, _ in _centroid_scores(vectors, centroids, l2):
        # numpy's argmax: 6× faster than torch's on these rows (2,000-3,000 columns) here
        labels[start : start + len(scores)] = scores.argmax(1)
    return labels


def _probes(
    queries: np.ndarray, centroids: np.ndarray, l2: bool, probes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lists, their distances as faiss's quantizer gives them) of each query's `probes`
    nearest centroids, nearest first."""
    import torch

    lists = np.empty((len(queries), probes), np.int64)
    distances = np.empty((len(queries), probes), np.float32)
    for start, scores, rows in _centroid_scores(queries, centroids, l2):
        best, which = torch.from_numpy(scores).topk(probes, dim=1)
        stop = start + len(scores)
        lists[start:stop] = which.numpy()
        distances[start:stop] = best.numpy()
        if l2:  # ‖x − c‖² = ‖x‖² − 2 (x·c − ‖c‖²/2)
            distances[start:stop] *= -2
            distances[start:stop] += np.einsum("ij,ij->i", rows, rows)[:, None]
    return lists, distances


def _kmeans(items: np.ndarray, lists: int, iterations: int, l2: bool) -> np.ndarray:
    """`lists` centroids from `iterations` Lloyd steps on a seeded sample of the items, started
    at sampled items; a list left empty keeps its centroid."""
    import torch

    rng = np.random.default_rng(SEED)
    n = len(items)
    sample = items[np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * lists), replace=False))]
    centroids = sample[np.sort(rng.choice(len(sample), lists, replace=False))].copy()
    rows = torch.from_numpy(sample).double()
    for _ in range(iterations):
        labels = _nearest(sample, centroids, l2)
        counts = np.bincount(labels, minlength=lists)
        sums = torch.zeros((lists, items.shape[1]), dtype=torch.float64)
        sums.index_add_(0, torch.from_numpy(labels), rows)
        sums = sums.numpy()
        filled = counts > 0
        centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return centroids


def _members(assignment: np.ndarray, lists: int) -> list[np.ndarray]:
    """Each list's items, in ascending order."""
    order = np.argsort(assignment, kind="stable")
    bounds = np.searchsorted(assignment[order], np.arange(lists + 1))
    return [order[bounds[cell] : bounds[cell + 1]] for cell in range(lists)]


def _candidates(
    items: np.ndarray,
    queries: np.ndarray,
    centroids: np.ndarray,
    members: list[np.ndarray],
    probed: np.ndarray,
    distances: np.ndarray,
    l2: bool,
    wanted: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """faiss's `wanted` nearest items of each query in its `probed` lists (-1: none)."""
    faiss = faiss_module("ivf")
    dims, lists = items.shape[1], len(centroids)
    quantizer = faiss.IndexFlatL2(dims) if l2 else faiss.IndexFlatIP(dims)
    quantizer.add(centroids)
    metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexIVFFlat(quantizer, dims, lists, metric)
    for cell, ids in enumerate(members):
        if len(ids):
            codes = np.ascontiguousarray(items[ids]).view(np.uint8)  # held while faiss copies
            index.invlists.add_entries(cell, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    index.ntotal = len(items)
    index.is_trained = True
    index.nprobe = probed.shape[1]
    index.parallel_mode = 3  # search_preassigned alone: queries in parallel (mode 0: one thread)
    found = np.empty((len(queries), wanted), np.int64)
    scores = np.empty((min(SEARCH_ROWS, len(queries)), wanted), np.float32)
    for start in range(0, len(queries), SEARCH_ROWS):
        part = slice(start, min(start + SEARCH_ROWS, len(queries)))
        rows = part.stop - part.start
        index.search_preassigned(
            queries[part], wanted, probed[part], distances[part], D=scores[:rows], I=found[part]
        )
        if progress is not None:
            progress(part.stop, 2 * len(queries))
    return found


def _ranked_by_list(
    X: np.ndarray,
    similarity: SimilaritySpec,
    weight: float,
    sq: np.ndarray | None,
    found: np.ndarray,
    members: list[np.ndarray],
    others: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Each item's `others` best by (−score, index) of the candidates of its list and the
    list's items, scored in the full space; -1 at the end where there are fewer."""
    n = len(X)
    best = np.full((n, others), -1, np.int64)
    done = reported = 0
    for items in members:
        if not len(items):
            continue
        pool = np.union1d(found[items].ravel(), items)  # sorted: a column's rank is its index's
        pool = pool[pool >= 0]
        Yp, off_p = prepared(X, pool, similarity, sq)
        at = np.searchsorted(pool, items)  # the list's items among the pool's columns
        part = max(1, RANK_BYTES // (8 * len(pool)))  # a list of thousands: its rows in parts
        for first in range(0, len(items), part):
            rows = slice(first, first + part)
            best[items[rows]] = _best_of_pool(Yp, off_p, weight, pool, at[rows], others)
        done += len(items)
        if progress is not None and (done - reported >= SEARCH_ROWS or done == n):
            progress(n + done, 2 * n)
            reported = done
    return best


def _best_of_pool(
    Yp: np.ndarray,
    off_p: np.ndarray | None,
    weight: float,
    pool: np.ndarray,
    at: np.ndarray,
    others: int,
) -> np.ndarray:
    """The `others` best of the pool (sorted item indices, prepared rows Yp) for the pool's
    items at columns `at`, by (−score, index), each leaving itself out; -1 where there are
    fewer."""
    s = Yp[at] @ Yp.T
    if off_p is not None:  # in float64: the offsets may be far larger than the differences
        s = weight * s.astype(np.float64) - off_p[at, None] - off_p[None, :]
    s[np.arange(len(at)), at] = -np.inf  # the item itself
    chosen = _best_columns(s, others)
    chosen.sort(axis=1)  # ascending columns: a stable sort by score then breaks ties by index
    top = np.take_along_axis(s, chosen, axis=1)
    ranked = np.take_along_axis(chosen, np.argsort(-top, axis=1, kind="stable"), axis=1)
    best = np.full((len(at), others), -1, np.int64)
    ranked_scores = np.take_along_axis(s, ranked, axis=1)
    best[:, : ranked.shape[1]] = np.where(np.isneginf(ranked_scores), -1, pool[ranked])
    return best


def _best_columns(s: np.ndarray, count: int) -> np.ndarray:
    """Each row's `count` largest columns, ties taken by the lower column, in no order."""
    if s.shape[1] <= count:
        return np.broadcast_to(np.arange(s.shape[1]), s.shape).copy()
    chosen = np.argpartition(-s, count - 1, axis=1)[:, :count]
    threshold = np.take_along_axis(s, chosen, axis=1).min(axis=1)
    # argpartition takes any of the entries equal to the threshold; rows with such ties at the
    # cut are sorted in full, stably, so that the lower index wins, as in exact search.
    tied = (s >= threshold[:, None]).sum(axis=1) > count
    for row in np.flatnonzero(tied):
        chosen[row] = np.argsort(-s[row], kind="stable")[:count]
    return chosen


def check_params(params: Mapping[str, Any], context: Any) -> Iterator[tuple[str, str]]:
    if params["lists"] and params["probes"] > params["lists"]:
        yield (
            "probes",
            f"probes = {params['probes']} is more than lists = {params['lists']}; at most every "
            "list can be probed",
        )


@hookimpl
def register_neighbor_backends(register: Callable[[NeighborBackendSpec], None]) -> None:
    register(
        NeighborBackendSpec(
            name="ivf",
            search=ivf_search,
            exact=False,
            check=check_params,
            params={
                "lists": Param(
                    int,
                    default=0,
                    min=0,
                    max=1_000_000,
                    doc="k-means lists the space is split into; 0: one per 64 items",
                ),
                "probes": Param(
                    int,
                    default=12,
                    min=1,
                    max=1_000_000,
                    doc="lists searched for each item's candidates, its nearest centroids' lists",
                ),
                "pca": Param(
                    int,
                    default=64,
                    min=0,
                    max=65536,
                    doc="principal directions (of a seeded sample of 50,000 items) the lists are "
                    "made and searched in; 0: the space itself. Candidates are ranked in the full "
                    "space either way",
                ),
                "candidates": Param(
                    int,
                    default=0,
                    min=0,
                    max=4096,
                    doc="candidates per item from its probed lists; 0: 2·k",
                ),
                "iterations": Param(
                    int, default=8, min=0, max=1000, doc="k-means (Lloyd) steps for the lists"
                ),
                "threads": Param(
                    int,
                    default=0,
                    min=0,
                    max=1024,
                    doc="faiss threads; 0: faiss's default. The lists do not depend on it",
                ),
            },
            description="approximate: k-means lists searched by faiss IVF in principal directions, "
            "ranked exactly (needs the `ann` extra); recall is measured and stored",
        )
    )
