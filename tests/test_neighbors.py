"""Exact kNN and mNNO: agreement with a brute-force reference, ties, properties, errors.

The reference never lets a BLAS decide a tie: equal rows are merged before the (float64) matrix
product and expanded afterwards, so equal items get equal similarities by construction, as in
xmodal. Ties between *different* vectors only occur in data whose products are exact in float64
whatever the summation order (small integers, ±1 entries).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xmodal import neighbors
from xmodal.neighbors import NeighborError, knn, mnno, overlap, overlap_per_item


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct float32 rows (-0.0 equal to 0.0) and, per item, the index of its row."""
    X32 = np.asarray(X, np.float32) + np.float32(0)
    rows: dict[bytes, int] = {}
    inv = np.array([rows.setdefault(r.tobytes(), len(rows)) for r in X32], np.int64)
    first = np.unique(inv, return_index=True)[1]
    return X32[first], inv


def reference_similarities(X: np.ndarray, similarity: str) -> np.ndarray:
    """N×N float64 similarities; equal rows share one row and column, and are at exactly 1.0
    (cosine) or 0.0 (negative squared Euclidean distance) from each other."""
    U, inv = distinct_rows(X)
    U = U.astype(np.float64)
    if similarity == "cosine":
        Un = U / np.linalg.norm(U, axis=1, keepdims=True)
        S = Un @ Un.T
    else:
        sq = (U**2).sum(axis=1)
        S = -(sq[:, None] + sq[None, :] - 2 * U @ U.T)
    S = S[inv][:, inv]
    S[inv[:, None] == inv[None, :]] = 1.0 if similarity == "cosine" else 0.0
    return S


