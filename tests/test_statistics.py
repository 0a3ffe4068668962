"""Intervals, paired tests, chance and nulls (xmodal.statistics, docs/statistics.md).

Every neighbour list here comes from integer vectors with exact integer distances and a stable
index tie-break, so no result depends on the last bit of a BLAS product."""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pytest

from xmodal import plugins
from xmodal.components import MetricDisplay, MetricSpec, ResultRow
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.statistics import (
    bootstrap_mean,
    bootstrap_means,
    calibrate,
    chance_overlap,
    holm,
    mean_standard_error,
    neighbour_pairs,
    nested_standard_errors,
    normal_interval,
    normal_p,
    overlap_counts,
    rng_for,
    shuffled_pairing_null,
    sign_flip_p,
)
from xmodal.store import MIGRATIONS, RunRecord, Store, migrate
from xmodal_plugins.metrics import mnno


def knn_exact(A: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows by squared Euclidean distance of integer vectors (exact),
    ties to the lower index."""
    out = np.empty((len(A), k), np.int64)
    for start in range(0, len(A), 256):
        rows = np.arange(start, min(start + 256, len(A)))
        D = ((A[rows, None, :] - A[None, :, :]) ** 2).sum(-1)
        D[np.arange(rows.size), rows] = np.iinfo(np.int64).max
        out[rows] = np.argsort(D, axis=1, kind="stable")[:, :k]
    return out


def noisy_copies(rng, n, d=8, noise_x=15, noise_y=15):
    P = rng.integers(0, 50, size=(n, d))
    X = P + rng.integers(-noise_x, noise_x + 1, size=P.shape)
    Y = P + rng.integers(-noise_y, noise_y + 1, size=P.shape)
    return P, X, Y


# --- the default intervals and test: neighbourhoods recomputed for every sample of items -------


def sample_overlaps(rng, n, k, spaces=2):
    """One sample of n items drawn afresh (P, and X and Y equally noisy copies of it, integer
    vectors), its exact k-NN lists computed for this sample: the per-item overlaps of P with X
    (and of P with Y when spaces = 3) and the items' neighbour pairs in all the spaces."""
    P, X, Y = noisy_copies(rng, n, d=8, noise_x=15, noise_y=15)
    lists = [knn_exact(A, k) for A in (P, X, Y)[:spaces]]
    counts = [overlap_counts(lists[0], other, [k])[:, 0] for other in lists[1:]]
    return counts, neighbour_pairs(lists, k)


def test_neighbourhood_intervals_cover_the_expected_mnno_of_a_new_sample_of_items():
    """600 seeded samples of 100 items, each with its own k-NN lists (k = 5): the 95 %
    neighbourhood intervals cover the expected mNNO of 100 items in >= 90 % of samples (94.5 %
    here; the Monte-Carlo standard error of a coverage near 0.94 over 600 samples is 0.010).
    The expected value is the mean over the same 600 samples: its own error, 0.001, is 4 % of the
    spread of mNNO over samples (0.026), too small to move the coverage. The percentile
    bootstrap, which treats items as independent, covers it in only about 85 % of samples: its
    intervals are too narrow by about a third (docs/statistics.md)."""
    rng = np.random.default_rng(20)
    k, n, samples = 5, 100, 600
    drawn = [sample_overlaps(rng, n, k) for _ in range(samples)]
    target = np.mean([counts[0].mean() for counts, _ in drawn])
    neighbourhood = bootstrap = 0
    for s, ((counts,), pairs) in enumerate(drawn):
        low, high = normal_interval(counts, pairs, 0.95, (0, k))
        neighbourhood += low <= target <= high
        low, high = bootstrap_mean(counts, 500, 0.95, rng_for(s))
        bootstrap += low <= target <= high
    assert neighbourhood / samples >= 0.90
    assert bootstrap / samples < 0.90


def test_neighbourhood_test_false_positive_rate_when_x_and_y_are_exchangeable():
    """1,000 seeded datasets of 80 items where X and Y are equally noisy copies of P, k-NN lists
    computed for each (k = 5): the neighbourhood test of mNNO(P, X) − mNNO(P, Y) rejects at
    alpha = 0.05 in at most 7 % of them (4.9 % here; the Monte-Carlo standard error of a rate
    near 0.05 over 1,000 datasets is 0.007, so 0.07 is three of them above 0.05). The per-item
    sign flip rejects in about 10 % on such data (docs/statistics.md): neighbours' differences
    are correlated."""
    rng = np.random.default_rng(21)
    rejected = 0
    for _ in range(1000):
        (with_x, with_y), pairs = sample_overlaps(rng, 80, 5, spaces=3)
        rejected += normal_p(with_x - with_y, pairs) <= 0.05
    assert rejected / 1000 <= 0.05 + 0.02


def test_the_interval_excludes_zero_exactly_when_p_is_below_alpha():
    rng = np.random.default_rng(22)
    for _ in range(200):
        (with_x, with_y), pairs = sample_overlaps(rng, 40, 3, spaces=3)
        diff = with_x - with_y + rng.integers(-1, 2)  # some with a shift
        low, high = normal_interval(diff, pairs, 0.95)
        assert (normal_p(diff, pairs) < 0.05) == (not low <= 0 <= high)


def test_the_neighbourhood_variance_by_hand():
    """Items 0 and 1 neighbours, item 2 alone; values (1, 3, 5): c = (−2, 0, 2).
    Σ_W c_i c_j = Σ c² + 2 c_0 c_1 = 8; degrees (2, 2, 1), |W| = 5, the shrink factor
    f = 1 − 2·9/(3·5) + 5/9 = 16/45; variance of the mean 8/f/9 = 2.5 (above the
    independent-items 8/(3·2) = 4/3 / 3), standard error √2.5."""
    pairs = np.array([[0, 1]])
    assert mean_standard_error([1, 3, 5], pairs) == pytest.approx(math.sqrt(2.5))
    assert mean_standard_error([1.0, 3.0, 5.0], pairs) == pytest.approx(math.sqrt(2.5))
    # Without pairs: the classical standard error s/√N.
    assert mean_standard_error([1, 3, 5]) == pytest.approx(2 / math.sqrt(3))
    # Never below it: values with negative products on the graph.
    assert mean_standard_error([1, 5, 3], pairs) == pytest.approx(2 / math.sqrt(3))


def test_integer_values_are_exact_and_equal_the_float_computation():
    rng = np.random.default_rng(23)
    lists = [rng.integers(0, 300, size=(300, 7)) for _ in range(3)]
    pairs = neighbour_pairs(lists, 7)
    values = rng.integers(-7, 8, size=300)
    assert mean_standard_error(values, pairs) == pytest.approx(
        mean_standard_error(values.astype(float), pairs), rel=1e-12
    )


def test_neighbour_pairs_are_the_symmetrised_union_without_self():
    a = np.array([[0, 1], [0, 2], [1, 0]])  # include_self style: item 0 lists itself first
    b = np.array([[2, 1], [2, 0], [0, 1]])
    assert neighbour_pairs([a], 1).tolist() == [[0, 1], [1, 2]]
    assert neighbour_pairs([a, b], 1).tolist() == [[0, 1], [0, 2], [1, 2]]
    assert neighbour_pairs([a], 2).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_a_graph_joining_every_item_gives_no_interval_narrower_than_the_bounds():
    """With every pair of items neighbours the centred estimate is 0 whatever the values
    (f = 0): no standard error, the interval is the metric's range and p = 1."""
    pairs = np.array(list(itertools.combinations(range(5), 2)))
    assert math.isnan(mean_standard_error([1, 2, 3, 4, 6], pairs))
    assert normal_interval([1, 2, 3, 4, 6], pairs, 0.95, (0, 10)) == (0.0, 10.0)
    assert normal_p([1, 2, 3, 4, 6], pairs) == 1.0


# --- uncertainty = "items": independent items, neighbour lists held fixed -----------------------


def test_95_percent_intervals_cover_the_population_mean_of_per_item_overlaps():
    """A population of 3,000 items, its per-item overlaps computed once from its neighbour lists;
    400 seeded samples of 150 items each: their 95 % intervals cover the population's mNNO (the
    mean of those per-item overlaps) in at least 90 % of samples."""
    rng = np.random.default_rng(7)
    P, X, _ = noisy_copies(rng, 3000, d=6, noise_x=10)
    k = 10
    per_item = overlap_counts(knn_exact(P, k), knn_exact(X, k), [k])[:, 0]
    target = per_item.mean() / k
    covered = 0
    for sample in range(400):
        items = rng.choice(per_item.size, size=150, replace=False)
        low, high = bootstrap_mean(per_item[items], 1000, 0.95, rng_for(sample))
        covered += low / k <= target <= high / k
    assert covered / 400 >= 0.90


def test_the_multinomial_shortcut_is_the_bootstrap_of_items():
    """Drawing counts per distinct value is the same distribution as drawing items: mean and
    spread of the replicates agree with index sampling (here forced by many distinct values)."""
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, size=400)
    by_class = bootstrap_means(values, 20000, rng_for(1))
    jitter = values + np.arange(values.size) * 1e-9  # every value distinct: index sampling
    by_index = bootstrap_means(jitter, 20000, rng_for(2))
    assert by_class.mean() == pytest.approx(values.mean(), abs=0.01)
    assert by_index.mean() == pytest.approx(values.mean(), abs=0.01)
    assert by_class.std() == pytest.approx(by_index.std(), rel=0.05)
    assert by_class.std() == pytest.approx(values.std() / math.sqrt(values.size), rel=0.05)


