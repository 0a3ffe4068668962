"""The `register_split_strategies` hook: how a study divides its items into train and test folds.

The built-in strategies are the plugin `splits`; `dataset`, `random` and `kfold` must give the
indices (and so the run ids) xmodal gave before they became plugins: the digests below were
computed by the code before the move (xmodal.splits.split_indices at commit 8a7069e).
"""

from __future__ import annotations

import hashlib
import textwrap

import numpy as np
import pytest

from tests.conftest import TINY_STUDY
from xmodal import PairedData, Param, SplitStrategySpec, hookimpl
from xmodal.data import DataError
from xmodal.errors import XmodalError
from xmodal.params import expand
from xmodal.planning import make_plan
from xmodal.plugins import get_registry
from xmodal.splits import make_folds, run_split
from xmodal.study import parse_study


def _digest(train: np.ndarray, test: np.ndarray) -> str:
    raw = np.asarray(train, np.int64).tobytes() + b"|" + np.asarray(test, np.int64).tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def _synthetic(**params: object) -> PairedData:
    spec = get_registry().datasets["synthetic"]
    return spec.load(expand(spec.params, params)[0])


def _folds(name: str, data: PairedData, seed: int = 0, **params: object) -> dict:
    spec = get_registry().split_strategies[name]
    return make_folds(spec, data, run_split(spec, expand(spec.params, params)[0], seed))


# --- the built-ins give the indices they always gave ---------------------------------------------

PINNED = {  # (strategy, seed, params) -> {fold: digest of (train, test)}
    ("dataset", 0, ()): {None: "d6fd399c6b0e69e8"},
    ("random", 0, (("test_fraction", 0.2),)): {None: "c295dbc9c9f57d80"},
    ("random", 7, (("test_fraction", 0.2),)): {None: "62921c9ebbccc50d"},
    ("kfold", 0, (("folds", 3),)): {
        0: "b9a6b52ffdb30206",
        1: "de88b528bcf28c36",
        2: "533971e9dd188f3b",
    },
    ("kfold", 7, (("folds", 3),)): {
        0: "aa43c8320b31b2e9",
        1: "0b0c888dc7b2bbed",
        2: "8f7fe4fd0bd7d899",
    },
}


@pytest.mark.parametrize(("name", "seed", "params"), list(PINNED))
def test_dataset_random_and_kfold_give_the_indices_they_always_gave(name, seed, params):
    data = _synthetic(n_items=101)
    folds = _folds(name, data, seed, **dict(params))
    assert {fold: _digest(*pair) for fold, pair in folds.items()} == PINNED[(name, seed, params)]
    for train, test in folds.values():
        assert train.dtype == test.dtype == np.int64
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted, no repeats


def _ids(extra: str) -> str:
    text = TINY_STUDY.replace(
        'directions = ["forward", "backward"]', f'directions = ["forward", "backward"]\n{extra}'
    )
    registry = get_registry()
    runs = make_plan(parse_study(text, "s.toml", registry), registry)
    return hashlib.sha256(",".join(r.run_id for r in runs).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("extra", "pinned"),
    [
        ("", "f52f1fbef9de4eb3"),
        (
            'split_strategy = "dataset"\nsplit_seed = 9',
            "f52f1fbef9de4eb3",
        ),  # not seeded: seed left out
        ('split_strategy = "random"\ntest_fraction = 0.3\nsplit_seed = 4', "1123aec0f193eeb9"),
        ('split_strategy = "kfold"\nfolds = 3\nsplit_seed = 2', "ae87a37727a37ebf"),
    ],
)
def test_run_ids_of_dataset_random_and_kfold_studies_are_unchanged(extra, pinned):
    assert _ids(extra) == pinned


# --- a third-party strategy --------------------------------------------------------------------


