"""The `retrieval` metric: cross-space retrieval of each item's true partner, as in cross-modal papers.

Query i is item i's vector in one space (by default the predicted vector f(x_i)); the database is
every item of the same split in the other space (by default all target vectors y_1..y_N, the true
partner y_i among them). Candidates are scored by cosine similarity (or negative Euclidean
distance) and ranked best first.

Ties are resolved deterministically by index: the rank of candidate j for query i is

    rank_i(j) = 1 + #{m : s_im > s_ij} + #{m < j : s_im == s_ij}

i.e. a candidate is beaten by every strictly more similar candidate and by every equally similar
candidate with a lower row index. Everything below (true-partner rank, top-k lists, mAP) uses this
one order, so results never depend on sorting algorithms or block sizes beyond float32 rounding.

Rows written per split, direction (comparison) and similarity:

- `recall` (k): fraction of queries whose true partner ranks within the top k.
- `median_rank`: median of the true partner's rank (1 is best; the mean of the two middle ranks
  when N is even).
- `mrr`: mean over queries of 1 / rank of the true partner.
- `label_precision` (k), `label_map` (k = `map_at`, NULL for the full list), only when items carry
  labels: candidate j is *relevant* to query i when their label sets share at least one label.
  precision@k = (relevant among the top k) / k. Average precision over the top K (K = N for "all"):
  AP_i = Σ_{r ≤ K, rel(r)} P_i@r / (relevant among the top K), the definition of the
  cross-modal hashing evaluation code (e.g. DCMH); for K = N it is the textbook AP, whose
  denominator is all relevant candidates; AP_i = 0 when nothing relevant is in the top K. The query's own partner is in the database and counts
  as relevant like any other candidate. Queries with an empty label set are left out of both
  (a query with labels always has at least one relevant candidate: its own partner).

Memory stays O(block · N): queries are processed in blocks whose similarity rows fit in
`BLOCK_BYTES`; the N×N similarity matrix is never held. Label measures need no argsort: each
query row is sorted by value only and the ranks of its relevant candidates are found by binary
search (an equal score at a lower index adds one), which gives precision@k and AP directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import CheckContext, MetricDisplay, MetricSpec, Param, Probe, ResultRow, hookimpl
from xmodal_plugins.support.linalg import matmul

BLOCK_BYTES = 32 * 2**20  # float32 scores per block (label measures hold a sorted copy too)
DIRECTIONS = {"pred-target": ("predicted", "target"), "target-pred": ("target", "predicted")}

PARAMS = {
    "k": Param(
        int, default=[1, 5, 10], many=True, min=1, doc="cut-offs of recall@k and label precision@k"
    ),
    "similarity": Param(
        str,
        default=["cosine"],
        many=True,
        choices=("cosine", "euclidean"),
        doc="scores candidates: cosine, or negative Euclidean distance; rows for each",
    ),
    "directions": Param(
        str,
        default=["pred-target"],
        many=True,
        choices=tuple(DIRECTIONS),
        doc="pred-target: predicted vectors query the targets; target-pred: the reverse",
    ),
    "labels": Param(
        bool, default=True, doc="also write label_precision and label_map when items have labels"
    ),
    "map_at": Param(int, default="all", min=1, also=("all",), doc='mAP cut-off K, or "all"'),
}


def _prepare(
    queries: np.ndarray, database: np.ndarray, similarity: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """float32 query and database matrices whose product, plus an optional bias row, are scores."""
    q = np.asarray(queries, dtype=np.float32)
    d = np.asarray(database, dtype=np.float32)
    if similarity == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return q, d, None
    # -||q - d||² = 2 q·d - ||d||² - ||q||²; the last term is constant within a query's row.
    return 2 * q, d, -(d.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)


def score_blocks(
    queries: np.ndarray,
    database: np.ndarray,
    similarity: str = "cosine",
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, scores) with scores[b, j] = similarity of query start+b to candidate j."""
    q, d, bias = _prepare(queries, database, similarity)
    n = len(d)
    block = max(1, block_bytes // (4 * max(n, 1)))
    for start in range(0, len(q), block):
        scores = matmul(q[start : start + block], d.T)
        if bias is not None:
            scores += bias
        yield start, scores


def partner_ranks(scores: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """1-based rank of candidate partners[b] in each row of scores, ties broken by lower index."""
    rows = np.arange(len(scores))
    own = scores[rows, partners][:, None]
    ranks = 1 + (scores > own).sum(axis=1)
    equal = (scores == own).sum(axis=1)
    for b in np.flatnonzero(equal > 1):  # rare: another candidate ties with the partner
        ranks[b] += np.count_nonzero(scores[b, : partners[b]] == own[b, 0])
    return ranks


def relevant_ranks(row: np.ndarray, ascending_neg: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Sorted 1-based ranks of the relevant candidates (boolean mask) in one row of scores.

    `ascending_neg` is np.sort(-row): values only, as numpy's SIMD sort is far faster than an
    argsort. A candidate's rank is 1 + the number of strictly better scores, found by binary search
    of its (sorted) score, plus the number of equal scores at lower indices, which needs the
    indices only when a relevant candidate's score is tied.
    """
    values = np.sort(-row[relevant])
    better = np.searchsorted(ascending_neg, values, side="left")
    tied = np.searchsorted(ascending_neg, values, side="right") - better > 1
    if not tied.any():
        return 1 + better
    if np.count_nonzero(tied) > 8:  # many ties (e.g. discrete features): rank by a stable sort
        position = np.empty(len(row), dtype=np.int64)
        position[np.argsort(-row, kind="stable")] = np.arange(len(row))
        return np.sort(1 + position[relevant])
    candidates = np.flatnonzero(relevant)
    scores = row[candidates]
    ranks = 1 + np.searchsorted(ascending_neg, -scores, side="left")
    for t in np.flatnonzero(np.isin(scores, -values[tied])):
        ranks[t] += np.count_nonzero(row[: candidates[t]] == scores[t])
    return np.sort(ranks)


def label_index(labels: tuple[frozenset[int], ...]) -> dict[int, np.ndarray]:
    """For each label, the (increasing) indices of the items carrying it."""
    members: dict[int, list[int]] = {}
    for i, item_labels in enumerate(labels):
        for label in item_labels:
            members.setdefault(label, []).append(i)
    return {label: np.asarray(items, dtype=np.int64) for label, items in members.items()}


def relevant_mask(
    query_labels: frozenset[int], index: dict[int, np.ndarray], out: np.ndarray
) -> np.ndarray:
    """Fill `out` (bool, N) with which candidates share at least one label with the query."""
    out[:] = False
    for label in query_labels:
        if label in index:
            out[index[label]] = True
    return out


def label_measures(
    relevant_ranks: np.ndarray, ks: list[int], map_k: int
) -> tuple[list[float], float]:
    """Precision@k for each k and AP over the top map_k, from the sorted ranks of the relevant items."""
    r = relevant_ranks
    precisions = [np.count_nonzero(r <= k) / k for k in ks]
    r = r[r <= map_k]
    ap = float((np.arange(1, len(r) + 1) / r).sum() / len(r)) if len(r) else 0.0
    return precisions, ap


def retrieval_scores(
    queries: np.ndarray,
    database: np.ndarray,
    ks: list[int],
    similarity: str = "cosine",
    labels: tuple[frozenset[int], ...] | None = None,
    map_at: int | str = "all",
    block_bytes: int = BLOCK_BYTES,
) -> dict[tuple[str, int | None], float]:
    """Every retrieval measure for query i whose true partner is database item i.

    Returns {(measure, k): value}: ("recall", k), ("median_rank", None), ("mrr", None) and, when
    `labels` is given and some item has labels, ("label_precision", k) for k <= N and
    ("label_map", K, or None for "all").
    """
    n = len(database)
    if len(queries) != n:
        raise ValueError(
            f"{len(queries)} queries but {n} database items: partners must be row-aligned"
        )
    ranks = np.empty(n, dtype=np.int64)
    map_k = n if map_at == "all" else min(int(map_at), n)
    label_ks = [k for k in ks if k <= n]
    index = label_index(labels) if labels is not None else {}
    mask = np.zeros(n, dtype=bool)
    precision_sums, ap_sum, n_queries = np.zeros(len(label_ks)), 0.0, 0
    for start, scores in score_blocks(queries, database, similarity, block_bytes):
        rows = np.arange(start, start + len(scores))
        ranks[rows] = partner_ranks(scores, rows)
        if not index:
            continue
        labelled = [b for b, i in enumerate(rows) if labels[i]]
        if not labelled:
            continue
        ascending_neg = np.sort(-scores[labelled], axis=1)
        for row_sorted, b in zip(ascending_neg, labelled, strict=True):
            relevant = relevant_mask(labels[rows[b]], index, mask)
            ranked = relevant_ranks(scores[b], row_sorted, relevant)
            precisions, ap = label_measures(ranked, label_ks, map_k)
            precision_sums += precisions
            ap_sum += ap
            n_queries += 1
    out: dict[tuple[str, int | None], float] = {}
    for k in ks:
        out[("recall", k)] = float((ranks <= k).mean())
    out[("median_rank", None)] = float(np.median(ranks))
    out[("mrr", None)] = float((1.0 / ranks).mean())
    if n_queries:
        for k, total in zip(label_ks, precision_sums, strict=True):
            out[("label_precision", k)] = float(total / n_queries)
        out[("label_map", None if map_at == "all" else int(map_at))] = ap_sum / n_queries
    return out


def retrieval(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """Recall@k, median rank, MRR and (with labels) label precision@k and mAP, per split."""
    ks = sorted(set(params["k"]))
    for split in probe.splits:
        spaces = probe.spaces[split]
        if spaces.predicted.shape[1] != spaces.target.shape[1]:
            return  # e.g. the identity run: its predictions are not in the target space
        labels = spaces.labels if params["labels"] else None
        for similarity in params["similarity"]:
            for comparison in params["directions"]:
                query_role, database_role = DIRECTIONS[comparison]
                values = retrieval_scores(
                    spaces.of(query_role),
                    spaces.of(database_role),
                    ks,
                    similarity,
                    labels,
                    params["map_at"],
                )
                for (metric, k), value in values.items():
                    yield ResultRow(split, metric, comparison, value, k=k, similarity=similarity)


def check_retrieval(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    n = context.n_items
    if n is None:  # asked again once the split sizes are known
        return
    for k in params["k"]:
        if k > n:
            yield (
                "k",
                (
                    f"k = {k} is larger than the {context.split} split: it has {n} items to retrieve "
                    f"from, so k can be at most {n}"
                ),
            )
    if params["map_at"] != "all" and params["map_at"] > n:
        yield (
            "map_at",
            (
                f"map_at = {params['map_at']} is larger than the {context.split} split ({n} items); "
                f'use at most {n}, or "all"'
            ),
        )


@hookimpl
def register_metrics(register: Callable[[MetricSpec], None]) -> None:
    register(
        MetricSpec(
            name="retrieval",
            compute=retrieval,
            params=PARAMS,
            description=(
                "cross-space retrieval of each item's true partner: recall@k, median rank, MRR; "
                "with labels, label precision@k and mAP"
            ),
            compares=tuple(DIRECTIONS),
            value_range=(0.0, float("inf")),
            check=check_retrieval,
            outputs={
                "recall": MetricDisplay("Recall@k", digits=3, higher_is_better=True),
                "median_rank": MetricDisplay("Median rank", digits=1, higher_is_better=False),
                "mrr": MetricDisplay("MRR", digits=3, higher_is_better=True),
                "label_precision": MetricDisplay(
                    "Label precision@k", digits=3, higher_is_better=True
                ),
                "label_map": MetricDisplay("Label mAP", digits=3, higher_is_better=True),
            },
        )
    )
