"""Pairing items across feature files by id: duplicates are errors, unpaired ids are reported."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from xmodal import XmodalError

log = logging.getLogger("xmodal.data")


class AlignmentError(XmodalError):
    """Feature files cannot be paired item by item."""


def _examples(values: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:n])
    return shown + (", …" if len(values) > n else "")


def check_unique(source: str, ids: Sequence[str]) -> None:
    if len(set(ids)) == len(ids):  # the common case, without counting every id
        return
    duplicates = [i for i, c in Counter(ids).items() if c > 1]
    if duplicates:
        raise AlignmentError(
            f"{source}: {len(duplicates)} id(s) occur more than once: {_examples(duplicates)}"
        )


def align(
    ids_by_source: Mapping[str, Sequence[str]], drop_unpaired: bool
) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The ids present in every source (in the first source's order) and each source's row index.

    Ids missing from some source are listed per source (count and examples); they are an error
    unless `drop_unpaired`, in which case they are dropped with a warning saying how many.
    When every source lists the same ids in the same order (rows paired by position, or files
    written together), each row index is simply 0..n-1, found without a dictionary of the ids
    (which for 10^6 items would cost hundreds of MB).
    """
    sources = list(ids_by_source.items())
    first_source, first_ids = sources[0]
    if first_ids and all(ids == first_ids for _, ids in sources[1:]):
        check_unique(first_source, first_ids)
        same = np.arange(len(first_ids), dtype=np.int64)
        return tuple(first_ids), {source: same for source, _ in sources}
    for source, ids in ids_by_source.items():
        check_unique(source, ids)
    sets = {source: set(ids) for source, ids in ids_by_source.items()}
    common = set.intersection(*sets.values())
    lines = []
    for source, ids in ids_by_source.items():
        only = [i for i in ids if i not in common]
        if only:
            lines.append(
                f"  {source}: {len(only)} id(s) not in every other file, e.g. {_examples(only)}"
            )
    if lines and not drop_unpaired:
        raise AlignmentError(
            "feature files do not hold the same items:\n"
            + "\n".join(lines)
            + "\n  set drop_unpaired = true in [data.params] to keep only the items in every file"
        )
    if lines:
        log.warning("dropping unpaired items (drop_unpaired = true):\n%s", "\n".join(lines))
    first = next(iter(ids_by_source.values()))
    order = tuple(i for i in first if i in common)
    if not order:
        raise AlignmentError("the feature files have no item id in common")
    index = {}
    for source, ids in ids_by_source.items():
        position = {item: row for row, item in enumerate(ids)}
        index[source] = np.array([position[i] for i in order], dtype=np.int64)
    return order, index