# --- the paired test -------------------------------------------------------------------------


def test_sign_flip_false_positive_rate_when_items_are_independent():
    """Per-item overlaps with X and with Y drawn from one population of items whose two
    overlaps are exchangeable (X and Y equally noisy copies of P): at alpha = 0.05 the test
    rejects in at most 7 % of 1,500 samples (the standard error of the rate is 0.006)."""
    rng = np.random.default_rng(3)
    P, X, Y = noisy_copies(rng, 3000, d=6, noise_x=10, noise_y=10)
    k = 10
    nn_p = knn_exact(P, k)
    with_x = overlap_counts(nn_p, knn_exact(X, k), [k])[:, 0]
    with_y = overlap_counts(nn_p, knn_exact(Y, k), [k])[:, 0]
    # Exchangeable by construction: each item's pair is swapped at random once, for good.
    swap = rng.random(with_x.size) < 0.5
    a, b = np.where(swap, with_y, with_x), np.where(swap, with_x, with_y)
    rejected = 0
    for sample in range(1500):
        items = rng.choice(a.size, size=120, replace=False)
        rejected += sign_flip_p(a[items] - b[items], 1000, rng_for(sample)) <= 0.05
    assert rejected / 1500 <= 0.05 + 0.02


def test_paired_test_finds_a_real_difference():
    rng = np.random.default_rng(4)
    P, X, Y = noisy_copies(rng, 150, noise_x=5, noise_y=20)
    nn_p = knn_exact(P, 5)
    d = overlap_counts(nn_p, knn_exact(X, 5), [5])[:, 0]
    d = d - overlap_counts(nn_p, knn_exact(Y, 5), [5])[:, 0]
    assert sign_flip_p(d, 5000, rng_for(0)) < 0.001


