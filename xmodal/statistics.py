"""Uncertainty over items, paired tests, chance levels and permutation nulls (docs/statistics.md).

Every function is seeded through the `numpy.random.Generator` it is given (`rng_for` derives one
from a run's seed and labels), so a result is the same on every run of the same study.
Statistics of integer-valued per-item quantities (neighbour overlaps and their differences) are
computed in integer arithmetic, so no result depends on the last bit of a floating-point sum.

- `neighbour_pairs`: the pairs of items that are neighbours in any of several spaces.
- `mean_standard_error`: standard error of a mean over items whose values are correlated along
  those pairs (the neighbourhood-graph variance; independent items without pairs).
- `nested_standard_errors`: the same for several columns, each over a prefix of one pair list.
- `normal_interval`, `normal_p`: the normal interval and two-sided p-value from that error.
- `bootstrap_mean`: percentile bootstrap interval of a mean over independent items.
- `sign_flip_p`: two-sided sign-flip permutation p-value of a mean paired difference.
- `overlap_counts`: per-item neighbour overlaps for several k at once.
- `shuffled_pairing_null`: mNNO with the pairing shuffled, from the same neighbour lists.
- `calibrate`: the null-calibrated score, add-one p-value and threshold of Gröger, Wen & Brbić.
- `chance_overlap`: the analytic chance level of mNNO^k.
- `holm`: Holm's step-down adjustment of p-values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "bootstrap_mean",
    "calibrate",
    "chance_overlap",
    "holm",
    "mean_standard_error",
    "neighbour_pair_ranks",
    "neighbour_pairs",
    "nested_standard_errors",
    "normal_interval",
    "normal_interval_and_p",
    "normal_p",
    "overlap_counts",
    "rng_for",
    "shuffled_pairing_null",
    "sign_flip_p",
]

# At most this many distinct values: the bootstrap draws class counts (exact, O(B × classes)).
# More: it draws item indices in blocks of about this many (B × N) entries.
MAX_CLASSES = 512
_BLOCK = 1 << 22
# Lists at most this long: overlaps by comparing every pair of entries of a row (K² per item).
_COMPARE_DEPTH = 32


def rng_for(seed: int, *labels: object) -> np.random.Generator:
    """A generator determined by `seed` and `labels` (strings or integers), e.g.
    `rng_for(run_seed, "test", "cosine", 10, "pred-target")`: each row of a run gets its own
    stream, and the same stream on every machine and every rerun."""
    words = [int(seed) % 2**64]
    for label in labels:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            words.append(int(label) % 2**64)
        else:
            words.append(zlib.crc32(str(label).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _as_vector(values: object, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    if v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
    return v


def _integral(v: np.ndarray) -> bool:
    if v.dtype.kind in "biu":
        return True
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.abs(v).max() < 2**40)


# --- the neighbourhood-graph variance (docs/statistics.md, "Intervals and tests") -------------


def neighbour_pairs(lists: Sequence[np.ndarray], k: int) -> np.ndarray:
    """The pairs {i, j}, i < j, of items that are among each other's k nearest neighbours in at
    least one of `lists` (the union of their k-NN graphs, symmetrised): an E × 2 int64 array,
    sorted. An item listed as its own neighbour (`include_self`) adds no pair.

    lists: N × K neighbour index arrays of the same N items, K >= k."""
    arrays = [np.asarray(a) for a in lists]
    if not arrays or any(a.ndim != 2 or a.shape[0] != arrays[0].shape[0] for a in arrays):
        raise ValueError("neighbour_pairs needs N × K neighbour arrays of the same N items")
    if k < 1 or any(a.shape[1] < k for a in arrays):
        raise ValueError(f"neighbour_pairs: k = {k} must be in [1, K] of every array")
    n = arrays[0].shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    codes = []
    for a in arrays:
        cols = a[:, :k].astype(np.int64).ravel()
        low, high = np.minimum(rows, cols), np.maximum(rows, cols)
        keep = low != high
        codes.append(low[keep] * n + high[keep])
    unique = np.unique(np.concatenate(codes))
    return np.stack([unique // n, unique % n], axis=1) if n else np.zeros((0, 2), np.int64)


def neighbour_pair_ranks(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of items that are neighbours in one of `lists` at the lists' full depth K,
    with, per pair and list, the smallest k at which they are k-neighbours there (in either
    direction; K + 1 when never): (pairs E × 2, ranks E × len(lists)). The pairs of
    `neighbour_pairs(lists[s] for s in S, k)` are those whose smallest rank over S is <= k, so
    one sort serves every k and every choice of spaces."""
    arrays = [np.asarray(a) for a in lists]
    if not arrays or any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError("neighbour_pair_ranks needs N × K neighbour arrays of one shape")
    n, depth = arrays[0].shape
    spaces = len(arrays)
    item = np.arange(n, dtype=np.int64)[:, None]
    # One sortable key per listed pair {i, j}, i < j: ((i·N + j)·spaces + list)·K + rank − 1,
    # so that one sort (no unique/inverse, no scatter-minimum) puts each pair's entries
    # together, list by list, the smallest rank first.
    keys = []
    for s, a in enumerate(arrays):
        cols = a.astype(np.int64)
        key = np.minimum(item, cols) * (n * spaces * depth)
        key += np.maximum(item, cols) * (spaces * depth)
        key += s * depth + np.arange(depth, dtype=np.int64)
        self_listed = cols == item  # an item listed as its own neighbour adds no pair
        keys.append(key[~self_listed] if self_listed.any() else key.ravel())
    key = np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    if key.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, spaces), np.int64)
    listed = key // depth  # pair code × spaces + list
    first = np.ones(key.size, bool)
    np.not_equal(listed[1:], listed[:-1], out=first[1:])  # each (pair, list)'s smallest rank
    at = np.flatnonzero(first)
    listed = np.take(listed, at)
    smallest = np.take(key, at) % depth + 1
    code = listed // spaces
    new = np.ones(code.size, bool)
    np.not_equal(code[1:], code[:-1], out=new[1:])
    unique = np.take(code, np.flatnonzero(new))
    out = np.full((unique.size, spaces), depth + 1, np.int64)
    row = np.cumsum(new, dtype=np.int64) - 1
    np.put(out, row * spaces + (listed - code * spaces), smallest)
    pairs = np.empty((unique.size, 2), np.int64)
    np.floor_divide(unique, n, out=pairs[:, 0])
    np.subtract(unique, pairs[:, 0] * n, out=pairs[:, 1])
    return pairs, out


