"""xmodal's built-in neighbour backend, `exact`, registered through the `register_neighbor_backends`
hook like any plugin's backend (llm's default-plugins model; see `xmodal.default_executors`).

This module is a default plugin: it always loads, before the entry points and whatever
`XMODAL_LOAD_PLUGINS` says, so every study can find neighbours. `exact` is the blocked kNN of
`xmodal.neighbors` (docs/performance.md): the lists of `xmodal.knn`, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from xmodal.components import NeighborBackendSpec, SimilaritySpec
from xmodal.hookspecs import hookimpl


def exact_search(
    X: Any, k: int, similarity: SimilaritySpec, include_self: bool, params: Mapping[str, Any]
) -> Any:
    """The exact lists: `xmodal.knn(X, k, similarity, include_self).indices`."""
    from xmodal.neighbors import knn

    return knn(X, k, similarity=similarity, include_self=include_self).indices


@hookimpl
def register_neighbor_backends(register: Callable[[Any], None]) -> None:
    register(
        NeighborBackendSpec(
            name="exact",
            search=exact_search,
            exact=True,
            default=True,
            description="exact blocked kNN in this process (cost ∝ N²·d; ties by lower index)",
        )
    )
