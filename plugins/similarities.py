"""Built-in similarities for exact neighbour search: `cosine` and `euclidean`.

Each says how the blocked kNN (`xmodal.knn`) sees a space: s(i, j) = weight · (Y[i] · Y[j]) −
offset[i] − offset[j] with (Y, offset) = prepare(X, squared row norms).

- `cosine`: the rows divided by their norms (float32), no offset. Undefined for a zero vector.
- `euclidean`: the negative squared Euclidean distance, 2·a·b − ‖a‖² − ‖b‖²: the rows as they
  are, offset by their squared norms, weight 2. Same ranking as the negative distance.

These are the computations xmodal has always made, in the same float32 operations, so the
neighbour lists are bit-identical to those before similarities became plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xmodal import SimilaritySpec, hookimpl


def cosine_form(X: np.ndarray, sq_norms: np.ndarray) -> tuple[np.ndarray, None]:
    """Unit rows: X / ‖X‖ (norms from float64 squared norms, rounded to float32)."""
    return X / np.sqrt(sq_norms).astype(np.float32)[:, None], None


def euclidean_form(X: np.ndarray, sq_norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows themselves, offset by their squared norms (float32)."""
    return X, sq_norms.astype(np.float32)


@hookimpl
def register_similarities(register: Callable[[SimilaritySpec], None]) -> None:
    register(
        SimilaritySpec(
            name="cosine",
            prepare=cosine_form,
            self_similarity=1.0,
            rejects_zero_rows=True,
            description="cosine similarity (the angle between vectors; undefined for zero vectors)",
        )
    )
    register(
        SimilaritySpec(
            name="euclidean",
            prepare=euclidean_form,
            self_similarity=0.0,
            weight=2.0,
            description="negative squared Euclidean distance (same ranking as the distance)",
        )
    )
