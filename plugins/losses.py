"""Built-in training losses: mse, cosine, max_margin (ranking hinge), infonce, and weighted sums."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from xmodal import CheckContext, LossSpec, Param, hookimpl

# torch is imported by the builders, when a run trains: registering the losses (every xmodal
# command does) and checking a study must not wait for it.
if TYPE_CHECKING:
    import torch

    Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(params: Mapping[str, Any]) -> Loss:
    """The paper's MSE: mean over items of the per-dimension mean squared error."""
    import torch.nn.functional as F

    return F.mse_loss


def cosine(params: Mapping[str, Any]) -> Loss:
    import torch.nn.functional as F

    return lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=1)).mean()


def max_margin(params: Mapping[str, Any]) -> Loss:
    """Ranking hinge: for each item, Σ over batch negatives of max(0, γ − cos(f(x), y) + cos(f(x), y⁻))."""
    import torch
    import torch.nn.functional as F

    margin, negatives = params["margin"], params["negatives"]

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sims = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T
        positive = sims.diagonal().unsqueeze(1)
        hinge = (margin - positive + sims).clamp(min=0)
        hinge = hinge.masked_fill(torch.eye(len(sims), dtype=torch.bool), 0.0)
        if negatives == "all":
            return hinge.sum(dim=1).mean()
        if negatives == "hardest":
            return hinge.max(dim=1).values.mean()
        count = min(int(negatives), max(len(sims) - 1, 1))
        return hinge.topk(count, dim=1).values.sum(dim=1).mean()

    return loss


def infonce(params: Mapping[str, Any]) -> Loss:
    """Symmetric contrastive loss over the batch (as in CLIP) with a fixed temperature."""
    import torch
    import torch.nn.functional as F

    temperature = params["temperature"]

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T / temperature
        labels = torch.arange(len(logits))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    return loss


BUILDERS: dict[str, tuple[Callable[[Mapping[str, Any]], Loss], dict[str, Param], str]] = {
    "mse": (mse, {}, "mean squared error (the paper's)"),
    "cosine": (cosine, {}, "1 - cosine similarity"),
    "max_margin": (
        max_margin,
        {
            "margin": Param(float, default=0.5, min=0.0, doc="hinge margin on cosine similarity"),
            "negatives": Param(
                int,
                default="all",
                min=1,
                also=("all", "hardest"),
                doc='in-batch negatives summed per item: "all", the "hardest", or the N hardest',
            ),
        },
        "ranking hinge loss with in-batch negatives",
    ),
    "infonce": (
        infonce,
        {
            "temperature": Param(
                float,
                default=0.07,
                min=1e-4,
                doc="the logits are cosine similarities divided by it",
            )
        },
        "symmetric InfoNCE",
    ),
}


def weighted(params: Mapping[str, Any]) -> Loss:
    """Σ weight_i · term_i, each term with its default parameters."""
    terms, weights = params["terms"], params["weights"]
    if len(weights) != len(terms):
        raise ValueError(f"weighted loss has {len(terms)} terms but {len(weights)} weights")
    defaults = {name: {k: p.default for k, p in BUILDERS[name][1].items()} for name in terms}
    parts = [(w, BUILDERS[name][0](defaults[name])) for name, w in zip(terms, weights, strict=True)]
    return lambda pred, target: sum(w * fn(pred, target) for w, fn in parts)


def check_weighted(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    if len(params["weights"]) != len(params["terms"]):
        yield "weights", f"gives {len(params['weights'])} weights for {len(params['terms'])} terms"


@hookimpl
def register_losses(register: Callable[[LossSpec], None]) -> None:
    for name, (build, params, description) in BUILDERS.items():
        # mse is the paper's loss: a study without [[loss]] trains with it.
        register(LossSpec(name, build, params, description, default=name == "mse"))
    register(
        LossSpec(
            "weighted",
            weighted,
            {
                "terms": Param(
                    str,
                    many=True,
                    choices=tuple(BUILDERS),
                    doc="the losses summed, each with its default parameters",
                ),
                "weights": Param(float, many=True, doc="one weight per term, in the same order"),
            },
            "weighted sum of other losses",
            check=check_weighted,
        )
    )
