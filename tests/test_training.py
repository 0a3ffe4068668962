"""Training and probing: deterministic per seed, optimiser options, early stopping, curves, folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import TINY_STUDY, rows
from xmodal.params import expand
from xmodal.plugins import get_registry
from xmodal.study import TRAIN_PARAMS
from xmodal.train import seeded_model, train


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((6, 4))).astype(np.float32)
    return x, y


def fit(seed=0, **settings):
    registry = get_registry()
    spec = registry.mappings["mlp"]
    model = seeded_model(spec, expand(spec.params, {"depth": 1, "hidden": 16})[0], 6, 4, seed)
    x, y = data()
    return train(
        model, registry.losses["mse"], {}, x, y, {**expand(TRAIN_PARAMS, {})[0], **settings}, seed
    )


def weights(trained) -> list[bytes]:
    return [p.detach().numpy().tobytes() for p in trained.model.parameters()]


def test_the_same_seed_gives_the_same_weights_byte_for_byte():
    assert weights(fit(seed=3, epochs=3)) == weights(fit(seed=3, epochs=3))
    assert weights(fit(seed=3, epochs=3)) != weights(fit(seed=4, epochs=3))


def test_training_lowers_the_loss():
    trained = fit(epochs=30, lr=0.01)
    assert trained.losses[-1] < 0.5 * trained.losses[0]


@pytest.mark.parametrize("settings", [
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
    {"optimizer": "adamw", "weight_decay": 0.01},
    {"batch_size": "full", "lr": 0.05},
    {"shuffle": False},
    {"grad_clip": 0.1},
])  # fmt: skip
def test_optimiser_options_train(settings):
    trained = fit(epochs=15, **settings)
    assert len(trained.losses) == 15 and trained.losses[-1] < trained.losses[0]


def test_shuffling_changes_the_trajectory():
    assert weights(fit(epochs=2, shuffle=True)) != weights(fit(epochs=2, shuffle=False))


def test_early_stopping_stops_and_keeps_the_best_weights():
    trained = fit(epochs=400, lr=0.05, early_stopping=3, validation_fraction=0.2)
    assert len(trained.losses) < 400
    assert len(trained.val_losses) == len(trained.losses)
    assert trained.best_epoch == int(np.argmin(trained.val_losses)) + 1


def test_curves_record_probes_on_train_and_test_items_over_epochs(cli, write_study, db):
    study = TINY_STUDY.replace(
        "batch_size = 32", "batch_size = 32\nprobe_every = 1\nearly_stopping = 2"
    )
    assert cli("run", write_study(study), "--db", db).code == 0
    points = rows(db, "SELECT DISTINCT split, epoch FROM curves WHERE metric = 'mnno' ORDER BY ALL")
    assert points == [(s, e) for s in ("test", "train") for e in range(4)]
    assert rows(db, "SELECT count(*) FROM curves WHERE metric = 'val_loss'")[0][0] > 0


def test_identity_probe_is_the_reference_row(cli, write_study, db):
    study = TINY_STUDY + "\n[runs]\nidentity = true\n"
    assert cli("run", write_study(study), "--db", db).code == 0
    values = dict(
        rows(
            db,
            "SELECT comparison, value FROM results JOIN runs USING (run_id) WHERE state = 'identity' AND direction = 'forward' AND k = 10 AND metric = 'mnno'",
        )
    )
    assert values["pred-input"] == 1.0
    assert values["pred-target"] == values["input-target"]


def test_untrained_probe_uses_several_initialisation_seeds(cli, write_study, db):
    study = TINY_STUDY.replace("seeds = [0]", "seeds = [0, 1, 2]")
    assert cli("run", write_study(study), "--db", db).code == 0
    values = rows(
        db,
        "SELECT seed, value FROM results JOIN runs USING (run_id) WHERE state = 'untrained' AND mapping = 'mlp' AND direction = 'forward' AND comparison = 'pred-input' AND k = 10 AND metric = 'mnno' ORDER BY seed",
    )
    assert [s for s, _ in values] == [0, 1, 2]
    assert len({v for _, v in values}) > 1


def test_kfold_records_the_fold_and_tests_every_item_once(cli, write_study, db):
    study = TINY_STUDY.replace(
        'directions = ["forward", "backward"]',
        'directions = "forward"\nsplit_strategy = "kfold"\nfolds = 4',
    )
    study = study.replace('[[mapping]]\nname = "mlp"\ndepth = 2\nhidden = 32\n', "")
    assert cli("run", write_study(study), "--db", db).code == 0
    folds = rows(db, "SELECT fold, n_test, n_train FROM runs WHERE state = 'trained' ORDER BY fold")
    assert [f for f, _, _ in folds] == [0, 1, 2, 3]
    assert sum(n for _, n, _ in folds) == 240 and all(t + n == 240 for _, n, t in folds)


def test_closed_form_mappings_run_in_a_study(cli, write_study, db):
    study = TINY_STUDY.replace(
        '[[mapping]]\nname = "linear"',
        '[[mapping]]\nname = "ridge"\nalpha = [0.1, 10.0]\n\n[[mapping]]\nname = "procrustes"',
    )
    assert cli("run", write_study(study), "--db", db).code == 0
    assert rows(
        db,
        "SELECT count(DISTINCT run_id) FROM runs WHERE mapping IN ('ridge', 'procrustes') AND state = 'trained'",
    ) == [(6,)]


def test_thread_count_is_one_per_run_by_default_and_recorded(cli, write_study, db, tmp_path):
    before = torch.get_num_threads()
    cli("run", write_study(), "--db", db)
    assert rows(db, "SELECT DISTINCT torch_threads FROM runs") == [(1,)]
    other = tmp_path / "two.duckdb"
    cli("run", write_study(), "--db", other, "--threads", "2")
    assert rows(other, "SELECT DISTINCT torch_threads FROM runs") == [(2,)]
    assert torch.get_num_threads() == before


def test_identity_probe_skips_metrics_that_need_predictions_in_the_target_space(
    cli, write_study, db
):
    study = (
        TINY_STUDY
        + '\n[[metric]]\nname = "regression"\n\n[[metric]]\nname = "retrieval"\n\n[runs]\nidentity = true\n'
    )
    assert cli("run", write_study(study), "--db", db).code == 0
    identity = rows(
        db,
        "SELECT DISTINCT metric FROM results JOIN runs USING (run_id) WHERE state = 'identity' ORDER BY 1",
    )
    # mnno and the rows it writes beside it (chance, paired differences), nothing that needs
    # predictions in the target space (regression, retrieval)
    assert ("mnno",) in identity and all(m.startswith("mnno") for (m,) in identity), identity
    assert rows(db, "SELECT count(*) FROM results WHERE metric IN ('mse', 'recall')")[0][0] > 0
