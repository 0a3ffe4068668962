"""Uncertainty over items, paired tests, chance levels and permutation nulls (docs/statistics.md).

Every function is seeded through the `numpy.random.Generator` it is given (`rng_for` derives one
from a run's seed and labels), so a result is the same on every run of the same study.
Statistics of integer-valued per-item quantities (neighbour overlaps and their differences) are
computed in integer arithmetic, so no result depends on the last bit of a floating-point sum.

- `bootstrap_mean`: percentile bootstrap interval of a mean over items.
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

import numpy as np

__all__ = [
    "bootstrap_mean",
    "calibrate",
    "chance_overlap",
    "holm",
    "overlap_counts",
    "rng_for",
    "shuffled_pairing_null",
    "sign_flip_p",
]

# At most this many distinct values: the bootstrap draws class counts (exact, O(B × classes)).
# More: it draws item indices in blocks of about this many (B × N) entries.
MAX_CLASSES = 512
_BLOCK = 1 << 22


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

    The interval is for the mean of the per-item quantity over items exchangeable with these
    (docs/statistics.md says what that means for neighbour overlaps). NaN in `values` gives
    (nan, nan)."""
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
    a = a[:, :top].astype(np.int64)
    b = b[:, :top].astype(np.int64)
    n = a.shape[0]
    if n == 0:
        return np.zeros((0, len(ks)), np.int64)
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
