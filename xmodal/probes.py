"""Probing one run: the input, target and predicted spaces of each split, and their neighbours.

Neighbour lists of the input and target spaces do not depend on the run, only on the data, the
split and the similarity; `NeighborCache` computes them once per study for the largest k asked
and serves every smaller k as a prefix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from xmodal.neighbors import DEFAULT_SIMILARITY, knn, resolve_similarity

if TYPE_CHECKING:
    from xmodal.components import SimilaritySpec

ROLES = ("input", "target", "predicted")


def check_k_fits(params: Mapping[str, Any], context: Any) -> Iterator[tuple[str, str]]:
    """`MetricSpec.check` for metrics with a `k` list: each k must leave room in the split.

    `context` is an `xmodal.CheckContext`; before the split sizes are known there is nothing
    to check."""
    n = context.n_items
    if n is None:
        return
    limit = n if context.include_self else n - 1
    for k in params["k"]:
        if k > limit:
            yield (
                "k",
                f"k = {k} is larger than the {context.split} split allows: it has {n} "
                f"items, so k can be at most {limit}",
            )


@attrs.frozen(eq=False)
class Spaces:
    """Row-aligned input, target and predicted vectors of one split's items.

    `input_key` and `target_key` identify those rows (dataset, feature set, split, fold) so their
    neighbour lists can be shared by every run that reads the same rows.
    """

    split: str
    input: np.ndarray
    target: np.ndarray
    predicted: np.ndarray
    input_key: tuple[Any, ...]
    target_key: tuple[Any, ...]
    ids: tuple[str, ...] = ()
    labels: tuple[frozenset[int], ...] | None = None

    def of(self, role: str) -> np.ndarray:
        return getattr(self, role)


class NeighborCache:
    """Exact neighbour lists of the spaces that do not change across runs."""

    def __init__(
        self, k_hint: int = 10, similarities: Mapping[str, SimilaritySpec] | None = None
    ) -> None:
        self.k_hint = k_hint
        # The registry's similarities (None: the process-wide registry's, looked up by `knn`).
        self.similarities = similarities
        self._lists: dict[tuple[Any, ...], np.ndarray] = {}

    def has(self, key: tuple[Any, ...], similarity: str, include_self: bool) -> bool:
        return (*key, similarity, include_self) in self._lists

    def items(self) -> list[tuple[tuple[Any, ...], np.ndarray]]:
        return list(self._lists.items())

    def put(self, full_key: tuple[Any, ...], lists: np.ndarray) -> None:
        """Adopt neighbour lists computed elsewhere (keys as returned by `items`)."""
        self._lists[full_key] = lists

    def get(
        self, key: tuple[Any, ...], vectors: np.ndarray, k: int, similarity: str, include_self: bool
    ) -> np.ndarray:
        full_key = (*key, similarity, include_self)
        cached = self._lists.get(full_key)
        if cached is None or cached.shape[1] < k:
            # The hint is capped by the space's size; k itself is not, so a k too large for
            # the space gets knn's own error instead of silently fewer neighbours.
            limit = len(vectors) - (0 if include_self else 1)
            k_max = max(k, min(self.k_hint, limit))
            spec = resolve_similarity(similarity, self.similarities)
            cached = knn(vectors, k_max, similarity=spec, include_self=include_self).indices
            self._lists[full_key] = cached
        return cached[:, :k]


@attrs.define
class Probe:
    """What a metric sees of one run: its spaces per evaluated split, with cached neighbours.
    `seed` is the run's seed: metrics seed their resampling from it (`xmodal.rng_for`)."""

    spaces: Mapping[str, Spaces]
    cache: NeighborCache
    include_self: bool
    _predicted: NeighborCache | None = None
    seed: int = 0

    @property
    def splits(self) -> list[str]:
        return list(self.spaces)

    def neighbors(
        self, split: str, role: str, k: int, similarity: str = DEFAULT_SIMILARITY
    ) -> np.ndarray:
        """Indices (N×k, best first) of each item's k nearest neighbours in one space of a split."""
        spaces = self.spaces[split]
        if role != "predicted":
            key = spaces.input_key if role == "input" else spaces.target_key
            return self.cache.get(key, spaces.of(role), k, similarity, self.include_self)
        if self._predicted is None:  # this run's own predictions: cached for this run only
            self._predicted = NeighborCache(self.cache.k_hint, self.cache.similarities)
        return self._predicted.get((split,), spaces.predicted, k, similarity, self.include_self)
