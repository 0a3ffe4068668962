"""Study -> the list of runs (`Cell`s) it declares, each with a stable content-hash id."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from typing import Any

import attrs

from xmodal.params import expand
from xmodal.plugins import Registry
from xmodal.study import TRAIN_PARAMS, Component, Study

# Bump when the meaning of a run's configuration changes, so old ids are not mistaken for new runs.
RUN_FORMAT = 1


@attrs.frozen
class Cell:
    """One run: everything that determines its results, and nothing that does not."""

    run_id: str
    dataset: str
    dataset_params: Mapping[str, Any]
    input_features: str
    target_features: str
    direction: str
    split: Mapping[str, Any]
    fold: int | None
    mapping: str
    mapping_params: Mapping[str, Any]
    loss: str | None
    loss_params: Mapping[str, Any] | None
    train: Mapping[str, Any] | None
    probe: str
    seed: int
    probes: Mapping[str, Any]
    metrics: tuple[tuple[str, Mapping[str, Any]], ...]

    @property
    def data_key(self) -> str:
        """Identifies the loaded dataset this run reads (shared by many runs)."""
        return canonical_hash({"dataset": self.dataset, "params": self.dataset_params})

    @property
    def depth(self) -> int | None:
        depth = self.mapping_params.get("depth")
        return depth if isinstance(depth, int) else (0 if self.mapping == "linear" else None)

    def config(self) -> dict[str, Any]:
        return config_of(self)


def config_of(cell: Cell) -> dict[str, Any]:
    """The canonical configuration the run id hashes (everything except the id)."""
    config = attrs.asdict(cell, recurse=True)
    config.pop("run_id")
    config["metrics"] = [{"name": n, "params": dict(p)} for n, p in cell.metrics]
    config["format"] = RUN_FORMAT
    return config


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


def make_plan(study: Study, registry: Registry) -> list[Cell]:
    """Expand every sweep of the study into runs, in a stable order; duplicates collapse."""
    datasets = _variants(registry, "datasets", (study.dataset,))
    mappings = _variants(registry, "mappings", study.mappings)
    losses = _variants(registry, "losses", study.losses)
    metrics = tuple(_variants(registry, "metrics", study.metrics))
    trainings = expand(TRAIN_PARAMS, study.train)
    folds: list[int | None] = (
        list(range(study.split["folds"])) if study.split["kind"] == "kfold" else [None]
    )
    split = {
        k: v for k, v in study.split.items() if study.split["kind"] != "dataset" or k == "kind"
    }
    if study.split["kind"] != "kfold":
        split.pop("folds", None)
    if study.split["kind"] != "random":
        split.pop("test_fraction", None)

    cells: dict[str, Cell] = {}
    probes_on = [p for p in ("trained", "untrained") if study.probes[p]]
    probe_settings = {
        "splits": sorted(study.probes["splits"]),
        "include_self": study.probes["include_self"],
    }

    def add(**fields: Any) -> None:
        cell = Cell(run_id="", split=split, probes=probe_settings, metrics=metrics, **fields)
        run_id = canonical_hash(config_of(cell))
        cells.setdefault(run_id, attrs.evolve(cell, run_id=run_id))

    for (dname, dparams), pair, direction, fold in itertools.product(
        datasets, study.pairs, study.directions, folds
    ):
        source, target = pair if direction == "forward" else pair[::-1]
        where = dict(
            dataset=dname,
            dataset_params=dparams,
            input_features=source,
            target_features=target,
            direction=direction,
            fold=fold,
        )
        if study.probes["identity"]:
            # The input itself as the prediction: the reference every mapping is compared with.
            add(**where, mapping="identity", mapping_params={}, loss=None, loss_params=None,
                train=None, probe="identity", seed=0)  # fmt: skip
        for (mname, mparams), probe in itertools.product(mappings, probes_on):
            schedules = (
                [(lname, lparams, train) for (lname, lparams) in losses for train in trainings]
                if probe == "trained"
                else [(None, None, None)]
            )
            for (lname, lparams, train), seed in itertools.product(schedules, study.seeds):
                add(**where, mapping=mname, mapping_params=mparams, loss=lname,
                    loss_params=lparams, train=train, probe=probe, seed=seed)  # fmt: skip
    return list(cells.values())
