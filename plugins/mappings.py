"""Built-in mapping families: `linear` and `mlp` (0-5 hidden layers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from xmodal import hookimpl
from xmodal.components import MappingSpec
from xmodal.params import Param

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
INITS = ("default", "xavier", "kaiming", "orthogonal", "paper")

LINEAR_PARAMS = {
    "init": Param(str, default="default", choices=INITS, doc="weight initialisation"),
}
MLP_PARAMS = {
    "depth": Param(int, default=1, min=0, max=5, doc="hidden layers; 0 is a linear map"),
    "hidden": Param(int, default=[256], many=True, min=1, doc="width, or one width per layer"),
    "activation": Param(str, default="relu", choices=tuple(ACTIVATIONS)),
    "dropout": Param(float, default=0.0, min=0.0, max=0.95),
    "layer_norm": Param(bool, default=False),
    "init": Param(str, default="default", choices=INITS, doc="weight initialisation"),
}


def _truncated_normal_(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def initialise(layer: nn.Linear, scheme: str, *, after_relu: bool, is_output: bool) -> None:
    """Re-initialise one affine layer. "default" keeps torch's own initialisation.

    "paper" follows the authors' released code: truncated normal weights with
    std sqrt(2 / (fan_in + fan_out)), biases 0.1 on layers followed by a ReLU and on the output.
    """
    if scheme == "default":
        return
    if scheme == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif scheme == "kaiming":
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    elif scheme == "orthogonal":
        nn.init.orthogonal_(layer.weight)
    elif scheme == "paper":
        fan_out, fan_in = layer.weight.shape
        _truncated_normal_(layer.weight, math.sqrt(2.0 / (fan_in + fan_out)))
        nn.init.constant_(layer.bias, 0.1 if (after_relu or is_output) else 0.0)
        return
    nn.init.zeros_(layer.bias)


def widths(params: Mapping[str, Any]) -> list[int]:
    """One width per hidden layer: a single width repeats, a list must match the depth."""
    hidden, depth = list(params["hidden"]), params["depth"]
    if len(hidden) == 1:
        return hidden * depth
    if len(hidden) != depth:
        raise ValueError(f"hidden lists {len(hidden)} widths for depth {depth}")
    return hidden


def build_mlp(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> nn.Module:
    layers: list[nn.Module] = []
    previous = in_dim
    for width in widths(params):
        linear = nn.Linear(previous, width)
        initialise(
            linear, params["init"], after_relu=params["activation"] == "relu", is_output=False
        )
        layers.append(linear)
        if params["layer_norm"]:
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[params["activation"]]())
        if params["dropout"] > 0:
            layers.append(nn.Dropout(params["dropout"]))
        previous = width
    output = nn.Linear(previous, out_dim)
    initialise(output, params["init"], after_relu=False, is_output=True)
    layers.append(output)
    return nn.Sequential(*layers)


def build_linear(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> nn.Module:
    layer = nn.Linear(in_dim, out_dim)
    initialise(layer, params["init"], after_relu=False, is_output=True)
    return layer


@hookimpl
def register_mappings(register: Callable[[MappingSpec], None]) -> None:
    register(MappingSpec("linear", build_linear, LINEAR_PARAMS, "one affine layer"))
    register(MappingSpec("mlp", build_mlp, MLP_PARAMS, "feed-forward net, 0-5 hidden layers"))
