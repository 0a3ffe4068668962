"""Plugins: loaded from the `xmodal` entry-point group, built-ins included; every hook documented and tested."""

from __future__ import annotations

import inspect
import json
import re
import types
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_STUDY, rows
from xmodal import hookimpl, hookspecs, plugins
from xmodal.components import DatasetSpec

HOOKS = sorted(
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("register_")
)
BUILTINS = {"synthetic", "mappings", "losses", "metrics"}

EXTERNAL_PLUGIN = '''
import numpy as np
from xmodal import hookimpl
from xmodal.components import DatasetSpec, MetricSpec, ResultRow
from xmodal.data import PairedData
from xmodal.params import Param


def load(params):
    rng = np.random.default_rng(params["seed"])
    words = rng.standard_normal((params["n"], 8)).astype(np.float32)
    return PairedData(
        ids=tuple(str(i) for i in range(params["n"])),
        features={"words": words, "pixels": np.tanh(words @ rng.standard_normal((8, 12))).astype(np.float32)},
        split=np.array(["train", "test"] * (params["n"] // 2)),
    )


def mean_norm(probe, params):
    for split, spaces in probe.spaces.items():
        yield ResultRow(split, "mean_norm", "predicted", float(np.linalg.norm(spaces.predicted, axis=1).mean()))


@hookimpl
def register_datasets(register):
    register(DatasetSpec("toy", load, lambda params: ["words", "pixels"],
                         {"n": Param(int, default=100, min=10), "seed": Param(int, default=0)}))


@hookimpl
def register_metrics(register):
    register(MetricSpec("mean_norm", mean_norm, description="mean norm of predicted vectors"))


@hookimpl
def register_commands(cli):
    @cli.command("toy-hello")
    def hello():
        """Say hello from a plugin command."""
        print("hello from toy")
'''


def install_external_plugin(site: Path, monkeypatch: pytest.MonkeyPatch, name: str = "toy") -> None:
    """Install a plugin the way pip would: a module plus a dist-info with an `xmodal` entry point."""
    site.mkdir(exist_ok=True)
    (site / f"xmodal_{name}.py").write_text(EXTERNAL_PLUGIN)
    dist = site / f"xmodal_{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: xmodal-{name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[xmodal]\n{name} = xmodal_{name}\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()


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


def test_an_external_plugin_adds_a_dataset_and_a_metric_used_by_a_study(
    cli, tmp_path, monkeypatch, write_study, db
):
    install_external_plugin(tmp_path / "site", monkeypatch)
    study = TINY_STUDY.replace('dataset = "synthetic"', 'dataset = "toy"').replace(
        'pairs = [["text", "image"]]', 'pairs = [["words", "pixels"]]'
    )
    study = study.replace(
        "[data.params]\nn_items = 240\ndim_text = 16\ndim_image = 24", "[data.params]\nn = 120"
    )
    study += '\n[[metric]]\nname = "mean_norm"\n'
    result = cli("run", write_study(study), "--db", db)
    assert result.code == 0, result.output
    assert rows(db, "SELECT count(*) FROM results WHERE metric = 'mean_norm'") == [(8,)]
    assert rows(db, "SELECT DISTINCT dataset FROM runs") == [("toy",)]
    assert "toy" in json.loads(cli("plugins", "--json").out)


def test_hook_register_datasets_feeds_the_registry():
    plugin = types.SimpleNamespace(
        register_datasets=hookimpl(
            lambda register: register(DatasetSpec("d", lambda p: None, lambda p: ["a", "b"]))
        )
    )
    registry = plugins.build_registry(plugins.load_manager(extra=[("p", plugin)]))
    assert registry.owners[("datasets", "d")] == "p"


def test_hook_register_mappings_feeds_the_registry():
    assert plugins.get_registry().owners[("mappings", "mlp")] == "mappings"


def test_hook_register_losses_feeds_the_registry():
    assert set(plugins.get_registry().losses) >= {"mse", "cosine", "max_margin", "infonce"}


def test_hook_register_metrics_feeds_the_registry():
    assert plugins.get_registry().owners[("metrics", "mnno")] == "metrics"


def test_hook_register_commands_adds_a_cli_command(cli, tmp_path, monkeypatch):
    install_external_plugin(tmp_path / "site", monkeypatch)
    import xmodal.cli

    monkeypatch.setattr(xmodal.cli, "_commands_registered", False)
    result = cli("toy-hello")
    assert result.code == 0 and "hello from toy" in result.output


def test_a_name_clash_names_both_plugins(cli):
    def dataset_plugin():
        return types.SimpleNamespace(
            register_datasets=hookimpl(
                lambda register: register(DatasetSpec("synthetic", lambda p: None, lambda p: []))
            )
        )

    plugins.reset(plugins.load_manager(extra=[("copycat", dataset_plugin())]))
    result = cli("plugins")
    assert result.code == 1
    assert (
        "'synthetic'" in result.output
        and "'copycat'" in result.output
        and "both register" in result.output
    )


def test_a_broken_plugin_is_named_in_the_error(cli, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "xmodal_broken.py").write_text("raise ImportError('missing dependency foo')\n")
    dist = site / "xmodal_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: xmodal-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[xmodal]\nbroken = xmodal_broken\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    result = cli("plugins")
    assert result.code == 1
    assert "plugin 'broken'" in result.output and "missing dependency foo" in result.output


def test_a_plugin_that_raises_while_registering_is_named(cli):
    def explode(register):
        raise ValueError("bad config")

    plugins.reset(
        plugins.load_manager(
            extra=[("exploder", types.SimpleNamespace(register_losses=hookimpl(explode)))]
        )
    )
    result = cli("plugins")
    assert result.code == 1 and "'exploder'" in result.output and "bad config" in result.output


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    spec = getattr(hookspecs, hook)
    assert spec.__doc__ and len(inspect.cleandoc(spec.__doc__)) > 80, (
        f"{hook} needs a docstring contract"
    )
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `?{hook}", docs, re.M), f"docs/plugins.md has no section for {hook}"
    tests = "\n".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert f"def test_hook_{hook}" in tests, f"no test named test_hook_{hook}_..."
