"""Training one mapping: seeded initialisation, mini-batch optimisation, per-epoch loss curve."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import torch

from xmodal.components import LossSpec, MappingSpec


@attrs.frozen
class Trained:
    """A mapping after training (or at initialisation) and its per-epoch training losses."""

    model: torch.nn.Module
    losses: tuple[float, ...]


def seeded_model(
    spec: MappingSpec, params: Mapping[str, Any], in_dim: int, out_dim: int, seed: int
) -> torch.nn.Module:
    """Build the mapping with torch's RNG seeded, so initialisation depends on the seed alone."""
    torch.manual_seed(seed)
    return spec.build(in_dim, out_dim, params)


def _optimizer(model: torch.nn.Module, settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=settings["momentum"], weight_decay=wd
        )
    raise ValueError(f"unknown optimizer {name!r}")


def train(
    model: torch.nn.Module,
    loss: LossSpec,
    loss_params: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    settings: Mapping[str, Any],
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Trained:
    """Minimise `loss(model(x), y)` with the study's optimiser settings; deterministic per seed."""
    loss_fn = loss.build(loss_params)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(xt)
    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    optimizer = _optimizer(model, settings)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    losses = []
    model.train()
    for epoch in range(1, settings["epochs"] + 1):
        order = torch.randperm(n, generator=generator) if settings["shuffle"] else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            value = loss_fn(model(xt[index]), yt[index])
            value.backward()
            if settings["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
            total += value.item() * len(index)
        mean = total / n
        if not np.isfinite(mean):
            raise FloatingPointError(f"training loss became {mean} at epoch {epoch}; lower lr?")
        losses.append(mean)
        if on_epoch is not None:
            on_epoch(epoch, mean)
    model.eval()
    return Trained(model=model, losses=tuple(losses))


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The mapping applied to every row of x, as float32 numpy."""
    model.eval()
    return model(torch.from_numpy(x)).numpy().astype(np.float32, copy=False)
