"""Hook `register_metrics`: `compute(probe, params)` sees each measured split's spaces and
yields ResultRows, stored per measurement (docs/plugins.md "register_metrics")."""

from __future__ import annotations

import numpy as np

from tests.plugin_study import small_study
from xmodal import MetricSpec, Param, ResultRow
from xmodal.testing import XmodalTester


def test_hook_metrics_compute_sees_the_spaces_and_its_rows_are_stored(
    xmodal_tester: XmodalTester,
):
    seen = []

    def compute(probe, params):
        for split in probe.splits:
            spaces = probe.spaces[split]
            seen.append((split, spaces.input.shape, spaces.target.shape, spaces.predicted.shape))
            assert spaces.of("predicted") is spaces.predicted
            assert len(spaces.ids) == len(spaces.input)
            lists = probe.neighbors(split, "target", params["k"])
            assert lists.shape == (len(spaces.target), params["k"])
            yield ResultRow(split, "spread", "pred", float(np.std(spaces.predicted)), params["k"])

    spec = MetricSpec("spread", compute, {"k": Param(int, default=3, min=1)}, compares=("pred",))
    xmodal_tester.register({"register_metrics": lambda register: register(spec)}, name="m")
    result = xmodal_tester.run(small_study(metric=[{"name": "spread"}]))
    result.assert_ok()
    assert {s[0] for s in seen} == {"test"}
    assert all(s[1][1] == 16 and s[2][1] == 24 and s[3][1] == 24 for s in seen)
    rows = result.results(metric="spread")
    assert len(rows) == 2 and {r["k"] for r in rows} == {3}  # one per run; default k filled in
    assert {m["status"] for m in result.measurements(metric="spread")} == {"finished"}


def test_hook_metrics_a_metric_added_later_is_measured_without_retraining(
    xmodal_tester: XmodalTester,
):
    spec = MetricSpec("count", lambda probe, params: [ResultRow("test", "count", "n", 1.0)])
    xmodal_tester.register({"register_metrics": lambda register: register(spec)}, name="m")
    xmodal_tester.run(small_study()).assert_ok()
    again = xmodal_tester.run(
        small_study(metric=[{"name": "mnno", "k": [1, 5]}, {"name": "count"}])
    )
    again.assert_ok()
    assert "2 measured," in again.out
    assert len(again.results(metric="count")) == 2
