"""What the approximate neighbour backends (`hnsw` in plugins/ann.py, `ivf` in plugins/ivf.py)
share: how a similarity becomes vectors faiss can search, a projection on principal directions
read in row blocks, the number of candidates to search, and faiss's threads.

A similarity is s(i, j) = weight · Y[i]·Y[j] − offset[i] − offset[j], from the
`SimilaritySpec`'s `prepare`. Its form (`form_of`): without offsets, 'unit' rows (cosine) or
'inner'; offsets equal to weight/2 · ‖Y‖² make s a negative squared distance ('l2',
euclidean); any other offset is 'augmented', searched as an inner product of augmented vectors
(`index_vectors`). The distance forms, 'unit' and 'l2', can be searched by L2 distance (unit
rows rank alike by L2 and by inner product).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import numpy as np

from xmodal import SimilaritySpec, require

PCA_SAMPLE = 50_000  # rows whose principal directions `pca` projects on
# Rows read and prepared at a time. Small enough (12 MB at 384-d) that the allocator reuses one
# block's memory for the next: fresh memory costs ~5 ms per MB at first touch on a VM whose host
# backs it lazily (docs/performance.md), and a 100 MB block would be fresh every time.
BLOCK_ROWS = 8_192
SEARCH_ROWS = 16_384  # queries per faiss search call: a progress report after each
DISTANCE_FORMS = ("unit", "l2")  # the forms searched by L2 distance


def faiss_module(backend: str) -> Any:
    """faiss, or a clear error naming the `ann` extra and the backend that needs it."""
    return require("faiss", "ann", f"the `{backend}` neighbour backend", package="faiss-cpu")


@contextmanager
def faiss_threads(faiss: Any, threads: int) -> Iterator[None]:
    """faiss's OpenMP threads set to `threads` (0: left as they are), restored afterwards."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads if threads > 0 else previous)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def candidates_wanted(params: Mapping[str, Any], others: int, n: int) -> int:
    """Candidates to search per item: `candidates` (0: 2 · others, never fewer than others),
    plus one for the item itself, at most n."""
    return min(max(int(params.get("candidates", 0)) or 2 * others, others) + 1, n)


def index_vectors(
    X: np.ndarray, similarity: SimilaritySpec, weight: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """(item vectors, query vectors, form_of the prepared rows): the space as faiss searches
    `similarity` (of `weight`) in it. The augmented form as [Y_j, −offset_j / weight] for items
    and [Y_i, 1] for queries, whose inner product ranks j for i as s does; the others as
    prepared ('l2' by L2, 'inner' by inner product, 'unit' by either)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y, offset = prepared(X, slice(None), similarity)
    Y = np.ascontiguousarray(Y)
    form = form_of(Y, offset, weight)
    if form != "augmented":
        return Y, Y, form
    items = np.hstack([Y, (-offset / weight).astype(np.float32)[:, None]])
    queries = np.hstack([Y, np.ones((len(Y), 1), np.float32)])
    return items, queries, form


def check_weight(similarity: SimilaritySpec, backend: str) -> float:
    """The similarity's weight, which must be positive: larger dot products nearer."""
    weight = float(similarity.weight)
    if weight <= 0:
        raise ValueError(
            f"similarity {similarity.name!r} has weight {weight}; the {backend} backend needs a "
            "positive weight (larger dot products nearer)"
        )
    return weight


def prepared(
    X: np.ndarray, rows: Any, similarity: SimilaritySpec, sq: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Y, offset) of the similarity's form for X[rows] alone (`sq`: all rows' squared norms,
    if known): a form is row by row, so the projected search prepares blocks and candidates and
    never a copy of the whole space."""
    block = np.asarray(X[rows], dtype=np.float32)
    norms = squared_norms(block) if sq is None else sq[rows]
    Y, offset = similarity.prepare(block, norms)
    return np.asarray(Y, dtype=np.float32), None if offset is None else np.asarray(offset, "f8")


def squared_norms(block: np.ndarray) -> np.ndarray:
    """‖row‖² of each row, summed in float64."""
    return np.einsum("ij,ij->i", block, block, dtype=np.float64)


@attrs.frozen(eq=False)
class Projection:
    """A space in `dims` principal directions of its similarity's form (see `project`)."""

    items: np.ndarray  # n × dims (+1 for the augmented form) float32: what is indexed
    queries: np.ndarray  # the same, or with the augmented coordinate set to 1
    form: str  # form_of the prepared rows: 'unit', 'l2', 'inner' or 'augmented'
    squared_norms: np.ndarray  # ‖X_i‖² in float64, for preparing rows again

    @property
    def by_l2(self) -> bool:
        """Searched by L2 distance (distance forms), else by inner product."""
        return self.form in DISTANCE_FORMS


