"""Hook `register_mappings`: `build(in_dim, out_dim, params)` gives each run's network, seeded;
`fit` replaces gradient descent; `depth(params)` is recorded (docs/plugins.md "register_mappings")."""

from __future__ import annotations

import torch

from tests.plugin_study import small_study
from xmodal import MappingSpec, Param
from xmodal.testing import XmodalTester


def test_hook_mappings_build_gets_the_dimensions_and_complete_params(xmodal_tester: XmodalTester):
    calls = []

    def build(in_dim, out_dim, params):
        calls.append((in_dim, out_dim, dict(params)))
        return torch.nn.Linear(in_dim, out_dim)

    spec = MappingSpec("probe_linear", build, {"bias": Param(bool, default=True)})
    xmodal_tester.register({"register_mappings": lambda register: register(spec)}, name="maps")
    result = xmodal_tester.run(small_study(mapping=[{"name": "probe_linear"}]))
    result.assert_ok()
    assert calls and all(c == (16, 24, {"bias": True}) for c in calls)
    assert {r["state"] for r in result.runs()} >= {"trained", "untrained"}


def test_hook_mappings_depth_comes_from_the_spec_not_from_a_parameter_name(
    xmodal_tester: XmodalTester,
):
    def build(in_dim, out_dim, params):
        return torch.nn.Linear(in_dim, out_dim)

    with_depth = MappingSpec(
        "deep", build, {"layers": Param(int, default=3)}, depth=lambda p: p["layers"]
    )
    without = MappingSpec("flat", build, {"depth": Param(int, default=7)})
    hooks = {"register_mappings": lambda register: [register(with_depth), register(without)]}
    xmodal_tester.register(hooks, name="maps")
    result = xmodal_tester.run(small_study(mapping=[{"name": "deep"}, {"name": "flat"}]))
    result.assert_ok()
    assert {(r["mapping"], r["depth"]) for r in result.runs()} == {("deep", 3), ("flat", None)}


def test_hook_mappings_fit_replaces_gradient_descent_for_trained_runs(xmodal_tester: XmodalTester):
    fitted = []

    def fit(model, x, y, params):
        fitted.append((tuple(x.shape), tuple(y.shape)))
        return model

    spec = MappingSpec("closed", lambda i, o, p: torch.nn.Linear(i, o), fit=fit)
    xmodal_tester.register({"register_mappings": lambda register: register(spec)}, name="maps")
    result = xmodal_tester.run(small_study(mapping=[{"name": "closed"}]))
    result.assert_ok()
    assert len(fitted) == 1  # the trained run only; the untrained run is the seeded build
    assert fitted[0][0][1] == 16 and fitted[0][1][1] == 24