def test_sign_flip_p_is_add_one_and_one_for_no_difference():
    assert sign_flip_p(np.zeros(10, int), 100, rng_for(0)) == 1.0
    # 8 items all +1: only the all-plus and all-minus flips are as extreme (2/256).
    p = sign_flip_p(np.ones(8, int), 100_000, rng_for(0))
    assert p == pytest.approx(2 / 256, abs=0.002)
    assert sign_flip_p(np.ones(8, int), 9, rng_for(0)) >= 1 / 10


# --- chance, nulls, calibration, Holm ---------------------------------------------------------


@pytest.mark.parametrize("include_self", [False, True])
def test_the_shuffled_pairing_null_averages_to_the_analytic_chance_exactly(include_self):
    """Over all 720 pairings of 6 items, the mean mNNO is k/(N − 1) (with include_self: the item
    first in both lists, (1 + (k − 1)²/(N − 1))/k), whatever the two spaces' lists."""
    rng = np.random.default_rng(5)
    n, k = 6, 3
    A, B = rng.integers(0, 9, size=(n, 3)), rng.integers(0, 9, size=(n, 3))
    nn_a, nn_b = knn_exact(A, k), knn_exact(B, k)
    if include_self:
        nn_a = np.column_stack([np.arange(n), nn_a[:, : k - 1]])
        nn_b = np.column_stack([np.arange(n), nn_b[:, : k - 1]])
    total = 0.0
    for perm in itertools.permutations(range(n)):
        perm = np.array(perm)
        inverse = np.argsort(perm)
        total += overlap_counts(nn_a, inverse[nn_b[perm]], [k]).sum() / (n * k)
    assert total / math.factorial(n) == pytest.approx(chance_overlap(n, k, include_self))


