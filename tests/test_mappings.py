"""Mapping families: the architectures the paper trained, their initialisations, closed-form baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.params import expand
from xmodal.plugins import get_registry


def build(name: str, in_dim: int = 6, out_dim: int = 4, **params):
    spec = get_registry().mappings[name]
    torch.manual_seed(0)
    return spec.build(in_dim, out_dim, expand(spec.params, params)[0])


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 5])
def test_mlp_depth_counts_hidden_layers_and_zero_is_linear(depth):
    model = build("mlp", depth=depth, hidden=8)
    assert len(linears(model)) == depth + 1
    assert model(torch.zeros(3, 6)).shape == (3, 4)


def test_hidden_can_give_one_width_per_layer():
    model = build("mlp", depth=3, hidden=[16, 8, 5])
    assert [layer.out_features for layer in linears(model)] == [16, 8, 5, 4]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "leaky_relu"])
def test_each_activation_builds(activation):
    model = build("mlp", depth=2, hidden=8, activation=activation, dropout=0.2, layer_norm=True)
    assert any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) for m in model.modules())


def test_paper_init_is_truncated_normal_with_biases_of_one_tenth():
    model = build("mlp", in_dim=300, out_dim=200, depth=2, hidden=400, init="paper")
    hidden, _, output = linears(model)
    std = np.sqrt(2 / (300 + 400))
    w = hidden.weight.detach().numpy()
    assert np.abs(w).max() <= 2 * std + 1e-6
    assert 0.7 * std < w.std() < 1.0 * std  # a normal truncated at 2 std has std ~0.88 std
    assert torch.all(hidden.bias == 0.1) and torch.all(output.bias == 0.1)


@pytest.mark.parametrize("init", ["xavier", "kaiming", "orthogonal"])
def test_other_inits_zero_the_biases(init):
    for layer in linears(build("mlp", depth=1, hidden=8, init=init)):
        assert torch.all(layer.bias == 0)


def test_initialisation_depends_only_on_the_seed():
    spec = get_registry().mappings["mlp"]
    params = expand(spec.params, {"depth": 2})[0]
    from xmodal.train import seeded_model

    a, b, c = (seeded_model(spec, params, 5, 3, seed) for seed in (1, 1, 2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_ridge_recovers_a_linear_map_exactly_without_noise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    w, b = rng.standard_normal((6, 4)), rng.standard_normal(4)
    y = (x @ w + b).astype(np.float32)
    spec = get_registry().mappings["ridge"]
    model = spec.fit(build("ridge"), x, y, {"alpha": 1e-8})
    pred = model(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(pred, y, atol=1e-3)


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    y = (x @ rotation + 3.0).astype(np.float32)
    spec = get_registry().mappings["procrustes"]
    model = spec.fit(build("procrustes", 5, 5), x, y, {"width": 0})
    assert np.allclose(model(torch.from_numpy(x)).detach().numpy(), y, atol=1e-3)


def test_procrustes_maps_between_different_widths():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 8)).astype(np.float32)
    y = rng.standard_normal((100, 3)).astype(np.float32)
    spec = get_registry().mappings["procrustes"]
    model = spec.fit(build("procrustes", 8, 3), x, y, {"width": 0})
    assert model(torch.from_numpy(x)).shape == (100, 3)


def test_a_hidden_list_that_does_not_match_the_depth_is_a_study_error(cli, write_study):
    from tests.conftest import TINY_STUDY

    result = cli("validate", write_study(TINY_STUDY.replace("hidden = 32", "hidden = [32, 16, 8]")))
    assert (
        result.code == 2
        and "mapping[1].hidden" in result.output
        and "3 widths for depth 2" in result.output
    )