def reference_knn(
    X: np.ndarray, k: int, similarity: str, include_self: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Full N×N similarity matrix, rows sorted by (−similarity, index)."""
    S = reference_similarities(X, similarity)
    n = len(S)
    np.fill_diagonal(S, -np.inf)  # the item itself, by index
    cols = np.broadcast_to(np.arange(n), S.shape)
    order = np.lexsort((cols, -S), axis=1)[:, : n - 1]
    m = k - 1 if include_self else k
    sims = np.take_along_axis(S, order, axis=1)
    ties = int((sims[:, m - 1] == sims[:, m]).sum()) if 0 < m < n - 1 else 0
    idx, sims = order[:, :m], sims[:, :m]
    if include_self:
        idx = np.hstack([np.arange(n)[:, None], idx])
        sims = np.hstack([np.full((n, 1), 1.0 if similarity == "cosine" else 0.0), sims])
    return idx, sims, ties


def assert_equal_items_tie(X: np.ndarray, got) -> None:
    """The contract itself: items with equal vectors have bit-equal similarities to every item,
    and exactly the self-similarity to each other."""
    _, inv = distinct_rows(X)
    n, k = got.indices.shape
    item = np.repeat(np.arange(n), k)
    nbr = got.indices.ravel()
    val = got.similarities.ravel()
    other = nbr != item
    if not other.any():  # include_self with k = 1: nothing but the items themselves
        return
    pair = inv[item[other]] * (inv.max() + 1) + inv[nbr[other]]
    v = val[other]
    order = np.argsort(pair, kind="stable")
    pair, v = pair[order], v[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    assert lo.tobytes() == hi.tobytes(), "equal items got different similarities"
    same = inv[item[other]] == inv[nbr[other]]
    self_sim = np.float32(1.0 if got.similarity == "cosine" else 0.0)
    assert (val[other][same] == self_sim).all()


def assert_matches_reference(X: np.ndarray, k: int, similarity: str, include_self: bool, **kw):
    got = knn(X, k, similarity, include_self, **kw)
    idx, sims, ties = reference_knn(X, k, similarity, include_self)
    np.testing.assert_array_equal(got.indices, idx)
    np.testing.assert_allclose(got.similarities, sims, rtol=1e-5, atol=1e-4)
    assert got.ties_at_k == ties
    return got


def signs(rng: np.random.Generator, n: int, d: int, nonzeros: int) -> np.ndarray:
    """Rows with exactly `nonzeros` entries of ±1: every cosine is an exact multiple of 1/nonzeros,
    whatever the summation order, so equal cosines are bit-equal ties."""
    X = np.zeros((n, d), np.float32)
    for i in range(n):
        pos = rng.choice(d, nonzeros, replace=False)
        X[i, pos] = rng.choice([-1.0, 1.0], nonzeros)
    return X


SHAPES = [  # (N, d, block_size): one block, several blocks, N not a multiple of the block
    (2, 3, 1536),
    (40, 5, 1536),
    (150, 8, 32),
    (257, 6, 64),
    (300, 16, 100),
]


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize(("n", "d", "block"), SHAPES)
def test_random_data_matches_reference(n, d, block, similarity, include_self):
    X = np.random.default_rng(n * d).standard_normal((n, d)).astype(np.float32)
    for k in (1, 4, 13):
        if k <= (n if include_self else n - 1):
            got = assert_matches_reference(X, k, similarity, include_self, block_size=block)
            assert got.indices.dtype == np.int64 and got.similarities.dtype == np.float32
            assert got.indices.shape == got.similarities.shape == (n, k)


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("block", [32, 96, 1536])
def test_tie_heavy_integer_vectors_euclidean(include_self, block):
    rng = np.random.default_rng(block)
    X = rng.integers(-2, 3, (230, 4)).astype(np.float32)  # few distinct points: many duplicates
    for k in (1, 3, 12, 45):
        got = assert_matches_reference(X, k, "euclidean", include_self, block_size=block)
        if k > 1:
            assert got.ties_at_k > 0


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("block", [32, 96, 1536])
def test_tie_heavy_sign_vectors_cosine(include_self, block):
    rng = np.random.default_rng(block + 1)
    X = np.vstack([signs(rng, 150, 8, 4), signs(rng, 80, 8, 1)])  # norms 2 and 1
    X = X[rng.permutation(len(X))]
    for k in (1, 2, 10, 40):
        got = assert_matches_reference(X, k, "cosine", include_self, block_size=block)
        assert got.ties_at_k > 0 or (include_self and k == 1)  # [self] alone leaves no boundary


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("include_self", [False, True])
def test_duplicate_float_rows_tie_to_lower_index(similarity, include_self):
    rng = np.random.default_rng(7)
    unique = rng.standard_normal((60, 12)).astype(np.float32)
    X = unique[rng.integers(0, 60, 500)]  # each vector about 8 times, in different tiles
    got = assert_matches_reference(X, 20, similarity, include_self, block_size=64)
    if include_self:
        np.testing.assert_array_equal(got.indices[:, 0], np.arange(len(X)))
    else:
        assert not (got.indices == np.arange(len(X))[:, None]).any()
    assert got.ties_at_k > 0


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_all_rows_identical(similarity):
    n, k = 3000, 5
    got = knn(np.full((n, 4), 0.5, np.float32), k, similarity, block_size=256)
    lowest = np.arange(k + 1)
    expected = np.array([lowest[lowest != i][:k] for i in range(n)])
    np.testing.assert_array_equal(got.indices, expected)
    assert got.ties_at_k == n


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_default_block_with_several_blocks(similarity):
    X = np.random.default_rng(3).standard_normal((1700, 24)).astype(np.float32)
    X[1650:] = X[:50]  # duplicates across the two blocks
    got = assert_matches_reference(X, 10, similarity, False)
    assert_equal_items_tie(X, got)


# --- equal vectors tie by construction ----------------------------------------------------------


def repeated_rows(seed: int, n: int, distinct: int, d: int) -> np.ndarray:
    """n rows drawn from `distinct` random float vectors: copies scattered over every block."""
    rng = np.random.default_rng(seed)
    unique = rng.standard_normal((distinct, d)).astype(np.float32)
    return unique[rng.integers(0, distinct, n)]


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("d", [7, 12, 24])
@pytest.mark.parametrize("block", [32, 64, 1536])
def test_equal_rows_tie_to_lower_index_for_any_block_and_dimension(
    d, block, similarity, include_self
):
    X = repeated_rows(d * block, 400, 90, d)
    for k in (1, 5, 20):
        got = assert_matches_reference(X, k, similarity, include_self, block_size=block)
        assert_equal_items_tie(X, got)
        if k > 1 or not include_self:
            assert got.ties_at_k > 0  # most items have copies beyond the k-th place


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("include_self", [False, True])
def test_large_groups_and_k_beyond_the_number_of_distinct_vectors(similarity, include_self):
    rng = np.random.default_rng(11)
    unique = rng.standard_normal((5, 9)).astype(np.float32)
    X = np.repeat(unique, [1, 3, 40, 100, 200], axis=0)[rng.permutation(344)]
    n = len(X)
    for k in (1, 2, 4, 5, 6, 50, 150, 250, n - 1):
        got = assert_matches_reference(X, k, similarity, include_self, block_size=64)
        assert_equal_items_tie(X, got)
    got = assert_matches_reference(X, n, similarity, True, block_size=32)
    assert sorted(got.indices[17]) == list(range(n))


def test_tied_groups_interleave_by_index():
    # Item 0 at the origin; four groups at distance 1 whose copies are scattered:
    # (1, 0): items 1, 9   (0, 1): items 2, 8   (-1, 0): item 3   (0, -1): items 4, 7
    # then a pair far away (5, 6) and ten distinct points further still (10..19).
    points = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (5, 5), (5, 5), (0, -1), (0, 1), (1, 0)]
    points += [(20 + i, 0) for i in range(10)]
    X = np.array(points, np.float32)
    assert knn(X, 2, "euclidean").indices[0].tolist() == [1, 2]
    assert knn(X, 5, "euclidean").indices[0].tolist() == [1, 2, 3, 4, 7]
    assert knn(X, 8, "euclidean").indices[0].tolist() == [1, 2, 3, 4, 7, 8, 9, 5]
    got = knn(X, 6, "euclidean")
    assert got.indices[9].tolist() == [1, 0, 2, 4, 7, 8]  # copy, origin, then (0, ±1) by index
    assert got.similarities[9, :2].tolist() == [0.0, -1.0]
    for k in (1, 2, 3, 5, 8, 12, 19):
        for include_self in (False, True):
            got = assert_matches_reference(X, k, "euclidean", include_self, block_size=32)
            assert_equal_items_tie(X, got)


def test_equal_rows_are_found_even_when_every_hash_collides(monkeypatch):
    # Sparse rows agree on most sampled columns; with every whole-row hash equal too, the
    # grouping must still come out exact (compared value by value, then by bytes).
    rng = np.random.default_rng(12)
    X = np.zeros((300, 40), np.float32)
    X[np.arange(300), rng.integers(0, 40, 300)] = rng.choice([-1.0, 1.0, 2.0], 300)
    expected = knn(X, 15, "euclidean", block_size=32)
    monkeypatch.setattr(neighbors, "_row_hashes", lambda X, rows: np.zeros(rows.size, np.uint64))
    got = assert_matches_reference(X, 15, "euclidean", False, block_size=32)
    assert_equal_items_tie(X, got)
    np.testing.assert_array_equal(got.indices, expected.indices)


def test_negative_zero_equals_zero():
    X = np.array([[0.0, 1.0, 2.0], [3.0, 0.5, 0.0], [-0.0, 1.0, 2.0], [1.0, 1.0, -1.0]], np.float32)
    for similarity in ("cosine", "euclidean"):
        got = knn(X, 3, similarity)
        assert got.indices[0, 0] == 2 and got.indices[2, 0] == 0
        assert got.similarities[0, 0] == got.similarities[2, 0] == (similarity == "cosine")
        assert_equal_items_tie(X, got)


def jittery_mm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.mm round like no real BLAS: flip the last bit of a third of the products,
    chosen by position in the tile and by call. Identical rows at different places then get
    different bits, which is what a different GEMM kernel may do."""
    real_mm = torch.mm
    calls = itertools.count()

    def mm(a: torch.Tensor, b: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        res = real_mm(a, b, out=out)
        bits = res.numpy().view(np.int32)
        r, c = np.indices(bits.shape)
        bits ^= ((7 * r + 13 * c + next(calls)) % 3 == 0).astype(np.int32)
        return res

    monkeypatch.setattr(torch, "mm", mm)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("block", [32, 96])
def test_ties_hold_even_with_a_gemm_that_rounds_by_position(monkeypatch, similarity, block):
    X = repeated_rows(block, 500, 60, 12)
    jittery_mm(monkeypatch)
    for include_self in (False, True):
        got = assert_matches_reference(X, 20, similarity, include_self, block_size=block)
        assert_equal_items_tie(X, got)


SIMILARITIES = ("cosine", "euclidean")
KERNELS = [  # ATen's capability, MKL's instruction set (what changes sgemm's bits), threads
    ("default", "SSE4_2", 1),
    ("avx2", "AVX2", 1),
    ("avx2", "AVX2", 2),
]


def kernel_cases() -> dict[str, np.ndarray]:
    """Tie-heavy kNN results whose lists must not depend on the CPU kernel or thread count."""
    out: dict[str, np.ndarray] = {}
    for d, block, similarity in itertools.product((7, 12, 24), (32, 1536), SIMILARITIES):
        X = repeated_rows(d, 300, 70, d)
        got = knn(X, 20, similarity, block_size=block)
        name = f"{similarity}-d{d}-b{block}"
        out[name + "-indices"] = got.indices
        out[name + "-similarities"] = got.similarities
        out[name + "-ties"] = np.array(got.ties_at_k)
    return out


def test_same_lists_under_other_cpu_kernels_and_thread_counts(tmp_path):
    root = Path(__file__).resolve().parent.parent
    procs = []
    for capability, mkl, threads in KERNELS:
        env = dict(
            os.environ,
            ATEN_CPU_CAPABILITY=capability,
            MKL_ENABLE_INSTRUCTIONS=mkl,
            PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        )
        target = tmp_path / f"{capability}-{mkl}-{threads}.npz"
        cmd = [sys.executable, __file__, str(target), str(threads)]
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        procs.append((target, threads, proc))
    here = kernel_cases()
    for target, threads, proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        with np.load(target) as there:
            assert json.loads(str(there["meta"]))["threads"] == threads
            for name, value in here.items():
                if name.endswith("-similarities"):  # different vectors may differ in the last bit
                    similarity, d = name.split("-")[0], int(name.split("-")[1][1:])
                    lists = SimpleNamespace(
                        indices=there[name.replace("-similarities", "-indices")],
                        similarities=there[name],
                        similarity=similarity,
                    )
                    assert_equal_items_tie(repeated_rows(d, 300, 70, d), lists)
                else:
                    np.testing.assert_array_equal(there[name], value, err_msg=f"{target}: {name}")
    for name in here:
        if name.endswith("-indices"):
            similarity, d = name.split("-")[0], int(name.split("-")[1][1:])
            idx, _, ties = reference_knn(repeated_rows(d, 300, 70, d), 20, similarity, False)
            np.testing.assert_array_equal(here[name], idx)
            assert int(here[name.replace("-indices", "-ties")]) == ties


def test_k_larger_than_block():
    X = np.random.default_rng(4).standard_normal((150, 5)).astype(np.float32)
    assert_matches_reference(X, 60, "euclidean", False, block_size=32)
    assert_matches_reference(X, 149, "cosine", False, block_size=32)
    assert_matches_reference(X, 150, "cosine", True, block_size=32)


def test_same_input_same_bits_and_block_size_does_not_matter():
    X = np.random.default_rng(5).standard_normal((700, 40)).astype(np.float32)
    a, b = knn(X, 15), knn(X.copy(), 15)
    assert a.indices.tobytes() == b.indices.tobytes()
    assert a.similarities.tobytes() == b.similarities.tobytes()
    np.testing.assert_array_equal(knn(X, 15, block_size=96).indices, a.indices)


def test_result_is_read_only_and_accepts_tensors_and_float64():
    X = np.random.default_rng(6).standard_normal((50, 4))
    got = knn(torch.tensor(X, requires_grad=True), 3)
    np.testing.assert_array_equal(got.indices, knn(X, 3).indices)
    half = torch.tensor(X, dtype=torch.float16)
    np.testing.assert_array_equal(knn(half, 3).indices, knn(half.float().numpy(), 3).indices)
    with pytest.raises(ValueError):
        got.indices[0, 0] = 1
    assert got.k == 3


def test_include_self_puts_item_first_even_with_lower_index_duplicate():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]], np.float32)
    got = knn(X, 2, include_self=True)
    np.testing.assert_array_equal(got.indices, [[0, 1], [1, 0], [2, 3], [3, 0]])
    np.testing.assert_array_equal(knn(X, 1, include_self=True).indices, [[0], [1], [2], [3]])
    assert knn(X, 1).indices[1, 0] == 0  # without self: its duplicate, never itself


