"""The hooks a plugin can implement. Each docstring is the hook's contract.

A plugin is a module (or object) with functions decorated by `xmodal.hookimpl`, made known to
xmodal through the `xmodal` entry-point group. Every `register_*` hook is called once, when the
plugin manager is first asked for the registry, with a `register` callback; a plugin calls it once
per component it provides. Names must be unique across all loaded plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("xmodal")
hookimpl = pluggy.HookimplMarker("xmodal")


@hookspec
def register_datasets(register: Callable[[Any], None]) -> None:
    """Register dataset sources of paired features.

    Call `register(DatasetSpec(name=..., load=..., feature_sets=..., params=...))` once per dataset.
    `feature_sets(params)` must be cheap (it runs during `xmodal validate`); `load(params)` returns
    an `xmodal.data.PairedData` and is called once per distinct dataset configuration of a study.
    Returns nothing.
    """


@hookspec
def register_mappings(register: Callable[[Any], None]) -> None:
    """Register mapping families (the networks that map one modality onto another).

    Call `register(MappingSpec(name=..., build=..., params=...))`. `build(in_dim, out_dim, params)`
    returns a fresh `torch.nn.Module`; it is called after the run's seed has been set, so its
    random initialisation is reproducible. Returns nothing.
    """


@hookspec
def register_losses(register: Callable[[Any], None]) -> None:
    """Register training losses.

    Call `register(LossSpec(name=..., build=..., params=...))`. `build(params)` returns a callable
    `loss(pred, target)` of two (batch, d) tensors giving a scalar tensor to minimise.
    Returns nothing.
    """


@hookspec
def register_metrics(register: Callable[[Any], None]) -> None:
    """Register probe metrics, computed for every run after training (or at initialisation).

    Call `register(MetricSpec(name=..., compute=..., params=...))`. `compute(probe, params)`
    receives an `xmodal.probes.Probe` and yields `ResultRow`s; the runner adds the run id and
    writes them to the `results` table. Returns nothing.
    """


@hookspec
def register_encoders(register: Callable[[Any], None]) -> None:
    """Register encoders that turn raw text or images into feature vectors.

    Call `register(EncoderSpec(name=..., modality="text" or "image", encode=..., params=...,
    version=...))`. `encode(batch, params)` gets a list of inputs (strings, or image file paths)
    and returns a (len(batch), d) float32 array, NaN rows for inputs it cannot represent. Heavy
    imports and model loading belong inside `encode` (memoised), never at registration: datasets
    name encoders in their `[data.params]`, and the built-in datasets batch, cache on disk and
    show progress with `xmodal_plugins.support.encoders`. Returns nothing.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the `xmodal` command line.

    `cli` is the `typer.Typer` application; decorate functions with `@cli.command()`. Called once
    when the command line starts. Returns nothing.
    """
