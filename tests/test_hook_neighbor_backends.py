"""The `register_neighbor_backends` hook and a study's `[neighbors]` table.

- The built-in `exact` backend is `xmodal.knn`, bit for bit, and the default: a study without
  `[neighbors]` and one naming `exact` share their measurements.
- A third-party backend registered in-process runs a study end to end. An approximate backend's
  lists are scored against exact search on a seeded sample, and the recall is stored as
  `neighbor_recall` results beside the metric's rows; its measurements have their own ids.
- `[neighbors]` is validated like any component (did-you-mean, types, bounds, the backend's
  own check).
- The `hnsw` backend (faiss, the `ann` extra) finds most true neighbours of a clustered space;
  with `pca` it searches a projection and ranks the candidates exactly in the full space. It
  reports progress (items added, then searched) without changing its lists.

No timings; references are brute force (float64 products of small data, no near-ties).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import study_toml
from xmodal import NeighborBackendSpec, Param, SimilaritySpec, hookimpl, knn
from xmodal.default_neighbor_backends import exact_search
from xmodal.neighbor_search import Recall, exact_rows
from xmodal.plugins import get_registry

# --- the built-in exact backend -------------------------------------------------------------------


def clustered(n: int, d: int, seed: int, clusters: int = 20) -> np.ndarray:
    """Items around `clusters` centres: the neighbour structure real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, d))).astype(
        np.float32
    )


def test_exact_is_the_default_backend_registered_by_xmodal_itself():
    registry = get_registry()
    spec = registry.neighbor_backends["exact"]
    assert spec.exact and spec.default
    assert registry.owners[("neighbor_backends", "exact")] == "xmodal.default_neighbor_backends"
    assert [n for n, s in registry.neighbor_backends.items() if s.default] == ["exact"]


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_the_exact_backend_returns_the_lists_of_knn_bit_for_bit(similarity, include_self):
    X = clustered(700, 24, seed=1)
    X[10] = X[3]  # copies: ties that knn breaks by the lower index
    spec = get_registry().similarities[similarity]
    got = exact_search(X, 9, spec, include_self, {})
    np.testing.assert_array_equal(got, knn(X, 9, similarity, include_self).indices)


def test_a_sampled_exact_search_agrees_with_knn_on_its_rows():
    X = clustered(500, 16, seed=2)
    rows = np.array([0, 7, 99, 499])
    for similarity in ("cosine", "euclidean"):
        spec = get_registry().similarities[similarity]
        for include_self in (False, True):
            expected = knn(X, 6, similarity, include_self).indices[rows]
            np.testing.assert_array_equal(exact_rows(X, rows, 6, spec, include_self), expected)


def test_a_sampled_exact_search_in_many_blocks_is_brute_force_on_its_rows(monkeypatch):
    """Blocks of sampled rows and of items (uneven at the end) merged into one list per row."""
    import xmodal.neighbor_search as neighbor_search

    monkeypatch.setattr(neighbor_search, "_BLOCK_ROWS", 7)
    monkeypatch.setattr(neighbor_search, "_BLOCK_COLUMNS", 50)
    X = clustered(333, 12, seed=3)
    rows = np.array([0, 5, 49, 50, 51, 100, 299, 332])
    shifted = SimilaritySpec(
        name="shifted_dot", prepare=lambda X, sq: (X, 0.1 * np.sqrt(sq)), self_similarity=None
    )
    for spec in (*(get_registry().similarities[s] for s in ("cosine", "euclidean")), shifted):
        for include_self in (False, True):
            expected = brute_force(X, 8, spec, include_self, {})[rows]
            np.testing.assert_array_equal(exact_rows(X, rows, 8, spec, include_self), expected)


