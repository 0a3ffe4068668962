"""Components describe themselves, and every check has one shape: `check(params, context)`.

A mapping declares its depth (or none) instead of the core guessing it from its name; the loss and
metric of a study that names none are the ones a plugin declares `default=True`; every spec's
check receives a `CheckContext` saying what is known at that moment; and a check or a depth that
misbehaves is a study error naming its plugin, never a traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import TINY_STUDY, rows, use
from xmodal import CheckContext, hookimpl, plugins
from xmodal.components import LossSpec, MappingSpec, MetricSpec
from xmodal.errors import StudyError
from xmodal.params import Param
from xmodal.planning import make_plan
from xmodal.prechecks import check_runs
from xmodal.progress import describe_run as _describe
from xmodal.study import parse_study
from xmodal.studydata import StudyData

# One direction, a trained and an untrained run per mapping: seconds to run.
ONE_WAY = TINY_STUDY.replace('directions = ["forward", "backward"]', 'directions = "forward"')
NO_DEFAULTS = ONE_WAY.replace('[[loss]]\nname = "mse"\n', "").replace(
    '[[metric]]\nname = "mnno"\nk = [1, 5, 10]\n', ""
)


def mappings_plugin(*specs: MappingSpec) -> dict[str, object]:
    def register_mappings(register):
        for spec in specs:
            register(spec)

    return {"register_mappings": hookimpl(register_mappings)}


def plugin_error(cli, study: Path, plugin: str) -> str:
    """`xmodal validate STUDY` fails with a study error (exit 2, no traceback) that says how to
    skip `plugin`; its output."""
    result = cli("validate", study)
    assert result.code == 2 and "Traceback" not in result.output, result.output
    assert f"XMODAL_LOAD_PLUGINS=-{plugin}" in result.output
    return result.output


def plan(text: str, fingerprint=lambda name, params: "data"):
    registry = plugins.get_registry()
    return make_plan(parse_study(text, "study.toml", registry), registry, fingerprint)


def residual(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Linear(in_dim, 8), torch.nn.ReLU()]
    for _ in range(params["blocks"] - 1):
        layers += [torch.nn.Linear(8, 8), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(8, out_dim))


# A third-party family whose depth is not a parameter called `depth`: `blocks` hidden layers.
RESIDUAL = MappingSpec(
    "residual",
    residual,
    {"blocks": Param(int, default=2, min=1, max=4)},
    depth=lambda params: params["blocks"],
)
# A family that declares no depth at all.
OPAQUE = MappingSpec("opaque", lambda i, o, params: torch.nn.Linear(i, o))


# --- depth comes from the mapping's spec ---------------------------------------------------------


def test_a_third_party_mapping_declares_its_depth_and_one_without_gets_null(cli, write_study, db):
    use("family-plugin", **mappings_plugin(RESIDUAL, OPAQUE))
    study = ONE_WAY.replace(
        '[[mapping]]\nname = "linear"\n',
        '[[mapping]]\nname = "residual"\nblocks = [1, 3]\n\n[[mapping]]\nname = "opaque"\n',
    )
    result = cli("run", write_study(study), "--db", db)
    assert result.code == 0, result.output
    depths = rows(db, "SELECT DISTINCT mapping, depth FROM runs ORDER BY mapping, depth")
    assert depths == [("mlp", 2), ("opaque", None), ("residual", 1), ("residual", 3)]


def test_built_in_mappings_declare_their_depths():
    ridge = ONE_WAY.replace('[[mapping]]\nname = "linear"\n', '[[mapping]]\nname = "ridge"\n')
    swept = ridge.replace("depth = 2", "depth = [0, 1]") + '\n[[mapping]]\nname = "linear"\n'
    found = {(run.mapping, run.depth) for run in plan(swept)}
    # ridge is a closed-form baseline: no depth, so the report keeps it off the depth axis
    assert found == {("ridge", None), ("mlp", 0), ("mlp", 1), ("linear", 0)}


def test_declaring_a_depth_changes_no_run_id():
    use("family-plugin", **mappings_plugin(RESIDUAL))
    study = ONE_WAY.replace('[[mapping]]\nname = "linear"\n', '[[mapping]]\nname = "residual"\n')
    with_depth = [run.run_id for run in plan(study)]
    use("family-plugin", **mappings_plugin(MappingSpec("residual", residual, RESIDUAL.params)))
    assert [run.run_id for run in plan(study)] == with_depth


def test_the_progress_label_comes_from_the_depth_not_the_mapping_name():
    use("family-plugin", **mappings_plugin(RESIDUAL, OPAQUE))
    study = ONE_WAY.replace(
        '[[mapping]]\nname = "linear"\n',
        '[[mapping]]\nname = "linear"\n\n[[mapping]]\nname = "residual"\nblocks = 3\n\n'
        '[[mapping]]\nname = "opaque"\n',
    )
    labels = {_describe(run).split()[1] for run in plan(study)}
    assert labels == {"linear", "mlp2", "residual3", "opaque"}


@pytest.mark.parametrize(
    ("depth", "said"),
    [
        (lambda params: 1 / 0, "failed: ZeroDivisionError: division by zero"),
        (lambda params: "two", "returned 'two'; it must return None or a whole number >= 0"),
        (lambda params: -1, "returned -1"),
    ],
    ids=["raises", "not-a-number", "negative"],
)
def test_a_depth_that_misbehaves_is_a_study_error_naming_its_plugin(cli, write_study, depth, said):
    use(
        "deep-plugin",
        **mappings_plugin(MappingSpec("deep", residual, RESIDUAL.params, depth=depth)),
    )
    study = ONE_WAY.replace('[[mapping]]\nname = "linear"\n', '[[mapping]]\nname = "deep"\n')
    output = plugin_error(cli, write_study(study), "deep-plugin")
    assert "mapping[0]: the depth of mapping 'deep' (plugin 'deep-plugin')" in output
    assert said in output


# --- defaults come from the registry -------------------------------------------------------------


def test_without_loss_and_metric_tables_the_registered_defaults_are_used():
    study = parse_study(NO_DEFAULTS, "study.toml", plugins.get_registry())
    assert [c.name for c in study.losses] == ["mse"]
    assert [c.name for c in study.metrics] == ["mnno"]


def test_a_plugins_default_metric_is_used_when_the_built_in_one_is_not_loaded(monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-metrics")
    spec = MetricSpec("mine", lambda probe, params: iter(()), default=True)
    use("metric-plugin", register_metrics=hookimpl(lambda register: register(spec)))
    study = parse_study(NO_DEFAULTS, "study.toml", plugins.get_registry())
    assert [c.name for c in study.metrics] == ["mine"]


def test_no_default_loss_loaded_is_a_clear_error_naming_the_filter(cli, write_study, monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-losses")
    result = cli("validate", write_study(NO_DEFAULTS))
    assert result.code == 2 and "Traceback" not in result.output, result.output
    assert "loss: no [[loss]] table, and no loaded plugin declares a default loss" in result.output
    assert "XMODAL_LOAD_PLUGINS=-losses is set; plugins not loaded: losses" in result.output


def test_a_study_that_trains_nothing_needs_no_loss(cli, write_study, monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-losses")
    untrained = NO_DEFAULTS + "\n[runs]\ntrained = false\n"
    result = cli("validate", write_study(untrained))
    assert result.code == 0, result.output


def test_two_default_losses_are_a_clear_error_naming_both_plugins(cli, write_study):
    spec = LossSpec("mse_too", lambda params: torch.nn.functional.mse_loss, default=True)
    use("loss-plugin", register_losses=hookimpl(lambda register: register(spec)))
    result = cli("validate", write_study(NO_DEFAULTS))
    assert result.code == 2 and "Traceback" not in result.output, result.output
    assert (
        "loss: no [[loss]] table, and 2 loaded losses are declared the default loss: "
        "'mse' (plugin 'losses'), 'mse_too' (plugin 'loss-plugin')"
    ) in result.output
    assert 'allowed: name one in a [[loss]] table, e.g. [[loss]] name = "mse"' in result.output
    assert cli("validate", write_study(ONE_WAY)).code == 0  # naming the loss settles it


# --- one check shape: check(params, context) -----------------------------------------------------


def recording_check(seen: list[CheckContext], problem: tuple[str, str] | None = None):
    def check(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
        seen.append(context)
        if problem is not None:
            yield problem

    return check


def test_checks_receive_what_is_known_when_they_are_called():
    mapping_seen: list[CheckContext] = []
    metric_seen: list[CheckContext] = []
    mapping = MappingSpec(
        "watched", lambda i, o, params: torch.nn.Linear(i, o), check=recording_check(mapping_seen)
    )
    metric = MetricSpec(
        "watcher", lambda probe, params: iter(()), check=recording_check(metric_seen)
    )
    use(
        "watch-plugin",
        register_mappings=hookimpl(lambda register: register(mapping)),
        register_metrics=hookimpl(lambda register: register(metric)),
    )
    text = (
        TINY_STUDY.replace(
            '[[mapping]]\nname = "linear"\n', '[[mapping]]\nname = "watched"\n'
        ).replace('name = "mnno"\nk = [1, 5, 10]', 'name = "watcher"')
        + "\n[measure]\nsplits = ['train', 'test']\n"
    )
    registry = plugins.get_registry()
    study = parse_study(text, "study.toml", registry)
    # Reading the study: nothing about the data is known yet.
    assert mapping_seen == [CheckContext("mapping", "watched")]
    assert metric_seen == [CheckContext("metric", "watcher")]

    shared = StudyData(registry)
    check_runs(study, make_plan(study, registry, shared.fingerprint), shared)
    train, test = (len(part) for part in shared.split(make_plan(study, registry)[0]))
    assert train + test == 240
    # With the data: each direction's dimensions, and the items the mapping is fitted on.
    assert set(mapping_seen[1:]) == {
        CheckContext("mapping", "watched", train, "train", False, in_dim, out_dim)
        for in_dim, out_dim in ((16, 24), (24, 16))
    }
    # Each probed split, with its size.
    assert {(c.split, c.n_items, c.include_self) for c in metric_seen[1:]} == {
        ("train", train, False),
        ("test", test, False),
    }


def test_a_checks_problems_are_placed_at_the_components_parameter(cli, write_study):
    loss = LossSpec(
        "picky",
        lambda params: torch.nn.functional.mse_loss,
        {"margin": Param(float, default=1.0)},
        check=recording_check([], ("margin", "must be smaller than the distance between items")),
    )
    use("picky-plugin", register_losses=hookimpl(lambda register: register(loss)))
    study = ONE_WAY.replace('[[loss]]\nname = "mse"', '[[loss]]\nname = "picky"\nmargin = 3.0')
    result = cli("validate", write_study(study))
    assert result.code == 2
    assert "loss[0].margin: must be smaller than the distance between items" in result.output


@pytest.mark.parametrize(
    ("check", "said"),
    [
        (lambda params, context: iter([1 / 0]), "failed: ZeroDivisionError: division by zero"),
        (
            lambda params: iter(()),  # the old one-argument shape
            "failed: TypeError: <lambda>() takes 1 positional argument but 2 were given",
        ),
        (lambda params, context: ["k is too large"], "yielded 'k is too large'; a check yields"),
    ],
    ids=["raises", "old-signature", "yields-a-string"],
)
def test_a_check_that_misbehaves_names_its_plugin(cli, write_study, check, said):
    metric = MetricSpec("buggy", lambda probe, params: iter(()), check=check)
    use("buggy-plugin", register_metrics=hookimpl(lambda register: register(metric)))
    study = ONE_WAY.replace('name = "mnno"\nk = [1, 5, 10]', 'name = "buggy"')
    output = plugin_error(cli, write_study(study), "buggy-plugin")
    assert "metric[0]: the check of metric 'buggy' (plugin 'buggy-plugin')" in output
    assert said in output


def test_a_metric_check_that_needs_the_split_size_waits_for_it():
    study = ONE_WAY.replace("k = [1, 5, 10]", "k = [1, 500]")
    registry = plugins.get_registry()
    parsed = parse_study(study, "study.toml", registry)  # reading it: no size known, no problem
    shared = StudyData(registry)
    with pytest.raises(StudyError) as error:
        check_runs(parsed, make_plan(parsed, registry, shared.fingerprint), shared)
    assert "metric[0].k: k = 500 is larger than the test split allows" in str(error.value)


def test_every_built_in_check_takes_params_and_a_context():
    registry = plugins.get_registry()
    checked = {
        (kind, name): list(inspect.signature(spec.check).parameters)
        for kind in ("mappings", "losses", "metrics")
        for name, spec in registry.of(kind).items()
        if spec.check is not None
    }
    assert ("metrics", "mnno") in checked and ("mappings", "mlp") in checked
    assert all(len(parameters) == 2 for parameters in checked.values()), checked
