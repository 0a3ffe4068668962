"""Executing a study's runs: load data once, skip finished runs, record each run atomically."""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from xmodal.components import ResultRow
from xmodal.data import PairedData
from xmodal.errors import Problem, StudyError, XmodalError
from xmodal.params import expand
from xmodal.plan import Cell, canonical_hash
from xmodal.plugins import Registry
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.splits import split_indices
from xmodal.store import Store, now
from xmodal.study import Study
from xmodal.train import predict, seeded_model, train


@attrs.frozen
class RunEvent:
    """Progress of a study: a run started, finished, failed or was skipped as already finished."""

    kind: str
    cell: Cell
    done: int
    total: int
    seconds: float = 0.0
    error: str | None = None


@attrs.frozen
class RunSummary:
    planned: int
    skipped: int
    finished: int
    failed: int
    interrupted: bool = False


class Interrupted(XmodalError):
    """The user stopped the study; finished runs are kept, the interrupted one left no trace."""

    exit_code = 130


@attrs.frozen
class Outcome:
    """Everything one run produced, ready to be written in one transaction."""

    run: dict[str, Any]
    results: list[tuple[Any, ...]]
    curves: list[tuple[Any, ...]]


class StudyData:
    """The datasets, splits and neighbour lists of one study, loaded once and shared by its runs."""

    def __init__(self, registry: Registry, k_hint: int = 10) -> None:
        self.registry = registry
        self._data: dict[str, PairedData] = {}
        self._splits: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.neighbors = NeighborCache(k_hint=k_hint)

    def data(self, cell: Cell) -> PairedData:
        key = cell.data_key
        if key not in self._data:
            spec = self.registry.datasets[cell.dataset]
            self._data[key] = spec.load(cell.dataset_params)
        return self._data[key]

    def split(self, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
        key = (cell.data_key, canonical_hash(dict(cell.split)), cell.fold)
        if key not in self._splits:
            self._splits[key] = split_indices(self.data(cell), cell.split, cell.fold)
        return self._splits[key]


def max_k(cells: Iterable[Cell]) -> int:
    ks = [k for c in cells for _, p in c.metrics for k in (p.get("k") or [])]
    return max(ks, default=10)


def check_runs(study: Study, cells: list[Cell], shared: StudyData) -> None:
    """Checks that need the data: features exist, splits are non-empty, metric k fits the split."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        key = (cell.data_key, canonical_hash(dict(cell.split)), cell.fold)
        if key in seen:
            continue
        seen.add(key)
        try:
            data = shared.data(cell)
        except XmodalError as exc:
            problems.append(Problem("data", f"dataset {cell.dataset!r} could not be loaded: {exc}"))
            continue
        except Exception as exc:
            problems.append(
                Problem(
                    "data", f"dataset {cell.dataset!r} failed to load: {type(exc).__name__}: {exc}"
                )
            )
            continue
        for name in (cell.input_features, cell.target_features):
            if name not in data.features:
                problems.append(
                    Problem(
                        "data.pairs",
                        f"dataset {cell.dataset!r} has no feature set {name!r}",
                        allowed=", ".join(data.features),
                    )
                )
        try:
            train_idx, test_idx = shared.split(cell)
        except XmodalError as exc:
            problems.append(Problem("data.split", str(exc)))
            continue
        sizes = {"train": len(train_idx), "test": len(test_idx)}
        for i, metric in enumerate(study.metrics):
            spec = shared.registry.metrics[metric.name]
            if spec.check is None:
                continue
            params = expand(spec.params, metric.params)[0]
            for split in study.probes["splits"]:
                info = {
                    "n": sizes[split],
                    "split": split,
                    "include_self": study.probes["include_self"],
                }
                for key, message in spec.check(params, info):
                    problems.append(
                        Problem(f"metric[{i}].{key}" if key else f"metric[{i}]", message)
                    )
    if problems:
        unique = list(dict.fromkeys(problems))
        raise StudyError(study.path, [attrs.evolve(p, line=study.line_of(p.path)) for p in unique])


def execute(cell: Cell, shared: StudyData) -> Outcome:
    """Train (or only initialise) one mapping, probe it, and return its rows. Writes nothing."""
    registry = shared.registry
    data = shared.data(cell)
    train_idx, test_idx = shared.split(cell)
    x, y = data.features[cell.input_features], data.features[cell.target_features]
    started = now()
    t0 = time.perf_counter()
    model: torch.nn.Module | None = None
    curves: list[tuple[Any, ...]] = []
    if cell.probe != "identity":
        spec = registry.mappings[cell.mapping]
        model = seeded_model(spec, cell.mapping_params, x.shape[1], y.shape[1], cell.seed)
    if cell.probe == "trained":
        assert model is not None
        if spec.fit is not None:
            model = spec.fit(model, x[train_idx], y[train_idx], cell.mapping_params)
        else:
            model, curves = _train(cell, shared, model, x, y, train_idx, test_idx)
    t1 = time.perf_counter()
    rows = _measure(cell, shared, model, splits=cell.probes["splits"])
    results = [
        (cell.run_id, r.split, r.metric, r.comparison, r.k, r.similarity, None, r.value)
        for r in rows
    ]
    t2 = time.perf_counter()
    run = run_row(cell, "finished", started=started, train_seconds=t1 - t0, probe_seconds=t2 - t1,
                  n_train=len(train_idx), n_test=len(test_idx))  # fmt: skip
    return Outcome(run=run, results=results, curves=curves)


def _train(
    cell: Cell,
    shared: StudyData,
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
) -> tuple[torch.nn.Module, list[tuple[Any, ...]]]:
    """Gradient-descent training with its curves: loss per epoch, probes every `probe_every`."""
    assert cell.loss is not None and cell.train is not None and cell.loss_params is not None
    settings = cell.train
    every = settings["probe_every"]
    curves: list[tuple[Any, ...]] = []

    def probe_curve(epoch: int, current: torch.nn.Module) -> None:
        if every and (epoch % every == 0 or epoch == settings["epochs"]):
            for r in _measure(cell, shared, current, splits=("train", "test")):
                curves.append(
                    (
                        cell.run_id,
                        epoch,
                        r.split,
                        r.metric,
                        r.comparison,
                        r.k,
                        r.similarity,
                        r.value,
                    )
                )

    probe_curve(0, model)
    trained = train(model, shared.registry.losses[cell.loss], cell.loss_params, x[train_idx],
                    y[train_idx], settings, cell.seed, on_epoch=probe_curve)  # fmt: skip
    for name, values in (("loss", trained.losses), ("val_loss", trained.val_losses)):
        curves.extend((cell.run_id, epoch, "train", name, cell.loss, None, None, value)
                      for epoch, value in enumerate(values, start=1))  # fmt: skip
    return trained.model, curves


def _measure(
    cell: Cell, shared: StudyData, model: torch.nn.Module | None, splits: Iterable[str]
) -> list[ResultRow]:
    """Every metric of the run on the given splits; `model=None` predicts the input itself."""
    data = shared.data(cell)
    train_idx, test_idx = shared.split(cell)
    x, y = data.features[cell.input_features], data.features[cell.target_features]
    split_key = (cell.data_key, canonical_hash(dict(cell.split)), cell.fold)
    spaces = {}
    for split in splits:
        index = train_idx if split == "train" else test_idx
        spaces[split] = Spaces(
            split=split,
            input=x[index],
            target=y[index],
            predicted=x[index] if model is None else predict(model, x[index]),
            input_key=(*split_key, split, cell.input_features),
            target_key=(*split_key, split, cell.target_features),
            ids=tuple(data.ids[i] for i in index),
            labels=tuple(data.labels[i] for i in index) if data.labels is not None else None,
        )
    probe = Probe(spaces=spaces, cache=shared.neighbors, include_self=cell.probes["include_self"])
    rows = []
    for name, params in cell.metrics:
        for row in shared.registry.metrics[name].compute(probe, params):
            rows.append(attrs.evolve(row, value=float(row.value)))
    return rows


_PROVENANCE: dict[str, Any] = {}


def provenance() -> dict[str, Any]:
    """Versions and the git commit of the working directory, looked up once per process."""
    if not _PROVENANCE:
        try:
            commit = (
                subprocess.run(
                    ["git", "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.SubprocessError):
            commit = None
        _PROVENANCE.update(
            xmodal_version=importlib.metadata.version("xmodal"),
            git_commit=commit,
            torch_version=torch.__version__,
            numpy_version=np.__version__,
        )
    return _PROVENANCE


def run_row(
    cell: Cell, status: str, *, started: Any, error: str | None = None, **timings: Any
) -> dict[str, Any]:
    train = cell.train or {}
    return {
        "run_id": cell.run_id,
        "dataset": cell.dataset,
        "input_features": cell.input_features,
        "target_features": cell.target_features,
        "direction": cell.direction,
        "split": cell.split["kind"],
        "fold": cell.fold,
        "mapping": cell.mapping,
        "depth": cell.depth,
        "loss": cell.loss,
        "state": cell.probe,
        "seed": cell.seed,
        "epochs": train.get("epochs"),
        "batch_size": str(train["batch_size"]) if train else None,
        "optimizer": train.get("optimizer"),
        "lr": train.get("lr"),
        "config": cell.config(),
        "status": status,
        "error": error,
        "started_at": started,
        "finished_at": now(),
        "torch_threads": torch.get_num_threads(),
        **provenance(),
        **timings,
    }


def run_study(
    study: Study,
    cells: list[Cell],
    store: Store,
    shared: StudyData,
    *,
    force: bool = False,
    fail_fast: bool = False,
    on_event: Callable[[RunEvent], None] | None = None,
) -> RunSummary:
    """Execute the study's pending runs in order, writing each run's rows as it finishes."""
    emit = on_event or (lambda event: None)
    store.record_study(
        study.name,
        study.source_hash,
        str(Path(study.path)),
        study.source,
        [c.run_id for c in cells],
    )
    statuses = {} if force else store.run_statuses([c.run_id for c in cells])
    total = len(cells)
    skipped = finished = failed = 0
    for done, cell in enumerate(cells, start=1):
        if statuses.get(cell.run_id) == "finished":
            skipped += 1
            emit(RunEvent("skip", cell, done, total))
            continue
        emit(RunEvent("start", cell, done - 1, total))
        t0 = time.perf_counter()
        started = now()
        try:
            outcome = execute(cell, shared)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {finished} run(s) finished in this session are saved; "
                f"run the same command again to resume ({total - done + 1} left)"
            ) from None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            failed += 1
            store.record_run(
                {
                    **run_row(cell, "failed", started=started, error=error),
                    "study": study.name,
                    "error": error + "\n" + traceback.format_exc(limit=5),
                },
                [],
                [],
            )
            emit(RunEvent("fail", cell, done, total, time.perf_counter() - t0, error=error))
            if fail_fast:
                raise XmodalError(f"run {cell.run_id} failed (--fail-fast): {error}") from None
            continue
        try:
            store.record_run({**outcome.run, "study": study.name}, outcome.results, outcome.curves)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while saving a run; it was rolled back and will be redone"
            ) from None
        finished += 1
        emit(RunEvent("finish", cell, done, total, time.perf_counter() - t0))
    return RunSummary(planned=total, skipped=skipped, finished=finished, failed=failed)