def test_recall_counts_the_shared_neighbours_of_the_sampled_items():
    exact = np.array([[1, 2, 3], [0, 2, 3]])
    recall = Recall(rows=np.array([0, 1]), exact=exact)
    lists = np.array([[1, 2, 4], [2, 0, 4], [9, 9, 9]])
    assert recall.at(lists, 3) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert recall.at(lists, 1) == pytest.approx((1 + 0) / 2)  # order matters within the prefix
    assert Recall.unstack(recall.stacked()).at(lists, 2) == recall.at(lists, 2)


# --- third-party backends in a study ---------------------------------------------------------------


def brute_force(X, k, similarity, include_self, params):
    """A third party's backend: float64 brute force, the same lists as exact search here."""
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    Y, offset = similarity.prepare(X, sq)
    Y = np.asarray(Y, np.float64)
    S = similarity.weight * (Y @ Y.T)
    if offset is not None:
        S = S - np.asarray(offset)[:, None] - np.asarray(offset)[None, :]
    n = len(X)
    np.fill_diagonal(S, np.inf if include_self else -np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(n), S.shape), -S), axis=1)
    return order[:, :k]


def sloppy(X, k, similarity, include_self, params):
    """The exact lists with the last neighbour replaced by the item farthest down the list."""
    lists = knn(X, min(k + params["skip"], len(X) - 1), similarity, include_self).indices
    return np.hstack([lists[:, : k - 1], lists[:, -1:]])


class Backends:
    """A plugin with four backends: brute force (approximate and exact), a sloppy one and a
    broken one."""

    @staticmethod
    @hookimpl
    def register_neighbor_backends(register):
        register(NeighborBackendSpec(name="brute", search=brute_force, exact=False))
        register(NeighborBackendSpec(name="brute_exact", search=brute_force, exact=True))
        register(
            NeighborBackendSpec(
                name="sloppy",
                search=sloppy,
                params={"skip": Param(int, default=5, min=1, doc="how far down the stand-in is")},
            )
        )
        register(NeighborBackendSpec(name="broken", search=lambda *a: np.zeros((3, 1), int)))


def neighbor_study(name: str, neighbors: str = "") -> str:
    """The tiny study named `name` on clustered items, one linear mapping, mnno under two
    similarities and regression; then `neighbors`, TOML text (a [neighbors] table, or none)."""
    base = study_toml(
        study={"name": name, "seeds": None},
        data={"directions": "forward", "params": {"n_items": 300, "clusters": 6}},
        mapping=[{"name": "linear"}],
        loss=None,
        train={"epochs": 2, "batch_size": None},
        probes={"splits": ["train", "test"], "identity": True},
        metric=[
            {"name": "mnno", "k": [1, 5, 10], "similarity": ["cosine", "euclidean"]},
            {"name": "regression"},
        ],
    )
    return f"{base}\n{neighbors}\n"


def owed(tester, study):
    """(metric, measurement id) of every measurement the study's current version owes."""
    return {
        (r["metric"], r["measurement_id"])
        for r in tester.query(
            "SELECT m.metric, m.measurement_id FROM study_measurements sm "
            "JOIN measurements m USING (measurement_id) "
            "JOIN current_studies c ON c.name = sm.study AND c.hash = sm.study_hash "
            "WHERE sm.study = ?",
            study,
        )
    }


def values(result, metric="mnno"):
    return {
        (r["run_id"], r["result_split"], r["comparison"], r["k"], r["similarity"]): r["value"]
        for r in result.results(metric=metric)
    }


def test_a_study_without_neighbors_and_one_naming_exact_share_their_measurements(
    xmodal_tester,
):
    first = xmodal_tester.run(neighbor_study(name="a", neighbors=""))
    first.assert_ok()
    second = xmodal_tester.run(neighbor_study(name="a", neighbors='[neighbors]\nbackend = "exact"'))
    second.assert_ok()
    assert len(owed(xmodal_tester, "a")) == 2 * len(first.runs())  # mnno and regression
    assert {m["status"] for m in second.measurements()} == {"finished"}
    assert "trained" not in second.out and "measured" not in second.out  # all cached
    assert not second.results(metric="neighbor_recall")


