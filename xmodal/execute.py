"""One run's work: train (or only initialise) its mapping, or reuse its stored predictions, then
measure them with every metric it still owes.

Nothing here writes to the store or the artifacts directory: a run's outcome goes back to the
process that owns the run loop, which stores its predictions and records it in one transaction.
So the same function serves every executor.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from xmodal import plugins
from xmodal.artifacts import load_artifact
from xmodal.planning import Measurement, Run
from xmodal.probes import Probe, Spaces
from xmodal.records import RunRow
from xmodal.store import now
from xmodal.studydata import StudyData, split_key

if TYPE_CHECKING:
    import torch

# torch and xmodal.train are imported by the functions that train or predict: the runner imports
# this module to plan and check a study (`xmodal validate`), which must not wait for torch.


@attrs.frozen
class Job:
    """What the runner asks of one run.

    `train`: train (or initialise) the mapping and predict the probed splits; otherwise the
    predictions come from the stored artifact (`artifact_path`, checked against
    `artifact_digest`) or, for executors without a shared disk, `predictions` itself.
    `measurements`: the metrics to compute on those predictions (the ones the run lacks).
    """

    run: Run
    train: bool
    measurements: tuple[Measurement, ...]
    artifact_path: str | None = None
    artifact_digest: str | None = None
    predictions: Mapping[str, np.ndarray] | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id


@attrs.frozen
class Measured:
    """One measurement's rows (run_id, measurement_id, split, metric, comparison, k, similarity,
    epoch, value), or the error its metric raised."""

    measurement: Measurement
    rows: list[tuple[Any, ...]]
    seconds: float
    error: str | None = None


@attrs.frozen
class Outcome:
    """Everything one job produced, ready to be stored and written in one transaction.

    `run` (the run's row) and `predictions` (to store as its artifact) are set when the job
    trained; a measure-only job leaves them None.
    """

    run: RunRow | None
    predictions: dict[str, np.ndarray] | None
    measured: list[Measured]
    curves: list[tuple[Any, ...]]

    @property
    def errors(self) -> list[str]:
        return [f"metric {m.measurement.metric!r}: {m.error}" for m in self.measured if m.error]


def execute(job: Job, shared: StudyData) -> Outcome:
    """Train or reload one run's predictions, then measure them. Writes nothing."""
    run = job.run
    started = now()
    t0 = time.perf_counter()
    curves: list[tuple[Any, ...]] = []
    row: RunRow | None = None
    predictions: dict[str, np.ndarray] | None = None
    if job.train:
        model, curves, n_train, n_test = _fit(run, shared)
        predictions = _predict(run, shared, model)
    elif run.maps:  # a run without a mapping predicts its input: nothing was stored
        predictions = (
            dict(job.predictions)
            if job.predictions is not None
            else load_artifact(str(job.artifact_path), str(job.artifact_digest))
        )
    t1 = time.perf_counter()
    measured = _measure_all(run, shared, predictions, job.measurements)
    t2 = time.perf_counter()
    if job.train:
        row = run_row(run, "finished", started=started, train_seconds=t1 - t0,
                      measure_seconds=t2 - t1, n_train=n_train, n_test=n_test)  # fmt: skip
    return Outcome(run=row, predictions=predictions, measured=measured, curves=curves)


def _fit(run: Run, shared: StudyData) -> tuple[torch.nn.Module | None, list, int, int]:
    """The run's mapping as its run kind makes it: none (a kind that does not map), only
    initialised, or fitted on the training pairs (transformed by the kind's `pairs`, if any),
    with its training curves."""
    from xmodal.train import seeded_model, training_pairs

    registry = shared.registry
    kind = registry.run_kinds[run.kind]
    data = shared.data(run)
    train_idx, test_idx = shared.split(run)
    x, y = data.features[run.input_features], data.features[run.target_features]
    model: torch.nn.Module | None = None
    curves: list[tuple[Any, ...]] = []
    if kind.maps:
        spec = registry.mappings[run.mapping]
        model = seeded_model(spec, run.mapping_params, x.shape[1], y.shape[1], run.seed)
    if kind.trains:
        assert model is not None
        if kind.pairs is None and spec.fit is None:
            # Batches are gathered from x and y (maybe memory-mapped): no copy of the train rows.
            model, curves = _train(run, shared, model, x, y, rows=train_idx)
        else:
            x_fit, y_fit = x[train_idx], y[train_idx]
            if kind.pairs is not None:
                x_fit, y_fit = training_pairs(kind, run.kind_params, x_fit, y_fit, run.seed)
            if spec.fit is not None:
                model = spec.fit(model, x_fit, y_fit, run.mapping_params)
            else:
                model, curves = _train(run, shared, model, x_fit, y_fit)
    return model, curves, len(train_idx), len(test_idx)


def _indices(run: Run, shared: StudyData) -> dict[str, np.ndarray]:
    """The run's item indices by split name."""
    return dict(zip(("train", "test"), shared.split(run), strict=True))


def _predict(
    run: Run, shared: StudyData, model: torch.nn.Module | None
) -> dict[str, np.ndarray] | None:
    """Predicted vectors of every probed split (None without a mapping: the input itself)."""
    if model is None:
        return None
    from xmodal.train import predict

    x = shared.data(run).features[run.input_features]
    indices = _indices(run, shared)
    # In batches of rows read straight from x (which may be memory-mapped): no copy of the split.
    return {
        split: np.asarray(predict(model, x, rows=indices[split]), dtype=np.float32)
        for split in run.measure["splits"]
    }


def _train(
    run: Run,
    shared: StudyData,
    model: torch.nn.Module,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    rows: np.ndarray | None = None,
) -> tuple[torch.nn.Module, list[tuple[Any, ...]]]:
    """Gradient-descent training on the pairs (`x_fit`, `y_fit`) (or their rows `rows`) with its
    curves: loss per epoch, probes every `probe_every`.

    Probe curves measure the metrics the study has while the run trains, on the run's items and
    their true targets; they are part of the run (a metric added later gets final
    measurements, not a curve)."""
    from xmodal.train import predict, train

    assert run.loss is not None and run.train is not None and run.loss_params is not None
    settings = run.train
    every = settings["probe_every"]
    curves: list[tuple[Any, ...]] = []
    x = shared.data(run).features[run.input_features]

    def probe_curve(epoch: int, current: torch.nn.Module) -> None:
        if every and (epoch % every == 0 or epoch == settings["epochs"]):
            indices = _indices(run, shared)
            predicted = {s: predict(current, x, rows=i) for s, i in indices.items()}
            probe = _probe(run, shared, predicted, predicted)
            for name, params in run.metrics:
                for r in shared.registry.metrics[name].compute(probe, params):
                    curves.append((run.run_id, epoch, r.split, r.metric, r.comparison, r.k,
                                   r.similarity, float(r.value)))  # fmt: skip

    probe_curve(0, model)
    trained = train(model, shared.registry.losses[run.loss], run.loss_params, x_fit, y_fit,
                    settings, run.seed, on_epoch=probe_curve, rows=rows)  # fmt: skip
    for name, values in (("loss", trained.losses), ("val_loss", trained.val_losses)):
        curves.extend((run.run_id, epoch, "train", name, run.loss, None, None, value)
                      for epoch, value in enumerate(values, start=1))  # fmt: skip
    return trained.model, curves


def _probe(
    run: Run, shared: StudyData, predicted: Mapping[str, np.ndarray] | None,
    splits: Iterable[str],
) -> Probe:  # fmt: skip
    """What metrics see: input, target and predicted spaces of each split; `predicted=None`
    predicts the input itself (the identity)."""
    data = shared.data(run)
    indices = _indices(run, shared)
    x, y = data.features[run.input_features], data.features[run.target_features]
    key = split_key(run)
    spaces = {}
    for split in splits:
        index = indices[split]
        spaces[split] = Spaces(
            split=split,
            input=x[index],
            target=y[index],
            predicted=x[index] if predicted is None else predicted[split],
            input_key=(*key, split, run.input_features),
            target_key=(*key, split, run.target_features),
            ids=tuple(data.ids[i] for i in index),
            labels=tuple(data.labels[i] for i in index) if data.labels is not None else None,
        )
    return Probe(
        spaces=spaces,
        cache=shared.neighbors,
        include_self=run.measure["include_self"],
        seed=run.seed,
        neighbor_config=run.neighbors,
    )


def _measure_all(
    run: Run,
    shared: StudyData,
    predictions: Mapping[str, np.ndarray] | None,
    measurements: Iterable[Measurement],
) -> list[Measured]:
    """Each measurement on the run's probed splits; a metric that raises fails only its own."""
    probe = _probe(run, shared, predictions, run.measure["splits"])
    out = []
    for m in measurements:
        t0 = time.perf_counter()
        probe.take_recalls()  # what an earlier metric used is not this one's
        try:
            # Rows are checked against the metric's declaration (compares, value_range); an
            # error names the plugin the metric comes from.
            spec = shared.registry.metrics[m.metric]
            rows = [
                (run.run_id, m.measurement_id, r.split, r.metric, r.comparison, r.k,
                 r.similarity, None, float(r.value), _bound(r.ci_low), _bound(r.ci_high))
                for r in plugins.checked_rows(spec, spec.compute(probe, m.params))
            ]  # fmt: skip
            # Lists from an approximate neighbour backend: their sampled recall@k beside the
            # metric's rows (comparison: the space), for each k of the metric.
            rows += [
                (run.run_id, m.measurement_id, split, "neighbor_recall", role, k, similarity,
                 None, value, None, None)
                for split, role, k, similarity, value in probe.take_recalls(m.params.get("k", ()))
            ]  # fmt: skip
        except Exception as exc:
            declared = isinstance(exc, plugins.MetricOutputError)  # its message says it all
            detail = "" if declared else traceback.format_exc(limit=4)
            owner = shared.registry.owners.get(("metrics", m.metric))
            error = plugins.measurement_error(exc, owner, detail)
            out.append(Measured(m, [], time.perf_counter() - t0, error=error))
            continue
        out.append(Measured(m, rows, time.perf_counter() - t0))
    return out


def _bound(value: float | None) -> float | None:
    """A confidence bound as stored: a float, or None (NULL) when the row has no interval."""
    return None if value is None else float(value)


_PROVENANCE: dict[str, Any] = {}


def provenance() -> dict[str, Any]:
    """Versions and the git commit of the running xmodal code, looked up once per process."""
    if not _PROVENANCE:
        import torch

        _PROVENANCE.update(
            xmodal_version=importlib.metadata.version("xmodal"),
            git_commit=code_commit(Path(__file__).resolve().parent),
            torch_version=torch.__version__,
            numpy_version=np.__version__,
        )
    return _PROVENANCE


def code_commit(package_dir: Path) -> str | None:
    """The commit of the checkout `package_dir` (xmodal's own code) belongs to, with `-dirty`
    when its tracked files differ from that commit; None for an installed copy outside git.
    Not the current directory's: a study run from another repository names that one."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(package_dir), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def run_row(
    run: Run,
    status: str,
    *,
    started: Any,
    error: str | None = None,
    study: str | None = None,
    train_seconds: float | None = None,
    measure_seconds: float | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
) -> RunRow:
    """The `runs` row of `run` with this status and these timings (`study` and `artifact` are
    the runner's to fill in)."""
    import torch

    train = run.train or {}
    return RunRow(
        run_id=run.run_id,
        study=study,
        dataset=run.dataset,
        input_features=run.input_features,
        target_features=run.target_features,
        direction=run.direction,
        split_strategy=run.split_strategy["kind"],
        fold=run.fold,
        mapping=run.mapping,
        depth=run.depth,
        loss=run.loss,
        kind=run.kind,
        seed=run.seed,
        epochs=train.get("epochs"),
        batch_size=str(train["batch_size"]) if train else None,
        optimizer=train.get("optimizer"),
        lr=train.get("lr"),
        n_train=n_train,
        n_test=n_test,
        config=run.config(),
        data_fingerprint=run.data_fingerprint,
        status=status,
        error=error,
        started_at=started,
        finished_at=now(),
        train_seconds=train_seconds,
        measure_seconds=measure_seconds,
        torch_threads=torch.get_num_threads(),
        **provenance(),
    )
