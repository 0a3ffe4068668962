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

from xmodal.neighbor_search import Backend, Recall, resolve_backend, search
from xmodal.neighbors import DEFAULT_SIMILARITY, _check_k, knn, resolve_similarity

if TYPE_CHECKING:
    from xmodal.components import NeighborBackendSpec, SimilaritySpec

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
    """Neighbour lists of the spaces that do not change across runs, from the study's backend.

    `get(..., neighbors=config)` uses the neighbour backend a run's `neighbors` config names
    (`xmodal.neighbor_search`); without one, the exact `xmodal.knn`. Lists of an approximate
    backend are cached under their own keys, with the exact lists of a recall sample (`recall`).
    """

    # Exported keys of recall samples start with this marker (`items`, `put`).
    RECALL = "__recall__"

    def __init__(
        self,
        k_hint: int = 10,
        similarities: Mapping[str, SimilaritySpec] | None = None,
        backends: Mapping[str, NeighborBackendSpec] | None = None,
    ) -> None:
        self.k_hint = k_hint
        # The registry's similarities (None: the process-wide registry's, looked up by `knn`).
        self.similarities = similarities
        # The registry's neighbour backends (None: the process-wide registry's).
        self.backends = backends
        self._lists: dict[tuple[Any, ...], np.ndarray] = {}
        self._recalls: dict[tuple[Any, ...], Recall] = {}

    def backend(self, neighbors: Mapping[str, Any] | None) -> Backend | None:
        """The backend a run's `neighbors` config names (None: exact `knn`)."""
        if not neighbors or neighbors.get("backend") is None:
            return None
        backends = self.backends
        if backends is None:
            from xmodal.plugins import get_registry

            backends = get_registry(strict=False).neighbor_backends
        return resolve_backend(neighbors, backends)

    def full_key(
        self,
        key: tuple[Any, ...],
        similarity: str,
        include_self: bool,
        neighbors: Mapping[str, Any] | None = None,
    ) -> tuple[Any, ...]:
        backend = self.backend(neighbors)
        return (*key, similarity, include_self, *(backend.token if backend else ()))

    def has(
        self,
        key: tuple[Any, ...],
        similarity: str,
        include_self: bool,
        neighbors: Mapping[str, Any] | None = None,
    ) -> bool:
        return self.full_key(key, similarity, include_self, neighbors) in self._lists

    def items(self) -> list[tuple[tuple[Any, ...], np.ndarray]]:
        """Every cached array by key: the lists, then the recall samples (`RECALL`-keyed)."""
        recalls = [((self.RECALL, *k), r.stacked()) for k, r in self._recalls.items()]
        return [*self._lists.items(), *recalls]

    def put(self, full_key: tuple[Any, ...], lists: np.ndarray) -> None:
        """Adopt neighbour lists computed elsewhere (keys as returned by `items`)."""
        if full_key and full_key[0] == self.RECALL:
            self._recalls[full_key[1:]] = Recall.unstack(lists)
        else:
            self._lists[full_key] = lists

    def recall(self, full_key: tuple[Any, ...]) -> Recall | None:
        """The recall sample of lists from an approximate backend (None: exact lists)."""
        return self._recalls.get(full_key)

    def get(
        self,
        key: tuple[Any, ...],
        vectors: np.ndarray,
        k: int,
        similarity: str,
        include_self: bool,
        neighbors: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        backend = self.backend(neighbors)
        full_key = (*key, similarity, include_self, *(backend.token if backend else ()))
        cached = self._lists.get(full_key)
        if cached is None or cached.shape[1] < k:
            # The hint is capped by the space's size; k itself is not, so a k too large for
            # the space gets knn's own error instead of silently fewer neighbours.
            limit = len(vectors) - (0 if include_self else 1)
            k_max = max(k, min(self.k_hint, limit))
            spec = resolve_similarity(similarity, self.similarities)
            if backend is None:
                cached = knn(vectors, k_max, similarity=spec, include_self=include_self).indices
            else:
                _check_k(k_max, len(vectors), include_self, "knn")  # knn's error for a bad k
                cached, recall = search(backend, vectors, k_max, spec, include_self)
                if recall is not None:
                    self._recalls[full_key] = recall
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
    # The run's neighbour backend (`Run.neighbors`; empty: exact).
    neighbor_config: Mapping[str, Any] = attrs.field(factory=dict)
    # (split, role, similarity) -> (cache, full key, k) of each list handed out since the last
    # `take_recalls`: what the measurement in progress used.
    _used: dict[tuple[str, str, str], tuple[NeighborCache, tuple[Any, ...], int]] = attrs.field(
        factory=dict
    )

    @property
    def splits(self) -> list[str]:
        return list(self.spaces)

    def neighbors(
        self, split: str, role: str, k: int, similarity: str = DEFAULT_SIMILARITY
    ) -> np.ndarray:
        """Indices (N×k, best first) of each item's k nearest neighbours in one space of a split."""
        spaces = self.spaces[split]
        if role != "predicted":
            cache = self.cache
            key = spaces.input_key if role == "input" else spaces.target_key
        else:
            if self._predicted is None:  # this run's own predictions: cached for this run only
                self._predicted = NeighborCache(
                    self.cache.k_hint, self.cache.similarities, self.cache.backends
                )
            cache, key = self._predicted, (split,)
        config = self.neighbor_config
        lists = cache.get(key, spaces.of(role), k, similarity, self.include_self, config)
        full_key = cache.full_key(key, similarity, self.include_self, config)
        used = self._used.get((split, role, similarity))
        self._used[(split, role, similarity)] = (cache, full_key, max(k, used[2] if used else 0))
        return lists

    def take_recalls(self, ks: Any = ()) -> list[tuple[str, str, int, str, float]]:
        """(split, role, k, similarity, recall@k) of the approximate lists handed out since the
        last call, for each k of `ks` up to the largest k asked of each list (that k alone when
        `ks` is empty); empty for exact lists. Forgets what was handed out."""
        ks = [ks] if isinstance(ks, int) else list(ks)
        out = []
        for (split, role, similarity), (cache, full_key, asked) in self._used.items():
            recall = cache.recall(full_key)
            if recall is None:
                continue
            lists = cache._lists[full_key]
            wanted = sorted({int(k) for k in ks if int(k) <= asked} or {asked})
            out.extend((split, role, k, similarity, recall.at(lists, k)) for k in wanted)
        self._used.clear()
        return out