def test_a_brute_force_backend_from_a_plugin_runs_a_study_and_stores_its_recall(xmodal_tester):
    xmodal_tester.register(Backends, name="backends")
    exact = xmodal_tester.run(neighbor_study(name="exact", neighbors=""))
    exact.assert_ok()
    brute = xmodal_tester.run(
        neighbor_study(name="brute", neighbors='[neighbors]\nbackend = "brute"')
    )
    brute.assert_ok()
    assert values(brute) == values(exact)  # the same lists, so the same mNNO
    # Approximate: its own measurement ids for mnno (measured again), not for regression.
    ids, again = owed(xmodal_tester, "exact"), owed(xmodal_tester, "brute")
    assert {m for m, _ in again - ids} == {"mnno"}
    assert {m for m, _ in again & ids} == {"regression"}
    # One recall row per split, space, k and similarity of the lists mnno used: all 1.0 here.
    recall = brute.results(metric="neighbor_recall")
    runs = {r["run_id"] for r in brute.runs()}
    expected = {
        (run, split, space, k, sim)
        for run in runs
        for split in ("train", "test")
        for space in ("input", "target", "predicted")
        for k in (1, 5, 10)
        for sim in ("cosine", "euclidean")
    }
    got = {
        (r["run_id"], r["result_split"], r["comparison"], r["k"], r["similarity"]) for r in recall
    }
    assert got == expected
    assert {r["value"] for r in recall} == {1.0}
    # An exact third-party backend shares the built-in's measurements.
    same = xmodal_tester.run(
        neighbor_study(name="exact", neighbors='[neighbors]\nbackend = "brute_exact"')
    )
    same.assert_ok()
    assert owed(xmodal_tester, "exact") == ids


def test_recall_below_one_is_measured_and_bounds_the_change_in_mnno(xmodal_tester):
    xmodal_tester.register(Backends, name="backends")
    exact = xmodal_tester.run(neighbor_study(name="exact", neighbors=""))
    sloppy_ = xmodal_tester.run(
        neighbor_study(
            name="sloppy", neighbors='[neighbors]\nbackend = "sloppy"\nrecall_sample = 40'
        )
    )
    sloppy_.assert_ok()
    recall = {
        (r["run_id"], r["result_split"], r["comparison"], r["k"], r["similarity"]): r["value"]
        for r in sloppy_.results(metric="neighbor_recall")
    }
    # The stand-in is the 15th neighbour: never among the first 10, so recall@k = (k-1)/k at the
    # largest k searched (10), and 1 for the prefixes k = 1, 5.
    assert {v for key, v in recall.items() if key[3] == 10} == {0.9}
    assert {v for key, v in recall.items() if key[3] < 10} == {1.0}
    # |ΔmNNO| ≤ (1 − recall_A) + (1 − recall_B) (docs/performance.md, "Approximate neighbours").
    before, after = values(exact), values(sloppy_)
    roles = {"pred-target": ("predicted", "target"), "input-target": ("input", "target")}
    checked = 0
    for (run, split, comparison, k, sim), value in after.items():
        if comparison not in roles:
            continue
        a, b = roles[comparison]
        exact_value = next(
            v
            for (r, s, c, kk, si), v in before.items()
            if (s, c, kk, si) == (split, comparison, k, sim) and r == run
        )
        bound = (1 - recall[(run, split, a, k, sim)]) + (1 - recall[(run, split, b, k, sim)])
        assert abs(value - exact_value) <= bound + 1e-12
        checked += 1
    assert checked


def test_a_backend_returning_a_wrong_shape_fails_only_the_measurements_that_need_it(
    xmodal_tester,
):
    xmodal_tester.register(Backends, name="backends")
    result = xmodal_tester.run(
        neighbor_study(name="b", neighbors='[neighbors]\nbackend = "broken"')
    )
    measured = {m["metric"]: m for m in result.measurements()}
    assert measured["regression"]["status"] == "finished"
    assert measured["mnno"]["status"] == "failed"
    assert "neighbour backend 'broken' returned int64 (3, 1)" in measured["mnno"]["error"]


