"""The approximate `ivf` neighbour backend (faiss IVF lists, the `ann` extra).

- It finds most true neighbours of a clustered space, for cosine, euclidean and a plugin's
  similarity with other offsets, in principal directions or in the space itself, and ranks
  what it found by the full space's similarities.
- Its lists are the same on every run and with any number of faiss threads.
- Ties are broken by the lower index, as in exact search.
- It reads a memory-mapped space, reports progress without changing its lists, is validated
  like any component and stores its sampled recall in a study.

No timings; recall thresholds sit well below what the seeded data give (0.97 or more).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_hook_neighbor_backends import clustered, low_rank, neighbor_study
from xmodal import SimilaritySpec, knn
from xmodal.neighbor_search import Recall
from xmodal.plugins import get_registry

pytest.importorskip("faiss")

from xmodal_plugins import ivf

PARAMS = {"lists": 0, "probes": 8, "pca": 16, "candidates": 0, "iterations": 8, "threads": 1}
SHIFTED = SimilaritySpec(
    name="shifted_dot", prepare=lambda X, sq: (X, 0.1 * np.sqrt(sq)), self_similarity=None
)


def similarities():
    registry = get_registry()
    return [registry.similarities["cosine"], registry.similarities["euclidean"], SHIFTED]


def full_space_scores(X, spec, found):
    Y, offset = spec.prepare(X.astype(np.float64), np.einsum("ij,ij->i", X, X))
    scores = float(spec.weight) * np.einsum("id,ijd->ij", Y, Y[found])
    if offset is not None:
        scores -= offset[:, None] + offset[found]
    return scores


@pytest.mark.parametrize("spec", similarities(), ids=lambda s: s.name)
def test_ivf_finds_most_true_neighbours_and_ranks_them_in_the_full_space(spec):
    X = low_rank(3000, 16, 96, seed=6)
    truth = Recall(np.arange(3000), knn(X, 10, spec).indices)
    found = ivf.ivf_search(X, 10, spec, False, PARAMS)
    assert found.shape == (3000, 10)
    assert not (found == np.arange(3000)[:, None]).any()  # the item itself is left out
    assert truth.at(found, 10) > 0.9
    scores = full_space_scores(X, spec, found)
    assert (np.diff(scores, axis=1) <= 1e-5 * np.abs(scores[:, 1:])).all()
    # With include_self, the item itself comes first, then its 9 best others: the list of
    # k = 9 without it (both search 2 · 9 candidates).
    with_self = ivf.ivf_search(X, 10, spec, True, PARAMS)
    np.testing.assert_array_equal(with_self[:, 0], np.arange(3000))
    np.testing.assert_array_equal(with_self[:, 1:], ivf.ivf_search(X, 9, spec, False, PARAMS))


@pytest.mark.parametrize("spec", similarities(), ids=lambda s: s.name)
def test_ivf_without_pca_partitions_the_space_itself(spec):
    X = clustered(3000, 32, seed=5, clusters=30)
    truth = Recall(np.arange(3000), knn(X, 10, spec).indices)
    found = ivf.ivf_search(X, 10, spec, False, {**PARAMS, "pca": 0})
    assert truth.at(found, 10) > 0.9
    # pca at or above the space's dimension is the space itself.
    np.testing.assert_array_equal(ivf.ivf_search(X, 10, spec, False, {**PARAMS, "pca": 32}), found)


def test_the_lists_are_the_same_on_every_run_and_with_any_number_of_threads():
    X = low_rank(3000, 16, 96, seed=7)
    cosine = get_registry().similarities["cosine"]
    once = ivf.ivf_search(X, 10, cosine, False, PARAMS)
    np.testing.assert_array_equal(ivf.ivf_search(X, 10, cosine, False, PARAMS), once)
    np.testing.assert_array_equal(
        ivf.ivf_search(X, 10, cosine, False, {**PARAMS, "threads": 2}), once
    )


def test_fewer_probes_and_lists_find_fewer_neighbours():
    X = low_rank(3000, 16, 96, seed=8)
    cosine = get_registry().similarities["cosine"]
    truth = Recall(np.arange(3000), knn(X, 10, cosine).indices)
    wide = truth.at(ivf.ivf_search(X, 10, cosine, False, PARAMS), 10)
    narrow = {**PARAMS, "lists": 300, "probes": 1, "candidates": 10}
    assert truth.at(ivf.ivf_search(X, 10, cosine, False, narrow), 10) < wide - 0.05


def test_ties_go_to_the_lower_index_as_in_exact_search():
    """The best columns of a row are those of a stable sort by score, whatever the ties."""
    rng = np.random.default_rng(12)
    s = rng.integers(0, 3, (200, 50)).astype(np.float64)  # three values: ties everywhere
    s[:, 7] = -np.inf
    for count in (1, 4, 10, 30):
        expected = np.sort(np.argsort(-s, axis=1, kind="stable")[:, :count], axis=1)
        np.testing.assert_array_equal(np.sort(ivf._best_columns(s, count), axis=1), expected)
    # Fewer columns than asked: all of them.
    np.testing.assert_array_equal(np.sort(ivf._best_columns(s[:, :3], 5), axis=1)[0], [0, 1, 2])


def test_an_item_with_fewer_candidates_than_k_gets_minus_one_at_the_end():
    X = clustered(40, 8, seed=9, clusters=2)
    cosine = get_registry().similarities["cosine"]
    # 20 lists of about 2 items and one probed: a list's pool holds a few items, too few for 30.
    found = ivf.ivf_search(X, 30, cosine, False, {**PARAMS, "pca": 0, "lists": 20, "probes": 1})
    assert (found == -1).any()
    for row in found:
        filled = row[row >= 0]
        assert (row[len(filled) :] == -1).all() and len(set(filled)) == len(filled)


def test_a_memory_mapped_space_gives_the_lists_of_the_loaded_one(tmp_path):
    X = low_rank(3000, 16, 96, seed=10)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    for name in ("cosine", "euclidean"):
        spec = get_registry().similarities[name]
        np.testing.assert_array_equal(
            ivf.ivf_search(mapped, 10, spec, False, PARAMS),
            ivf.ivf_search(X, 10, spec, False, PARAMS),
        )


def test_ivf_reports_items_searched_then_ranked_and_the_lists_do_not_change(monkeypatch):
    from xmodal.neighbors import report_progress

    X = clustered(2000, 16, seed=11)
    cosine = get_registry().similarities["cosine"]
    whole = ivf.ivf_search(X, 10, cosine, False, {**PARAMS, "pca": 0})
    started, seen = [], []

    def start(total, unit):
        started.append((total, unit))
        return lambda done, total: seen.append((done, total))

    monkeypatch.setattr(ivf, "SEARCH_ROWS", 600)
    with report_progress(start):
        parts = ivf.ivf_search(X, 10, cosine, False, {**PARAMS, "pca": 0})
    assert started == [(4000, "items")]
    assert seen[:4] == [(600, 4000), (1200, 4000), (1800, 4000), (2000, 4000)]  # searched
    assert [done for done, _ in seen[4:]] == sorted(done for done, _ in seen[4:])  # ranked
    assert seen[-1] == (4000, 4000)
    np.testing.assert_array_equal(parts, whole)  # each query's search is its own


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('backend = "ivf"\nlists = 4\nprobes = 8', ["neighbors.probes", "more than lists = 4"]),
        ('backend = "ivf"\nprobes = 0', ["neighbors.probes"]),
        ('backend = "ivf"\nlist = 4', ["neighbors.list", "did you mean 'lists'"]),
    ],
)
def test_ivf_settings_are_validated_like_any_component(xmodal_tester, table, expected):
    result = xmodal_tester.validate(neighbor_study(name="v", neighbors=f"[neighbors]\n{table}"))
    assert result.code != 0
    for text in expected:
        assert text in result.output
    assert "Traceback" not in result.output


def test_ivf_in_a_study_stores_its_sampled_recall(xmodal_tester):
    table = '[neighbors]\nbackend = "ivf"\nrecall_sample = 50\npca = 6'
    result = xmodal_tester.run(neighbor_study(name="i", neighbors=table))
    result.assert_ok()
    recall = result.results(metric="neighbor_recall")
    assert {r["comparison"] for r in recall} == {"input", "target", "predicted"}
    assert all(0.8 <= r["value"] <= 1.0 for r in recall)