def project(
    X: np.ndarray, similarity: SimilaritySpec, weight: float, dims: int
) -> Projection | None:
    """X's prepared rows in `dims` principal directions of a seeded sample of PCA_SAMPLE items,
    read from X in row blocks of BLOCK_ROWS; None when `dims` is not below the form's dimension.

    Distance forms (euclidean; cosine, whose rows are unit) are projected on the sample's centred
    principal directions and searched by L2; other inner products on the uncentred ones (a
    centring would change their ranking), with the augmented coordinate of `index_vectors` kept as
    it is.
    """
    n = len(X)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, PCA_SAMPLE), replace=False))
    form, shift, moments, total = None, None, None, None
    for start in range(0, len(sample), BLOCK_ROWS):  # the sample's moments, block by block
        rows = sample[start : start + BLOCK_ROWS]
        Y, offset = prepared(X, rows, similarity)
        if dims >= Y.shape[1]:
            return None
        form = _same_form(form, form_of(Y, offset, weight), similarity, rows)
        Y64 = Y.astype(np.float64)
        if shift is None:
            # Moments about the first block's mean (about 0 for the uncentred inner form): summed
            # about 0, a mean far larger than the spread would cancel digits when removed.
            shift = np.zeros(Y.shape[1]) if form == "inner" else Y64.mean(axis=0)
        Y64 -= shift
        moments = Y64.T @ Y64 if moments is None else moments + Y64.T @ Y64
        total = Y64.sum(axis=0) if total is None else total + Y64.sum(axis=0)
    if form != "inner":
        mean = total / len(sample)  # of the shifted rows
        moments -= len(sample) * np.outer(mean, mean)
    _, vectors = np.linalg.eigh(moments)
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)
    items = np.empty((n, dims + (form == "augmented")), np.float32)
    sq = np.empty(n, np.float64)
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n))
        block = np.asarray(X[rows], dtype=np.float32)
        sq[rows] = squared_norms(block)
        Y, offset = prepared(block, slice(None), similarity, sq[rows])
        _same_form(form, form_of(Y, offset, weight), similarity, np.arange(rows.start, rows.stop))
        np.matmul(Y, basis, out=items[rows, :dims])
        if form == "augmented":
            items[rows, dims] = -offset / weight
    queries = items
    if form == "augmented":
        queries = items.copy()
        queries[:, dims] = 1.0
    return Projection(items, queries, form, sq)


def _same_form(form: str | None, found: str, similarity: SimilaritySpec, rows: np.ndarray) -> str:
    if form is not None and found != form:
        raise ValueError(
            f"similarity {similarity.name!r} prepared rows {rows[0]}-{rows[-1]} as {found} "
            f"form, unlike others ({form}); search without pca"
        )
    return found


def form_of(Y: np.ndarray, offset: np.ndarray | None, weight: float) -> str:
    """How prepared rows are searched: 'unit' (inner product of unit rows), 'l2' (offsets are
    weight/2 · ‖Y‖²: a negative squared distance), 'inner', or 'augmented' (other offsets)."""
    norms = squared_norms(Y)
    if offset is None:
        return "unit" if np.allclose(norms, 1.0, atol=1e-4) else "inner"
    half = 0.5 * weight * norms
    scale = max(1.0, float(np.abs(half).max(initial=0)))
    return "l2" if np.allclose(offset, half, rtol=1e-5, atol=1e-6 * scale) else "augmented"
