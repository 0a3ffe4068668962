"""Specification of `similarity_correlation`: Spearman of pair similarities vs human ratings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from xmodal.errors import XmodalError
from xmodal.params import expand, validate_params
from xmodal.plugins import get_registry
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.validation import CheckContext
from xmodal_plugins import ratings_metric
from xmodal_plugins.ratings_metric import covered_pairs
from xmodal_plugins.support.word_ratings import read_ratings

WORDS = ("cat", "Dog", "car", "truck", "apple", "pear")
RATINGS = [
    ("cat", "dog", 8.5),
    ("car", "truck", 8.0),
    ("apple", "pear", 7.5),
    ("cat", "car", 1.0),
    ("dog", "apple", 0.5),
    ("truck", "pear", 0.8),
    ("cat", "unicorn", 3.0),  # not an item: lowers coverage
    ("zebra", "horse", 9.0),  # neither is an item
]


@pytest.fixture
def probe():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    y = rng.standard_normal((6, 5))
    pred = y + 0.5 * rng.standard_normal((6, 5))
    spaces = Spaces("test", x, y, pred, ("x",), ("y",), ids=WORDS)
    return Probe({"test": spaces}, NeighborCache(), include_self=False)


@pytest.fixture
def ratings_tsv(tmp_path):
    path = tmp_path / "toy.tsv"
    lines = ["word1\tword2\tscore", "# a comment", ""] + [f"{a}\t{b}\t{s}" for a, b, s in RATINGS]
    path.write_text("\n".join(lines) + "\n")
    return path


def cos(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def reference(space, ids, ratings):
    index = {w.lower(): i for i, w in enumerate(ids)}
    found = [(index[a], index[b], s) for a, b, s in ratings if a in index and b in index]
    sims = [cos(space[i], space[j]) for i, j, _ in found]
    return stats.spearmanr(sims, [s for *_, s in found]).statistic, len(found) / len(ratings)


def test_read_ratings_file_skips_header_comments_and_blank_lines(ratings_tsv):
    assert read_ratings(ratings_tsv) == RATINGS


def test_a_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("cat\tdog\t8\ncat\tdog\n")
    with pytest.raises(XmodalError, match=r"bad\.tsv:2"):
        read_ratings(path)


def test_pairs_are_matched_case_insensitively_first_occurrence_wins():
    i, j, s = covered_pairs(("Cat", "dog", "cat"), [("cat", "DOG", 2.0), ("cat", "cow", 1.0)])
    assert (i.tolist(), j.tolist(), s.tolist()) == ([0], [1], [2.0])
    i, _, _ = covered_pairs(("Cat", "dog", "cat"), [("cat", "dog", 2.0)], casefold=False)
    assert i.tolist() == [2]


def test_spearman_and_coverage_match_scipy_on_a_toy_list(probe, ratings_tsv):
    spec = get_registry().metrics["similarity_correlation"]
    params = expand(spec.params, {"ratings_file": str(ratings_tsv)})[0]
    rows = {(r.metric, r.comparison): r for r in spec.compute(probe, params)}
    spaces = probe.spaces["test"]
    for role, short in (("input", "input"), ("predicted", "pred"), ("target", "target")):
        rho, coverage = reference(spaces.of(role), WORDS, RATINGS)
        assert rows["spearman", f"{short}-toy"].value == pytest.approx(rho)
        assert rows["spearman", f"{short}-toy"].similarity == "cosine"
        assert rows["coverage", f"{short}-toy"].value == coverage == 6 / 8
    assert len(rows) == 6


def test_a_space_that_orders_pairs_like_the_humans_scores_one(monkeypatch):
    # 2-d unit vectors whose angles make cosine similarity increase with the human score.
    angles = {"a": 0.0, "b": 0.2, "c": 0.9, "d": 2.0}
    x = np.array([[np.cos(t), np.sin(t)] for t in angles.values()])
    ratings = [("a", "b", 9.0), ("a", "c", 5.0), ("a", "d", 1.0), ("b", "d", 2.0)]
    probe = Probe(
        {"s": Spaces("s", x, x, x, ("x",), ("x",), ids=tuple(angles))},
        NeighborCache(),
        include_self=False,
    )
    spec = get_registry().metrics["similarity_correlation"]
    ratings_metric._cached_benchmark.cache_clear()
    monkeypatch.setattr(ratings_metric, "load_ratings", {"toybench": ratings}.__getitem__)
    try:
        params = expand(spec.params, {"ratings": "toybench", "spaces": "input"})[0]
        rows = {(r.metric, r.comparison): r.value for r in spec.compute(probe, params)}
    finally:
        ratings_metric._cached_benchmark.cache_clear()
    assert rows == {
        ("spearman", "input-toybench"): pytest.approx(1.0),
        ("coverage", "input-toybench"): 1.0,
    }


def test_fewer_than_two_covered_pairs_give_nan_not_an_error(probe, tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text("cat\tdog\t3\nfoo\tbar\t1\n")
    spec = get_registry().metrics["similarity_correlation"]
    rows = list(
        spec.compute(probe, expand(spec.params, {"ratings_file": str(path), "spaces": "input"})[0])
    )
    assert np.isnan(rows[0].value) and rows[1].value == 0.5


def test_check_asks_for_a_ratings_source_and_existing_files(tmp_path):
    spec = get_registry().metrics["similarity_correlation"]
    info = CheckContext("metric", "similarity_correlation")
    assert [key for key, _ in spec.check(expand(spec.params, {})[0], info)] == ["ratings"]
    params = expand(spec.params, {"ratings_file": str(tmp_path / "missing.tsv")})[0]
    [(key, message)] = spec.check(params, info)
    assert key == "ratings_file" and "is not a file" in message


def test_check_names_an_unknown_benchmark_before_anything_runs():
    spec = get_registry().metrics["similarity_correlation"]
    info = CheckContext("metric", "similarity_correlation")
    [(key, message)] = spec.check(expand(spec.params, {"ratings": "simlexx"})[0], info)
    assert key == "ratings" and "simlexx" in message


def fisher_reference(rho, n):
    """tanh(atanh(rho) ± 1.96 · sqrt(1.06 / (n - 3))), written out independently."""
    half = stats.norm.ppf(0.975) * np.sqrt(1.06 / (n - 3))
    return np.tanh(np.arctanh(rho) - half), np.tanh(np.arctanh(rho) + half)


def many_pairs_probe(n_words, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_words, 3))
    ids = tuple(f"w{i}" for i in range(n_words))
    spaces = Spaces("s", x, x, x, ("x",), ("x",), ids=ids)
    return Probe({"s": spaces}, NeighborCache(), include_self=False), ids, x


def test_spearman_carries_the_fisher_interval_over_the_rated_pairs(tmp_path):
    probe, ids, x = many_pairs_probe(12)
    rng = np.random.default_rng(2)
    pairs = [(ids[a], ids[b]) for a in range(12) for b in range(a + 1, 12)][:40]
    lines = [f"{a}\t{b}\t{cos(x[int(a[1:])], x[int(b[1:])]) + rng.normal():.6f}" for a, b in pairs]
    path = tmp_path / "noisy.tsv"
    path.write_text("\n".join(lines) + "\n")
    spec = get_registry().metrics["similarity_correlation"]
    params = expand(spec.params, {"ratings_file": str(path), "spaces": "input"})[0]
    assert params["interval"] == "fisher"  # the default
    [row] = [r for r in spec.compute(probe, params) if r.metric == "spearman"]
    low, high = fisher_reference(row.value, n=40)
    assert 0 < abs(row.value) < 1
    assert (row.ci_low, row.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert row.ci_low < row.value < row.ci_high


def test_interval_none_leaves_the_bounds_null(probe, ratings_tsv):
    spec = get_registry().metrics["similarity_correlation"]
    params = expand(spec.params, {"ratings_file": str(ratings_tsv), "interval": "none"})[0]
    rows = list(spec.compute(probe, params))
    assert rows and all(r.ci_low is None and r.ci_high is None for r in rows)


def test_three_or_fewer_pairs_give_no_interval_and_no_error(probe, tmp_path):
    path = tmp_path / "three.tsv"
    path.write_text("cat\tdog\t8\ncar\ttruck\t5\napple\tpear\t1\n")
    spec = get_registry().metrics["similarity_correlation"]
    params = expand(spec.params, {"ratings_file": str(path), "spaces": "input"})[0]
    [row] = [r for r in spec.compute(probe, params) if r.metric == "spearman"]
    assert np.isfinite(row.value)
    assert row.ci_low is None and row.ci_high is None
    assert ratings_metric.fisher_interval(0.5, 3) == (None, None)
    assert ratings_metric.fisher_interval(float("nan"), 100) == (None, None)


def test_the_interval_is_a_declared_choice():
    spec = get_registry().metrics["similarity_correlation"]
    assert spec.params["interval"].choices == ("fisher", "none")
    [problem] = validate_params(spec.params, {"interval": "bootstrap"}, "metrics[0]")
    assert "metrics[0].interval" in str(problem) and "fisher" in str(problem)


def test_the_fisher_interval_covers_the_population_rho_about_95_percent_of_the_time():
    # Sanity of the standard error on bivariate normal samples (population Spearman
    # rho_s = 6/pi · asin(r/2)); 400 samples of 50 pairs: coverage within a loose band.
    rng = np.random.default_rng(3)
    r = 0.5
    rho_s = 6 / np.pi * np.arcsin(r / 2)
    cov = [[1, r], [r, 1]]
    hits = 0
    for _ in range(400):
        a, b = rng.multivariate_normal([0, 0], cov, size=50).T
        low, high = ratings_metric.fisher_interval(stats.spearmanr(a, b).statistic, 50)
        hits += low <= rho_s <= high
    assert 0.90 <= hits / 400 <= 0.99
