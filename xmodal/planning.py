"""Study -> the list of runs (`Run`s) it declares, each with a stable content-hash id.

A run has two identities (docs/execution.md, "Two stages"):

- its *run id* hashes what determines the trained (or initialised) mapping and its predictions:
  the data (by content fingerprint, not by path), pairing, direction, split strategy and fold,
  mapping, loss, training settings, run kind, seed and the measured splits;
- each of its *measurements* is keyed by the run id plus one metric with its parameters and the
  neighbour convention (`include_self`). A new metric or k adds measurements, never a new run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from xmodal.errors import Problem, StudyError, XmodalError
from xmodal.params import expand
from xmodal.plugins import Registry
from xmodal.splits import fold_ids, strategy_params
from xmodal.study import TRAIN_PARAMS, Component, Study
from xmodal.validation import mapping_depth

# Bump when the meaning of a run's configuration changes, so old ids are not mistaken for new runs.
# 2: metrics left the run id (measurements have their own), the data fingerprint entered it.
RUN_FORMAT = 2

# Run fields whose key in the configuration a run id hashes (and `Run.config` records, as
# `xmodal plan --json` prints and `runs.config` stores) is the name the field had when ids were
# first issued: the hashed keys must not change, or every run id would (tests/test_plan.py pins
# them). Glossary: split strategy, run kind, its parameters, measurement settings.
STORED_KEYS = {
    "split_strategy": "split",
    "kind": "probe",
    "kind_params": "probe_params",
    "measure": "probes",
}

# (dataset name, its parameters) -> a digest of the data those parameters load.
Fingerprinter = Callable[[str, Mapping[str, Any]], str]


@attrs.frozen
class Run:
    """One run: everything that determines its results, and nothing that does not."""

    run_id: str
    dataset: str
    dataset_params: Mapping[str, Any]
    data_fingerprint: str
    input_features: str
    target_features: str
    direction: str
    split_strategy: Mapping[str, Any]
    fold: int | None
    mapping: str
    mapping_params: Mapping[str, Any]
    loss: str | None
    loss_params: Mapping[str, Any] | None
    train: Mapping[str, Any] | None
    kind: str
    seed: int
    measure: Mapping[str, Any]
    metrics: tuple[tuple[str, Mapping[str, Any]], ...]
    # Hidden layers, as the mapping's spec declares for its parameters (`MappingSpec.depth`);
    # None for a family without depth. Derived from mapping + mapping_params: not in the run id.
    depth: int | None = None
    # The run kind's parameters (`[runs.<kind>]`): in the run id only when there are any, so
    # a kind without parameters keeps the ids runs had before kinds could have them.
    kind_params: Mapping[str, Any] = attrs.field(factory=dict)
    # False for a reference with no mapping (the kind's `maps`): its prediction is the input and
    # nothing is stored. It follows from the kind, so it is not in the run id.
    maps: bool = True
    # The study's neighbour backend (`Study.neighbors`; empty: the default, exact). Not in the run
    # id (predictions do not depend on it); in the measurement ids of `backend_metrics`.
    neighbors: Mapping[str, Any] = attrs.field(factory=dict)
    # The neighbour-based metrics whose numbers depend on the backend: empty for an exact backend
    # (exact backends give the same lists, so they share measurements).
    backend_metrics: tuple[str, ...] = ()

    @property
    def data_key(self) -> str:
        """Identifies the loaded dataset this run reads (shared by many runs)."""
        return data_key(self.dataset, self.dataset_params)

    def config(self) -> dict[str, Any]:
        """The run's configuration as recorded: its identity plus the metrics it measures."""
        config = config_of(self)
        config[STORED_KEYS["measure"]] = dict(self.measure)
        config["metrics"] = [{"name": n, "params": dict(p)} for n, p in self.metrics]
        return config

    def measurements(self) -> list[Measurement]:
        """The measurements this run owes its study: one per metric configuration."""
        include_self = bool(self.measure["include_self"])
        return [
            Measurement(
                measurement_id(
                    self.run_id,
                    name,
                    params,
                    include_self,
                    self.neighbors if name in self.backend_metrics else None,
                ),
                name,
                params,
            )
            for name, params in self.metrics
        ]


@attrs.frozen
class Measurement:
    """One metric, with its parameters, applied to one run's stored predictions."""

    measurement_id: str
    metric: str
    params: Mapping[str, Any]


def measurement_id(
    run_id: str,
    metric: str,
    params: Mapping[str, Any],
    include_self: bool,
    neighbors: Mapping[str, Any] | None = None,
) -> str:
    """A measurement's id. `neighbors` is the approximate neighbour backend the lists come from
    (name, parameters, recall settings), None for exact lists: ids measured with exact lists are
    those they were before backends existed."""
    key: dict[str, Any] = {
        "run": run_id,
        "metric": metric,
        "params": dict(params),
        "include_self": include_self,
    }
    if neighbors is not None:
        key["neighbors"] = dict(neighbors)
    return canonical_hash(key)


