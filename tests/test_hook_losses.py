"""Hook `register_losses`: `build(params)` returns the function training minimises, called on
(B, d) batches of predicted and target rows (docs/plugins.md "register_losses")."""

from __future__ import annotations

from tests.plugin_study import small_study
from xmodal import LossSpec, Param
from xmodal.testing import XmodalTester


def test_hook_losses_the_loss_gets_batches_and_complete_params(xmodal_tester: XmodalTester):
    built, shapes = [], set()

    def build(params):
        built.append(dict(params))

        def loss(pred, target):
            shapes.add((tuple(pred.shape[1:]), tuple(target.shape[1:])))
            return ((pred - target) ** 2).mean() * params["scale"]

        return loss

    spec = LossSpec("scaled", build, {"scale": Param(float, default=2.0, min=0.0)})
    xmodal_tester.register({"register_losses": lambda register: register(spec)}, name="losses2")
    result = xmodal_tester.run(small_study(loss=[{"name": "scaled"}]))
    result.assert_ok()
    assert built and all(b == {"scale": 2.0} for b in built)
    assert shapes == {((24,), (24,))}
    assert {r["loss"] for r in result.runs(state="trained")} == {"scaled"}


def test_hook_losses_a_constant_loss_leaves_the_mapping_at_its_initialisation(
    xmodal_tester: XmodalTester,
):
    """What the loss says is what training minimises: no gradient, no change."""
    spec = LossSpec("flat", lambda params: lambda pred, target: (pred * 0.0).sum())
    xmodal_tester.register({"register_losses": lambda register: register(spec)}, name="losses2")
    result = xmodal_tester.run(small_study(loss=[{"name": "flat"}]))
    result.assert_ok()
    by_state = {
        (r["state"], r["comparison"], r["k"]): r["value"] for r in result.results(metric="mnno")
    }
    trained = {key[1:]: v for key, v in by_state.items() if key[0] == "trained"}
    untrained = {key[1:]: v for key, v in by_state.items() if key[0] == "untrained"}
    assert trained and trained == untrained
