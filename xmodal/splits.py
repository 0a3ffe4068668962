"""Train/test item indices for a run: the folds of the study's split strategy, checked.

A split strategy is a plugin component (`SplitStrategySpec`, hook `register_split_strategies`).
A run records its split as `{"kind": strategy name, **strategy parameters, "seed": split seed}`
(the seed only when the strategy is `seeded`): that mapping enters the run id, so the same study
and seed always mean the same indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xmodal.components import SplitStrategySpec
from xmodal.data import PairedData
from xmodal.errors import XmodalError

Folds = dict[int | None, tuple[np.ndarray, np.ndarray]]


def run_split(spec: SplitStrategySpec, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """What a run records of its split: the strategy's name, its parameters and (if the
    strategy is seeded) the seed."""
    split: dict[str, Any] = {"kind": spec.name, **params}
    if spec.seeded:
        split["seed"] = seed
    return split


def strategy_params(split: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The strategy parameters and seed a run's recorded split stands for."""
    params = {k: v for k, v in split.items() if k not in ("kind", "seed")}
    return params, int(split.get("seed", 0))


def fold_ids(spec: SplitStrategySpec, params: Mapping[str, Any]) -> list[int | None]:
    """The strategy's fold ids for `params` (no data needed), checked."""
    where = f"split strategy {spec.name!r}"
    try:
        ids = list(spec.fold_ids(params))
    except XmodalError as exc:
        raise XmodalError(f"{where}: {exc}") from None
    except Exception as exc:
        raise XmodalError(f"{where}: fold_ids failed: {type(exc).__name__}: {exc}") from None
    if not ids:
        raise XmodalError(f"{where}: fold_ids returned no folds")
    for fold in ids:
        if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int | np.integer)):
            raise XmodalError(f"{where}: fold ids must be integers or None, got {fold!r}")
    if len(set(ids)) != len(ids):
        raise XmodalError(f"{where}: fold_ids repeats a fold id: {ids}")
    if None in ids and len(ids) > 1:
        raise XmodalError(f"{where}: fold id None stands for a single fold, got {ids}")
    return [None if f is None else int(f) for f in ids]


def make_folds(spec: SplitStrategySpec, data: PairedData, split: Mapping[str, Any]) -> Folds:
    """Every fold of `split` on `data`: {fold id: (sorted train indices, sorted test indices)}.

    The strategy's result is checked: the declared fold ids, integer indices in range, no item
    twice, train and test disjoint and both non-empty. Anything wrong is an `XmodalError` naming
    the strategy (a `data.split_strategy` problem of `xmodal validate`).
    """
    params, seed = strategy_params(split)
    expected = fold_ids(spec, params)
    where = f"split strategy {spec.name!r}"
    try:
        result = spec.folds(data, params, seed)
    except XmodalError:
        raise
    except Exception as exc:
        raise XmodalError(f"{where} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, Mapping):
        raise XmodalError(
            f"{where}: folds returned {type(result).__name__}; expected a mapping "
            "{fold id: (train indices, test indices)}"
        )
    got = list(result)
    if set(got) != set(expected):
        raise XmodalError(
            f"{where}: folds returned fold ids {sorted(got, key=str)} but fold_ids declares "
            f"{expected}"
        )
    n = data.n_items
    folds: Folds = {}
    for fold in expected:
        pair = result[fold]
        named = "" if fold is None else f" (fold {fold})"
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise XmodalError(f"{where}{named}: expected (train indices, test indices)")
        train, test = (
            _indices(part, n, f"{where}{named}: {role}")
            for part, role in zip(pair, ("train", "test"), strict=True)
        )
        if len(train) == 0 or len(test) == 0:
            raise XmodalError(
                f"split {spec.name!r}{named} leaves {len(train)} train and {len(test)} test items"
            )
        both = np.intersect1d(train, test)
        if both.size:
            shown = ", ".join(repr(data.ids[i]) for i in both[:3])
            raise XmodalError(
                f"{where}{named}: {both.size} item(s) are both train and test items: {shown}"
            )
        folds[fold] = (train, test)
    return folds


def _indices(part: Any, n: int, where: str) -> np.ndarray:
    array = np.asarray(part)
    if array.ndim != 1:
        raise XmodalError(f"{where} indices must be a 1-D array, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.dtype.kind not in "iu":
        raise XmodalError(f"{where} indices must be integers, got dtype {array.dtype}")
    array = np.sort(array.astype(np.int64))
    if array[0] < 0 or array[-1] >= n:
        raise XmodalError(f"{where} indices must lie in [0, {n}), got {array[0]}..{array[-1]}")
    if array.size > 1 and (array[1:] == array[:-1]).any():
        raise XmodalError(f"{where} indices repeat an item")
    return array
