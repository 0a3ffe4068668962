"""Paired feature data, as dataset plugins hand it to the runner."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from xmodal.errors import XmodalError, did_you_mean

SPLIT_MARKS = ("train", "test")


class DataError(XmodalError, ValueError):
    """A dataset plugin returned `PairedData` that does not hold together (shapes, split, labels)."""


def _where(instance: PairedData) -> str:
    return f"PairedData ({instance.source})" if instance.source else "PairedData"


def _check_features(instance: PairedData, attribute: attrs.Attribute, value: Mapping) -> None:
    n = len(instance.ids)
    for name, matrix in value.items():
        shape = getattr(matrix, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != n:
            raise DataError(
                f"{_where(instance)}: feature set {name!r} has shape {shape}, expected ({n}, d): "
                f"one row per item of ids ({n} items)"
            )


def _one_per_item(
    instance: PairedData, name: str, value: Any, each: str, without: str
) -> np.ndarray | None:
    """`value` (None, or one `each` per item) as an array; a DataError for any other shape."""
    if value is None:
        return None
    n = len(instance.ids)
    array = np.asarray(value)
    if array.ndim != 1 or len(array) != n:
        raise DataError(
            f"{_where(instance)}: {name} has shape {array.shape}, expected ({n},): one {each} "
            f"per item of ids ({n} items); use {name}=None for a dataset without {without}"
        )
    return array


def _check_split(instance: PairedData, attribute: attrs.Attribute, value: Any) -> None:
    """`split_marks` is None, or one "train"/"test" mark per item: anything else would drop
    items."""
    marks = _one_per_item(instance, "split_marks", value, "'train' or 'test'", "a split of its own")
    if marks is None:
        return
    n = len(marks)
    if marks.dtype.kind == "U":
        bad_rows = np.flatnonzero((marks != "train") & (marks != "test"))
    else:
        bad_rows = np.array([i for i, m in enumerate(marks.tolist()) if m not in SPLIT_MARKS])
    if bad_rows.size == 0:
        return
    values = marks[bad_rows].tolist()
    counts = Counter(repr(v) for v in values)
    described = ", ".join(f"{count} marked {value}" for value, count in counts.most_common(5)) + (
        f" and {len(counts) - 5} more values" if len(counts) > 5 else ""
    )
    items = ", ".join(repr(instance.ids[i]) for i in bad_rows[:3])
    more = " …" if bad_rows.size > 3 else ""
    guesses = {v: did_you_mean(v, SPLIT_MARKS) for v in set(values) if isinstance(v, str) and v}
    hint = "; ".join(f"did you mean {g!r} for {v!r}?" for v, g in guesses.items() if g)
    raise DataError(
        f"{_where(instance)}: split marks must be 'train' or 'test'; {bad_rows.size} of {n} "
        f"items are not ({described}; items {items}{more}), and would be left out of every run"
        + (f"; {hint}" if hint else "")
    )


def _check_labels(instance: PairedData, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and len(value) != len(instance.ids):
        raise DataError(
            f"{_where(instance)}: labels has {len(value)} entries, expected one per item of ids "
            f"({len(instance.ids)} items)"
        )


def _check_fold(instance: PairedData, attribute: attrs.Attribute, value: Any) -> None:
    """`fold` is None, or one fold number (an integer >= 0) per item."""
    numbers = _one_per_item(instance, "fold", value, "fold number", "folds")
    if numbers is None:
        return
    if numbers.dtype.kind not in "iu":
        raise DataError(
            f"{_where(instance)}: fold numbers must be integers (0, 1, 2, ...), got dtype "
            f"{numbers.dtype}"
        )
    negative = np.flatnonzero(numbers < 0)
    if negative.size:
        items = ", ".join(repr(instance.ids[i]) for i in negative[:3])
        raise DataError(
            f"{_where(instance)}: fold numbers must be >= 0; {negative.size} of {len(numbers)} items have a "
            f"negative one (items {items}{' …' if negative.size > 3 else ''})"
        )


# `PairedData(split=...)`: the keyword split marks had before they were named `split_marks`
# (accepted for a release; docs/plugins.md).
_UNSET: Any = object()


@attrs.frozen(eq=False, init=False)
class PairedData:
    """Row-aligned feature sets of the same N items in several modalities.

    `features` maps a feature-set name to an (N, d) float32 matrix; row i of every matrix is item i.
    A matrix may be a read-only `np.memmap` (as the `files` dataset hands over .npy files): it is
    kept as it is, never copied whole; runs read the rows they use.
    `split_marks` optionally marks each item "train" or "test" (the dataset's own split): a 1-D
    array of N marks, nothing else (an unknown mark would silently leave its item out of every
    run). The keyword `split=` (its old name) is still accepted, and `.split` still reads it.
    `labels` optionally gives each item a set of label ids (for label-based retrieval metrics).
    `fold` optionally gives each item a fold number (an integer >= 0): the fold in which it is a
    test item, for the `column` split strategy (a dataset's own cross-validation folds).
    Anything inconsistent raises `DataError` when the object is made.
    """

    ids: tuple[str, ...]
    features: Mapping[str, np.ndarray] = attrs.field(validator=_check_features)
    split_marks: np.ndarray | None = attrs.field(default=None, validator=_check_split)
    labels: tuple[frozenset[int], ...] | None = attrs.field(default=None, validator=_check_labels)
    source: str = ""
    fold: np.ndarray | None = attrs.field(default=None, validator=_check_fold)

    def __init__(
        self,
        ids: tuple[str, ...],
        features: Mapping[str, np.ndarray],
        split_marks: np.ndarray | None = None,
        labels: tuple[frozenset[int], ...] | None = None,
        source: str = "",
        fold: np.ndarray | None = None,
        *,
        split: Any = _UNSET,
    ) -> None:
        if split is not _UNSET:
            if split_marks is not None:
                raise DataError(
                    f"PairedData ({source or 'a dataset'}): split marks given twice, as "
                    "split_marks= and as split= (its old name); give split_marks= only"
                )
            split_marks = split
        self.__attrs_init__(ids, features, split_marks, labels, source, fold)

    @property
    def split(self) -> np.ndarray | None:
        """The split marks under their old name (read-only; `split_marks`)."""
        return self.split_marks

    @property
    def n_items(self) -> int:
        return len(self.ids)


@attrs.frozen(eq=False)
class SplitData:
    """One evaluation split of one run: input and target rows of the train and test items."""

    name: str
    train_index: np.ndarray
    test_index: np.ndarray
