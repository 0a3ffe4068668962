"""Training one mapping: seeded initialisation, mini-batch optimisation, per-epoch loss curve."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import torch

from xmodal.components import LossSpec, MappingSpec, RunKindSpec
from xmodal.errors import XmodalError
from xmodal.plugins import owner_of


@attrs.frozen
class Trained:
    """A mapping after training and its per-epoch training (and validation) losses."""

    model: torch.nn.Module
    losses: tuple[float, ...]
    val_losses: tuple[float, ...] = ()
    best_epoch: int | None = None


class MappingOutputError(XmodalError):
    """A mapping plugin built a module that does not map (B, in_dim) rows to (B, out_dim) rows."""


class RunKindError(XmodalError):
    """A run kind's `pairs` returned something other than training pairs of the given shape."""


# Mixed with the run's seed for the generator a run kind's `pairs` receives, so its draws are
# not those of the other generators seeded by the seed alone (e.g. `validation_split`).
_PAIRS_STREAM = 0x70616972  # "pair"


def pairs_rng(seed: int) -> np.random.Generator:
    """The generator a run kind's `pairs` gets: a function of the run's seed alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, _PAIRS_STREAM]))


def training_pairs(
    kind: RunKindSpec,
    params: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    plugin: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training pairs (x, y) as `kind.pairs` transforms them, with `pairs_rng(seed)`.

    The result is checked: two 2-D arrays with equal numbers of rows (at least one) and the
    columns of `x` and `y`, returned in their dtypes; anything else raises `RunKindError`
    naming the kind and its plugin.
    """
    assert kind.pairs is not None
    who = f"run kind {kind.name!r}" + (
        f" (plugin {p!r})" if (p := plugin or owner_of(kind)) else ""
    )
    out = kind.pairs(x, y, pairs_rng(seed), params)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise RunKindError(
            f"{who}: pairs(x, y, rng, params) returned {type(out).__name__}, expected a tuple (x, y)"
        )
    got = []
    for name, new, old in (("x", out[0], x), ("y", out[1], y)):
        try:
            array = np.asarray(new, dtype=old.dtype)
        except (TypeError, ValueError) as exc:
            raise RunKindError(
                f"{who}: pairs returned an {name} that is not numeric: {exc}"
            ) from None
        if array.ndim != 2 or array.shape[1] != old.shape[1] or len(array) == 0:
            raise RunKindError(
                f"{who}: pairs returned {name} of shape {array.shape}, expected (n, {old.shape[1]}) "
                f"with n ≥ 1: the columns of the {name} it was given"
            )
        got.append(np.ascontiguousarray(array))
    if len(got[0]) != len(got[1]):
        raise RunKindError(
            f"{who}: pairs returned {len(got[0])} inputs and {len(got[1])} targets; "
            "every input needs its target"
        )
    return got[0], got[1]


def seeded_model(
    spec: MappingSpec,
    params: Mapping[str, Any],
    in_dim: int,
    out_dim: int,
    seed: int,
    plugin: str | None = None,
) -> torch.nn.Module:
    """Build the mapping with torch's RNG seeded, so initialisation depends on the seed alone.

    The module is checked once, on a tiny batch, to map `in_dim` columns to `out_dim`
    (`check_output_dim`): a wrong dimension fails the run here, naming the mapping and its
    plugin, not later inside torch (or never, for an untrained run).
    """
    torch.manual_seed(seed)
    model = spec.build(in_dim, out_dim, params)
    check_output_dim(spec, model, in_dim, out_dim, plugin or owner_of(spec))
    return model


# Rows of the dummy batch: two, so that layers normalising over the batch work in eval mode too.
_TRIAL_ROWS = 2


