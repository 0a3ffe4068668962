"""Plugin safety: nothing a plugin (or the plugin filter) gets wrong is silent.

Each test shows one failure that used to pass unnoticed (a built-in replaced, a typo ignored, items
dropped, a wrong dimension or an out-of-range value stored) and the clear error it now gives:
which plugin, what was expected, and how to fix or skip it.
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from tests.conftest import TINY_STUDY, install, rows, use
from xmodal import hookimpl, plugins
from xmodal.components import DatasetSpec, MappingSpec, MetricSpec, ResultRow
from xmodal.data import DataError, PairedData
from xmodal.params import Param
from xmodal.store import Store
from xmodal.train import MappingOutputError, seeded_model

# One linear mapping, one direction: two runs (trained and untrained), seconds to run.
SMALL_STUDY = TINY_STUDY.replace('[[mapping]]\nname = "mlp"\ndepth = 2\nhidden = 32\n', "").replace(
    'directions = ["forward", "backward"]', 'directions = "forward"'
)
BUILTIN_FILTER = "synthetic,mappings,losses,metrics"


CLASHING_METRICS = """
from xmodal import hookimpl
from xmodal.components import MetricSpec

@hookimpl
def register_metrics(register):
    register(MetricSpec("clashy", lambda probe, params: iter(())))