def _graph_quadratic(v: np.ndarray, pairs: np.ndarray, degree: np.ndarray) -> tuple[float, float]:
    """(N² · Σ_{(i,j) ∈ W} c_i c_j, N² · Σ_i c_i²), c = v − mean(v), W the ordered pairs of
    `pairs` in both directions plus every (i, i). Integer values (overlaps and their
    differences) are summed in integer arithmetic: exact, the same on every machine."""
    n = v.size
    size = n + 2 * len(pairs)  # |W| = Σ degree
    left, right = pairs[:, 0], pairs[:, 1]
    if _integral(v) and float(np.abs(v).max()) ** 2 * size < 2.0**62:
        x = v.astype(np.int64)
        total = int(x.sum())
        squares = int((x * x).sum())
        products = squares + 2 * int((x[left] * x[right]).sum())  # Σ_W x_i x_j
        weighted = int((degree * x).sum())  # Σ_i degree_i x_i = ½ Σ_W (x_i + x_j)
        graph = n * n * products - 2 * n * total * weighted + total * total * size
        alone = n * n * squares - n * total * total
        return float(graph), float(alone)
    c = v.astype(np.float64) - v.astype(np.float64).mean()
    graph = float((c * c).sum() + 2 * (c[left] * c[right]).sum())
    return graph * n * n, float((c * c).sum()) * n * n


