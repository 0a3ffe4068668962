"""Plugins: loaded from the `xmodal` entry-point group, built-ins included; and `xmodal.testing`,
which registers plugins in-process for tests (the pytester model).

Each hook's own contract is tested in tests/test_hook_<name>.py; docs/plugins.md's example in
tests/test_plugin_docs.py; a third-party package written from the docs in test_third_party.py;
what a plugin can get wrong in test_plugin_safety.py.
"""

from __future__ import annotations

import json
import sys
import tomllib
import types
from pathlib import Path

import pytest

from tests.conftest import install
from tests.plugin_study import small_study
from xmodal import DatasetSpec, LossSpec, MetricSpec, ResultRow, hookimpl, plugins
from xmodal.testing import PluginRegistrationError, XmodalTester, to_toml

BUILTINS = {"synthetic", "mappings", "losses", "metrics"}


def copycat_dataset(register):
    register(DatasetSpec("synthetic", lambda p: None, lambda p: []))


def one_metric(name: str = "const") -> dict[str, object]:
    spec = MetricSpec(name, lambda probe, params: [ResultRow("test", name, "pred", 1.0)])
    return {"register_metrics": lambda register: register(spec)}


# --- entry points --------------------------------------------------------------------------------


def test_builtins_load_through_entry_points_like_any_plugin():
    registry = plugins.get_registry()
    assert set(registry.plugins) >= BUILTINS
    assert registry.owners[("datasets", "synthetic")] == "synthetic"
    assert {"linear", "mlp"} <= set(registry.mappings)


def test_plugins_command_lists_what_each_plugin_registered(cli):
    listing = json.loads(cli("plugins", "--json").out)
    assert "synthetic" in listing["synthetic"]["datasets"]
    assert "mnno" in listing["metrics"]["metrics"]
    assert "mlp" in listing["mappings"]["mappings"]
    assert "mapping" in cli("plugins").out


def test_xmodal_load_plugins_limits_loading(cli, monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "synthetic, mappings")
    assert set(json.loads(cli("plugins", "--json").out)) == {"synthetic", "mappings"}
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "")
    plugins.reset()
    assert json.loads(cli("plugins", "--json").out) == {}


def test_a_broken_plugin_is_named_in_the_error(cli, tmp_path, monkeypatch):
    install(
        tmp_path / "site", monkeypatch, "xmodal-broken", {"broken": "xmodal_broken"},
        {"xmodal_broken": "raise ImportError('missing dependency foo')\n"},
    )  # fmt: skip
    result = cli("plugins")
    assert result.code == 1
    assert "plugin 'broken'" in result.output and "missing dependency foo" in result.output


def test_a_name_clash_names_both_plugins(xmodal_tester: XmodalTester):
    xmodal_tester.register({"register_datasets": copycat_dataset}, name="copycat")
    result = xmodal_tester.cli("plugins")
    assert result.code == 1
    assert "plugins 'synthetic' and 'copycat' both register a dataset named 'synthetic'" in (
        result.output
    )


def test_a_plugin_that_raises_while_registering_is_named(xmodal_tester: XmodalTester):
    def explode(register):
        raise ValueError("bad config")

    xmodal_tester.register({"register_losses": explode}, name="exploder")
    result = xmodal_tester.cli("plugins")
    assert result.code == 1
    assert "plugin 'exploder' failed in register_losses: ValueError: bad config" in result.output


# --- xmodal.testing ------------------------------------------------------------------------------


def test_a_tester_registers_a_dict_a_module_an_object_and_a_file(xmodal_tester, tmp_path):
    module = types.ModuleType("xmodal_mod")
    module.register_losses = hookimpl(
        lambda register: register(LossSpec("l1", lambda p: lambda a, b: (a - b).abs().mean()))
    )
    obj = types.SimpleNamespace(
        **{"register_metrics": hookimpl(one_metric("obj")["register_metrics"])}
    )
    (tmp_path / "xmodal_file_plugin.py").write_text(
        "from xmodal import MetricSpec, hookimpl\n\n"
        "@hookimpl\n"
        "def register_metrics(register):\n"
        "    register(MetricSpec('from_file', lambda probe, params: iter(())))\n"
    )
    assert xmodal_tester.register(one_metric("dict"), name="d") == "d"
    assert xmodal_tester.register(module) == "xmodal_mod"
    assert xmodal_tester.register(obj, name="o") == "o"
    assert xmodal_tester.register(tmp_path / "xmodal_file_plugin.py") == "xmodal_file_plugin"
    registry = xmodal_tester.registry
    assert registry.owners[("metrics", "dict")] == "d"
    assert registry.owners[("losses", "l1")] == "xmodal_mod"
    assert registry.owners[("metrics", "obj")] == "o"
    assert registry.owners[("metrics", "from_file")] == "xmodal_file_plugin"
    assert "mnno" in registry.metrics  # the installed plugins load too


