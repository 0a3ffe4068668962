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
    """Register metrics, computed for every run after training (or at initialisation).

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


@hookspec
def register_run_kinds(register: Callable[[Any], None]) -> None:
    """Register kinds of run: what is done to a mapping before its predictions are measured.

    Arguments: `register`, a callback; call `register(RunKindSpec(name=..., trains=...,
    maps=..., pairs=..., default=..., params=...))` once per kind. The built-in kinds (plugin
    `run_kinds`) are `trained`, `untrained`, `identity` and the `shuffled` control.

    When: once, when the registry is first built (before any study is read). A study turns a kind
    on in its `[runs]` table (`name = true`, or a `[runs.name]` table of its parameters);
    `xmodal.planning` makes the kind's runs (their `runs.kind` is the kind's name), and the run
    itself calls `pairs(x, y, rng, params)` on the training pairs, when the kind has one, with
    `rng` a `numpy.random.Generator` seeded by the run's seed. Names must be unique across plugins
    and may not be `splits` or `include_self` (the measurement settings, which `[probes]`, the
    old name of `[runs]` and `[measure]`, holds beside the kinds).

    Returns nothing.
    """


@hookspec
def register_report_sections(register: Callable[[Any], None]) -> None:
    """Register sections of `xmodal report`, with the SQL views they read.

    Arguments: `register`, a callback; call `register(ReportSectionSpec(name=..., render=...,
    views={...}, order=..., metrics=(...)))` once per section. The paper's tables and figures are
    the built-in plugin `paper_report`; the core adds one section of its own, "All measurements"
    (order 1000): a table per row metric and comparison, and a by-depth figure, for every metric
    that no rendered section lists in its `metrics`.

    When: once, when the registry is first built. Each declared view (`name -> SELECT ...`) is
    created or replaced in the results database when a study runs (`xmodal run`, in the
    transaction that records the study) and by `xmodal report` when one is missing, so `xmodal
    query` and plain DuckDB see it. Then `xmodal report STUDY` calls every section's
    `render(context)` in `order` (then name) with an `xmodal.ReportContext`: `context.fetch(sql,
    params)` reads (read-only: the views, filtered by `context.study`), `context.path(name)` is
    where to write a figure, `context.display(metric)` how a row metric is shown.

    Returns nothing. `render` returns the section's blocks (`ReportTable`, `ReportFigure`,
    `ReportText`, or Markdown strings), empty when the study has nothing for it; a `ReportTable`
    with `headline=True` is printed by `xmodal report` on the terminal (the report's first one)
    instead of written to report.md. A render that raises does not stop the report: report.md
    names the section and its plugin, and the command prints a warning.
    """


@hookspec
def register_split_strategies(register: Callable[[Any], None]) -> None:
    """Register split strategies: how a study divides its items into train and test folds.

    Arguments: `register`, a callback; call `register(SplitStrategySpec(name=..., folds=...,
    fold_ids=..., params=..., seeded=...))` once per strategy. The built-in strategies (plugin
    `splits`) are `dataset` (the dataset's own train/test marks), `random`, `kfold`,
    `grouped_kfold`, `stratified_kfold` and `column` (the dataset's per-item fold numbers).

    When: once, when the registry is first built. A study names one strategy in `[data] split`
    (default `"dataset"`) with its parameters beside it in `[data]`; `xmodal validate` checks
    them against the spec's `params`, and planning calls `fold_ids(params)` (no data loaded) to
    make one run per fold. Before the first run, the runner calls `folds(data, params, seed)`
    once per dataset configuration, with the loaded `PairedData`, the parameters (defaults
    filled) and `[data] split_seed`; it checks the indices it returns (ids as declared, integer
    indices in range, train and test disjoint and non-empty) and reports an exception it
    raises, or a bad result, as a problem of `data.split_strategy` before anything runs. Names must be
    unique across plugins.

    Returns nothing.
    """


@hookspec
def register_similarities(register: Callable[[Any], None]) -> None:
    """Register similarities for exact nearest-neighbour search (and the metrics built on it).

    Arguments: `register`, a callback; call `register(SimilaritySpec(name=..., prepare=...,
    self_similarity=..., weight=..., rejects_zero_rows=...))` once per similarity. The built-in
    ones (plugin `similarities`) are `cosine` and `euclidean`.

    When: once, when the registry is first built. A metric parameter declared
    `Param(str, choices_from="similarities")` accepts the registered names (`xmodal validate`
    suggests the nearest for a typo). `xmodal.knn(X, k, similarity=name)` and
    `Probe.neighbors(..., similarity)` look the name up and call `prepare(X, sq_norms)` once per
    space (the input, target and predicted vectors of each probed split); the blocked kNN then
    ranks by weight · (Y[i] · Y[j]) − offset[i] − offset[j]. With `rejects_zero_rows`,
    `xmodal validate` names the all-zero items of every feature set a study compares with it.
    Names must be unique across plugins.

    Returns nothing.
    """


@hookspec
def register_executors(register: Callable[[Any], None]) -> None:
    """Register executors: where a study's runs execute (in-process, a process pool, a cluster).

    Arguments: `register`, a callback; call `register(ExecutorSpec(name=..., make=...,
    available=..., shares_files=..., default=...))` once per executor. The built-in ones (`local`,
    `process`, `ray`) are registered through this hook by xmodal's default plugin
    `xmodal.default_executors`, which always loads (`XMODAL_LOAD_PLUGINS` does not apply to it)
    and registers first: a plugin's executor of the same name is reported, not used.

    When: once, when the registry is first built. `[execution] executor` in a study and
    `xmodal run --executor NAME` must name a registered executor (a typo gets "did you mean").
    `xmodal run` then calls `available(options)` with an `ExecutorOptions` (workers, threads per
    run, address) before it opens the results database for writing: a message it returns stops
    the command with nothing written. Once the runs to train are known, `make(shared, options)`
    builds the executor, its `run(jobs, on_start)` executes them and `close()` ends it (see
    `ExecutorSpec`). A session that only measures stored predictions runs in-process and does
    not call `make`. Names must be unique across plugins.

    Returns nothing.
    """


@hookspec
def register_neighbor_backends(register: Callable[[Any], None]) -> None:
    """Register neighbour backends: how the neighbour lists behind mNNO and kNN Jaccard are found.

    Arguments: `register`, a callback; call `register(NeighborBackendSpec(name=..., search=...,
    params=..., exact=..., default=...))` once per backend. The built-in `exact` backend (the
    blocked kNN of `xmodal.knn`, the default) is registered by xmodal's default plugin
    `xmodal.default_neighbor_backends`, which always loads and registers first; the approximate
    `hnsw` backend is the plugin `ann` (it needs the `ann` extra: faiss-cpu).

    When: once, when the registry is first built. A study names a backend in its `[neighbors]`
    table (`backend = "name"`, default: the backend declared `default`) with the backend's
    parameters beside it; `xmodal validate` checks them against `params` (a typo gets "did you
    mean"), and calls `check(params, context)` when given. While runs are measured, every
    neighbour list a metric asks for (`Probe.neighbors`) is computed by `search(X, k,
    similarity, include_self, params)` — once per space and similarity for the largest k the
    study needs (input and target spaces once per study, the predicted space once per run),
    smaller k served as prefixes. For a backend with `exact=False`, xmodal then measures the
    recall@k of the lists against exact search on `recall_sample` items drawn with
    `recall_seed`, and writes it as `neighbor_recall` results of each measurement that used
    them. Names must be unique across plugins.

    Returns nothing. `search` returns the N×k neighbour indices; an exception it raises fails
    the measurements that needed the lists (their error names the backend), not the study.
    """
