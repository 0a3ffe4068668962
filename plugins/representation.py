"""Representation-similarity metrics: linear CKA, RSA and kNN Jaccard similarity.

Each compares two row-aligned spaces of one split (predicted vs input, predicted vs target, input
vs target), like `mnno`, and writes one row per comparison.

- `cka`: linear centred kernel alignment (Kornblith et al., 2019),
  CKA(X, Y) = ||Yc^T Xc||_F² / (||Xc^T Xc||_F · ||Yc^T Yc||_F), Xc, Yc column-centred.
  In [0, 1]; invariant to orthogonal transforms and isotropic scaling of either space, not to
  arbitrary invertible linear maps. Computed in feature space (d×d matrices) or, when that is
  smaller, with N×N Gram matrices; float64 for small problems, float32 matrix products otherwise.
- `rsa`: representational similarity analysis (Kriegeskorte et al., 2008): the Spearman
  correlation between the two spaces' pairwise similarities over all item pairs i < j. Exact up to
  `exact_max_n` items; above it, over a fixed seeded uniform sample of `pairs` item pairs (with
  replacement, the same sample for every comparison and run of a split size), so memory stays
  O(pairs) instead of O(N²). The sampling error is about 1/sqrt(pairs). In [-1, 1].
- `knn_jaccard`: mean over items of |A_i ∩ B_i| / |A_i ∪ B_i|, A_i and B_i the item's k nearest
  neighbours in the two spaces (from the probe's cached neighbour lists, so `include_self` applies as
  for `mnno`). With o_i = |A_i ∩ B_i| it is mean(o_i / (2k - o_i)), whereas mNNO is mean(o_i / k).
  In [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import (
    CheckContext,
    MetricSpec,
    Param,
    Probe,
    ResultRow,
    check_k_fits,
    hookimpl,
    overlap_per_item,
)
from xmodal_plugins.metrics import COMPARISONS, MNNO_PARAMS  # the spaces mnno compares
from xmodal_plugins.support.linalg import matmul

SIMILARITIES = ("cosine", "euclidean")
_COMPARISON_PARAM = Param(
    str,
    default=list(COMPARISONS),
    many=True,
    choices=tuple(COMPARISONS),
    doc="the pairs of spaces compared (predicted, input, target); one row each",
)
_FLOAT64_WORK = 2e9  # multiply-adds below which CKA runs in float64


# --- linear CKA ------------------------------------------------------------------------------


class _Centred:
    """One space, column-centred, with its self-similarity norm computed once."""

    def __init__(self, x: np.ndarray, gram: bool, dtype: type) -> None:
        xc = np.asarray(x, dtype=np.float64)
        self.x = (xc - xc.mean(axis=0)).astype(dtype, copy=False)
        self.gram = matmul(self.x, self.x.T) if gram else None
        self_term = self.gram if self.gram is not None else matmul(self.x.T, self.x)
        self.norm = float(np.linalg.norm(self_term.astype(np.float64)))


def _cka_form(n: int, dims: list[int]) -> tuple[bool, type]:
    """Gram form when N² is smaller than the largest d×d product; dtype by amount of work."""
    gram = n * n < max(dims) ** 2
    work = n * n * sum(dims) if gram else n * sum(a * b for a in dims for b in dims)
    return gram, (np.float64 if work <= _FLOAT64_WORK else np.float32)


def _cka_pair(a: _Centred, b: _Centred) -> float:
    if a.norm == 0 or b.norm == 0:
        return float("nan")
    if a.gram is not None and b.gram is not None:
        hsic = float((a.gram.astype(np.float64) * b.gram).sum())
    else:
        hsic = float(np.linalg.norm(matmul(b.x.T, a.x).astype(np.float64)) ** 2)
    return hsic / (a.norm * b.norm)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two row-aligned matrices (N×dx, N×dy)."""
    gram, dtype = _cka_form(len(x), [x.shape[1], y.shape[1]])
    return _cka_pair(_Centred(x, gram, dtype), _Centred(y, gram, dtype))