def check_output_dim(
    spec: MappingSpec, model: Any, in_dim: int, out_dim: int, plugin: str | None = None
) -> None:
    """Raise `MappingOutputError` unless `model` maps a (2, in_dim) batch to (2, out_dim).

    Runs in eval mode without gradients and restores the module's mode and torch's RNG state,
    so the run (its initialisation, dropout masks and results) is the same as without the check.
    """
    who = f"mapping {spec.name!r}" + (f" (plugin {plugin!r})" if plugin else "")
    if not isinstance(model, torch.nn.Module):
        raise MappingOutputError(
            f"{who}: build(in_dim, out_dim, params) returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    rng = torch.get_rng_state()
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(_TRIAL_ROWS, in_dim))
    except Exception as exc:
        raise MappingOutputError(
            f"{who}: the module built for in_dim={in_dim}, out_dim={out_dim} fails on a "
            f"({_TRIAL_ROWS}, {in_dim}) batch: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for module, training in modes:
            module.training = training
        torch.set_rng_state(rng)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (_TRIAL_ROWS, out_dim):
        got = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise MappingOutputError(
            f"{who}: the module maps a ({_TRIAL_ROWS}, {in_dim}) batch to {got}, expected "
            f"({_TRIAL_ROWS}, {out_dim}): the target features have {out_dim} dimensions; "
            "build(in_dim, out_dim, params) must return a module whose output has out_dim columns"
        )


def _optimizer(model: torch.nn.Module, settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        momentum = settings["momentum"]
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) positions within the training items, seeded."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train(
    model: torch.nn.Module,
    loss: LossSpec,
    loss_params: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    settings: Mapping[str, Any],
    seed: int,
    on_epoch: Callable[[int, torch.nn.Module], None] | None = None,
    rows: np.ndarray | None = None,
) -> Trained:
    """Minimise `loss(model(x), y)` with the study's optimiser settings; deterministic per seed.

    With `early_stopping = P > 0` a seeded `validation_fraction` of the items is held out, and
    training stops after P epochs without a lower validation loss, returning the best weights.
    `on_epoch(epoch, model)` is called after each epoch (the runner records probe curves there).
    `rows` (indices into x and y) trains on those rows alone, gathering each mini-batch from x
    and y as it is needed, so that a large or memory-mapped x is never copied whole; the result
    is the same as training on `x[rows]`, `y[rows]`.
    """
    loss_fn = loss.build(loss_params)
    patience = settings.get("early_stopping", 0)
    xv = yv = None
    if rows is None:
        if patience:
            fit, val = validation_split(len(x), settings["validation_fraction"], seed)
            xv, yv = torch.from_numpy(x[val]), torch.from_numpy(y[val])
            x, y = x[fit], y[fit]
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        n = len(xt)

        def pairs(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return xt[index], yt[index]

    else:
        rows = np.asarray(rows)
        if patience:
            fit, val = validation_split(len(rows), settings["validation_fraction"], seed)
            xv, yv = torch.from_numpy(x[rows[val]]), torch.from_numpy(y[rows[val]])
            rows = rows[fit]
        n = len(rows)

        def pairs(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = rows[index.numpy()]
            return torch.from_numpy(x[chosen]), torch.from_numpy(y[chosen])

    batch = n if settings["batch_size"] == "full" else min(settings["batch_size"], n)
    optimizer = _optimizer(model, settings)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    losses: list[float] = []
    val_losses: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        order = torch.randperm(n, generator=generator) if settings["shuffle"] else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            x_batch, y_batch = pairs(index)
            value = loss_fn(model(x_batch), y_batch)
            value.backward()
            if settings["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
            total += value.item() * len(index)
        mean = total / n
        if not np.isfinite(mean):
            raise FloatingPointError(f"training loss became {mean} at epoch {epoch}; lower lr?")
        losses.append(mean)
        model.eval()
        if on_epoch is not None:
            on_epoch(epoch, model)
        if xv is not None:
            with torch.no_grad():
                val_losses.append(loss_fn(model(xv), yv).item())
            if best is None or val_losses[-1] < best[0]:
                best = (val_losses[-1], epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= patience:
                break
    model.eval()
    if best is not None:
        model.load_state_dict(best[2])
    return Trained(
        model=model,
        losses=tuple(losses),
        val_losses=tuple(val_losses),
        best_epoch=best[1] if best else None,
    )


# Input bytes per prediction batch: with `predict`'s output, one batch is what it holds at once.
PREDICT_BATCH_BYTES = 32 << 20


def predict_batch_rows(in_dim: int) -> int:
    """Rows per prediction batch for inputs of `in_dim` float32 columns."""
    return max(1, PREDICT_BATCH_BYTES // (4 * max(1, in_dim)))


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    x: np.ndarray,
    rows: np.ndarray | None = None,
    batch_rows: int | None = None,
) -> np.ndarray:
    """The mapping applied to every row of x (or to the rows `rows` indexes), as float32 numpy.

    Rows are read and mapped in batches of `batch_rows` (default: `predict_batch_rows`), in eval
    mode without gradients, so a large (or memory-mapped) x is never copied whole: memory held is
    the (n, out_dim) output plus one batch. Mappings map rows independently in eval mode, so the
    result equals one pass over all rows (to float rounding: BLAS may sum in another order for
    another batch size; up to one batch of rows it is that very pass).
    """
    model.eval()
    n = len(x) if rows is None else len(rows)
    step = batch_rows or predict_batch_rows(x.shape[1] if x.ndim == 2 else 1)
    out: np.ndarray | None = None
    for start in range(0, max(n, 1), step):  # an empty x still goes through the model once
        part = x[start : start + step] if rows is None else x[rows[start : start + step]]
        if not (part.flags.c_contiguous and part.flags.writeable):  # e.g. a read-only memmap
            part = np.array(part)
        y = model(torch.from_numpy(part)).numpy()
        if out is None:
            if n <= step:
                return y.astype(np.float32, copy=False)
            out = np.empty((n, *y.shape[1:]), dtype=np.float32)
        out[start : start + len(part)] = y
    assert out is not None
    return out
