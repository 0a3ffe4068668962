"""Built-in mapping families: `linear`, `mlp` (0-5 hidden layers), and the closed-form `ridge`
and `procrustes` baselines, which are fitted without gradient descent."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xmodal import CheckContext, MappingSpec, Param, hookimpl

# torch is imported by the functions that build or fit a network: registering the mappings
# (every xmodal command does) and checking a study must not wait for it.
if TYPE_CHECKING:
    import torch
    from torch import nn

# Activation name -> the torch.nn class name (looked up when a network is built).
ACTIVATIONS: dict[str, str] = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "gelu": "GELU",
    "leaky_relu": "LeakyReLU",
}
INITS = ("default", "xavier", "kaiming", "orthogonal", "paper")

LINEAR_PARAMS = {
    "init": Param(str, default="default", choices=INITS, doc="weight initialisation"),
}
MLP_PARAMS = {
    "depth": Param(int, default=1, min=0, max=5, doc="hidden layers; 0 is a linear map"),
    "hidden": Param(int, default=[256], many=True, min=1, doc="width, or one width per layer"),
    "activation": Param(
        str, default="relu", choices=tuple(ACTIVATIONS), doc="non-linearity after each hidden layer"
    ),
    "dropout": Param(
        float, default=0.0, min=0.0, max=0.95, doc="dropout rate after each hidden activation"
    ),
    "layer_norm": Param(
        bool, default=False, doc="LayerNorm after each hidden layer, before its activation"
    ),
    "init": Param(str, default="default", choices=INITS, doc="weight initialisation"),
}


def _truncated_normal_(weight: torch.Tensor, std: float) -> None:
    from torch import nn

    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def initialise(layer: nn.Linear, scheme: str, *, after_relu: bool, is_output: bool) -> None:
    """Re-initialise one affine layer. "default" keeps torch's own initialisation.

    "paper" follows the authors' released code: truncated normal weights with
    std sqrt(2 / (fan_in + fan_out)), biases 0.1 on layers followed by a ReLU and on the output.
    """
    if scheme == "default":
        return
    from torch import nn

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
    if len(hidden) == 1 or depth == 0:
        return hidden[:1] * depth
    if len(hidden) != depth:
        raise ValueError(f"hidden lists {len(hidden)} widths for depth {depth}")
    return hidden


def check_mlp(params: Mapping[str, Any], context: CheckContext) -> Iterator[tuple[str, str]]:
    hidden, depth = params["hidden"], params["depth"]
    if len(hidden) not in (1, depth) and depth > 0:
        yield "hidden", f"lists {len(hidden)} widths for depth {depth}: give one width or {depth}"


def build_mlp(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> nn.Module:
    from torch import nn

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
        layers.append(getattr(nn, ACTIVATIONS[params["activation"]])())
        if params["dropout"] > 0:
            layers.append(nn.Dropout(params["dropout"]))
        previous = width
    output = nn.Linear(previous, out_dim)
    initialise(output, params["init"], after_relu=False, is_output=True)
    layers.append(output)
    return nn.Sequential(*layers)


def build_linear(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> nn.Module:
    from torch import nn

    layer = nn.Linear(in_dim, out_dim)
    initialise(layer, params["init"], after_relu=False, is_output=True)
    return layer


def _affine(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    """A linear layer computing x @ weight + bias (weight is in_dim × out_dim)."""
    import torch
    from torch import nn

    layer = nn.Linear(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
        layer.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return layer


def fit_ridge(
    model: nn.Module, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]
) -> nn.Module:
    """Regularised least squares on centred data: W = (XᵀX + αI)⁻¹ XᵀY, in float64."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(axis=0), y64.mean(axis=0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc + params["alpha"] * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, xc.T @ yc)
    return _affine(weight, my - mx @ weight)


def _principal_axes(centred: np.ndarray, width: int) -> np.ndarray:
    """The top `width` principal directions (d × width), signs fixed for determinism."""
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:width].T
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return axes * np.where(signs == 0, 1, signs)


def fit_procrustes(
    model: nn.Module, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]
) -> nn.Module:
    """Orthogonal Procrustes between the two spaces projected to a common width.

    Both spaces are centred and projected on their top `width` principal axes (width defaults to
    the smaller dimension); R = UVᵀ from the SVD of PxᵀPy is the best rotation, and the
    prediction is mapped back into the target space: f(x) = ((x − μx) Ax R) Ayᵀ + μy.
    """
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(axis=0), y64.mean(axis=0)
    width = min(params["width"] or min(x.shape[1], y.shape[1]), x.shape[1], y.shape[1], len(x))
    ax, ay = _principal_axes(x64 - mx, width), _principal_axes(y64 - my, width)
    px, py = (x64 - mx) @ ax, (y64 - my) @ ay
    u, _, vt = np.linalg.svd(px.T @ py)
    weight = ax @ (u @ vt) @ ay.T
    return _affine(weight, my - mx @ weight)


def build_affine(in_dim: int, out_dim: int, params: Mapping[str, Any]) -> nn.Module:
    """The affine layer a closed-form fit fills in (its parameters are the fit's, not the layer's)."""
    return build_linear(in_dim, out_dim, {"init": "default"})


RIDGE_PARAMS = {"alpha": Param(float, default=1.0, min=0.0, doc="L2 penalty")}
PROCRUSTES_PARAMS = {
    "width": Param(int, default=0, min=0, doc="common width; 0 = the smaller dimension")
}


# Depth places a family on the report's by-depth figures (runs.depth). `linear` is the 0-hidden-
# layer network; `ridge` and `procrustes` are affine too, but closed-form baselines, not networks
# trained by gradient descent: they declare no depth, so they are kept in the tables and off the
# depth axis instead of being averaged into the depth-0 point.
@hookimpl
def register_mappings(register: Callable[[MappingSpec], None]) -> None:
    register(
        MappingSpec(
            "linear", build_linear, LINEAR_PARAMS, "one affine layer", depth=lambda params: 0
        )
    )
    register(
        MappingSpec(
            "mlp",
            build_mlp,
            MLP_PARAMS,
            "feed-forward net, 0-5 hidden layers",
            check=check_mlp,
            depth=lambda params: params["depth"],
        )
    )
    register(
        MappingSpec(
            "ridge",
            build_affine,
            RIDGE_PARAMS,
            "closed-form regularised least squares",
            fit=fit_ridge,
        )
    )
    register(
        MappingSpec(
            "procrustes",
            build_affine,
            PROCRUSTES_PARAMS,
            "orthogonal map between principal subspaces of a common width",
            fit=fit_procrustes,
        )
    )