def config_of(run: Run) -> dict[str, Any]:
    """The canonical configuration the run id hashes: what the run's predictions depend on."""
    config = attrs.asdict(run, recurse=True)
    config.pop("run_id")
    config.pop("metrics")
    config.pop("maps")
    config.pop("neighbors")  # measurements depend on it, predictions do not
    config.pop("backend_metrics")
    if not config["kind_params"]:
        config.pop("kind_params")
    config.pop("depth")  # a description of mapping + mapping_params, already hashed
    config["measure"] = {"splits": list(run.measure["splits"])}
    config = {STORED_KEYS.get(key, key): value for key, value in config.items()}
    config["format"] = RUN_FORMAT
    return config


def data_key(dataset: str, params: Mapping[str, Any]) -> str:
    """Identifies one dataset configuration within a process (its content: `data_fingerprint`)."""
    return canonical_hash({"dataset": dataset, "params": params})


def canonical_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _variants(
    registry: Registry, kind: str, components: tuple[Component, ...]
) -> list[tuple[str, dict]]:
    out = []
    for component in components:
        spec = registry.of(kind)[component.name]
        out.extend((component.name, params) for params in expand(spec.params, component.params))
    return out


def _fingerprint_of(
    study: Study, fingerprint: Fingerprinter, name: str, params: Mapping[str, Any]
) -> str:
    """The data's fingerprint, or the study's error when the data cannot be read."""
    try:
        return fingerprint(name, params)
    except (XmodalError, OSError) as exc:
        message = f"dataset {name!r}: the data cannot be read: {exc}"
        raise StudyError(
            study.path, [Problem("data", message, line=study.line_of("data"))]
        ) from None


def make_plan(
    study: Study, registry: Registry, fingerprint: Fingerprinter | None = None
) -> list[Run]:
    """Expand every sweep of the study into runs, in a stable order; duplicates collapse.

    `fingerprint` digests a dataset configuration's data (default: a fresh `StudyData`'s, which
    asks the dataset's own `fingerprint` or, lacking one, loads the data and digests the arrays).
    """
    if fingerprint is None:
        from xmodal.studydata import StudyData  # studydata builds on this module

        fingerprint = StudyData(registry).fingerprint
    datasets = _variants(registry, "datasets", (study.dataset,))
    fingerprints = [_fingerprint_of(study, fingerprint, name, params) for name, params in datasets]
    mappings = _variants(registry, "mappings", study.mappings)
    depths = {
        (name, canonical_hash(params)): mapping_depth(registry.mappings[name], params)
        for name, params in mappings
    }
    losses = _variants(registry, "losses", study.losses)
    metrics = tuple(_variants(registry, "metrics", study.metrics))
    trainings = expand(TRAIN_PARAMS, study.train)
    # The study's split strategy, as every run records it; one run per fold of the strategy.
    strategy = dict(study.split_strategy)
    folds = fold_ids(registry.split_strategies[strategy["kind"]], strategy_params(strategy)[0])

    runs: dict[str, Run] = {}
    kinds = [
        (spec, expand(spec.params, k.params)[0])  # defaults filled: spelled out or not, one id
        for k in study.kinds
        for spec in (registry.run_kinds[k.name],)
    ]
    references = [(spec, params) for spec, params in kinds if not spec.maps]
    per_mapping = [(spec, params) for spec, params in kinds if spec.maps]
    measure = {
        "splits": sorted(study.measure["splits"]),
        "include_self": study.measure["include_self"],
    }
    neighbors = dict(study.neighbors)
    backend = registry.neighbor_backends.get(neighbors.get("backend", ""))
    backend_metrics = (
        tuple(sorted({n for n, _ in metrics if registry.metrics[n].uses_neighbors}))
        if backend is not None and not backend.exact
        else ()
    )

    def add(**fields: Any) -> None:
        run = Run(run_id="", split_strategy=strategy, measure=measure, metrics=metrics,
                  neighbors=neighbors, backend_metrics=backend_metrics, **fields)  # fmt: skip
        run_id = canonical_hash(config_of(run))
        runs.setdefault(run_id, attrs.evolve(run, run_id=run_id))

    for ((dname, dparams), digest), pair, direction, fold in itertools.product(
        zip(datasets, fingerprints, strict=True), study.pairs, study.directions, folds
    ):
        source, target = pair if direction == "forward" else pair[::-1]
        where = dict(
            dataset=dname,
            dataset_params=dparams,
            data_fingerprint=digest,
            input_features=source,
            target_features=target,
            direction=direction,
            fold=fold,
        )
        for spec, kparams in references:
            # No mapping: the input itself is the prediction (named after the kind), the
            # reference every mapping is compared with. One per place: no loss, no seed.
            add(**where, mapping=spec.name, mapping_params={}, loss=None, loss_params=None,
                train=None, kind=spec.name, kind_params=kparams, maps=False, seed=0)  # fmt: skip
        for (mname, mparams), (spec, kparams) in itertools.product(mappings, per_mapping):
            # A kind that trains makes a run per loss and training variant; one that only
            # initialises shares its runs between them.
            schedules = (
                [(lname, lparams, train) for (lname, lparams) in losses for train in trainings]
                if spec.trains
                else [(None, None, None)]
            )
            for (lname, lparams, train), seed in itertools.product(schedules, study.seeds):
                add(**where, mapping=mname, mapping_params=mparams, loss=lname,
                    loss_params=lparams, train=train, kind=spec.name, kind_params=kparams,
                    seed=seed,
                    depth=depths[mname, canonical_hash(mparams)])  # fmt: skip
    return list(runs.values())