# --- mNNO properties ------------------------------------------------------------------------


def spaces(seed: int, n: int = 300, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)).astype(np.float32)
    B = (A @ rng.standard_normal((d, d)) + 0.8 * rng.standard_normal((n, d))).astype(np.float32)
    return A, B


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("include_self", [False, True])
def test_mnno_of_a_space_with_itself_is_one(similarity, include_self):
    A, _ = spaces(0)
    assert mnno(A, A, 10, similarity, include_self) == 1.0


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_mnno_is_symmetric_and_rotation_invariant(similarity):
    A, B = spaces(1)
    value = mnno(A, B, 10, similarity)
    assert 0.1 < value < 0.9
    assert mnno(B, A, 10, similarity) == value
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((A.shape[1], A.shape[1])))
    assert mnno(A @ Q, B, 10, similarity) == value


def test_mnno_cosine_ignores_positive_row_scaling():
    A, B = spaces(3)
    scale = np.random.default_rng(4).uniform(0.1, 10.0, (len(A), 1))
    assert mnno(A * scale, B, 10) == mnno(A, B, 10)


def test_mnno_of_independent_spaces_is_at_chance():
    rng = np.random.default_rng(5)
    n, k = 600, 10
    A, B = rng.standard_normal((n, 16)), rng.standard_normal((n, 16))
    chance = k / (n - 1)
    # Per-item overlaps are roughly hypergeometric with variance about k²/(N−1); 5 sigma.
    sigma = np.sqrt(k**2 / (n - 1) / n) / k
    assert abs(mnno(A, B, k) - chance) < 5 * sigma