def test_nothing_a_tester_registers_outlives_it(tmp_path):
    with XmodalTester(tmp_path / "a") as tester:
        tester.register(one_metric("ephemeral"), name="gone")
        assert "ephemeral" in plugins.get_registry().metrics
    assert "ephemeral" not in plugins.get_registry().metrics
    assert "gone" not in plugins.get_registry(strict=False).plugins


def test_a_file_plugin_leaves_sys_path_and_modules_as_they_were(tmp_path):
    (tmp_path / "xmodal_tmp_plugin.py").write_text(
        "from xmodal import hookimpl\n\n@hookimpl\ndef register_metrics(register):\n    pass\n"
    )
    before = list(sys.path)
    with XmodalTester(tmp_path / "t") as tester:
        tester.register(tmp_path / "xmodal_tmp_plugin.py")
        assert "xmodal_tmp_plugin" in sys.modules
    assert sys.path == before and "xmodal_tmp_plugin" not in sys.modules


def test_hook_functions_pluggy_would_ignore_are_errors(xmodal_tester: XmodalTester):
    undecorated = types.SimpleNamespace(register_metrics=lambda register: None)
    with pytest.raises(PluginRegistrationError, match="'register_metrics' is not decorated"):
        xmodal_tester.register(undecorated, name="u")
    misnamed = types.SimpleNamespace(register_metric=hookimpl(lambda register: None))
    with pytest.raises(PluginRegistrationError, match="did you mean 'register_metrics'"):
        xmodal_tester.register(misnamed, name="m")
    with pytest.raises(PluginRegistrationError, match="implements no hook"):
        xmodal_tester.register(types.SimpleNamespace(), name="empty")
    xmodal_tester.register(one_metric(), name="twice")
    with pytest.raises(PluginRegistrationError, match="already registered"):
        xmodal_tester.register(one_metric(), name="twice")


def test_a_dict_of_hooks_leaves_the_callers_functions_unmarked(xmodal_tester: XmodalTester):
    def register_metrics(register):
        pass

    xmodal_tester.register({"register_metrics": register_metrics}, name="plain")
    assert not hasattr(register_metrics, "xmodal_impl")


def test_entry_points_choose_the_installed_plugins_that_load(tmp_path):
    with XmodalTester(tmp_path / "none", entry_points=False) as tester:
        tester.register(one_metric(), name="alone")
        assert tester.registry.plugins == ["alone"]
    with XmodalTester(tmp_path / "some", entry_points=["synthetic", "metrics"]) as tester:
        tester.register(one_metric(), name="mine")
        assert set(tester.registry.plugins) == {"synthetic", "metrics", "mine"}


def test_a_run_reports_user_errors_by_status_and_bugs_by_exception(xmodal_tester: XmodalTester):
    bad = xmodal_tester.run({"study": {"name": "x"}, "data": {"dataset": "nope"}})
    assert bad.code == 2 and "'nope' is not a registered dataset" in bad.output
    with pytest.raises(AssertionError, match="exited with status 2"):
        bad.assert_ok()

    def register_commands(cli):
        @cli.command("crash")
        def crash():
            raise RuntimeError("a bug in the plugin")

    xmodal_tester.register({"register_commands": register_commands}, name="crasher")
    with pytest.raises(RuntimeError, match="a bug in the plugin"):
        xmodal_tester.cli("crash")


def test_to_toml_writes_a_study_dict_as_tomllib_reads_it():
    study = {
        "study": {"name": "s", "seeds": [0, 1], "description": 'quote " and \\ and ü'},
        "data": {"dataset": "d", "pairs": [["a", "b"]], "params": {"n": 10, "x": 0.5}},
        "mapping": [{"name": "m", "hidden": [[8], [16, 16]]}, {"name": "linear"}],
        "probes": {"untrained": False, "shuffled": {"fraction": 1.0}},
        "metric": [{"name": "mnno", "k": [1, 5]}],
    }
    assert tomllib.loads(to_toml(study)) == study


def test_select_filters_by_column_and_refuses_names_that_are_not_identifiers(
    xmodal_tester: XmodalTester,
):
    xmodal_tester.register(one_metric(), name="c")
    study = small_study(
        study={"name": "q"}, data_params={"n_items": 60, "dim_text": 4, "dim_image": 4},
        loss=None, train={"epochs": 1}, metric=[{"name": "const"}],
    )  # fmt: skip
    result = xmodal_tester.run(study)
    result.assert_ok()
    assert [r["value"] for r in result.results(metric="const", state="untrained")] == [1.0]
    assert result.results(metric="const", k=None) == result.results(metric="const")
    assert xmodal_tester.query("SELECT count(*) AS n FROM runs WHERE study = ?", "q") == [{"n": 2}]
    with pytest.raises(ValueError, match="not a column name"):
        result.results(**{"metric; DROP TABLE runs": 1})


def test_the_fixture_is_installed_as_a_pytest_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("xmodal.testing")


def test_a_closed_tester_refuses_new_plugins(tmp_path: Path):
    tester = XmodalTester(tmp_path)
    tester.close()
    with pytest.raises(RuntimeError, match="closed"):
        tester.register(one_metric(), name="late")
