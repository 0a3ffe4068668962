"""The alignment measures of the paper's successors: debiased CKA, mutual k-NN, CKNNA, cycle k-NN
and the modality gap (docs/metrics.md gives each definition exactly).

Each compares two row-aligned spaces of one split, with `mnno`'s comparison names: `pred-input`,
`pred-target`, `input-target` (the first space of the name is A, the second B).

- `debiased_cka`: linear CKA with the unbiased HSIC estimator of Song et al. (2012),
  HSIC_1(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)),
  K̃, L̃ the linear kernels with zeroed diagonals; CKA_1 = HSIC_1(K, L) / sqrt(HSIC_1(K, K)
  HSIC_1(L, L)) (Nguyen et al. 2021; Murphy et al. 2024). Near 0 for independent spaces at any n,
  where the biased `cka` is not. Computed in float64 without any N×N matrix when d is small.
- `mutual_knn`: Huh et al. (2024): (1/N) Σ_i |NN_A(i) ∩ NN_B(i)| / k, the item never its own
  neighbour. It is mNNO with `include_self = false`, whatever `[measure] include_self` says.
- `cknna`: Huh et al.'s centred kernel nearest-neighbour alignment, as their released code
  computes it: HSIC_1 of the cosine kernels restricted to mutual k-NN pairs, normalised like CKA.
- `cycle_knn`: Huh et al.: the fraction of items i that are among the k nearest neighbours in A of
  at least one of their own k nearest neighbours in B.
- `modality_gap`: Liang et al. (2022): ‖mean_i a_i/‖a_i‖ − mean_i b_i/‖b_i‖‖, for two spaces of
  equal dimension.

The k-NN measures read the probe's cached neighbour lists (`probe.neighbors`); with
`[measure] include_self = true` they ask for k + 1 and drop the item itself (always first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import CheckContext, MetricSpec, Param, Probe, ResultRow, hookimpl, overlap
from xmodal_plugins.metrics import SIMILARITY

COMPARISONS = {
    "pred-input": ("predicted", "input"),
    "pred-target": ("predicted", "target"),
    "input-target": ("input", "target"),
}
_ROW_CHUNK = 1 << 20  # neighbour entries (rows × k) handled at once by the k-NN measures


def _comparisons(default: list[str] | None = None) -> Param:
    return Param(
        str,
        default=default if default is not None else list(COMPARISONS),
        many=True,
        choices=tuple(COMPARISONS),
        doc="the pairs of spaces compared (predicted, input, target), A first; one row each",
    )


def _k_param(default: list[int], minimum: int = 1) -> Param:
    return Param(
        int,
        default=default,
        many=True,
        min=minimum,
        doc="neighbourhood sizes; the item is never its own neighbour, so each k <= N - 1",
    )


def _roles(comparisons: list[str]) -> list[str]:
    return sorted({role for c in comparisons for role in COMPARISONS[c]})


# --- debiased linear CKA ---------------------------------------------------------------------


class _Space:
    """One space for HSIC_1 with the linear kernel, column-centred in float64.

    Centring changes no HSIC_1 value (K_ij + u_i + u_j + c has the same HSIC_1 as K_ij) and
    makes K·1 = 0, so K̃·1 = −r with r_i = ‖x_i‖² (K̃ the kernel with a zeroed diagonal).
    """

    def __init__(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.x = x - x.mean(axis=0)
        self.r = np.einsum("ij,ij->i", self.x, self.x)


def _frobenius_cross(a: _Space, b: _Space) -> float:
    """tr(K L) = ‖Aᵀ B‖_F² for K = A Aᵀ, L = B Bᵀ: by the cheaper of the two products."""
    n, da, db = len(a.x), a.x.shape[1], b.x.shape[1]
    if n * n * (da + db + 1) < n * da * db:
        return float(np.sum((a.x @ a.x.T) * (b.x @ b.x.T)))
    return float(np.sum((a.x.T @ b.x) ** 2))


def _hsic1(a: _Space, b: _Space) -> float:
    """n(n−3)·HSIC_1(K, L) (Song et al. 2012, eq. 5); the factor cancels in CKA."""
    n = len(a.x)
    trace = _frobenius_cross(a, b) - float(a.r @ b.r)  # tr(K̃ L̃) = Σ_{i≠j} K_ij L_ij
    ones = float(a.r.sum()) * float(b.r.sum())  # 1ᵀK̃1 · 1ᵀL̃1 = (−Σr)(−Σq)
    cross = float(a.r @ b.r)  # 1ᵀK̃L̃1 = (K̃1)·(L̃1) = r·q
    return trace + ones / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)


def _cka_of(a: _Space, b: _Space, self_terms: Mapping[int, float]) -> float:
    denominator = self_terms[id(a)] * self_terms[id(b)]
    if not denominator > 0:
        return float("nan")  # a constant space (or rounding of one): undefined
    return float(np.clip(_hsic1(a, b) / np.sqrt(denominator), -1.0, 1.0))


def debiased_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of two row-aligned matrices (N×dx, N×dy, N >= 4); NaN if one is
    constant. In [−1, 1]."""
    a, b = _Space(x), _Space(y)
    return _cka_of(a, b, {id(a): _hsic1(a, a), id(b): _hsic1(b, b)})