def test_relabelled_lists_equal_lists_recomputed_on_the_shuffled_rows():
    rng = np.random.default_rng(6)
    A, B = rng.integers(0, 1000, size=(50, 4)), rng.integers(0, 1000, size=(50, 4))
    null = shuffled_pairing_null(knn_exact(A, 5), knn_exact(B, 5), [1, 5], 20, rng_for(9))
    again = rng_for(9)
    for p in range(20):
        perm = again.permutation(50)
        recomputed = overlap_counts(knn_exact(A, 5), knn_exact(B[perm], 5), [1, 5])
        assert null[p] == pytest.approx(recomputed.sum(axis=0) / (50 * np.array([1, 5])))


def test_overlap_counts_for_several_k_equal_overlap_per_item():
    from xmodal import overlap_per_item

    rng = np.random.default_rng(8)
    A, B = rng.integers(0, 5, size=(80, 3)), rng.integers(0, 5, size=(80, 3))  # many ties
    nn_a, nn_b = knn_exact(A, 10), knn_exact(B, 10)
    counts = overlap_counts(nn_a, nn_b, [1, 3, 10])
    for j, k in enumerate([1, 3, 10]):
        assert (counts[:, j] == overlap_per_item(nn_a, nn_b, k)).all()


def reference_calibration(observed, null, alpha, smax):
    """Algorithm 1 of Gröger, Wen & Brbić (2026), as the package calibrated-similarity
    computes it: tau the ceil((1 - alpha)(K + 1))-th order statistic of observed and null."""
    combined = sorted([observed, *null])
    tau = combined[min(max(math.ceil((1 - alpha) * (len(null) + 1)) - 1, 0), len(null))]
    p = (1 + sum(v >= observed for v in null)) / (len(null) + 1)
    return min(max((observed - tau) / max(smax - tau, 1e-12), 0.0), 1.0), p, tau


@pytest.mark.parametrize("observed", [0.05, 0.2, 0.31, 0.9])
def test_calibrate_is_the_published_algorithm(observed):
    null = list(np.random.default_rng(2).uniform(0.1, 0.3, size=99))
    assert calibrate(observed, null, 0.05, 1.0) == pytest.approx(
        reference_calibration(observed, null, 0.05, 1.0)
    )


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.5, float("nan")]
    adjusted = holm(p)
    assert adjusted[:4] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(adjusted[4])


# --- the metric: rows, determinism, checks ----------------------------------------------------


def probe_of(seed: int, n: int = 90) -> Probe:
    rng = np.random.default_rng(11)
    P, X, Y = noisy_copies(rng, n, noise_x=5, noise_y=20)
    spaces = Spaces("test", X.astype(np.float32), Y.astype(np.float32), P.astype(np.float32),
                    ("x",), ("y",))  # fmt: skip
    return Probe({"test": spaces}, NeighborCache(), include_self=False, seed=seed)


PARAMS = {
    "k": [5, 10],
    "similarity": ["euclidean"],
    "uncertainty": "neighbourhood",
    "bootstrap": 500,
    "confidence": 0.95,
    "paired": ["pred-input:pred-target"],
    "permutations": 2000,
    "null_permutations": 30,
}


def mnno_spec() -> MetricSpec:
    """The built-in `mnno` spec, from its plugin alone."""
    from xmodal_plugins.metrics import register_metrics

    specs: list[MetricSpec] = []
    register_metrics(specs.append)
    return next(s for s in specs if s.name == "mnno")


@pytest.mark.parametrize("uncertainty", ["neighbourhood", "items"])
def test_mnno_rows_carry_intervals_tests_chance_and_the_null(uncertainty):
    spec = mnno_spec()
    params = {**PARAMS, "uncertainty": uncertainty}
    rows = list(plugins.checked_rows(spec, mnno(probe_of(0), params)))
    by = {(r.metric, r.comparison, r.k): r for r in rows}
    for comparison in ("pred-input", "pred-target", "input-target"):
        row = by["mnno", comparison, 10]
        assert row.ci_low <= row.value <= row.ci_high
        assert by["mnno_chance", comparison, 10].value == pytest.approx(10 / 89)
        assert {"mnno_null_mean", "mnno_calibrated", "mnno_null_p"} <= {
            m for (m, c, _) in by if c == comparison
        }
    diff = by["mnno_diff", "pred-input:pred-target", 10]
    assert diff.value == pytest.approx(
        by["mnno", "pred-input", 10].value - by["mnno", "pred-target", 10].value
    )
    assert 0 < diff.ci_low <= diff.ci_high  # X is the closer copy of P
    assert by["mnno_diff_p", "pred-input:pred-target", 10].value < 0.01