def mean_standard_error(values: object, pairs: object = None) -> float:
    """Standard error of the mean of `values` over N items whose values may be correlated when
    the items are neighbours (a pair of `pairs`, e.g. from `neighbour_pairs`) and are
    uncorrelated otherwise.

    Var(mean) = (1/N²) Σ_i Σ_j Cov(v_i, v_j), the sum kept over i = j and the neighbour pairs
    (both orders) and each covariance estimated by c_i·c_j (c = v − mean): the graph
    ("network") HAC estimate. Centring on the sample mean shrinks it by the factor
    f = 1 − 2 Σ_i d_i² / (N |W|) + |W| / N² (d_i = 1 + item i's neighbour count, |W| = Σ d_i)
    when every covariance on the graph is the same; the estimate is divided by f, and never
    taken below the independent-items variance Σ c_i² / (N (N − 1)) (to which it reduces without
    pairs). docs/statistics.md derives this and says when it holds. NaN values give NaN; so do
    fewer than 2 items, and a graph so dense that f <= 0."""
    v = _as_vector(values, "values")
    n = v.size
    if (v.dtype.kind == "f" and np.isnan(v).any()) or n < 2:
        return math.nan
    edges = np.zeros((0, 2), np.int64) if pairs is None else np.asarray(pairs, dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"pairs must be an E × 2 array of item indices, got shape {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"pairs must join items among 0..{n - 1}")
    degree = 1 + np.bincount(edges.ravel(), minlength=n)  # row sums of W (self included)
    graph, alone = _graph_quadratic(v, edges, degree)
    size = n + 2 * len(edges)
    shrink = 1.0 - 2.0 * float((degree.astype(np.float64) ** 2).sum()) / (n * size) + size / n**2
    if shrink <= 0.0:
        return math.nan
    variance = max(graph / shrink, alone * n / (n - 1)) / n**4  # both carry a factor N²
    return math.sqrt(max(variance, 0.0))


def nested_standard_errors(values: object, pairs: object, ends: Sequence[int]) -> np.ndarray:
    """`mean_standard_error(values[:, j], pairs[:ends[j]])` for every column j of the N × m
    array `values`, computed together: nested graphs (e.g. the pairs ordered by the smallest k
    at which they are neighbours, so that each k's graph is a prefix) share one gather of the
    items' values per pair and one running count of degrees. Integer values give exactly
    `mean_standard_error`'s numbers (exact integer sums); others are computed column by column
    by `mean_standard_error` itself."""
    v = np.asarray(values)
    if v.ndim != 2 or v.shape[1] != len(ends):
        raise ValueError(f"values must be N × {len(ends)} (one column per end), got {v.shape}")
    edges = np.asarray(pairs, dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"pairs must be an E × 2 array of item indices, got shape {edges.shape}")
    n, columns = v.shape
    ends = [int(e) for e in ends]
    if any(e < 0 or e > len(edges) for e in ends):
        raise ValueError(f"every end must be in [0, {len(edges)}], got {ends}")
    if edges[: max(ends, default=0)].size and (
        edges[: max(ends)].min() < 0 or edges[: max(ends)].max() >= n
    ):
        raise ValueError(f"pairs must join items among 0..{n - 1}")
    top = max(ends, default=0)
    size_top = n + 2 * top
    exact = v.dtype.kind in "biu" and n >= 2
    if exact and v.size:
        exact = float(np.abs(v).max()) ** 2 * size_top < 2.0**62
    if not exact:
        return np.array([mean_standard_error(v[:, j], edges[: ends[j]]) for j in range(columns)])
    x = v.astype(np.int64)
    left, right = np.ascontiguousarray(edges[:top, 0]), np.ascontiguousarray(edges[:top, 1])
    # m × top: each pair's two items' values, one row per column (int32 when products fit).
    small = np.int32 if v.size == 0 or float(np.abs(v).max()) < 2**15 else np.int64
    rows = np.ascontiguousarray(x.T, dtype=small)
    at_left, at_right = np.take(rows, left, axis=1), np.take(rows, right, axis=1)
    products = at_left * at_right
    degree = np.ones(n, np.int64)
    squared_degrees: dict[int, int] = {}
    weighted_by: dict[int, np.ndarray] = {}  # Σ_i degree_i x_i of every column
    done = 0
    for end in sorted(set(ends)):
        degree += np.bincount(left[done:end], minlength=n)
        degree += np.bincount(right[done:end], minlength=n)
        squared_degrees[end] = int((degree * degree).sum())
        weighted_by[end] = degree @ x
        done = end
    out = np.empty(columns)
    for j, end in enumerate(ends):
        total = int(x[:, j].sum())
        squares = int((x[:, j] * x[:, j]).sum())
        linked = squares + 2 * int(products[j, :end].sum(dtype=np.int64))  # Σ_W x_i x_j
        weighted = int(weighted_by[end][j])
        size = n + 2 * end
        graph = float(n * n * linked - 2 * n * total * weighted + total * total * size)
        alone = float(n * n * squares - n * total * total)
        shrink = 1.0 - 2.0 * float(squared_degrees[end]) / (n * size) + size / n**2
        if shrink <= 0.0:
            out[j] = math.nan
            continue
        variance = max(graph / shrink, alone * n / (n - 1)) / n**4
        out[j] = math.sqrt(max(variance, 0.0))
    return out


def _z(confidence: float) -> float:
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def normal_interval(
    values: object,
    pairs: object = None,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """mean ± z·SE, SE from `mean_standard_error(values, pairs)`, z the normal quantile of
    `confidence` (1.96 at 0.95), clipped to `bounds` (low, high) when given. Without a
    standard error (NaN: see `mean_standard_error`) the interval is `bounds` when given (no
    narrower interval can be defended), else (nan, nan); NaN values give (nan, nan)."""
    low, high, _ = normal_interval_and_p(values, pairs, confidence, bounds)
    return (low, high)


def normal_p(values: object, pairs: object = None, null: float = 0.0) -> float:
    """Two-sided p-value of H0 "the expected mean of `values` is `null`" from the normal
    approximation, z = (mean − null)/SE with `mean_standard_error(values, pairs)`: the test the
    interval of `normal_interval` inverts (p < 1 − confidence exactly when the interval excludes
    `null`). Values all equal to `null` give 1; no standard error (NaN) gives 1 (no evidence)
    unless the values are NaN (NaN)."""
    return normal_interval_and_p(values, pairs, 0.95, None, null)[2]


def normal_interval_and_p(
    values: object,
    pairs: object = None,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
    null: float = 0.0,
    standard_error: float | None = None,
) -> tuple[float, float, float]:
    """`normal_interval` and `normal_p` from one standard error: (low, high, p).
    `standard_error`, when given (e.g. from `nested_standard_errors`), is used in place of
    `mean_standard_error(values, pairs)`."""
    z = _z(confidence)
    v = _as_vector(values, "values")
    if v.dtype.kind == "f" and np.isnan(v).any():
        return (math.nan, math.nan, math.nan)
    mean = float(v.sum() / v.size) if _integral(v) else float(v.mean())
    se = mean_standard_error(v, pairs) if standard_error is None else float(standard_error)
    if math.isnan(se):
        low, high = bounds if bounds is not None else (math.nan, math.nan)
        return (float(low), float(high), 1.0)
    low, high = mean - z * se, mean + z * se
    if bounds is not None:
        low, high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    if np.all(v == null):
        p = 1.0
    elif se == 0.0:
        p = 0.0
    else:
        p = float(math.erfc(abs(mean - null) / se / math.sqrt(2.0)))
    return (low, high, p)


def bootstrap_means(values: object, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` bootstrap replicates of the mean of `values` (items drawn with replacement).

    With few distinct values (e.g. overlap counts 0..k) the counts of draws landing on each
    value are drawn from their multinomial: the same distribution as drawing items, in
    O(B × distinct values). Integer values give sums in integer arithmetic (exact)."""
    v = _as_vector(values, "values")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples!r}")
    n = v.size
    classes, counts = np.unique(v, return_counts=True)
    if classes.size <= MAX_CLASSES:
        drawn = rng.multinomial(n, counts / n, size=resamples)  # B × classes
        if _integral(classes):
            sums = drawn @ classes.astype(np.int64)  # exact
            return sums / n
        return (drawn * classes.astype(np.float64)).sum(axis=1) / n
    out = np.empty(resamples)
    rows = max(1, _BLOCK // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = v[idx].mean(axis=1)
    return out


def bootstrap_mean(
    values: object, resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) for the mean of `values` over items.

    Resampling items treats them as independent: the interval is for the mean of the per-item
    quantity over items like these with their values held fixed. Neighbour overlaps are not
    independent (neighbours share neighbours): `normal_interval` with `neighbour_pairs` is the
    interval for a new sample of items (docs/statistics.md). NaN in `values` gives (nan, nan)."""
    _check_confidence(confidence)
    v = _as_vector(values, "values")
    if v.dtype.kind == "f" and np.isnan(v).any():
        return (math.nan, math.nan)
    means = bootstrap_means(v, resamples, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


def sign_flip_p(differences: object, permutations: int, rng: np.random.Generator) -> float:
    """Two-sided sign-flip permutation p-value of H0 "each item's paired difference is
    symmetric about 0", with the sum (equivalently the mean) of the differences as statistic.

    Each of `permutations` draws flips the sign of every item's difference independently with
    probability 1/2; items with equal differences are flipped as a group by one binomial draw
    (the same distribution). p = (1 + #{|T*| >= |T|}) / (1 + permutations), the add-one
    estimate, never 0. All-zero differences give p = 1."""
    d = _as_vector(differences, "differences")
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations!r}")
    exact = _integral(d)
    d = d.astype(np.int64) if exact else d.astype(np.float64)
    classes, counts = np.unique(d[d != 0], return_counts=True)
    if classes.size == 0:
        return 1.0
    observed = abs(d.sum())
    plus = rng.binomial(counts, 0.5, size=(permutations, classes.size))  # items kept positive
    flipped = (2 * plus - counts) @ classes  # P sums with random signs
    if exact:
        extreme = np.abs(flipped) >= observed
    else:  # float sums differ in their last bits from the observed one in another order
        extreme = np.abs(flipped) >= observed * (1 - 1e-12) - 1e-300
    return float((1 + int(extreme.sum())) / (1 + permutations))


def chance_overlap(n: int, k: int, include_self: bool = False) -> float:
    """mNNO^k expected if every item's k neighbours were a uniformly random k of the other
    n − 1 items: k/(n − 1); with `include_self` the item is its own first neighbour in both
    spaces and the other k − 1 are random: (1 + (k − 1)²/(n − 1))/k."""
    if n < 2 or k < 1 or k > (n if include_self else n - 1):
        raise ValueError(
            f"chance_overlap needs 1 <= k <= n - 1 (or n with include_self): {n=} {k=}"
        )
    if include_self:
        return (1 + (k - 1) ** 2 / (n - 1)) / k
    return k / (n - 1)


def overlap_counts(nn_a: np.ndarray, nn_b: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """|NN^k(a_i) ∩ NN^k(b_i)| for every item i and every k in `ks`: an N × len(ks) int64
    array (column j is `overlap_per_item(nn_a, nn_b, ks[j])`), from one pass over the lists.

    nn_a, nn_b: N × K neighbour index arrays, best first, K >= max(ks), no index repeated
    within a row."""
    a = np.asarray(nn_a)
    b = np.asarray(nn_b)
    ks = [int(k) for k in ks]
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"overlap_counts needs two N × K arrays of one shape: {a.shape} {b.shape}")
    if not ks or min(ks) < 1 or max(ks) > a.shape[1]:
        raise ValueError(f"overlap_counts: every k must be in [1, {a.shape[1]}], got {ks}")
    top = max(ks)
    n = a.shape[0]
    if n == 0:
        return np.zeros((0, len(ks)), np.int64)
    if top <= _COMPARE_DEPTH:
        return _overlap_counts_compared(a[:, :top], b[:, :top], ks)
    a = a[:, :top].astype(np.int64)
    b = b[:, :top].astype(np.int64)
    order = np.argsort(b, axis=1, kind="stable")
    span = int(max(a.max(), b.max())) + 1
    offset = np.arange(n, dtype=np.int64)[:, None] * span
    flat_b = (np.take_along_axis(b, order, axis=1) + offset).ravel()
    flat_a = (a + offset).ravel()
    pos = np.minimum(np.searchsorted(flat_b, flat_a), flat_b.size - 1)
    hit = flat_b[pos] == flat_a
    # rank_b[i, j]: where a's j-th neighbour of item i stands in b's list (top when absent).
    rank_b = np.where(hit, order.ravel()[pos], top).reshape(n, top)
    return np.stack([(rank_b[:, :k] < k).sum(axis=1, dtype=np.int64) for k in ks], axis=1)


def _overlap_counts_compared(a: np.ndarray, b: np.ndarray, ks: list[int]) -> np.ndarray:
    """`overlap_counts` for short lists (K <= 32): every column of `a` compared with each column
    of `b` (K passes over N × K, no sort); a's j-th neighbour counts at k when j < k and it is
    among b's first k. The same counts as the sorting path."""
    n, top = a.shape
    if max(int(a.max()), int(b.max())) < 2**31 and min(int(a.min()), int(b.min())) >= -(2**31):
        a, b = a.astype(np.int32), b.astype(np.int32)
    # at[i, j]: where a's j-th neighbour of item i stands in b's list (top when absent); the
    # columns of b from the last, so that a repeated index keeps its first place.
    at = np.full((n, top), top, np.int8)
    for place in range(top - 1, -1, -1):
        np.copyto(at, np.int8(place), where=a == b[:, place : place + 1])
    out = np.empty((n, len(ks)), np.int64)
    for j, k in enumerate(ks):
        out[:, j] = (at[:, :k] < k).sum(axis=1, dtype=np.int64)
    return out


def shuffled_pairing_null(
    nn_a: np.ndarray,
    nn_b: np.ndarray,
    ks: Sequence[int],
    permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """mNNO^k of two spaces with their pairing shuffled: a permutations × len(ks) array.

    Shuffling the pairing (row i of B replaced by row π(i)) permutes B's items, so B's neighbour
    lists are relabelled, not recomputed: item i's list becomes π⁻¹ applied to the list of
    π(i). This equals recomputing them on the shuffled rows except in the order of exactly tied
    neighbours (the index tie-break follows the old indices)."""
    a = np.asarray(nn_a)
    b = np.asarray(nn_b)
    ks = [int(k) for k in ks]
    top = max(ks)
    a, b = a[:, :top], b[:, :top]
    n = a.shape[0]
    out = np.empty((permutations, len(ks)))
    for p in range(permutations):
        perm = rng.permutation(n)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(n)
        counts = overlap_counts(a, inverse[b[perm]], ks)
        out[p] = counts.sum(axis=0) / (n * np.asarray(ks, dtype=np.float64))
    return out


def calibrate(
    observed: float, null: object, alpha: float = 0.05, smax: float = 1.0
) -> tuple[float, float, float]:
    """The null-calibrated score of Gröger, Wen & Brbić ("Revisiting the Platonic
    Representation Hypothesis: An Aristotelian View", 2026, Algorithm 1; the package
    `calibrated-similarity`): (score, p, tau).

    tau is the ⌈(1 − alpha)(P + 1)⌉-th smallest of the observed value and the P null values;
    score = clip((observed − tau)/(smax − tau), 0, 1) (0 unless the observed value beats the
    null's (1 − alpha) quantile); p = (1 + #{null >= observed})/(P + 1)."""
    values = _as_vector(null, "null").astype(np.float64)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    count = values.size
    combined = np.sort(np.append(values, float(observed)))
    index = min(max(math.ceil((1.0 - alpha) * (count + 1)) - 1, 0), count)
    tau = float(combined[index])
    p = (1 + int((values >= observed).sum())) / (count + 1)
    score = min(max((observed - tau) / max(smax - tau, 1e-12), 0.0), 1.0)
    return (float(score), float(p), tau)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): reject H_i at family-wise
    level alpha when adjusted[i] <= alpha. NaN p-values are left out of the family and stay
    NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out