"""


# --- entry points cannot shadow each other or a built-in ---------------------------------------


def test_an_entry_point_named_like_a_builtin_is_an_error_naming_both_packages(
    cli, tmp_path, monkeypatch, write_study
):
    install(
        tmp_path / "site",
        monkeypatch,
        "xmodal-clash",
        {"metrics": "xmodal_clash"},
        {"xmodal_clash": CLASHING_METRICS},
    )
    result = cli("validate", write_study(SMALL_STUDY))
    assert result.code == 1 and "Traceback" not in result.output
    message = result.output
    assert "two installed packages declare the xmodal plugin 'metrics'" in message
    assert "xmodal (xmodal_plugins.metrics)" in message
    assert "xmodal-clash (xmodal_clash)" in message
    assert "rename the entry point" in message and "pip uninstall xmodal-clash" in message
    # Not a silent replacement: neither 'metrics' is used in its place.
    registry = plugins.get_registry(strict=False)
    assert "mnno" not in registry.metrics and "clashy" not in registry.metrics


def test_a_plugin_command_named_like_a_builtin_command_is_refused(cli, db, monkeypatch):
    import xmodal.cli

    def register_commands(cli):
        @cli.command("status")
        def hijack():
            print("hijacked")

    use("hijacker", register_commands=hookimpl(register_commands))
    monkeypatch.setattr(xmodal.cli, "_commands_registered", False)
    monkeypatch.setattr(
        xmodal.cli.app, "registered_commands", [*xmodal.cli.app.registered_commands]
    )
    # `xmodal status` loads no plugin; a command line that does says the command is refused.
    result = cli("--help")
    assert result.code == 0
    assert "plugin 'hijacker' adds a command 'status', which xmodal already has" in result.err
    result = cli("status", "--db", db)
    assert result.code == 0 and "hijacked" not in result.output
    assert "no studies recorded yet" in result.output


def test_an_in_process_plugin_cannot_take_an_installed_plugins_name():
    pm = plugins.load_manager(extra=[("metrics", types.SimpleNamespace())])
    with pytest.raises(plugins.PluginError, match="in-process plugin 'metrics' has the name"):
        plugins.build_registry(pm)


def test_a_component_clash_keeps_the_first_and_says_how_to_skip_the_second(cli):
    use(
        "copycat",
        register_metrics=hookimpl(
            lambda register: register(MetricSpec("mnno", lambda probe, params: iter(())))
        ),
    )
    registry = plugins.get_registry(strict=False)
    assert registry.owners[("metrics", "mnno")] == "metrics"
    with pytest.raises(plugins.PluginError) as error:
        plugins.get_registry()
    assert "plugins 'metrics' and 'copycat' both register a metric named 'mnno'" in str(error.value)
    assert "XMODAL_LOAD_PLUGINS=-copycat" in str(error.value)


# --- XMODAL_LOAD_PLUGINS: unknown names, exclusion, and the filter named in errors --------------


def test_a_typo_in_the_filter_is_reported_with_did_you_mean(cli, monkeypatch, write_study):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "synthetic,mappings,losses,metrcs")
    listing = cli("plugins", "--json")
    assert listing.code == 1
    assert "'metrcs' is not an installed plugin; did you mean 'metrics'?" in listing.err
    assert set(json.loads(listing.out)) == {"synthetic", "mappings", "losses"}
    result = cli("validate", write_study(SMALL_STUDY))
    assert result.code == 1 and "did you mean 'metrics'?" in result.output


def test_minus_name_skips_a_plugin_and_an_unknown_exclusion_is_reported(cli, monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-retrieval, -representation")
    result = cli("plugins", "--json")
    loaded = set(json.loads(result.out))
    assert result.code == 0 and {"synthetic", "metrics", "files"} <= loaded
    assert not loaded & {"retrieval", "representation"}
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-clash")
    plugins.reset()
    result = cli("plugins", "--json")
    assert result.code == 1 and "'clash' is not an installed plugin" in result.err


def test_a_filter_with_names_and_exclusions_loads_the_names_minus_the_exclusions():
    flt = plugins.PluginFilter.parse("synthetic, metrics,-metrics")
    assert [n for n in ("synthetic", "metrics", "losses") if flt.allows(n)] == ["synthetic"]
    assert plugins.PluginFilter.parse("").allows("synthetic") is False  # empty: none load
    assert plugins.PluginFilter.parse(None).skip_hint(["broken"]) == "XMODAL_LOAD_PLUGINS=-broken"
    assert plugins.PluginFilter.parse("a,broken").skip_hint(["broken"]) == "XMODAL_LOAD_PLUGINS=a"
    assert (
        plugins.PluginFilter.parse("-x").skip_hint(["broken"]) == "XMODAL_LOAD_PLUGINS=-x,-broken"
    )
    typo = attrs.evolve(
        plugins.PluginFilter.parse("synthetic,metrcs,broken"),
        installed=frozenset({"synthetic", "metrics", "broken"}),
    )
    assert typo.skip_hint(["broken"]) == "XMODAL_LOAD_PLUGINS=synthetic"  # the typo is not kept


def test_a_missing_component_names_the_active_filter(cli, monkeypatch, write_study):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "synthetic,mappings,losses")
    result = cli("validate", write_study(SMALL_STUDY))
    assert result.code == 2
    assert "'mnno' is not a registered metric" in result.output
    assert "XMODAL_LOAD_PLUGINS=synthetic,mappings,losses is set" in result.output
    assert "plugins not loaded: " in result.output and "metrics" in result.output


# --- a broken plugin blocks nothing that does not need it ---------------------------------------


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path / "site",
        monkeypatch,
        "xmodal-broken",
        {"broken": "xmodal_broken"},
        {"xmodal_broken": "raise ImportError('missing dependency foo')\n"},
    )


@pytest.mark.parametrize("command", ["--help", "plugins"])
def test_a_broken_plugin_is_a_warning_for_commands_that_list_plugins(cli, broken_plugin, command):
    result = cli(command)
    assert result.code == (1 if command == "plugins" else 0), result.output
    assert "Traceback" not in result.output
    assert (
        "warning: plugin 'broken' (xmodal_broken, from xmodal-broken) failed to load: "
        "ImportError: missing dependency foo; skip it with XMODAL_LOAD_PLUGINS=-broken"
    ) in result.err
    assert {"--help": "Commands", "plugins": "mnno"}[command] in result.out


@pytest.mark.parametrize(
    "command",
    [("--version",), ("status",), ("query", "SELECT 42 AS answer"), ("gc",)],
    ids=lambda c: c[0],
)
def test_a_broken_plugin_does_not_concern_commands_that_use_no_component(
    cli, db, broken_plugin, command
):
    # These commands load no plugin at all (tests/test_cli_startup.py checks that no plugin
    # module is imported), so the broken one is not even noticed: no warning, no failure.
    with Store(db).writing():  # an empty, migrated results database
        pass
    args = [*command, "--db", db] if command[0] != "--version" else list(command)
    result = cli(*args)
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    assert "broken" not in result.err and "warning" not in result.err
    expected = {
        "--version": "xmodal ",
        "status": "no studies",
        "query": "42",
        "gc": "removed 0 unreferenced",
    }
    assert expected[command[0]] in result.out


def test_commands_that_need_components_name_the_broken_plugin_and_how_to_skip_it(
    cli, broken_plugin, monkeypatch, write_study
):
    study = write_study(SMALL_STUDY)
    result = cli("validate", study)
    assert result.code == 1 and "Traceback" not in result.output
    assert "plugin 'broken'" in result.output and "missing dependency foo" in result.output
    assert "this command needs the components of every plugin" in result.err
    assert "XMODAL_LOAD_PLUGINS=-broken" in result.err
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "-broken")
    plugins.reset()
    assert cli("validate", study).code == 0


MISNAMED_HOOKS = """
from xmodal import MetricSpec, hookimpl

