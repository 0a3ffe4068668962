"""Specification of the `retrieval` metric, checked against brute-force and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.params import expand
from xmodal.plugins import get_registry
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.validation import CheckContext
from xmodal_plugins.retrieval import partner_ranks, relevant_ranks, retrieval_scores


def brute_force(queries, database, ks, similarity="cosine", labels=None, map_at="all"):
    """The definitions, written out loop by loop on the full similarity matrix."""
    q, d = np.asarray(queries, np.float64), np.asarray(database, np.float64)
    if similarity == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        s = q @ d.T
    else:
        s = -((q[:, None, :] - d[None, :, :]) ** 2).sum(axis=2)
    n = len(d)
    orders = [sorted(range(n), key=lambda j, i=i: (-s[i, j], j)) for i in range(n)]
    ranks = np.array([orders[i].index(i) + 1 for i in range(n)])
    out = {("recall", k): float(np.mean(ranks <= k)) for k in ks}
    out[("median_rank", None)] = float(np.median(ranks))
    out[("mrr", None)] = float(np.mean(1 / ranks))
    if labels is not None:
        queries_with_labels = [i for i in range(n) if labels[i]]
        cut = n if map_at == "all" else map_at
        for k in ks:
            out[("label_precision", k)] = float(
                np.mean(
                    [
                        sum(bool(labels[i] & labels[j]) for j in orders[i][:k]) / k
                        for i in queries_with_labels
                    ]
                )
            )
        aps = []
        for i in queries_with_labels:
            hits, precisions = 0, []
            for r, j in enumerate(orders[i][:cut], start=1):
                if labels[i] & labels[j]:
                    hits += 1
                    precisions.append(hits / r)
            aps.append(sum(precisions) / hits if hits else 0.0)
        out[("label_map", None if map_at == "all" else map_at)] = float(np.mean(aps))
    return out


def assert_same(got, want):
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_identical_spaces_retrieve_every_partner_first():
    x = np.random.default_rng(0).standard_normal((50, 8))
    got = retrieval_scores(x, x, [1, 5])
    assert got == {
        ("recall", 1): 1.0,
        ("recall", 5): 1.0,
        ("median_rank", None): 1.0,
        ("mrr", None): 1.0,
    }


def test_a_permutation_of_orthogonal_targets_ranks_by_the_index_tie_rule():
    # Targets are the unit vectors e_0..e_5; query i is e_perm[i]. Query i's best candidate is
    # perm[i] (similarity 1); all others tie at 0, so they follow in index order. Its partner i
    # therefore has rank 1 when perm[i] == i, else 2 + #{j < i : j != perm[i]}.
    perm = np.array([0, 2, 1, 3, 5, 4])
    targets = np.eye(6)
    queries = targets[perm]
    ranks = partner_ranks(queries @ targets.T, np.arange(6))
    expected = [1 if p == i else 2 + sum(1 for j in range(i) if j != p) for i, p in enumerate(perm)]
    assert ranks.tolist() == expected == [1, 3, 3, 1, 6, 6]
    got = retrieval_scores(queries, targets, [1, 3, 5])
    assert got[("recall", 1)] == pytest.approx(2 / 6)
    assert got[("recall", 3)] == pytest.approx(4 / 6)
    assert got[("recall", 5)] == pytest.approx(4 / 6)
    assert got[("median_rank", None)] == 3.0
    assert got[("mrr", None)] == pytest.approx(np.mean([1, 1 / 3, 1 / 3, 1, 1 / 6, 1 / 6]))


def test_duplicate_candidates_tie_and_the_lower_index_ranks_first():
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = partner_ranks(targets @ targets.T, np.arange(3))
    assert ranks.tolist() == [1, 2, 1]  # item 1's own target ties with item 0's, which wins


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("map_at", ["all", 7])
def test_blocked_computation_matches_brute_force(similarity, map_at):
    rng = np.random.default_rng(1)
    n = 60
    targets = rng.standard_normal((n, 5))
    queries = targets + 0.8 * rng.standard_normal((n, 5))
    labels = tuple(
        frozenset(rng.choice(6, size=rng.integers(0, 3), replace=False).tolist()) for _ in range(n)
    )
    ks = [1, 3, 10]
    want = brute_force(queries, targets, ks, similarity, labels, map_at)
    for block_bytes in (4 * n * 7, 10**9):  # blocks of 7 queries, and one block
        got = retrieval_scores(
            queries, targets, ks, similarity, labels, map_at, block_bytes=block_bytes
        )
        assert_same(got, want)


def test_label_precision_and_average_precision_by_hand():
    # Four unit vectors at angles 0°, 36.9°, 53.1°, 78.5°; each query is its own target, so the
    # rankings are by angular distance: query 0 -> 0 1 2 3, query 1 -> 1 2 0 3, query 2 -> 2 1 3 0.
    angles = np.arccos([1.0, 0.8, 0.6, 0.2])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = (frozenset({1}), frozenset({2}), frozenset({1, 2}), frozenset())
    # relevant:  query 0: 0 yes, 1 no, 2 yes, 3 no   P@1 = 1, P@2 = 1/2, AP = (1 + 2/3) / 2
    #            query 1: 1 yes, 2 yes, 0 no, 3 no   P@1 = 1, P@2 = 1,   AP = 1
    #            query 2: 2 yes, 1 yes, 3 no, 0 yes P@1 = 1, P@2 = 1,   AP = (1 + 1 + 3/4) / 3
    #            query 3 has no labels and is left out
    got = retrieval_scores(x, x, [1, 2], labels=labels)
    assert got[("label_precision", 1)] == 1.0
    assert got[("label_precision", 2)] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert got[("label_map", None)] == pytest.approx(
        ((1 + 2 / 3) / 2 + 1 + (1 + 1 + 3 / 4) / 3) / 3
    )
    assert_same(got, brute_force(x, x, [1, 2], labels=labels))
    # mAP@2 divides by the relevant items found in the top 2: query 0 -> 1/1, others -> 1.
    assert retrieval_scores(x, x, [1], labels=labels, map_at=2)[("label_map", 2)] == pytest.approx(
        1.0
    )


def test_items_without_labels_are_left_out_of_label_measures():
    x = np.eye(4)
    got = retrieval_scores(x, x, [1], labels=(frozenset(), frozenset(), frozenset(), frozenset()))
    assert ("label_map", None) not in got and ("label_precision", 1) not in got
    got = retrieval_scores(
        x, x, [1], labels=(frozenset({3}), frozenset(), frozenset(), frozenset())
    )
    assert got[("label_precision", 1)] == 1.0  # one labelled query, which finds its partner


@pytest.mark.parametrize("levels", [4, 1000, 10**7])  # many ties (argsort fallback), a few, none
def test_candidate_and_partner_ranks_follow_the_stable_sort_order(levels):
    rng = np.random.default_rng(2)
    scores = rng.integers(0, levels, size=(30, 200)).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")
    expected = np.empty_like(order)
    np.put_along_axis(
        expected, order, np.arange(1, 201)[None, :], axis=1
    )  # 1-based rank of each column
    relevant = np.zeros(200, dtype=bool)
    relevant[rng.choice(200, size=40, replace=False)] = True
    for b in range(30):
        got = relevant_ranks(scores[b], np.sort(-scores[b]), relevant)
        assert np.array_equal(got, np.sort(expected[b, relevant]))
    partners = rng.integers(0, 200, size=30)
    assert np.array_equal(partner_ranks(scores, partners), expected[np.arange(30), partners])


def test_metric_rows_per_direction_and_check_messages():
    spec = get_registry().metrics["retrieval"]
    assert spec.compares == ("pred-target", "target-pred")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 3))
    pred = y + 0.1 * rng.standard_normal(y.shape)
    labels = tuple(frozenset({i % 3}) for i in range(20))
    spaces = Spaces("test", x, y, pred, ("x",), ("y",), tuple(map(str, range(20))), labels)
    probe = Probe(spaces={"test": spaces}, cache=NeighborCache(), include_self=False)
    params = expand(
        spec.params, {"k": [1, 5], "directions": ["pred-target", "target-pred"], "map_at": 10}
    )[0]
    rows = list(spec.compute(probe, params))
    keys = {(r.metric, r.comparison, r.k) for r in rows}
    assert ("recall", "target-pred", 5) in keys and ("label_map", "pred-target", 10) in keys
    assert {r.metric for r in rows} == {
        "recall",
        "median_rank",
        "mrr",
        "label_precision",
        "label_map",
    }
    assert all(r.similarity == "cosine" and r.split == "test" for r in rows)
    forward = {(r.metric, r.k): r.value for r in rows if r.comparison == "pred-target"}
    assert forward == pytest.approx(brute_force(pred, y, [1, 5], labels=labels, map_at=10))
    problems = list(
        spec.check(
            {**params, "k": [1, 25], "map_at": 30},
            CheckContext("metric", "retrieval", n_items=20, split="test", include_self=False),
        )
    )
    assert [key for key, _ in problems] == ["k", "map_at"]
    assert "at most 20" in problems[0][1]
