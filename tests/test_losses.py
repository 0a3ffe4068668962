"""Losses: the paper's MSE, cosine, the max-margin ranking hinge, InfoNCE, and weighted sums."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.params import expand
from xmodal.plugins import get_registry


def loss(name: str, **params):
    spec = get_registry().losses[name]
    return spec.build(expand(spec.params, params)[0])


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)


def test_mse_is_the_mean_of_per_dimension_squared_errors(batch):
    pred, target = batch
    assert torch.isclose(loss("mse")(pred, target), ((pred - target) ** 2).mean())


def test_cosine_is_zero_for_parallel_vectors(batch):
    pred, _ = batch
    assert loss("cosine")(pred, 3 * pred).abs() < 1e-6
    assert torch.isclose(loss("cosine")(pred, -pred), torch.tensor(2.0))


def test_max_margin_sums_hinges_over_in_batch_negatives(batch):
    pred, target = batch
    sims = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T
    expected = (
        sum(
            max(0.0, 0.3 - sims[i, i].item() + sims[i, j].item())
            for i in range(8)
            for j in range(8)
            if j != i
        )
        / 8
    )
    assert math.isclose(loss("max_margin", margin=0.3)(pred, target).item(), expected, rel_tol=1e-5)


def test_max_margin_is_zero_when_every_positive_wins_by_the_margin():
    target = torch.eye(6)
    assert loss("max_margin", margin=0.9)(target * 2, target) == 0


def test_max_margin_hardest_and_counted_negatives_are_bounded_by_all(batch):
    pred, target = batch
    everything = loss("max_margin", negatives="all")(pred, target)
    hardest = loss("max_margin", negatives="hardest")(pred, target)
    three = loss("max_margin", negatives=3)(pred, target)
    assert hardest <= three <= everything


def test_infonce_is_symmetric_and_near_log_batch_for_unrelated_vectors(batch):
    pred, target = batch
    value = loss("infonce", temperature=100.0)(pred, target)
    assert math.isclose(value.item(), math.log(8), rel_tol=0.02)
    assert torch.isclose(loss("infonce")(pred, target), loss("infonce")(target, pred))


def test_weighted_sum_combines_terms(batch):
    pred, target = batch
    combined = loss("weighted", terms=["mse", "cosine"], weights=[1.0, 0.5])(pred, target)
    assert torch.isclose(combined, loss("mse")(pred, target) + 0.5 * loss("cosine")(pred, target))


def test_weighted_needs_one_weight_per_term(cli, write_study):
    from tests.conftest import TINY_STUDY

    study = TINY_STUDY.replace(
        '[[loss]]\nname = "mse"',
        '[[loss]]\nname = "weighted"\nterms = ["mse", "cosine"]\nweights = [1.0]',
    )
    result = cli("validate", write_study(study))
    assert result.code == 2 and "loss[0].weights" in result.output