def _halves(data: PairedData, params: dict, seed: int) -> dict:
    """Fold 0 tests the first `share` of the items (in a seeded order), fold 1 the rest."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    cut = round(data.n_items * params["share"])
    return {0: (order[cut:], order[:cut]), 1: (order[:cut], order[cut:])}


class HalvesPlugin:
    @staticmethod
    @hookimpl
    def register_split_strategies(register):
        register(
            SplitStrategySpec(
                name="halves",
                folds=_halves,
                fold_ids=lambda params: (0, 1),
                params={"share": Param(float, default=0.5, min=0.1, max=0.9)},
                description="two folds that swap train and test",
            )
        )


SMALL_STUDY = """\
[study]
name = "small"

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = "forward"
{split}

[data.params]
n_items = 60
dim_text = 6
dim_image = 5
clusters = 6

[[mapping]]
name = "linear"

[train]
epochs = 1

[runs]
untrained = false

[[metric]]
name = "mnno"
k = [1, 3]
"""


def small_study(split: str) -> str:
    return SMALL_STUDY.format(split=textwrap.dedent(split).strip())


def test_a_strategy_registered_in_process_runs_a_study(xmodal_tester):
    xmodal_tester.register(HalvesPlugin, name="halves_plugin")
    result = xmodal_tester.run(
        small_study('split_strategy = "halves"\nshare = 0.25\nsplit_seed = 3')
    )
    result.assert_ok()
    runs = result.runs()
    assert sorted(r["fold"] for r in runs) == [0, 1]
    assert {r["status"] for r in runs} == {"finished"}
    assert {r["split"] for r in runs} == {"halves"}
    assert result.results(metric="mnno", k=3)


def test_a_strategy_that_returns_overlapping_folds_is_refused_before_anything_runs(
    cli, write_study
):
    def overlapping(data, params, seed):
        everything = np.arange(data.n_items)
        return {None: (everything, everything[:5])}

    class Broken:
        @staticmethod
        @hookimpl
        def register_split_strategies(register):
            register(SplitStrategySpec(name="overlapping", folds=overlapping))

    from xmodal import plugins

    plugins.reset(plugins.load_manager(extra=[("broken_split", Broken)]))
    result = cli("validate", write_study(small_study('split_strategy = "overlapping"')))
    assert result.code != 0
    assert "split strategy 'overlapping'" in result.output
    assert "both train and test items" in result.output
    assert "Traceback" not in result.output


# --- grouped and stratified folds --------------------------------------------------------------


def _linked_labels() -> tuple[frozenset[int], ...]:
    """Items 0-2 form one group only through shared labels (0-1 share 1, 1-2 share 2)."""
    labels = [{0, 1}, {1, 2}, {2}, {3}, {3}, {4}, {5}, {6}, {6}, {7}, set(), set()]
    return tuple(frozenset(s) for s in labels)


def _paired(labels: tuple[frozenset[int], ...] | None, fold=None) -> PairedData:
    n = len(labels) if labels is not None else len(fold)
    rng = np.random.default_rng(0)
    return PairedData(
        ids=tuple(f"i{i}" for i in range(n)),
        features={"a": rng.standard_normal((n, 3)), "b": rng.standard_normal((n, 2))},
        labels=labels,
        fold=fold,
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_folds_never_split_a_group(seed):
    data = _synthetic(n_items=200, clusters=12)
    folds = _folds("grouped_kfold", data, seed, folds=4)
    tested = np.concatenate([test for _, test in folds.values()])
    assert sorted(tested.tolist()) == list(range(200))  # every item tested exactly once
    for train, test in folds.values():
        train_labels = set().union(*(data.labels[i] for i in train))
        test_labels = set().union(*(data.labels[i] for i in test))
        assert not train_labels & test_labels
    # Linked through shared labels: items 0, 1 and 2 are one group, so one fold tests all three.
    linked = _paired(_linked_labels())
    for _, test in _folds("grouped_kfold", linked, seed, folds=3).values():
        assert {0, 1, 2} <= set(test.tolist()) or not {0, 1, 2} & set(test.tolist())
        assert {3, 4} <= set(test.tolist()) or not {3, 4} & set(test.tolist())


def test_grouped_folds_are_balanced_and_deterministic():
    data = _synthetic(n_items=200, clusters=20)
    one = _folds("grouped_kfold", data, 5, folds=4)
    again = _folds("grouped_kfold", data, 5, folds=4)
    assert all(np.array_equal(one[f][1], again[f][1]) for f in one)
    sizes = [len(test) for _, test in one.values()]
    biggest_group = max(np.bincount([min(s) for s in data.labels]))
    assert max(sizes) - min(sizes) <= biggest_group


def test_stratified_folds_spread_each_label_set_evenly():
    data = _synthetic(n_items=203, clusters=7)
    folds = _folds("stratified_kfold", data, 1, folds=5)
    sizes = [len(test) for _, test in folds.values()]
    assert max(sizes) - min(sizes) <= 1
    for label in range(7):
        per_fold = [sum(data.labels[i] == {label} for i in test) for _, test in folds.values()]
        assert max(per_fold) - min(per_fold) <= 1, (label, per_fold)
    tested = np.concatenate([test for _, test in folds.values()])
    assert sorted(tested.tolist()) == list(range(203))


def test_label_strategies_need_labels():
    with pytest.raises(XmodalError, match="needs item labels and the dataset has none"):
        _folds("grouped_kfold", _paired(None, fold=np.zeros(6, int)), 0, folds=2)


def test_too_few_groups_for_the_folds_is_a_clear_error():
    with pytest.raises(XmodalError, match=r"folds = 9 needs at least 9 groups.*into 8; lower"):
        _folds("grouped_kfold", _paired(_linked_labels()), 0, folds=9)


# --- the dataset's own fold column -------------------------------------------------------------


def test_the_column_strategy_uses_the_dataset_fold_numbers():
    fold = np.array([0, 1, 2, 0, 1, 2, 2])
    folds = _folds("column", _paired(None, fold=fold), 0, folds=3)
    assert {f: test.tolist() for f, (_, test) in folds.items()} == {
        0: [0, 3],
        1: [1, 4],
        2: [2, 5, 6],
    }
    with pytest.raises(XmodalError, match="numbers folds up to 2 but folds = 2; set folds = 3"):
        _folds("column", _paired(None, fold=fold), 0, folds=2)
    with pytest.raises(XmodalError, match="dataset gives none"):
        _folds("column", _paired(_linked_labels()), 0, folds=2)


@pytest.mark.parametrize(
    ("fold", "message"),
    [
        (np.zeros(5, int), r"fold has shape \(5,\), expected \(6,\)"),
        (np.zeros(6), "fold numbers must be integers"),
        (np.array([0, 1, -1, 0, 1, 0]), "must be >= 0; 1 of 6 items"),
    ],
)
def test_paired_data_checks_its_fold_numbers(fold, message):
    with pytest.raises(DataError, match=message):
        PairedData(ids=tuple("abcdef"), features={"a": np.zeros((6, 2))}, fold=fold)


# --- the study's split settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        (
            'split_strategy = "kfolds"',
            [
                "data.split_strategy",
                "'kfolds' is not a registered split strategy",
                "did you mean 'kfold'",
            ],
        ),
        ('split_strategy = "kfold"\nfolds = 1', ["data.folds", "1 is out of range"]),
        ('split_strategy = "kfold"\nfoldz = 3', ["data.foldz", "did you mean 'folds'"]),
        (
            'split_strategy = "kfold"\ntest_fraction = 0.3',
            [
                "data.test_fraction",
                "nor a parameter of split strategy 'kfold'",
                "is a parameter of split strategy random",
            ],
        ),
        ('split_strategy = "column"', ["data.folds", "is required"]),
        (
            'split_strategy = "grouped_kfold"\nfolds = 7',
            ["data.split_strategy", "needs at least 7 groups"],
        ),
    ],
)
def test_bad_split_settings_are_clear_errors(cli, write_study, split, expected):
    result = cli("validate", write_study(small_study(split)))
    assert result.code != 0
    for piece in expected:
        assert piece in result.output, result.output
    assert "Traceback" not in result.output


def test_a_strategy_may_not_take_a_data_setting_as_a_parameter():
    with pytest.raises(ValueError, match="'split_seed' are taken"):
        SplitStrategySpec(name="x", folds=_halves, params={"split_seed": Param(int, default=0)})
