"""Train/test item indices for a run: the dataset's own split, a seeded random split, or k folds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xmodal.data import PairedData
from xmodal.errors import XmodalError


def split_indices(
    data: PairedData, split: Mapping[str, Any], fold: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, sorted, for one run's split settings."""
    n = data.n_items
    kind = split["kind"]
    if kind == "dataset":
        if data.split is None:
            raise XmodalError(
                "the dataset has no train/test split of its own; "
                'set split = "kfold" or split = "random" in [data]'
            )
        marks = np.asarray(data.split)
        train, test = np.flatnonzero(marks == "train"), np.flatnonzero(marks == "test")
    else:
        order = np.random.default_rng(split["seed"]).permutation(n)
        if kind == "random":
            n_test = max(1, round(n * split["test_fraction"]))
            test, train = order[:n_test], order[n_test:]
        elif kind == "kfold":
            parts = np.array_split(order, split["folds"])
            test = parts[fold]
            train = np.concatenate([p for i, p in enumerate(parts) if i != fold])
        else:
            raise XmodalError(f"unknown split kind {kind!r}")
    if len(train) == 0 or len(test) == 0:
        raise XmodalError(f"split {kind!r} leaves {len(train)} train and {len(test)} test items")
    return np.sort(train), np.sort(test)
