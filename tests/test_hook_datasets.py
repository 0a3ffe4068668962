"""Hook `register_datasets`: a DatasetSpec registered by a plugin feeds studies, plans and
`xmodal datasets` (contract: xmodal/hookspecs.py, docs/plugins.md "register_datasets")."""

from __future__ import annotations

import numpy as np

from tests.plugin_study import small_study
from xmodal import DatasetSpec, FeatureSetInfo, PairedData, Param
from xmodal.testing import XmodalTester


def counted_dataset(calls: list[dict]) -> DatasetSpec:
    def load(params):
        calls.append(dict(params))
        rng = np.random.default_rng(params["seed"])
        a = rng.standard_normal((params["n"], 6)).astype(np.float32)
        return PairedData(
            ids=tuple(map(str, range(params["n"]))),
            features={"a": a, "b": np.tanh(a[:, :4])},
            split=np.where(np.arange(params["n"]) % 5 == 0, "test", "train"),
        )

    return DatasetSpec(
        "counted",
        load,
        lambda params: ["a", "b"],
        {"n": Param(int, default=40, min=10), "seed": Param(int, default=0)},
        description="counts its loads",
        describe=lambda params: [FeatureSetInfo("a", params["n"], 6, "normal noise")],
    )


def test_hook_datasets_load_gets_complete_params_once_per_configuration(
    xmodal_tester: XmodalTester,
):
    calls: list[dict] = []
    spec = counted_dataset(calls)
    xmodal_tester.register({"register_datasets": lambda register: register(spec)}, name="counting")
    study = small_study(dataset="counted", data_params={"n": [40, 60]}, pairs=[["a", "b"]])
    result = xmodal_tester.run(study)
    result.assert_ok()
    # Defaults are filled in (seed), the sweep gives one call per value, shared by all its runs.
    assert sorted(c["n"] for c in calls) == [40, 60]
    assert all(c == {"n": c["n"], "seed": 0} for c in calls)
    assert len(result.runs()) == 4


def test_hook_datasets_feature_sets_are_what_a_study_may_pair(xmodal_tester: XmodalTester):
    spec = counted_dataset([])
    xmodal_tester.register({"register_datasets": lambda register: register(spec)}, name="counting")
    result = xmodal_tester.validate(
        small_study(dataset="counted", data_params={}, pairs=[["a", "c"]])
    )
    assert result.code == 2
    assert (
        "'c' is not a feature set of dataset 'counted'" in result.output
        and "allowed: a, b" in result.output
    )


def test_hook_datasets_describe_feeds_the_datasets_command(xmodal_tester: XmodalTester):
    calls: list[dict] = []
    spec = counted_dataset(calls)
    xmodal_tester.register({"register_datasets": lambda register: register(spec)}, name="counting")
    listing = xmodal_tester.cli("datasets").assert_ok().out
    assert "counted" in listing and "normal noise" in listing
    assert calls == []  # nothing was loaded to describe it
