"""Specification of the representation-similarity metrics: `cka`, `rsa` and `knn_jaccard`."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from xmodal import ResultRow
from xmodal.neighbors import knn, overlap, overlap_per_item
from xmodal.params import expand
from xmodal.plugins import get_registry
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.validation import CheckContext
from xmodal_plugins import representation
from xmodal_plugins.representation import jaccard, linear_cka, pair_sample, rsa_score


def hsic_cka(x, y):
    """CKA by its kernel definition: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), H the centring matrix."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))


def orthogonal(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def measure(metric: str, x, y, pred, params: dict) -> list[ResultRow]:
    """The rows the registered `metric` computes (with `params`, defaults filled) on a test split
    whose inputs are `x`, targets `y` and predictions `pred`."""
    probe = Probe(
        {"test": Spaces("test", x, y, pred, ("x",), ("y",))}, NeighborCache(), include_self=False
    )
    spec = get_registry().metrics[metric]
    return list(spec.compute(probe, expand(spec.params, params)[0]))


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 6))
    y = np.tanh(x @ rng.standard_normal((6, 9))) + 0.3 * rng.standard_normal((80, 9))
    return x, y


# --- CKA --------------------------------------------------------------------------------------


def test_cka_of_a_space_with_itself_is_one(xy):
    x, _ = xy
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_the_kernel_definition_in_both_computation_forms(xy, monkeypatch):
    x, y = xy
    want = hsic_cka(x, y)
    assert linear_cka(x, y) == pytest.approx(want, abs=1e-12)  # feature form (N > d)
    assert linear_cka(x[:5], y[:5]) == pytest.approx(hsic_cka(x[:5], y[:5]), abs=1e-12)  # Gram form
    monkeypatch.setattr(representation, "_FLOAT64_WORK", 0)  # force the float32 path
    assert linear_cka(x, y) == pytest.approx(want, abs=1e-5)


def test_cka_is_invariant_to_orthogonal_maps_isotropic_scaling_and_translation(xy):
    x, y = xy
    base = linear_cka(x, y)
    assert linear_cka(x @ orthogonal(6, 1), y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 7.5 * y @ orthogonal(9, 2) + 3.0) == pytest.approx(base, abs=1e-10)


def test_cka_is_not_invariant_to_anisotropic_scaling(xy):
    x, _ = xy
    stretched = x * np.array([10.0, 1, 1, 1, 1, 0.1])
    assert linear_cka(x, stretched) < 0.9


def test_cka_metric_writes_one_row_per_comparison(xy):
    x, y = xy
    pred = x @ np.random.default_rng(3).standard_normal((6, 9))
    rows = {r.comparison: r.value for r in measure("cka", x, y, pred, {})}
    assert rows == pytest.approx(
        {
            "pred-input": hsic_cka(pred, x),
            "pred-target": hsic_cka(pred, y),
            "input-target": hsic_cka(x, y),
        }
    )
    assert all(0 <= v <= 1 for v in rows.values())


# --- RSA --------------------------------------------------------------------------------------


def test_rsa_of_identical_and_rescaled_spaces_is_one(xy):
    x, _ = xy
    assert rsa_score(x, x) == pytest.approx(1.0)
    assert rsa_score(x, 3 * x @ orthogonal(6, 4)) == pytest.approx(1.0)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_exact_rsa_is_spearman_of_the_upper_triangles(xy, similarity):
    x, y = xy
    metric = "cosine" if similarity == "cosine" else "euclidean"
    want = stats.spearmanr(pdist(x, metric), pdist(y, metric)).statistic  # distances: same ranks
    assert rsa_score(x, y, similarity) == pytest.approx(want, abs=1e-12)


def test_sampled_rsa_agrees_with_exact_rsa_and_is_reproducible():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((700, 10))
    y = x @ rng.standard_normal((10, 12)) + 2.0 * rng.standard_normal((700, 12))
    exact = rsa_score(x, y, exact_max_n=700)
    sampled = rsa_score(x, y, exact_max_n=100, pairs=200_000, seed=1)
    assert 0.2 < exact < 0.9
    assert sampled == pytest.approx(exact, abs=0.01)
    assert rsa_score(x, y, exact_max_n=100, pairs=200_000, seed=1) == sampled
    assert rsa_score(x, y, exact_max_n=100, pairs=200_000, seed=2) != sampled


def test_pair_sample_is_uniform_over_distinct_pairs():
    i, j = pair_sample(4, 60_000, seed=0)
    assert (i != j).all()
    pairs = np.minimum(i, j) * 4 + np.maximum(i, j)
    counts = np.bincount(pairs, minlength=16)[[1, 2, 3, 6, 7, 11]]
    assert counts.sum() == 60_000 and np.allclose(counts / 10_000, 1, atol=0.05)


# --- kNN Jaccard --------------------------------------------------------------------------------


def test_jaccard_by_hand():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 2, 9], [7, 8, 0]])
    # row 0: |{2,3}| / |{1,2,3,9}| = 2/4; row 1: 0/6
    assert jaccard(a, b, 3) == pytest.approx((2 / 4 + 0) / 2)
    assert jaccard(a, b, 1) == 0.0  # {1} vs {3}


def test_jaccard_is_a_function_of_the_per_item_overlap_and_never_exceeds_mnno(xy):
    x, y = xy
    a, b = knn(x, 10).indices, knn(y, 10).indices
    for k in (1, 5, 10):
        m = overlap_per_item(a, b, k) / k  # per-item mNNO term
        assert jaccard(a, b, k) == pytest.approx(np.mean(m / (2 - m)))
        assert jaccard(a, b, k) <= overlap(a, b, k)
    assert jaccard(a, a, 10) == 1.0


def test_knn_jaccard_metric_uses_the_probe_neighbour_lists(xy):
    x, y = xy
    pred = x @ np.random.default_rng(6).standard_normal((6, 9))
    rows = measure("knn_jaccard", x, y, pred, {"k": [3, 10]})
    assert len(rows) == 3 * 2
    got = {(r.comparison, r.k): r.value for r in rows}
    want = jaccard(knn(pred, 10).indices, knn(x, 10).indices, 3)
    assert got["pred-input", 3] == pytest.approx(want)
    spec = get_registry().metrics["knn_jaccard"]
    info = CheckContext("metric", "knn_jaccard", n_items=10, split="test", include_self=False)
    assert [key for key, _ in spec.check({"k": [9, 10]}, info)] == ["k"]
    assert list(spec.check({"k": [10]}, attrs.evolve(info, include_self=True))) == []
    assert list(spec.check({"k": [10]}, attrs.evolve(info, n_items=None))) == []  # not known yet