def test_run_ids_do_not_depend_on_the_neighbour_backend(xmodal_tester):
    xmodal_tester.register(Backends, name="backends")
    plain = xmodal_tester.plan(neighbor_study(name="p", neighbors="")).assert_ok().out
    brute = xmodal_tester.plan(
        neighbor_study(name="p", neighbors='[neighbors]\nbackend = "brute"')
    ).assert_ok()
    assert plain == brute.out


# --- [neighbors] validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            'backend = "exakt"',
            [
                "neighbors.backend",
                "'exakt' is not a registered neighbour backend",
                "did you mean 'exact'",
            ],
        ),
        ("recal_sample = 10", ["neighbors.recal_sample", "did you mean 'recall_sample'"]),
        ("recall_sample = 0", ["neighbors.recall_sample"]),
        ('recall_seed = "a"', ["neighbors.recall_seed"]),
        (
            "M = 8",
            [
                "neighbors.M",
                "is not a [neighbors] setting nor a parameter of neighbour backend 'exact'",
                "'M' is a parameter of neighbour backend hnsw",
            ],
        ),
        (
            'backend = "hnsw"\nM = 32\nef_construction = 8',
            ["neighbors.ef_construction", "smaller than M = 32"],
        ),
        ('backend = "hnsw"\nef_search = 0', ["neighbors.ef_search"]),
        ('backend = "hnsw"\ncandidates = 40', ["neighbors.candidates", "set pca = m"]),
        ('backend = "hnsw"\npca = -1', ["neighbors.pca"]),
    ],
)
def test_neighbors_is_validated_like_any_component(xmodal_tester, table, expected):
    result = xmodal_tester.validate(neighbor_study(name="v", neighbors=f"[neighbors]\n{table}"))
    assert result.code != 0
    for text in expected:
        assert text in result.output
    assert "Traceback" not in result.output


def test_neighbors_written_as_a_list_of_tables_is_refused(xmodal_tester):
    study = neighbor_study(name="v", neighbors='[[neighbors]]\nbackend = "exact"')
    result = xmodal_tester.validate(study)
    assert result.code != 0 and "one [neighbors] table" in result.output


def test_a_backend_parameter_may_not_be_a_neighbors_setting():
    with pytest.raises(ValueError, match="'recall_sample' are \\[neighbors\\] settings"):
        NeighborBackendSpec(
            name="x", search=brute_force, params={"recall_sample": Param(int, default=1)}
        )


# --- the approximate hnsw backend (faiss) ------------------------------------------------------------


def test_hnsw_finds_most_true_neighbours_of_a_clustered_space():
    pytest.importorskip("faiss")
    from xmodal_plugins.ann import hnsw_search

    registry = get_registry()
    params = {"M": 16, "ef_construction": 40, "ef_search": 32, "threads": 1}
    X = clustered(3000, 32, seed=5, clusters=30)
    for similarity in ("cosine", "euclidean"):
        spec = registry.similarities[similarity]
        exact = knn(X, 10, similarity).indices
        approx = hnsw_search(X, 10, spec, False, params)
        assert approx.shape == (3000, 10)
        assert not (approx == np.arange(3000)[:, None]).any()  # the item itself is left out
        recall = Recall(np.arange(3000), exact).at(approx, 10)
        assert recall > 0.9, (similarity, recall)
        with_self = hnsw_search(X, 10, spec, True, params)
        np.testing.assert_array_equal(with_self[:, 0], np.arange(3000))
    # A plugin's similarity with other offsets is searched through augmented vectors.
    shifted = SimilaritySpec(
        name="shifted_dot",
        prepare=lambda X, sq: (X, 0.1 * np.sqrt(sq)),
        self_similarity=None,
    )
    exact = knn(X, 10, shifted).indices
    recall = Recall(np.arange(3000), exact).at(hnsw_search(X, 10, shifted, False, params), 10)
    assert recall > 0.9


