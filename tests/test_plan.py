"""The plan: a study expands into one run per grid point, each with a stable content-hash id."""

from __future__ import annotations

import attrs

from tests.conftest import TINY_STUDY
from xmodal.planning import make_plan
from xmodal.plugins import get_registry
from xmodal.study import parse_study


def plan_of(text: str, file: str = "s.toml"):
    registry = get_registry()
    return make_plan(parse_study(text, file, registry), registry)


def ids(text: str) -> list[str]:
    return [c.run_id for c in plan_of(text)]


def test_grid_is_the_product_of_sweeps():
    # 2 mappings x 2 directions x (trained + untrained) x 1 seed
    assert len(plan_of(TINY_STUDY)) == 8
    swept = TINY_STUDY.replace("depth = 2", "depth = [1, 2, 3]").replace(
        "seeds = [0]", "seeds = [0, 1]"
    )
    # (1 linear + 3 mlp) x 2 directions x 2 run kinds x 2 seeds
    assert len(plan_of(swept)) == 32


def test_run_ids_are_stable_and_independent_of_study_name_and_formatting():
    renamed = TINY_STUDY.replace('name = "tiny"', 'name = "other"').replace(
        "epochs = 3", "epochs   =   3  # same"
    )
    assert ids(TINY_STUDY) == ids(renamed)
    assert plan_of(TINY_STUDY, "a.toml")[0].run_id == plan_of(TINY_STUDY, "b/c.toml")[0].run_id


def test_spelling_out_a_default_does_not_change_the_run_id():
    explicit = TINY_STUDY.replace(
        "batch_size = 32", 'batch_size = 32\noptimizer = "adam"\nlr = 0.001'
    )
    assert ids(TINY_STUDY) == ids(explicit)


def test_what_changes_results_changes_the_run_id():
    base = set(ids(TINY_STUDY))
    for old, new in [
        ("epochs = 3", "epochs = 4"),
        ("n_items = 240", "n_items = 241"),
    ]:
        changed = TINY_STUDY.replace(old, new)
        trained = {c.run_id for c in plan_of(changed) if c.kind == "trained"}
        assert not trained & base, (old, new)


def test_untrained_runs_do_not_depend_on_loss_or_training_settings():
    two_losses = TINY_STUDY.replace(
        '[[loss]]\nname = "mse"', '[[loss]]\nname = "mse"\n\n[[loss]]\nname = "cosine"'
    )
    runs = plan_of(two_losses)
    untrained = [c for c in runs if c.kind == "untrained"]
    assert len(untrained) == 4  # 2 mappings x 2 directions, shared by both losses
    assert all(c.loss is None and c.train is None for c in untrained)
    assert len([c for c in runs if c.kind == "trained"]) == 8


def test_backward_direction_swaps_input_and_target():
    runs = plan_of(TINY_STUDY)
    assert {(c.direction, c.input_features, c.target_features) for c in runs} == {
        ("forward", "text", "image"),
        ("backward", "image", "text"),
    }


def test_kfold_adds_one_run_per_fold():
    kfold = TINY_STUDY.replace(
        'directions = ["forward", "backward"]',
        'directions = "forward"\nsplit_strategy = "kfold"\nfolds = 3',
    )
    runs = plan_of(kfold)
    assert sorted({c.fold for c in runs}) == [0, 1, 2]
    assert len(runs) == 2 * 2 * 3


def test_an_integer_spelling_of_a_float_setting_is_the_same_run():
    spelled = TINY_STUDY.replace("batch_size = 32", "batch_size = 32\nweight_decay = 0\nlr = 1")
    as_floats = TINY_STUDY.replace(
        "batch_size = 32", "batch_size = 32\nweight_decay = 0.0\nlr = 1.0"
    )
    assert ids(spelled) == ids(as_floats)
    assert ids(TINY_STUDY.replace("batch_size = 32", "batch_size = 32\nweight_decay = 0")) == ids(
        TINY_STUDY
    )


def test_metrics_are_measurements_of_a_run_not_part_of_its_id():
    fewer_k = TINY_STUDY.replace("k = [1, 5, 10]", "k = [1, 5]")
    assert ids(fewer_k) == ids(TINY_STUDY)
    before = {m.measurement_id for c in plan_of(TINY_STUDY) for m in c.measurements()}
    after = {m.measurement_id for c in plan_of(fewer_k) for m in c.measurements()}
    assert before and after and not before & after


def test_the_data_fingerprint_is_part_of_the_run_id():
    registry = get_registry()
    study = parse_study(TINY_STUDY, "s.toml", registry)
    one = make_plan(study, registry, lambda name, params: "data-v1")
    two = make_plan(study, registry, lambda name, params: "data-v2")
    assert {c.data_fingerprint for c in one} == {"data-v1"}
    assert not {c.run_id for c in one} & {c.run_id for c in two}


def test_a_dataset_without_a_fingerprint_is_fingerprinted_by_its_arrays():
    registry = get_registry()
    study = parse_study(TINY_STUDY, "s.toml", registry)
    spec = registry.datasets[study.dataset.name]
    bare = attrs.evolve(spec, fingerprint=None)
    registry.datasets[study.dataset.name] = bare
    try:
        runs = make_plan(study, registry)
    finally:
        registry.datasets[study.dataset.name] = spec
    assert {c.data_fingerprint.split(":")[0] for c in runs} == {"arrays"}


# Run ids of TINY_STUDY (with the identity reference on) as they were before run kinds became
# plugins: a change of the run id format must be deliberate (bump RUN_FORMAT), never a side effect.
PINNED_TINY_IDS = [
    ("identity", "forward", "identity", "9f9f6b9bfd1ab105"),
    ("trained", "forward", "linear", "388b9f28d9a08bc5"),
    ("untrained", "forward", "linear", "7cae6577e1515010"),
    ("trained", "forward", "mlp", "00916f76649b7104"),
    ("untrained", "forward", "mlp", "556a3e3b7cca6bba"),
    ("identity", "backward", "identity", "02b384f5072bf12c"),
    ("trained", "backward", "linear", "2628ed09386d02c4"),
    ("untrained", "backward", "linear", "b5fa250a5e73c146"),
    ("trained", "backward", "mlp", "7c0a162ca69930bf"),
    ("untrained", "backward", "mlp", "2f39489fdd55fd27"),
]


def test_run_ids_of_the_trained_untrained_and_identity_kinds_are_pinned():
    registry = get_registry()
    study = parse_study(TINY_STUDY + "\n[runs]\nidentity = true\n", "s.toml", registry)
    runs = make_plan(study, registry, lambda name, params: "data-v1")
    assert [(c.kind, c.direction, c.mapping, c.run_id) for c in runs] == PINNED_TINY_IDS
