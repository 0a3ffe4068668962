"""Paired feature data, as dataset plugins hand it to the runner."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np


def _check_features(instance: PairedData, attribute: attrs.Attribute, value: Mapping) -> None:
    n = len(instance.ids)
    for name, matrix in value.items():
        if matrix.ndim != 2 or matrix.shape[0] != n:
            raise ValueError(f"feature set {name!r} has shape {matrix.shape}, expected ({n}, d)")


@attrs.frozen(eq=False)
class PairedData:
    """Row-aligned feature sets of the same N items in several modalities.

    `features` maps a feature-set name to an (N, d) float32 matrix; row i of every matrix is item i.
    `split` optionally marks each item "train" or "test" (the dataset's own split).
    `labels` optionally gives each item a set of label ids (for label-based retrieval metrics).
    """

    ids: tuple[str, ...]
    features: Mapping[str, np.ndarray] = attrs.field(validator=_check_features)
    split: np.ndarray | None = None
    labels: tuple[frozenset[int], ...] | None = None
    source: str = ""

    @property
    def n_items(self) -> int:
        return len(self.ids)


@attrs.frozen(eq=False)
class SplitData:
    """One evaluation split of one run: input and target rows of the train and test items."""

    name: str
    train_index: np.ndarray
    test_index: np.ndarray