def low_rank(n: int, rank: int, d: int, seed: int) -> np.ndarray:
    """A clustered space of `rank` dimensions seen in `d`, with a little noise in all of them."""
    rng = np.random.default_rng(seed + 1)
    basis = rng.standard_normal((rank, d)).astype(np.float32) / np.sqrt(rank)
    noise = 0.02 * rng.standard_normal((n, d)).astype(np.float32)
    return clustered(n, rank, seed, clusters=30) @ basis + noise


def test_hnsw_with_pca_searches_a_projection_and_ranks_exactly_in_the_full_space():
    pytest.importorskip("faiss")
    from xmodal_plugins.ann import hnsw_search

    registry = get_registry()
    params = {"M": 16, "ef_construction": 40, "ef_search": 32, "threads": 1, "candidates": 0}
    X = low_rank(3000, 16, 96, seed=6)
    shifted = SimilaritySpec(
        name="shifted_dot", prepare=lambda X, sq: (X, 0.1 * np.sqrt(sq)), self_similarity=None
    )
    for spec in (registry.similarities["cosine"], registry.similarities["euclidean"], shifted):
        exact = knn(X, 10, spec)
        truth = Recall(np.arange(3000), exact.indices)
        found = hnsw_search(X, 10, spec, False, {**params, "pca": 16})
        assert found.shape == (3000, 10)
        assert not (found == np.arange(3000)[:, None]).any()
        assert truth.at(found, 10) > 0.9, spec.name
        # Ranked by the full space's similarities (computed in float32), not the projection's.
        Y, offset = spec.prepare(X.astype(np.float64), np.einsum("ij,ij->i", X, X))
        scores = float(spec.weight) * np.einsum("id,ijd->ij", Y, Y[found])
        if offset is not None:
            scores -= offset[:, None] + offset[found]
        assert (np.diff(scores, axis=1) <= 1e-5 * np.abs(scores[:, 1:])).all(), spec.name
        # Two directions cannot hold a 16-dimensional space's neighbourhoods: the projection
        # is what is searched.
        assert truth.at(hnsw_search(X, 10, spec, False, {**params, "pca": 2}), 10) < 0.6
    cosine = registry.similarities["cosine"]
    with_self = hnsw_search(X, 10, cosine, True, {**params, "pca": 16})
    np.testing.assert_array_equal(with_self[:, 0], np.arange(3000))
    # One thread: the same lists every time; `pca` at or above the space's dimension searches the
    # space itself.
    once = hnsw_search(X, 10, cosine, False, {**params, "pca": 16, "candidates": 30})
    again = hnsw_search(X, 10, cosine, False, {**params, "pca": 16, "candidates": 30})
    np.testing.assert_array_equal(once, again)
    np.testing.assert_array_equal(
        hnsw_search(X, 10, cosine, False, {**params, "pca": 96}),
        hnsw_search(X, 10, cosine, False, {**params, "pca": 0}),
    )