@hookimpl
def register_metric(register):  # a typo: pluggy would never call it
    register(MetricSpec("lost", lambda probe, params: iter(())))

def register_losses(register):  # no @hookimpl: pluggy would never call it either
    pass
"""


def test_an_installed_plugin_with_a_misnamed_or_undecorated_hook_is_a_problem(
    cli, tmp_path, monkeypatch
):
    install(
        tmp_path / "site",
        monkeypatch,
        "xmodal-typo",
        {"typo": "xmodal_typo"},
        {"xmodal_typo": MISNAMED_HOOKS},
    )
    result = cli("plugins")
    assert result.code == 1 and "Traceback" not in result.output
    assert (
        "plugin 'typo' (xmodal_typo): 'register_metric' is decorated with @hookimpl but is no "
        "xmodal hook; did you mean 'register_metrics'?; skip it with XMODAL_LOAD_PLUGINS=-typo"
    ) in result.err
    assert "'register_losses' is not decorated with @hookimpl, so it is never called" in result.err


def test_a_plugin_failing_in_register_commands_does_not_block_help(cli, monkeypatch):
    import xmodal.cli

    def register_commands(cli):
        raise RuntimeError("typer too old")

    use("cmdfail", register_commands=hookimpl(register_commands))
    monkeypatch.setattr(xmodal.cli, "_commands_registered", False)
    result = cli("--help")
    assert result.code == 0 and "Commands" in result.out
    assert "plugin 'cmdfail' failed in register_commands: RuntimeError: typer too old" in result.err


# --- PairedData checks its split -----------------------------------------------------------------

FEATURES = {"a": np.zeros((4, 2), np.float32), "b": np.zeros((4, 3), np.float32)}
IDS = ("w", "x", "y", "z")


def test_a_split_of_the_wrong_length_is_an_error():
    with pytest.raises(DataError, match=r"split_marks has shape \(3,\), expected \(4,\)"):
        PairedData(ids=IDS, features=FEATURES, split_marks=np.array(["train", "test", "train"]))


def test_a_split_mark_other_than_train_or_test_is_an_error_naming_the_items():
    with pytest.raises(DataError) as error:
        PairedData(ids=IDS, features=FEATURES, split_marks=np.array(["train", "tset", "test", ""]))
    message = str(error.value)
    assert "2 of 4 items are not (1 marked 'tset', 1 marked ''; items 'x', 'z')" in message
    assert "did you mean 'test' for 'tset'?" in message


def test_labels_must_give_one_entry_per_item():
    with pytest.raises(DataError, match="labels has 2 entries, expected one per item"):
        PairedData(ids=IDS, features=FEATURES, labels=(frozenset(), frozenset()))


def test_the_docs_toy_dataset_with_an_odd_n_is_a_clear_study_error(cli, write_study):
    def load(params):
        rng = np.random.default_rng(0)
        words = rng.standard_normal((params["n"], 8)).astype(np.float32)
        return PairedData(
            ids=tuple(str(i) for i in range(params["n"])),
            features={"words": words, "pixels": np.tanh(words).astype(np.float32)},
            split_marks=np.array(["train", "test"] * (params["n"] // 2)),  # n odd: one mark short
        )

    spec = DatasetSpec("toy", load, lambda p: ["words", "pixels"], {"n": Param(int, default=101)})
    use("toy-plugin", register_datasets=hookimpl(lambda register: register(spec)))
    study = SMALL_STUDY.replace('dataset = "synthetic"', 'dataset = "toy"')
    study = study.replace('pairs = [["text", "image"]]', 'pairs = [["words", "pixels"]]')
    study = study.replace("[data.params]\nn_items = 240\ndim_text = 16\ndim_image = 24\n", "")
    result = cli("validate", write_study(study))
    assert result.code == 2 and "Traceback" not in result.output
    assert "dataset 'toy'" in result.output
    assert "split_marks has shape (100,), expected (101,)" in result.output


# --- a mapping's output dimension is checked once, right after it is built ----------------------


def wrong_dim_mapping(build) -> dict[str, object]:
    spec = MappingSpec("wrongdim", build)
    return {"register_mappings": hookimpl(lambda register: register(spec))}


def test_a_mapping_with_the_wrong_output_dimension_fails_every_run_naming_the_plugin(
    cli, write_study, db
):
    use("wrongdim-plugin", **wrong_dim_mapping(lambda i, o, params: torch.nn.Linear(i, o + 1)))
    study = SMALL_STUDY.replace('[[mapping]]\nname = "linear"', '[[mapping]]\nname = "wrongdim"')
    result = cli("run", write_study(study), "--db", db)
    assert result.code == 1 and "Traceback" not in result.output
    errors = [e for (e,) in rows(db, "SELECT error FROM runs ORDER BY state")]
    assert len(errors) == 2  # trained and untrained: neither "finishes" with a wrong dimension
    for error in errors:
        assert error.startswith(
            "MappingOutputError: mapping 'wrongdim' (plugin 'wrongdim-plugin'): the module maps "
            "a (2, 16) batch to shape (2, 25), expected (2, 24)"
        )
        assert "mat1 and mat2" not in error
    assert rows(db, "SELECT count(*) FROM results") == [(0,)]


def test_a_mapping_that_cannot_take_its_input_dimension_is_named_too():
    spec = MappingSpec("narrow", lambda i, o, params: torch.nn.Linear(i + 3, o))
    with pytest.raises(MappingOutputError) as error:
        seeded_model(spec, {}, 16, 24, seed=0, plugin="narrow-plugin")
    assert "mapping 'narrow' (plugin 'narrow-plugin'): the module built for in_dim=16" in str(
        error.value
    )


def test_the_output_check_changes_neither_initialisation_nor_the_random_stream():
    def build(i, o, params):
        return torch.nn.Sequential(
            torch.nn.Linear(i, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, o)
        )

    spec = MappingSpec("dropout", build)
    checked = seeded_model(spec, {}, 5, 3, seed=7)
    after_checked = torch.rand(4)
    torch.manual_seed(7)
    plain = build(5, 3, {})
    after_plain = torch.rand(4)
    assert all(
        torch.equal(a, b)
        for a, b in zip(checked.state_dict().values(), plain.state_dict().values(), strict=True)
    )
    assert torch.equal(after_checked, after_plain)
    assert checked.training and all(m.training for m in checked.modules())


# --- what a metric writes is checked against what it declares -----------------------------------


def declared_metric(rows_out, **declared) -> dict[str, object]:
    spec = MetricSpec("declared", lambda probe, params: iter(rows_out), **declared)
    return {"register_metrics": hookimpl(lambda register: register(spec))}


def run_with_metric(cli, write_study, db, **hooks):
    use("declared-plugin", **hooks)
    study = write_study(SMALL_STUDY + '\n[[metric]]\nname = "declared"\n')
    return cli("run", study, "--db", db)


def measurement_errors(db: Path, metric: str) -> list[str]:
    return [e for (e,) in rows(db, f"SELECT error FROM measurements WHERE metric = '{metric}'")]


def test_a_value_outside_the_declared_range_fails_that_measurement_naming_the_plugin(
    cli, write_study, db
):
    hooks = declared_metric(
        [ResultRow("test", "declared", "pred-target", 5.0)],
        compares=("pred-target",),
        value_range=(0.0, 1.0),
    )
    result = run_with_metric(cli, write_study, db, **hooks)
    assert result.code == 1 and "Traceback" not in result.output
    assert "metric 'declared': MetricOutputError: declared = 5.0" in result.output
    assert (
        measurement_errors(db, "declared")
        == [
            "MetricOutputError: declared = 5.0 (split 'test', comparison 'pred-target') is outside "
            "the declared value_range [0, 1]; fix the metric or its MetricSpec's value_range "
            "(metric of plugin 'declared-plugin')"
        ]
        * 2
    )
    # Only the measurement fails: the runs and their other metrics are kept.
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("finished",)]
    assert rows(db, "SELECT count(*) FROM results WHERE metric = 'declared'") == [(0,)]
    assert rows(db, "SELECT count(*) > 0 FROM results WHERE metric = 'mnno'") == [(True,)]


def test_an_undeclared_comparison_fails_that_measurement(cli, write_study, db):
    hooks = declared_metric(
        [ResultRow("test", "declared", "pred-nonsense", 0.5)], compares=("pred-target",)
    )
    result = run_with_metric(cli, write_study, db, **hooks)
    assert result.code == 1
    assert "metric 'declared': MetricOutputError: the comparison 'pred-nonsense'" in result.output
    assert (
        measurement_errors(db, "declared")
        == [
            "MetricOutputError: the comparison 'pred-nonsense' (split 'test') is not declared: "
            "compares = ('pred-target',); add it to the MetricSpec's compares or fix the metric "
            "(metric of plugin 'declared-plugin')"
        ]
        * 2
    )


def test_a_metric_that_raises_names_its_plugin(cli, write_study, db):
    def compute(probe, params):
        raise ValueError("no such thing")

    spec = MetricSpec("declared", compute)
    hooks = {"register_metrics": hookimpl(lambda register: register(spec))}
    result = run_with_metric(cli, write_study, db, **hooks)
    assert result.code == 1
    assert (
        "metric 'declared': ValueError: no such thing (metric of plugin 'declared-plugin')"
        in result.output
    )


def check(spec: MetricSpec, *rows_in: ResultRow) -> list[ResultRow]:
    return list(plugins.checked_rows(spec, rows_in))


def test_declared_comparisons_may_hold_placeholders_and_undefined_values_pass():
    spec = MetricSpec(
        "corr", lambda p, q: iter(()), compares=("pred-<ratings>",), value_range=(-1.0, 1.0)
    )
    ok = [
        ResultRow("test", "spearman", "pred-simlex999", math.nan),
        ResultRow("test", "spearman", "pred-men", 1.0 + 1e-12),  # rounding past a bound
    ]
    assert check(spec, *ok) == ok
    with pytest.raises(plugins.MetricOutputError, match="comparison 'input-men'"):
        check(spec, ResultRow("test", "spearman", "input-men", 0.5))
    with pytest.raises(
        plugins.MetricOutputError, match=r"-1.01 .* outside the declared value_range \[-1, 1\]"
    ):
        check(spec, ResultRow("test", "spearman", "pred-men", -1.01))


def test_a_metric_without_declarations_is_not_checked_beyond_its_row_type():
    spec = MetricSpec("free", lambda p, q: iter(()))
    row = ResultRow("test", "free", "anything", 1e9)
    assert check(spec, row) == [row]
    with pytest.raises(
        plugins.MetricOutputError, match=r"must yield xmodal\.components\.ResultRow"
    ):
        check(spec, ("test", "free", "anything", 1.0))  # type: ignore[arg-type]
    with pytest.raises(plugins.MetricOutputError, match=r"the value .high. .* is not a number"):
        check(spec, ResultRow("test", "free", "anything", "high"))  # type: ignore[arg-type]


def test_every_builtin_metric_declaration_holds_for_what_it_writes(cli, write_study, db):
    study = SMALL_STUDY.replace('name = "mnno"\nk = [1, 5, 10]', 'name = "mnno"\nk = [1, 5]')
    study += '\n[[metric]]\nname = "regression"\n\n[[metric]]\nname = "retrieval"\n'
    study += '\n[[metric]]\nname = "cka"\n\n[[metric]]\nname = "rsa"\n'
    result = cli("run", write_study(study), "--db", db)
    assert result.code == 0, result.output


# --- messages -----------------------------------------------------------------------------------


def test_messages_say_loss_and_an_integer(cli, write_study):
    study = SMALL_STUDY.replace('[[loss]]\nname = "mse"', '[[loss]]\nname = "msee"')
    study = study.replace('name = "mnno"\n', 'name = "mnno"\nsimilarity = 3\n')
    result = cli("validate", write_study(study))
    assert result.code == 2
    assert "'msee' is not a registered loss" in result.output
    assert "3 is an integer, expected" in result.output
    assert "losse" not in result.output and "a int" not in result.output