def test_list_of_k_equals_separate_calls_and_prefixes():
    A, B = spaces(6)
    values = mnno(A, B, [10, 1, 5])
    assert list(values) == [10, 1, 5]
    for k, v in values.items():
        assert v == mnno(A, B, k)
    nn_a, nn_b = knn(A, 10).indices, knn(B, 10).indices
    for k in (1, 5, 10):
        np.testing.assert_array_equal(knn(A, k).indices, nn_a[:, :k])
        assert overlap(nn_a, nn_b, k) == values[k]


def test_overlap_matches_set_intersection():
    rng = np.random.default_rng(8)
    n, K = 500, 12
    nn_a = np.argsort(rng.random((n, 40)), axis=1)[:, :K]
    nn_b = np.argsort(rng.random((n, 40)), axis=1)[:, :K]
    for k in (1, 7, 12):
        expected = [len(set(a[:k]) & set(b[:k])) for a, b in zip(nn_a, nn_b, strict=True)]
        np.testing.assert_array_equal(overlap_per_item(nn_a, nn_b, k), expected)
        assert overlap(nn_a, nn_b, k) == pytest.approx(sum(expected) / (n * k))


# --- errors -----------------------------------------------------------------------------------


def test_zero_vectors_under_cosine_are_named():
    X = np.ones((10, 3), np.float32)
    X[[2, 5, 7]] = 0
    with pytest.raises(NeighborError, match=r"3 all-zero row.*rows 2, 5, 7"):
        knn(X, 2)
    assert knn(X, 2, similarity="euclidean").indices.shape == (10, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(bad):
    X = np.ones((6, 3))
    X[4, 1] = bad
    with pytest.raises(NeighborError, match=r"NaN or inf in 1 row.*rows 4"):
        knn(X, 2)
    with pytest.raises(NeighborError, match="NaN or inf"):
        mnno(np.ones((6, 3)), X, 2)


def test_values_beyond_float32():
    X = np.ones((4, 2))
    X[1, 0] = 1e300
    with pytest.raises(NeighborError, match="too large for float32"):
        knn(X, 1)


@pytest.mark.parametrize(
    ("k", "include_self", "message"),
    [
        (5, False, r"k = 5 is too large for N = 5.*k <= N - 1"),
        (6, True, r"k = 6 is too large for N = 5.*k <= N when"),
        (0, False, "at least 1"),
        (-1, True, "at least 1"),
        (2.0, False, "must be an integer"),
    ],
)
def test_bad_k(k, include_self, message):
    X = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(NeighborError, match=message):
        knn(X, k, include_self=include_self)
    assert knn(X, 5, include_self=True).indices.shape == (5, 5)
    assert knn(X, 4).indices.shape == (5, 4)


def test_mnno_errors():
    A = np.random.default_rng(0).standard_normal((8, 3))
    with pytest.raises(NeighborError, match="A has 8 rows but B has 7"):
        mnno(A, A[:7], 2)
    with pytest.raises(NeighborError, match="k = 8 is too large"):
        mnno(A, A, [2, 8])
    with pytest.raises(NeighborError, match="empty"):
        mnno(A, A, [])
    B = A.copy()
    B[3] = 0
    with pytest.raises(NeighborError, match=r"B has 1 all-zero row.*rows 3"):
        mnno(A, B, 2)
    with pytest.raises(NeighborError, match="unknown similarity"):
        mnno(A, A, 2, similarity="cos")


def test_shape_and_similarity_errors():
    with pytest.raises(NeighborError, match=r"2-D.*shape \(5,\)"):
        knn(np.ones(5), 1)
    with pytest.raises(NeighborError, match="2-D"):
        knn(np.ones((2, 3, 4)), 1)
    with pytest.raises(NeighborError, match="no columns"):
        knn(np.ones((4, 0)), 1)
    with pytest.raises(NeighborError, match="real numbers"):
        knn(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(NeighborError, match=r"unknown similarity 'dot'.*'cosine', 'euclidean'"):
        knn(np.ones((4, 2)), 1, similarity="dot")


def test_overlap_errors():
    a = np.tile(np.arange(3), (4, 1))
    with pytest.raises(NeighborError, match="only 3 and 3 columns"):
        overlap(a, a, 4)
    with pytest.raises(NeighborError, match="4 rows but nn_b 3"):
        overlap(a, a[:3], 2)
    with pytest.raises(NeighborError, match="repeats an index"):
        overlap(a, np.zeros((4, 3), np.int64), 3)
    assert issubclass(NeighborError, ValueError)


if __name__ == "__main__":  # the child of test_same_lists_under_other_cpu_kernels_and_thread_counts
    torch.set_num_threads(int(sys.argv[2]))
    meta = {
        "threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
    }
    np.savez(sys.argv[1], meta=json.dumps(meta), **kernel_cases())