def test_the_neighbourhood_interval_of_mnno_is_its_standard_error_on_the_neighbour_graph():
    """The `mnno` row's interval is normal_interval of the per-item overlaps with the pairs of
    items that are k-neighbours in either compared space, divided by k."""
    probe = probe_of(0)
    rows = {(r.metric, r.comparison, r.k): r for r in mnno(probe, PARAMS)}
    lists = {
        role: probe.neighbors("test", role, 10, "euclidean") for role in ("predicted", "target")
    }
    counts = overlap_counts(lists["predicted"], lists["target"], [10])[:, 0]
    low, high = normal_interval(counts, neighbour_pairs(list(lists.values()), 10), 0.95, (0, 10))
    row = rows["mnno", "pred-target", 10]
    assert (row.ci_low, row.ci_high) == pytest.approx((low / 10, high / 10))


def test_neighbourhood_intervals_and_p_values_do_not_depend_on_the_seed():
    """They draw nothing: only the shuffled-pairing null does."""
    params = {**PARAMS, "null_permutations": 0}
    assert list(mnno(probe_of(3), params)) == list(mnno(probe_of(4), params))


def test_the_same_seed_gives_the_same_rows_and_another_seed_other_intervals():
    params = {**PARAMS, "uncertainty": "items"}
    first, again = list(mnno(probe_of(3), params)), list(mnno(probe_of(3), params))
    assert first == again
    other = list(mnno(probe_of(4), params))
    assert [r.value for r in other if r.metric == "mnno"] == [
        r.value for r in first if r.metric == "mnno"
    ]
    assert [(r.ci_low, r.ci_high) for r in other] != [(r.ci_low, r.ci_high) for r in first]


def test_uncertainty_none_or_bootstrap_zero_writes_no_interval():
    rows = list(mnno(probe_of(0), {**PARAMS, "uncertainty": "none", "null_permutations": 0}))
    assert all(r.ci_low is None and r.ci_high is None for r in rows)
    assert not [r for r in rows if r.metric == "mnno_diff_p"]
    items = {**PARAMS, "uncertainty": "items", "bootstrap": 0, "null_permutations": 0}
    assert all(r.ci_low is None and r.ci_high is None for r in mnno(probe_of(0), items))


SPEC = MetricSpec(
    name="m",
    compute=lambda probe, params: [],
    value_range=(0.0, 1.0),
    outputs={"m_diff": MetricDisplay(value_range=(-1.0, 1.0))},
)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (ResultRow("test", "m", "x", 0.5, ci_low=0.6, ci_high=0.4), "above ci_high"),
        (ResultRow("test", "m", "x", 0.5, ci_low=0.4), "needs both bounds"),
        (ResultRow("test", "m", "x", 0.5, ci_low=-0.2, ci_high=0.7), "ci_low of m"),
        (ResultRow("test", "m", "x", -0.5), "outside the declared value_range"),
        (ResultRow("test", "m_diff", "x", -1.5), "outside the declared value_range [-1, 1]"),
    ],
)
def test_checked_rows_refuses_broken_intervals_and_ranges(row, message):
    with pytest.raises(plugins.MetricOutputError, match=message.replace("[", r"\[")):
        list(plugins.checked_rows(SPEC, [row]))


def test_a_row_metrics_own_range_and_nan_bounds_pass():
    rows = [
        ResultRow("test", "m_diff", "x", -0.5, ci_low=-0.7, ci_high=-0.3),
        ResultRow("test", "m", "x", 0.5, ci_low=float("nan"), ci_high=float("nan")),
    ]
    assert list(plugins.checked_rows(SPEC, rows)) == rows


# --- the store ---------------------------------------------------------------------------------


