"""The `register_run_kinds` hook: kinds of run are plugins, and `shuffled` is a control.

A run kind says what is done to a mapping before it is measured (train it, only initialise it,
no mapping at all, or train it on transformed pairs). The built-in kinds come from the
`run_kinds` plugin; a third-party kind registered in-process runs end to end; the `shuffled`
control is deterministic per seed and falls well below the trained mapping.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.conftest import TINY_STUDY, rows, study_toml
from xmodal import Param, RunKindSpec, hookimpl, plugins
from xmodal.errors import StudyError
from xmodal.planning import make_plan
from xmodal.study import MEASURE_PARAMS, parse_study
from xmodal.train import RunKindError, pairs_rng, training_pairs

# One linear mapping, one direction: seconds to run.
SMALL_STUDY = TINY_STUDY.replace('[[mapping]]\nname = "mlp"\ndepth = 2\nhidden = 32\n', "").replace(
    'directions = ["forward", "backward"]', 'directions = "forward"'
)


def noisy_targets(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    return x, y + params["scale"] * rng.standard_normal(y.shape).astype(y.dtype)


NOISE = RunKindSpec(
    "noise",
    trains=True,
    pairs=noisy_targets,
    params={"scale": Param(float, default=0.1, min=0.0)},
    description="trained on targets plus Gaussian noise",
)


def use_kinds(*kinds: RunKindSpec, name: str = "extra_kinds") -> None:
    """Register an in-process plugin with these kinds, next to the installed plugins."""

    def register_run_kinds(register: Callable[[Any], None]) -> None:
        for kind in kinds:
            register(kind)

    plugin = types.SimpleNamespace(register_run_kinds=hookimpl(register_run_kinds))
    plugins.reset(plugins.load_manager(extra=[(name, plugin)]))


def plan_of(text: str) -> list:
    registry = plugins.get_registry()
    return make_plan(parse_study(text, "s.toml", registry), registry, lambda n, p: "data-v1")


def study_error(text: str) -> str:
    with pytest.raises(StudyError) as caught:
        parse_study(text, "s.toml", plugins.get_registry())
    return str(caught.value)


# --- the built-in kinds are a plugin --------------------------------------------------------------


def test_the_builtin_kinds_are_registered_by_the_run_kinds_plugin():
    registry = plugins.get_registry()
    assert list(registry.run_kinds) == ["trained", "untrained", "identity", "shuffled"]
    assert registry.registered_by("run_kinds")["run_kinds"] == sorted(registry.run_kinds)
    kinds = registry.run_kinds
    assert (kinds["trained"].trains, kinds["trained"].maps, kinds["trained"].default) == (
        True,
        True,
        True,
    )
    assert (kinds["untrained"].trains, kinds["untrained"].default) == (False, True)
    assert (kinds["identity"].maps, kinds["identity"].default) == (False, False)
    assert kinds["shuffled"].trains and kinds["shuffled"].pairs is not None
    assert not kinds["shuffled"].default  # a control is asked for, never run unasked


def test_the_probes_settings_are_the_keys_no_kind_may_take():
    from xmodal.components import MEASURE_SETTINGS

    assert set(MEASURE_SETTINGS) == set(MEASURE_PARAMS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "splits", "trains": True}, "is a [measure] setting"),
        ({"name": "two words", "trains": True}, "letters, digits"),
        ({"name": "ref", "trains": True, "maps": False}, "cannot train"),
        ({"name": "p", "trains": False, "pairs": noisy_targets}, "needs trains=True"),
    ],
)
def test_an_impossible_kind_is_refused_when_it_is_declared(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RunKindSpec(**fields)


def test_a_kind_named_like_a_builtin_is_a_plugin_problem_naming_both():
    use_kinds(RunKindSpec("shuffled", trains=True), name="copycat")
    with pytest.raises(plugins.PluginError, match="'run_kinds' and 'copycat' both register"):
        plugins.get_registry()


# --- a third-party kind runs end to end -----------------------------------------------------------


def test_a_third_party_kind_runs_end_to_end(cli, write_study, db, monkeypatch):
    calls: list[tuple[Any, ...]] = []

    def recording(x, y, rng, params):
        calls.append((x.shape, y.shape, x.dtype, type(rng), dict(params)))
        return noisy_targets(x, y, rng, params)

    use_kinds(RunKindSpec("noise", trains=True, pairs=recording, params=NOISE.params))
    text = SMALL_STUDY + "\n[runs]\nuntrained = false\n\n[runs.noise]\nscale = 0.5\n"
    result = cli("run", write_study(text), "--db", db)
    assert result.code == 0, result.output

    runs = rows(db, "SELECT state, status, loss, config FROM runs ORDER BY state")
    assert [(state, status, loss) for state, status, loss, _ in runs] == [
        ("noise", "finished", "mse"),
        ("trained", "finished", "mse"),
    ]
    assert json.loads(runs[0][3])["probe_params"] == {"scale": 0.5}
    assert "probe_params" not in json.loads(runs[1][3])  # a kind without parameters
    # Called once, on the training items only, with a seeded generator and the study's params.
    ((x_shape, y_shape, dtype, rng_type, params),) = calls
    n_train = rows(db, "SELECT n_train FROM runs WHERE state = 'noise'")[0][0]
    assert (x_shape, y_shape) == ((n_train, 16), (n_train, 24))
    assert dtype == np.float32 and rng_type is np.random.Generator and params == {"scale": 0.5}
    measured = rows(
        db,
        "SELECT DISTINCT x.comparison FROM results x JOIN runs r USING (run_id) "
        "WHERE r.state = 'noise' AND x.metric = 'mnno' ORDER BY 1",
    )
    assert measured == [("input-target",), ("pred-input",), ("pred-target",)]


def test_a_kind_whose_pairs_break_their_contract_fails_its_run_naming_the_kind(
    cli, write_study, db
):
    bad = RunKindSpec("halved", trains=True, pairs=lambda x, y, rng, params: (x, y[: len(y) // 2]))
    use_kinds(bad, name="halving_plugin")
    text = SMALL_STUDY + "\n[runs]\nuntrained = false\ntrained = false\nhalved = true\n"
    result = cli("run", write_study(text), "--db", db)
    assert result.code != 0
    ((status, error),) = rows(db, "SELECT status, error FROM runs")
    assert status == "failed"
    assert "run kind 'halved' (plugin 'halving_plugin')" in error
    assert "every input needs its target" in error


def test_pairs_are_checked_for_shape():
    x = np.zeros((6, 3), np.float32)
    y = np.ones((6, 2), np.float32)
    wrong_columns = RunKindSpec("w", trains=True, pairs=lambda x, y, rng, p: (x, y[:, :1]))
    with pytest.raises(RunKindError, match=r"y of shape \(6, 1\), expected \(n, 2\)"):
        training_pairs(wrong_columns, {}, x, y, seed=0, plugin="p")
    not_a_pair = RunKindSpec("n", trains=True, pairs=lambda x, y, rng, p: x)
    with pytest.raises(RunKindError, match="expected a tuple"):
        training_pairs(not_a_pair, {}, x, y, seed=0)


# --- run ids ---------------------------------------------------------------------------------------


def test_adding_a_kind_leaves_the_other_runs_ids_alone():
    before = {c.run_id for c in plan_of(TINY_STUDY)}
    runs = plan_of(TINY_STUDY + "\n[runs]\nshuffled = true\n")
    assert {c.run_id for c in runs if c.kind != "shuffled"} == before
    shuffled = [c for c in runs if c.kind == "shuffled"]
    trained = [c for c in runs if c.kind == "trained"]
    # The control mirrors every trained run (mapping, loss, training, seed), with its own id.
    assert len(shuffled) == len(trained) == 4
    assert {(c.mapping, c.direction, c.loss, c.seed) for c in shuffled} == {
        (c.mapping, c.direction, c.loss, c.seed) for c in trained
    }
    assert not {c.run_id for c in shuffled} & before


def test_a_kinds_parameters_enter_the_run_id_and_defaults_spelled_out_do_not():
    use_kinds(NOISE)

    def noise_ids(table: str) -> set[str]:
        text = TINY_STUDY + f"\n[runs]\ntrained = false\nuntrained = false\n{table}"
        return {c.run_id for c in plan_of(text)}

    default = noise_ids("noise = true\n")
    assert noise_ids("[runs.noise]\nscale = 0.1\n") == default
    assert not noise_ids("[runs.noise]\nscale = 0.2\n") & default


def test_a_control_that_trains_needs_a_loss_even_when_trained_is_off():
    runs = plan_of(TINY_STUDY + "\n[runs]\ntrained = false\nuntrained = false\nshuffled = true\n")
    assert {(c.kind, c.loss) for c in runs} == {("shuffled", "mse")}


def test_the_run_count_counts_every_kind():
    text = TINY_STUDY + "\n[runs]\nidentity = true\nshuffled = true\n"
    registry = plugins.get_registry()
    n = len(make_plan(parse_study(text, "s.toml", registry), registry))
    assert n == 2 * (1 + 2 * (1 + 1 + 1))  # directions x (identity + mappings x 3 kinds)
    parse_study(text, "s.toml", registry, max_runs=n)
    with pytest.raises(StudyError) as caught:
        parse_study(text, "s.toml", registry, max_runs=n - 1)
    assert f"declares {n:,} runs" in str(caught.value)
    assert "× 2 kinds (trained, shuffled) + 1 untrained)" in str(caught.value)
    assert "(1 identity + " in str(caught.value)


# --- validation ------------------------------------------------------------------------------------


def test_an_unknown_kind_is_named_with_its_line_and_a_suggestion():
    text = TINY_STUDY + "\n[probes]\nshufled = true\n"
    message = study_error(text)
    line = text.count("\n")  # the last line
    assert f"s.toml:{line}: probes.shufled" in message
    assert "'shufled' is neither a [probes] setting nor a registered run kind" in message
    assert "did you mean 'shuffled'" in message
    assert "identity, shuffled, trained, untrained" in message


def test_a_kind_set_to_something_other_than_a_switch_or_a_table_is_refused():
    message = study_error(TINY_STUDY + '\n[runs]\nshuffled = "yes"\n')
    assert (
        "runs.shuffled" in message and "must be true, false or a [runs.shuffled] table" in message
    )


def test_a_kinds_parameters_are_checked_against_its_schema():
    use_kinds(NOISE)
    message = study_error(TINY_STUDY + "\n[runs.noise]\nscale = -1.0\n")
    assert "runs.noise.scale" in message and "out of range" in message
    message = study_error(TINY_STUDY + "\n[runs.shuffled]\nscale = 1.0\n")
    assert "runs.shuffled.scale" in message


def test_turning_every_kind_off_is_an_error():
    text = TINY_STUDY + "\n[runs]\ntrained = false\nuntrained = false\n"
    assert "turns off every run kind, so nothing would run" in study_error(text)


def test_a_kind_left_out_by_the_plugin_filter_says_so(monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-run_kinds")
    plugins.reset()
    message = study_error(TINY_STUDY + "\n[probes]\nshuffled = true\n")
    assert "'shuffled' is neither a [probes] setting nor a registered run kind" in message
    assert "XMODAL_LOAD_PLUGINS=-run_kinds is set; plugins not loaded: run_kinds" in message


# --- the shuffled control --------------------------------------------------------------------------


def test_shuffled_pairs_permute_the_targets_with_the_runs_seed():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(60, dtype=np.float32).reshape(20, 3)
    shuffled = plugins.get_registry().run_kinds["shuffled"]
    xs, ys = training_pairs(shuffled, {}, x, y, seed=7)
    again = training_pairs(shuffled, {}, x, y, seed=7)[1]
    other = training_pairs(shuffled, {}, x, y, seed=8)[1]
    assert np.array_equal(xs, x)  # the inputs are untouched
    assert sorted(map(tuple, ys)) == sorted(map(tuple, y))  # the same targets, re-paired
    assert not np.array_equal(ys, y)
    assert np.array_equal(ys, again) and not np.array_equal(ys, other)
    # Its own stream: not the permutation the validation split draws from the same seed.
    assert not np.array_equal(
        pairs_rng(7).permutation(20), np.random.default_rng(7).permutation(20)
    )


# Clustered synthetic items: X and Y share neighbourhoods (mNNO(X, Y) ≈ 0.8 at k = 10), which a
# mapping learns to keep only from the pairing.
CONTROL_STUDY = study_toml(
    study={"name": "control"},
    data={"directions": "forward", "params": {"n_items": 600, "dim_text": 16, "dim_image": 24}},
    mapping=[{"name": "ridge"}, {"name": "mlp", "depth": 1, "hidden": 64}],
    loss=None,
    train={"epochs": 20, "lr": 0.01},
    runs={"untrained": False, "shuffled": True},
    metric=[{"name": "mnno", "k": [10]}],
)

PRED_TARGET = """
SELECT r.mapping, r.state, x.value, n_test FROM results x JOIN runs r USING (run_id)
WHERE x.metric = 'mnno' AND x.comparison = '{comparison}' ORDER BY 1, 2
"""


def test_the_shuffled_control_is_deterministic_and_falls_far_below_trained(
    cli, write_study, tmp_path
):
    path = write_study(CONTROL_STUDY)
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for db in (first, second):
        assert cli("run", path, "--db", db).code == 0
    # Same study and seed: the same numbers (in this process: no cross-machine claim).
    assert rows(first, PRED_TARGET.format(comparison="pred-target")) == rows(
        second, PRED_TARGET.format(comparison="pred-target")
    )
    values = {(m, s): v for m, s, v, _ in rows(first, PRED_TARGET.format(comparison="pred-target"))}
    x_y = {m: v for m, _, v, _ in rows(first, PRED_TARGET.format(comparison="input-target"))}
    n_test = rows(first, "SELECT max(n_test) FROM runs")[0][0]
    chance = 10 / (n_test - 1)
    for mapping in ("ridge", "mlp"):
        trained, shuffled = values[mapping, "trained"], values[mapping, "shuffled"]
        # Measured (ridge, mlp): trained 0.85, 0.86; shuffled 0.40, 0.27; chance 0.08;
        # mNNO(X, Y) 0.79. Margins are several times any seed-to-seed spread.
        assert trained > chance + 0.5
        assert trained - shuffled > 0.25
        # Without the pairing the mapping keeps less of Y's neighbourhoods than X itself
        # shares with Y: the control is a floor for what training on pairs adds.
        assert shuffled < x_y[mapping] - 0.2