def cka(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """Linear CKA of each requested comparison, per split."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        roles = sorted({r for c in params["comparisons"] for r in COMPARISONS[c]})
        gram, dtype = _cka_form(len(spaces.input), [spaces.of(r).shape[1] for r in roles])
        centred = {role: _Centred(spaces.of(role), gram, dtype) for role in roles}
        for comparison in params["comparisons"]:
            a, b = COMPARISONS[comparison]
            yield ResultRow(split, "cka", comparison, _cka_pair(centred[a], centred[b]))


# --- RSA -------------------------------------------------------------------------------------


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)


def pair_sample(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uniform sample (with replacement) of `pairs` item pairs (i, j), i != j."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = rng.integers(0, n - 1, size=pairs)
    j = j + (j >= i)
    return i, j


def pair_similarities(
    x: np.ndarray,
    similarity: str,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    chunk: int = 65536,
) -> np.ndarray:
    """Similarities of all pairs i < j (row-major upper triangle), or of the given pairs.

    Cosine similarity, or negative squared Euclidean distance (same ranks as negative distance).
    """
    x = _normalise(x) if similarity == "cosine" else np.asarray(x, dtype=np.float64)
    if pairs is None:
        gram = matmul(x, x.T)
        if similarity == "euclidean":
            sq = np.diag(gram).copy()
            gram = 2 * gram - sq[:, None] - sq[None, :]
        return gram[np.triu_indices(len(x), 1)]
    i, j = pairs
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        a, b = x[i[s : s + chunk]], x[j[s : s + chunk]]
        out[s : s + chunk] = (
            np.einsum("ij,ij->i", a, b) if similarity == "cosine" else -((a - b) ** 2).sum(axis=1)
        )
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant or too short."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    from scipy import stats  # on first use: registering this plugin must not import scipy

    return float(stats.spearmanr(a, b).statistic)


def rsa_score(
    x: np.ndarray,
    y: np.ndarray,
    similarity: str = "cosine",
    exact_max_n: int = 3000,
    pairs: int = 1_000_000,
    seed: int = 0,
) -> float:
    """RSA of two row-aligned spaces: exact up to `exact_max_n` items, else over sampled pairs."""
    sample = None if len(x) <= exact_max_n else pair_sample(len(x), pairs, seed)
    return spearman(
        pair_similarities(x, similarity, sample), pair_similarities(y, similarity, sample)
    )


def rsa(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """RSA of each requested comparison, per split and similarity."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        n = len(spaces.input)
        sample = (
            None if n <= params["exact_max_n"] else pair_sample(n, params["pairs"], params["seed"])
        )
        roles = sorted({r for c in params["comparisons"] for r in COMPARISONS[c]})
        for similarity in params["similarity"]:
            sims = {role: pair_similarities(spaces.of(role), similarity, sample) for role in roles}
            for comparison in params["comparisons"]:
                a, b = COMPARISONS[comparison]
                yield ResultRow(
                    split, "rsa", comparison, spearman(sims[a], sims[b]), similarity=similarity
                )
            del sims


# --- kNN Jaccard -----------------------------------------------------------------------------


def jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean Jaccard similarity of the first k columns of two neighbour lists."""
    o = overlap_per_item(a, b, k).astype(np.float64)
    return float((o / (2 * k - o)).mean())


def knn_jaccard(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """Mean kNN Jaccard similarity of each requested comparison, per split, similarity and k."""
    ks = sorted(set(params["k"]))
    for split in probe.splits:
        roles = sorted({r for c in params["comparisons"] for r in COMPARISONS[c]})
        for similarity in params["similarity"]:
            lists = {role: probe.neighbors(split, role, ks[-1], similarity) for role in roles}
            for comparison in params["comparisons"]:
                a, b = COMPARISONS[comparison]
                for k in ks:
                    value = jaccard(lists[a], lists[b], k)
                    yield ResultRow(
                        split, "knn_jaccard", comparison, value, k=k, similarity=similarity
                    )


# --- validation ------------------------------------------------------------------------------


def check_cka(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    n = context.n_items
    if n is not None and n < 2:
        yield "", f"CKA needs at least 2 items; the {context.split} split has {n}"


def check_rsa(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    n = context.n_items
    if n is not None and n < 3:
        yield "", f"RSA needs at least 3 items (3 pairs); the {context.split} split has {n}"


@hookimpl
def register_metrics(register: Callable[[MetricSpec], None]) -> None:
    register(
        MetricSpec(
            name="cka",
            compute=cka,
            params={"comparisons": _COMPARISON_PARAM},
            description="linear centred kernel alignment (Kornblith et al. 2019)",
            compares=tuple(COMPARISONS),
            value_range=(0.0, 1.0),
            check=check_cka,
            # Like mNNO, these three measure how alike two spaces are, they do not score a mapping:
            # no direction is better (higher_is_better stays None).
            label="CKA",
        )
    )
    register(
        MetricSpec(
            name="rsa",
            compute=rsa,
            params={
                "comparisons": _COMPARISON_PARAM,
                "similarity": Param(
                    str,
                    default=["cosine"],
                    many=True,
                    choices=SIMILARITIES,
                    doc="pairwise similarity: cosine, or negative squared Euclidean distance",
                ),
                "exact_max_n": Param(
                    int, default=3000, min=3, max=5000, doc="exact over all pairs up to this N"
                ),
                "pairs": Param(
                    int, default=1_000_000, min=1000, doc="sampled pairs above exact_max_n"
                ),
                "seed": Param(int, default=0, min=0, doc="seed of the pair sample"),
            },
            description="Spearman correlation of pairwise similarities (representational similarity analysis)",
            compares=tuple(COMPARISONS),
            value_range=(-1.0, 1.0),
            check=check_rsa,
            label="RSA",
        )
    )
    register(
        MetricSpec(
            name="knn_jaccard",
            compute=knn_jaccard,
            uses_neighbors=True,
            params={"comparisons": _COMPARISON_PARAM, **MNNO_PARAMS},  # k and similarity as mnno's
            description="mean Jaccard similarity of the k-NN sets of two spaces",
            compares=tuple(COMPARISONS),
            value_range=(0.0, 1.0),
            check=check_k_fits,
            label="k-NN Jaccard",
        )
    )