def test_hnsw_with_pca_reads_a_memory_mapped_space_in_blocks(tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    from xmodal_plugins import ann
    from xmodal_plugins.support import approximate

    params = {"M": 16, "ef_construction": 40, "ef_search": 32, "threads": 1, "candidates": 0}
    X = low_rank(3000, 16, 96, seed=7)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    for name in ("cosine", "euclidean"):
        spec = get_registry().similarities[name]
        loaded = ann.hnsw_search(X, 10, spec, False, {**params, "pca": 16})
        np.testing.assert_array_equal(
            ann.hnsw_search(mapped, 10, spec, False, {**params, "pca": 16}), loaded
        )
        # Blocks that do not divide the rows: the same neighbours, but for the last bits of
        # products computed in other block shapes (which may reorder a near-tie).
        monkeypatch.setattr(approximate, "BLOCK_ROWS", 700)
        monkeypatch.setattr(ann, "RESCORE_BYTES", 100_000)
        blocked = ann.hnsw_search(mapped, 10, spec, False, {**params, "pca": 16})
        monkeypatch.undo()
        assert Recall(np.arange(3000), loaded).at(blocked, 10) > 0.98
        assert Recall(np.arange(3000), knn(X, 10, spec).indices).at(blocked, 10) > 0.9


def test_hnsw_reports_its_items_added_then_searched_and_the_lists_do_not_change(monkeypatch):
    pytest.importorskip("faiss")
    from xmodal.neighbors import report_progress
    from xmodal_plugins import ann

    params = {"M": 16, "ef_construction": 40, "ef_search": 32, "threads": 1, "pca": 0}
    X = clustered(2000, 16, seed=8)
    spec = get_registry().similarities["cosine"]
    whole = ann.hnsw_search(X, 10, spec, False, params)
    started, seen = [], []

    def start(total, unit):
        started.append((total, unit))
        return lambda done, total: seen.append((done, total))

    monkeypatch.setattr(ann, "SEARCH_ROWS", 600)  # 4 parts: 600, 600, 600, 200
    with report_progress(start):
        parts = ann.hnsw_search(X, 10, spec, False, params)
    assert started == [(4000, "items")]
    assert seen == [(2000, 4000), (2600, 4000), (3200, 4000), (3800, 4000), (4000, 4000)]
    np.testing.assert_array_equal(parts, whole)  # each query's search is its own


def test_hnsw_in_a_study_stores_its_sampled_recall(xmodal_tester):
    pytest.importorskip("faiss")
    study = neighbor_study(name="h", neighbors='[neighbors]\nbackend = "hnsw"\nrecall_sample = 50')
    result = xmodal_tester.run(study)
    result.assert_ok()
    recall = result.results(metric="neighbor_recall")
    assert recall and all(0.9 <= r["value"] <= 1.0 for r in recall)
    assert {r["comparison"] for r in recall} == {"input", "target", "predicted"}


def test_hnsw_with_pca_in_a_study_stores_the_recall_of_its_projected_search(xmodal_tester):
    pytest.importorskip("faiss")
    table = '[neighbors]\nbackend = "hnsw"\nrecall_sample = 50\npca = 6\ncandidates = 30'
    result = xmodal_tester.run(neighbor_study(name="p", neighbors=table))
    result.assert_ok()
    recall = result.results(metric="neighbor_recall")
    assert {r["comparison"] for r in recall} == {"input", "target", "predicted"}
    assert all(0.5 <= r["value"] <= 1.0 for r in recall)
    # The projection is a parameter of the lists: its measurements are not plain hnsw's.
    xmodal_tester.run(neighbor_study(name="q", neighbors=table.replace("pca = 6", "pca = 5")))
    assert {m for m in owed(xmodal_tester, "p") if m[0] == "mnno"}.isdisjoint(
        owed(xmodal_tester, "q")
    )


def test_recall_reaches_the_results_from_worker_processes(tmp_path):
    """Input and target lists are computed in the driver and shipped to the workers with their
    recall samples; the predicted lists are computed in the workers: same rows either way.
    (An installed backend: workers load the installed plugins, not in-process ones.)"""
    pytest.importorskip("faiss")
    from xmodal.testing import XmodalTester

    study = neighbor_study(name="w", neighbors='[neighbors]\nbackend = "hnsw"\nrecall_sample = 30')
    rows = []
    for where, args in (("local", ()), ("pool", ("--executor", "process", "--workers", "2"))):
        with XmodalTester(tmp_path / where) as tester:
            result = tester.run(study, *args)
            result.assert_ok()
            rows.append(sorted(
                (r["run_id"], r["result_split"], r["comparison"], r["k"], r["similarity"],
                 r["value"])
                for r in result.results(metric="neighbor_recall")
            ))  # fmt: skip
    assert rows[0] and rows[0] == rows[1]
