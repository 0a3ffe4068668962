"""One run, start to finish: initialise (and train) the mapping, probe it, return its rows.

Nothing here writes to the store: a run's outcome goes back to the process that owns the run
loop, which records it in one transaction. So the same function serves every executor.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np
import torch

from xmodal.components import ResultRow
from xmodal.plan import Cell
from xmodal.probes import Probe, Spaces
from xmodal.store import now
from xmodal.studydata import StudyData, split_key
from xmodal.train import predict, seeded_model, train


@attrs.frozen
class Outcome:
    """Everything one run produced, ready to be written in one transaction."""

    run: dict[str, Any]
    results: list[tuple[Any, ...]]
    curves: list[tuple[Any, ...]]


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
    key = split_key(cell)
    spaces = {}
    for split in splits:
        index = train_idx if split == "train" else test_idx
        spaces[split] = Spaces(
            split=split,
            input=x[index],
            target=y[index],
            predicted=x[index] if model is None else predict(model, x[index]),
            input_key=(*key, split, cell.input_features),
            target_key=(*key, split, cell.target_features),
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