def test_a_schema_5_database_upgrades_and_keeps_its_results(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
    )
    for version, sql in enumerate(MIGRATIONS[:5], start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
    con.execute("INSERT INTO results (run_id, split, metric, comparison, value) "
                "VALUES ('r', 'test', 'mnno', 'pred-target', 0.5)")  # fmt: skip
    migrate(con)
    assert con.execute("SELECT value, ci_low, ci_high FROM results").fetchall() == [
        (0.5, None, None)
    ]
    for view in ("current_results", "study_results", "results_summary"):
        columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
        assert {"ci_low", "ci_high"} <= set(columns), view
    con.close()


def test_intervals_are_stored_and_old_spooled_tuples_record_without_one(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    new = ("r1", "m1", "test", "mnno", "pred-target", 10, "cosine", None, 0.5, 0.4, 0.6)
    old = ("r2", "m2", "test", "mnno", "pred-target", 10, "cosine", None, 0.7)
    store.record_many([RunRecord("r1", None, [], [new], []), RunRecord("r2", None, [], [old], [])])
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute(
            "SELECT run_id, value, ci_low, ci_high FROM results ORDER BY run_id"
        ).fetchall() == [("r1", 0.5, 0.4, 0.6), ("r2", 0.7, None, None)]


# --- the fast paths give the same numbers as their definitions -------------------------------


def test_nested_standard_errors_equal_mean_standard_error_on_each_prefix():
    """Columns of integer values, each over a prefix of one pair list (the pairs of smaller k
    first): exactly mean_standard_error of that column and prefix; float values too."""
    rng = np.random.default_rng(3)
    n = 300
    lists = [knn_exact(rng.integers(0, 9, size=(n, 4)), 6) for _ in range(3)]
    pairs = neighbour_pairs(lists, 6)
    pairs = pairs[rng.permutation(len(pairs))]
    ends = [0, 40, len(pairs) // 2, len(pairs), 40]
    values = rng.integers(-5, 6, size=(n, len(ends)))
    got = nested_standard_errors(values, pairs, ends)
    assert got.tolist() == [
        mean_standard_error(values[:, j], pairs[:e]) for j, e in enumerate(ends)
    ]
    floats = values + rng.normal(size=values.shape)
    got = nested_standard_errors(floats, pairs, ends)
    assert got.tolist() == [
        mean_standard_error(floats[:, j], pairs[:e]) for j, e in enumerate(ends)
    ]
    with pytest.raises(ValueError, match="end"):
        nested_standard_errors(values, pairs, [len(pairs) + 1] * len(ends))


@pytest.mark.parametrize("depth", [3, 32, 33])
def test_overlap_counts_agree_with_the_per_item_definition_short_and_long_lists(depth):
    """Lists of at most 32 entries are compared entry by entry, longer ones sorted: both give
    |NN^k(a_i) ∩ NN^k(b_i)| for every item and k."""
    rng = np.random.default_rng(depth)
    n = 200
    a = np.stack([rng.choice(60, depth, replace=False) for _ in range(n)])
    b = np.stack([rng.choice(60, depth, replace=False) for _ in range(n)])
    ks = sorted({1, depth // 2 or 1, depth})
    expected = [[len(set(a[i, :k]) & set(b[i, :k])) for k in ks] for i in range(n)]
    assert overlap_counts(a, b, ks).tolist() == expected


def test_every_neighbourhood_row_is_exactly_its_definition():
    """mnno computes the standard errors of all its rows together (pairs ordered by rank,
    `nested_standard_errors`); each row's interval and p-value must be exactly those of
    normal_interval_and_p on its per-item values with neighbour_pairs of its spaces at its k."""
    from xmodal.statistics import normal_interval_and_p

    probe = probe_of(0, n=150)
    params = {**PARAMS, "k": [1, 4, 10], "null_permutations": 0,
              "paired": ["pred-input:pred-target", "pred-target:input-target"]}  # fmt: skip
    rows = {(r.metric, r.comparison, r.k): r for r in mnno(probe, params)}
    roles = {"pred-input": ("predicted", "input"), "pred-target": ("predicted", "target"),
             "input-target": ("input", "target")}  # fmt: skip
    lists = {
        r: probe.neighbors("test", r, 10, "euclidean") for r in ("predicted", "input", "target")
    }
    for k in params["k"]:
        counts = {c: overlap_counts(lists[a], lists[b], [k])[:, 0] for c, (a, b) in roles.items()}
        for c, spaces in roles.items():
            low, high, _ = normal_interval_and_p(
                counts[c], neighbour_pairs([lists[s] for s in spaces], k), 0.95, (0, k)
            )
            assert (rows["mnno", c, k].ci_low, rows["mnno", c, k].ci_high) == (low / k, high / k)
        for pair in params["paired"]:
            left, right = pair.split(":")
            spaces = sorted({*roles[left], *roles[right]})
            low, high, p = normal_interval_and_p(
                counts[left] - counts[right],
                neighbour_pairs([lists[s] for s in spaces], k),
                0.95,
                (-k, k),
            )
            row = rows["mnno_diff", pair, k]
            assert (row.ci_low, row.ci_high) == (low / k, high / k)
            assert rows["mnno_diff_p", pair, k].value == p