def debiased_cka(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """Debiased linear CKA of each requested comparison, per split."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        prepared = {role: _Space(spaces.of(role)) for role in _roles(params["comparisons"])}
        self_terms = {id(s): _hsic1(s, s) for s in prepared.values()}
        for comparison in params["comparisons"]:
            a, b = COMPARISONS[comparison]
            value = _cka_of(prepared[a], prepared[b], self_terms)
            yield ResultRow(split, "debiased_cka", comparison, value)


# --- neighbour lists without the item itself -------------------------------------------------


def _others(probe: Probe, split: str, role: str, k: int, similarity: str) -> np.ndarray:
    """Each item's k nearest *other* items (N×k, best first, ties to the lower index).

    With include_self the probe's lists start with the item itself, followed by its nearest
    others in the same order as without it: ask for k + 1 and drop the first column."""
    if not probe.include_self:
        return probe.neighbors(split, role, k, similarity)
    return probe.neighbors(split, role, k + 1, similarity)[:, 1:]


# --- mutual k-NN and cycle k-NN --------------------------------------------------------------


def mutual_knn_score(nn_a: np.ndarray, nn_b: np.ndarray, k: int) -> float:
    """(1/N) Σ_i |NN_A(i) ∩ NN_B(i)| / k from the first k columns of two lists of others."""
    return overlap(nn_a, nn_b, k)


def cycle_knn_score(nn_a: np.ndarray, nn_b: np.ndarray, k: int) -> float:
    """(1/N) Σ_i [i ∈ ∪_{j ∈ NN_B(i)} NN_A(j)]: from i to its neighbours in B, back through
    their neighbours in A (Huh et al.'s `cycle_knn(feats_A, feats_B)`)."""
    a = np.asarray(nn_a)[:, :k]
    b = np.asarray(nn_b)[:, :k]
    n = len(a)
    hits = 0
    step = max(1, _ROW_CHUNK // (k * k))
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        back = a[b[rows]]  # rows × k × k: the A-neighbours of each B-neighbour
        hits += int(np.count_nonzero((back == rows[:, None, None]).any(axis=(1, 2))))
    return hits / n


def _knn_rows(
    name: str, score: Callable[[np.ndarray, np.ndarray, int], float]
) -> Callable[[Probe, Mapping[str, Any]], Iterator[ResultRow]]:
    def compute(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
        ks = sorted(set(params["k"]))
        for split in probe.splits:
            roles = _roles(params["comparisons"])
            for similarity in params["similarity"]:
                lists = {r: _others(probe, split, r, ks[-1], similarity) for r in roles}
                for comparison in params["comparisons"]:
                    a, b = COMPARISONS[comparison]
                    for k in ks:
                        value = score(lists[a], lists[b], k)
                        yield ResultRow(split, name, comparison, value, k=k, similarity=similarity)

    compute.__name__ = name
    compute.__doc__ = f"`{name}` of each requested comparison, per split, similarity and k."
    return compute


mutual_knn = _knn_rows("mutual_knn", mutual_knn_score)
cycle_knn = _knn_rows("cycle_knn", cycle_knn_score)


# --- CKNNA -----------------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _neighbour_kernel(unit: np.ndarray, nn: np.ndarray) -> np.ndarray:
    """K_ij = cos(x_i, x_j) for every j in row i of `nn` (N×k, float64)."""
    n, k = nn.shape
    out = np.empty((n, k), dtype=np.float64)
    step = max(1, (_ROW_CHUNK * 4) // (k * unit.shape[1]))  # about 32 MB of gathered rows
    for start in range(0, n, step):
        stop = min(start + step, n)
        out[start:stop] = np.einsum("id,ikd->ik", unit[start:stop], unit[nn[start:stop]])
    return out


def _masked_hsic1(
    n: int, rows: np.ndarray, cols: np.ndarray, k_vals: np.ndarray, l_vals: np.ndarray
) -> float:
    """n(n−3)·HSIC_1(α∘K, α∘L) for a mask α given by its (row, col) entries (no diagonal, each
    pair once), K and L symmetric, with k_vals, l_vals their values at those entries.

    The masked matrices A = α∘K, B = α∘L need not be symmetric: tr(ÃB̃) = Σ_ij A_ij B_ji counts
    the reciprocal entries (α_ij = α_ji = 1) only, and 1ᵀÃB̃1 = (Aᵀ1)·(B1)."""
    keys = rows * n + cols
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    transposed = cols * n + rows
    at = np.minimum(np.searchsorted(sorted_keys, transposed), len(sorted_keys) - 1)
    reciprocal = sorted_keys[at] == transposed
    trace = float(np.sum(k_vals[reciprocal] * l_vals[order[at[reciprocal]]]))
    ones = float(k_vals.sum()) * float(l_vals.sum())
    col_sums_a = np.bincount(cols, weights=k_vals, minlength=n)
    row_sums_b = np.bincount(rows, weights=l_vals, minlength=n)
    cross = float(col_sums_a @ row_sums_b)
    return trace + ones / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)


def _mutual_entries(nn_a: np.ndarray, nn_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (row i, column c of nn_a) where nn_a[i, c] is also in row i of nn_b."""
    n, k = nn_a.shape
    span = n
    offset = np.arange(n, dtype=np.int64)[:, None] * span
    flat_b = np.sort((nn_b + offset).ravel())
    flat_a = (nn_a + offset).ravel()
    at = np.minimum(np.searchsorted(flat_b, flat_a), flat_b.size - 1)
    hit = (flat_b[at] == flat_a).reshape(n, k)
    return np.nonzero(hit)


def cknna_score(
    unit_a: np.ndarray, unit_b: np.ndarray, nn_a: np.ndarray, nn_b: np.ndarray, k: int
) -> float:
    """CKNNA of two spaces (rows L2-normalised, float64) from their lists of k nearest others.

    HSIC_1(α∘K, α∘L) / sqrt(HSIC_1(α_A∘K, α_A∘K) · HSIC_1(α_B∘L, α_B∘L)), α the mutual-neighbour
    mask, α_A and α_B each space's own k-NN mask; NaN when the denominator is not positive."""
    nn_a = np.ascontiguousarray(nn_a[:, :k], dtype=np.int64)
    nn_b = np.ascontiguousarray(nn_b[:, :k], dtype=np.int64)
    n = len(nn_a)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    kernel_a = _neighbour_kernel(unit_a, nn_a)  # K at A's own neighbours
    kernel_b = _neighbour_kernel(unit_b, nn_b)  # L at B's own neighbours
    self_a = _masked_hsic1(n, rows, nn_a.ravel(), kernel_a.ravel(), kernel_a.ravel())
    self_b = _masked_hsic1(n, rows, nn_b.ravel(), kernel_b.ravel(), kernel_b.ravel())
    i, c = _mutual_entries(nn_a, nn_b)
    j = nn_a[i, c]
    k_vals = kernel_a[i, c]
    l_vals = np.einsum("id,id->i", unit_b[i], unit_b[j])
    cross = _masked_hsic1(n, i.astype(np.int64), j, k_vals, l_vals)
    denominator = self_a * self_b
    if not denominator > 0:
        return float("nan")
    return float(cross / np.sqrt(denominator))


def cknna(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """CKNNA of each requested comparison, per split, similarity and k."""
    ks = sorted(set(params["k"]))
    for split in probe.splits:
        spaces = probe.spaces[split]
        roles = _roles(params["comparisons"])
        unit = {role: _unit_rows(spaces.of(role)) for role in roles}
        for similarity in params["similarity"]:
            lists = {r: _others(probe, split, r, ks[-1], similarity) for r in roles}
            for comparison in params["comparisons"]:
                a, b = COMPARISONS[comparison]
                for k in ks:
                    value = cknna_score(unit[a], unit[b], lists[a], lists[b], k)
                    yield ResultRow(split, "cknna", comparison, value, k=k, similarity=similarity)


# --- modality gap ----------------------------------------------------------------------------


def modality_gap_score(x: np.ndarray, y: np.ndarray) -> float:
    """‖mean of x's L2-normalised rows − mean of y's‖ (equal dimensions; a zero row stays zero)."""
    return float(np.linalg.norm(_unit_rows(x).mean(axis=0) - _unit_rows(y).mean(axis=0)))


def modality_gap(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """The modality gap of each requested comparison whose spaces have equal dimensions."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        for comparison in params["comparisons"]:
            a, b = (spaces.of(role) for role in COMPARISONS[comparison])
            if a.shape[1] != b.shape[1]:
                continue  # no common space: undefined, no row (docs/metrics.md)
            yield ResultRow(split, "modality_gap", comparison, modality_gap_score(a, b))


# --- validation ------------------------------------------------------------------------------


def check_k_others(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    """Each k must leave k other items in the split: k <= N − 1 (the item is never its own
    neighbour in these measures, whatever `include_self` says)."""
    n = context.n_items
    if n is None:
        return
    for k in params["k"]:
        if k > n - 1:
            yield (
                "k",
                f"k = {k} is larger than the {context.split} split allows: it has {n} items, "
                f"and an item is not its own neighbour here, so k can be at most {n - 1}",
            )


def _check_min_items(
    what: str, minimum: int
) -> Callable[[Mapping[str, Any], CheckContext], Iterator[tuple[str, str]]]:
    def check(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
        n = context.n_items
        if n is not None and n < minimum:
            yield (
                "",
                f"{what} needs at least {minimum} items (the unbiased HSIC divides by "
                f"n(n−3)); the {context.split} split has {n}",
            )

    return check


def check_cknna(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    yield from _check_min_items("CKNNA", 4)(params, context)
    yield from check_k_others(params, context)


@hookimpl
def register_metrics(register: Callable[[MetricSpec], None]) -> None:
    # Like mnno and cka, these say how alike two spaces are; they do not score a mapping, so no
    # direction is better (higher_is_better stays None).
    register(
        MetricSpec(
            name="debiased_cka",
            compute=debiased_cka,
            params={"comparisons": _comparisons()},
            description="linear CKA with the unbiased HSIC estimator (Song et al. 2012)",
            compares=tuple(COMPARISONS),
            value_range=(-1.0, 1.0),
            check=_check_min_items("debiased CKA", 4),
            label="debiased CKA",
        )
    )
    knn_params = {
        "comparisons": _comparisons(),
        "k": _k_param([10]),
        "similarity": SIMILARITY,
    }
    for name, compute, label, description in (
        (
            "mutual_knn",
            mutual_knn,
            "mutual k-NN",
            "mutual k-NN alignment (Huh et al. 2024): mNNO without the item itself",
        ),
        (
            "cycle_knn",
            cycle_knn,
            "cycle k-NN",
            "cycle k-NN (Huh et al. 2024): i is a neighbour in A of its neighbours in B",
        ),
    ):
        register(
            MetricSpec(
                name=name,
                compute=compute,
                params=knn_params,
                description=description,
                compares=tuple(COMPARISONS),
                value_range=(0.0, 1.0),
                check=check_k_others,
                uses_neighbors=True,
                label=label,
            )
        )
    register(
        MetricSpec(
            name="cknna",
            compute=cknna,
            params={
                "comparisons": _comparisons(),
                "k": _k_param([10], minimum=2),
                "similarity": Param(
                    str,
                    default=["cosine"],
                    many=True,
                    choices=("cosine",),
                    doc="the kernel is the cosine similarity, the neighbours are by cosine",
                ),
            },
            description="centred kernel alignment restricted to mutual k-NN pairs (Huh et al. 2024)",
            compares=tuple(COMPARISONS),
            check=check_cknna,
            uses_neighbors=True,
            label="CKNNA",
        )
    )
    register(
        MetricSpec(
            name="modality_gap",
            compute=modality_gap,
            params={"comparisons": _comparisons(["pred-target"])},
            description="distance between the centroids of the L2-normalised spaces (Liang et al. 2022)",
            compares=tuple(COMPARISONS),
            value_range=(0.0, 2.0),
            label="modality gap",
        )
    )
