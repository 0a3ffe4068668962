"""Built-in split strategies: how a study divides its items into train and test folds.

- `dataset`: the dataset's own train/test marks (`PairedData.split_marks`).
- `random`: a seeded random share of the items (`test_fraction`) is held out.
- `kfold`: a seeded permutation cut into `folds` parts; each part is the test items of one fold.
- `grouped_kfold`: k folds in which items that share a label are never on both sides: the
  groups (items connected by shared labels) are dealt, largest first, to the fold with the
  fewest items so far.
- `stratified_kfold`: k folds in which every label set is spread as evenly as it can be: the
  items of each label set, in a seeded order, are dealt round-robin across the folds.
- `column`: the dataset's own fold numbers (`PairedData.fold`), e.g. published CV folds.

`dataset`, `random` and `kfold` give exactly the indices xmodal has always used for a given seed
(tests/test_hook_split_strategies.py pins them), so run ids and results do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xmodal import PairedData, Param, SplitStrategySpec, XmodalError, hookimpl

Folds = dict[int | None, tuple[np.ndarray, np.ndarray]]

FOLDS = Param(int, default=5, min=2, max=50, doc="number of folds: one run per fold")


def _fold_range(params: Mapping[str, Any]) -> range:
    return range(params["folds"])


def _by_fold_number(fold_of: np.ndarray, folds: int) -> Folds:
    """Fold f tests the items numbered f and trains on the others."""
    return {f: (np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(folds)}


def dataset_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """The dataset's own train/test marks."""
    if data.split_marks is None:
        raise XmodalError(
            "the dataset has no train/test split of its own; "
            'set split_strategy = "kfold" or split_strategy = "random" in [data]'
        )
    marks = np.asarray(data.split_marks)
    return {None: (np.flatnonzero(marks == "train"), np.flatnonzero(marks == "test"))}


def random_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """A seeded permutation; its first round(n · test_fraction) items (at least 1) are tested."""
    n = data.n_items
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * params["test_fraction"]))
    return {None: (order[n_test:], order[:n_test])}


def kfold_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """A seeded permutation cut into `folds` nearly equal consecutive parts."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    parts = np.array_split(order, params["folds"])
    return {
        f: (np.concatenate([p for i, p in enumerate(parts) if i != f]), part)
        for f, part in enumerate(parts)
    }


def _labels(data: PairedData, strategy: str) -> tuple[frozenset[int], ...]:
    if data.labels is None:
        raise XmodalError(
            f"split {strategy!r} needs item labels and the dataset has none; "
            'use split_strategy = "kfold", or a dataset that gives labels'
        )
    return data.labels


def label_groups(labels: tuple[frozenset[int], ...]) -> np.ndarray:
    """Each item's group: items sharing a label are in one group (transitively); an item without
    labels is a group of its own. Groups are numbered by their first item."""
    parent: dict[Any, Any] = {}

    def root(x: Any) -> Any:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for item, its in enumerate(labels):
        node = ("item", item)
        for label in its:
            a, b = root(node), root(("label", label))
            if a != b:
                parent[b] = a
    number: dict[Any, int] = {}
    return np.array(
        [number.setdefault(root(("item", i)), len(number)) for i in range(len(labels))],
        dtype=np.int64,
    )


def grouped_kfold_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """Groups of items connected by shared labels, dealt to `folds` folds: groups in a seeded
    order, largest first, each to the fold with the fewest items so far (the lowest on a tie)."""
    folds = params["folds"]
    group = label_groups(_labels(data, "grouped_kfold"))
    sizes = np.bincount(group)
    if sizes.size < folds:
        raise XmodalError(
            f"split 'grouped_kfold' with folds = {folds} needs at least {folds} groups of items, "
            f"and the labels join the {data.n_items} items into {sizes.size}; lower folds"
        )
    order = np.random.default_rng(seed).permutation(sizes.size)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds, np.int64)
    fold_of_group = np.empty(sizes.size, np.int64)
    for g in order.tolist():
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return _by_fold_number(fold_of_group[group], folds)


def stratified_kfold_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """Each label set's items, in a seeded order, dealt round-robin to `folds` folds; the deal
    goes on across label sets (in the order of their sorted labels), so folds differ in size by
    at most one item."""
    folds = params["folds"]
    strata: dict[tuple[int, ...], list[int]] = {}
    for item, its in enumerate(_labels(data, "stratified_kfold")):
        strata.setdefault(tuple(sorted(its)), []).append(item)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(data.n_items, np.int64)
    start = 0
    for key in sorted(strata):
        members = np.asarray(strata[key], np.int64)
        members = members[rng.permutation(members.size)]
        fold_of[members] = (start + np.arange(members.size)) % folds
        start = (start + members.size) % folds
    return _by_fold_number(fold_of, folds)


def column_split(data: PairedData, params: Mapping[str, Any], seed: int) -> Folds:
    """The dataset's fold numbers: fold f tests the items numbered f."""
    folds = params["folds"]
    if data.fold is None:
        raise XmodalError(
            "split 'column' uses the dataset's own fold numbers (PairedData.fold) and this "
            'dataset gives none; use split_strategy = "kfold"'
        )
    fold_of = np.asarray(data.fold, np.int64)
    if fold_of.size and int(fold_of.max()) >= folds:
        top = int(fold_of.max())
        raise XmodalError(
            f"split 'column': the dataset numbers folds up to {top} but folds = {folds}; "
            f"set folds = {top + 1}"
        )
    return _by_fold_number(fold_of, folds)


@hookimpl
def register_split_strategies(register: Callable[[SplitStrategySpec], None]) -> None:
    register(
        SplitStrategySpec(
            name="dataset",
            folds=dataset_split,
            seeded=False,
            default=True,
            description="the dataset's own train/test marks",
        )
    )
    register(
        SplitStrategySpec(
            name="random",
            folds=random_split,
            params={
                "test_fraction": Param(
                    float,
                    default=0.2,
                    min=0.01,
                    max=0.99,
                    doc="share of the items held out as test items (at least one)",
                )
            },
            description="a seeded random share of the items is held out (test_fraction)",
        )
    )
    for name, folds, description in (
        ("kfold", kfold_split, "k folds of a seeded permutation; each item is tested once"),
        (
            "grouped_kfold",
            grouped_kfold_split,
            "k folds; items sharing a label are never both train and test items",
        ),
        (
            "stratified_kfold",
            stratified_kfold_split,
            "k folds; each label set is spread evenly over the folds",
        ),
    ):
        register(
            SplitStrategySpec(
                name=name,
                folds=folds,
                fold_ids=_fold_range,
                params={"folds": FOLDS},
                description=description,
            )
        )
    register(
        SplitStrategySpec(
            name="column",
            folds=column_split,
            fold_ids=_fold_range,
            params={"folds": Param(int, min=2, max=1000, doc="how many folds the dataset numbers")},
            seeded=False,
            description="the dataset's own fold numbers (PairedData.fold)",
        )
    )
