"""The run loop: decide per run whether it trains, only measures or is cached; hand the work to an
executor; record each run as it ends.

Only this loop writes to the store, one transaction per run, under a lock that keeps a second
`xmodal run` off the same database; so an interrupted or killed study loses at most the runs in
flight, never a recorded one, and resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from xmodal.artifacts import ArtifactStore
from xmodal.components import ExecutorOptions
from xmodal.errors import XmodalError
from xmodal.execute import Job, Outcome, run_row
from xmodal.executors import Failure, LocalExecutor, require_executor, threads_per_run
from xmodal.locking import RunLock
from xmodal.planning import Measurement, Run
from xmodal.recorder import Recorder
from xmodal.records import MeasurementRow
from xmodal.spool import check_free_space
from xmodal.store import RunRecord, Store, now
from xmodal.study import Study
from xmodal.studydata import StudyData
from xmodal.views import declared_views


@attrs.frozen
class RunEvent:
    """Progress of a study: a run started, finished, failed or was skipped as already finished."""

    kind: str
    run: Run
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
    measured: int = 0  # runs that were only measured (their predictions were stored)
    spooled: int = 0  # finished runs still waiting in the spool (the database stayed busy)


class Interrupted(XmodalError):
    """The user stopped the study; finished runs are kept, the interrupted one left no trace."""

    exit_code = 130


@attrs.frozen
class Stage:
    """What running a study will do with one of its runs.

    `action` is "train" (train or initialise it, store its predictions, measure), "measure"
    (its stored predictions get the measurements it lacks) or "cached" (nothing to do).
    `previous` is the run's recorded status, if any ("finished", "failed", "running").
    """

    run: Run
    action: str
    missing: tuple[Measurement, ...]
    artifact: str | None = None
    previous: str | None = None


def stages(
    runs: list[Run], store: Store, artifacts: ArtifactStore, force: bool = False
) -> list[Stage]:
    """Decide, per run, whether it trains, only measures, or is cached."""
    states = store.run_states([c.run_id for c in runs])
    owed = {c.run_id: c.measurements() for c in runs}
    made = store.measurement_statuses([m.measurement_id for ms in owed.values() for m in ms])
    out = []
    for run in runs:
        status, digest = states.get(run.run_id, (None, None))
        missing = tuple(m for m in owed[run.run_id] if made.get(m.measurement_id) != "finished")
        if force or status != "finished":
            out.append(Stage(run, "train", tuple(owed[run.run_id]), previous=status))
        elif not missing:
            out.append(Stage(run, "cached", (), digest, previous=status))
        elif not run.maps or artifacts.has(digest):  # without a mapping nothing is stored
            out.append(Stage(run, "measure", missing, digest, previous=status))
        else:  # its predictions were removed (`xmodal gc`): train again, measure what is missing
            out.append(Stage(run, "train", missing, previous=status))
    return out


def _job(stage: Stage, artifacts: ArtifactStore, inline: bool) -> Job:
    if stage.action == "train" or not stage.run.maps:
        return Job(stage.run, stage.action == "train", stage.missing)
    digest = str(stage.artifact)
    return Job(
        stage.run,
        False,
        stage.missing,
        artifact_path=str(artifacts.path(digest)),
        artifact_digest=digest,
        predictions=artifacts.load(digest) if inline else None,
    )


def run_study(
    study: Study,
    runs: list[Run],
    store: Store,
    shared: StudyData,
    *,
    force: bool = False,
    fail_fast: bool = False,
    executor: str | None = None,
    workers: int = 1,
    address: str | None = None,
    threads: int = 1,
    wait: bool = False,
    on_event: Callable[[RunEvent], None] | None = None,
    write_wait: float | None = None,
) -> RunSummary:
    """Train the study's untrained runs and make its missing measurements, writing each run's
    rows as it finishes; runs with nothing missing are skipped.

    `executor` names a registered executor (None: the default one). Whatever can be known up
    front (the executor exists and can run here, the database can be written) is checked
    before the database, its lock or its spool is touched."""
    emit = on_event or (lambda event: None)
    options = ExecutorOptions(max(1, workers), threads_per_run(workers, threads), address)
    spec = require_executor(executor, address, workers=options.workers, threads=options.threads,
                            registry=shared.registry)  # fmt: skip
    check_writable(store.path)
    artifacts = ArtifactStore(store.path)
    with RunLock(store.path, study.name, wait=wait):
        recorder = Recorder(store, write_wait)
        if not recorder.flush(store.lock_timeout):  # runs an earlier runner had to spool
            raise XmodalError(
                f"{store.path} is busy (a reader holds it) and {recorder.waiting()} finished "
                f"run(s) wait in {recorder.spool.path}; close the reader and run again"
            )
        ids = [c.run_id for c in runs]
        owed = [(m.measurement_id, c.run_id) for c in runs for m in c.measurements()]
        views = declared_views(shared.registry)  # the report sections' views, kept current
        store.record_study(
            study.name, study.source_hash, str(Path(study.path)), study.source, ids, owed, views
        )
        plan = stages(runs, store, artifacts, force)
        pending = [s for s in plan if s.action != "cached"]
        total, done = len(runs), len(runs) - len(pending)
        for stage in plan:
            if stage.action == "cached":
                emit(RunEvent("skip", stage.run, done, total))
        if not pending:
            return RunSummary(planned=total, skipped=done, finished=0, failed=0)
        check_free_space(store.path, _space_needed(pending, shared), "the run's predictions")
        # A measure-only run needs the lists of its missing metrics on its probed splits (no
        # training curves): `train=None` keeps the train split's lists from being computed.
        try:  # long for large spaces: Ctrl-C here stops the study as in the run loop
            shared.precompute(
                attrs.evolve(
                    s.run, metrics=tuple((m.metric, m.params) for m in s.missing), train=None
                )
                if s.action == "measure"
                else s.run
                for s in pending
            )
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while computing neighbour lists, before any run started; run the "
                f"same command again to start ({len(pending)} left)"
            ) from None
        trains = any(s.action == "train" for s in pending)
        # Workers that cannot read this machine's files get a measure-only job's predictions.
        jobs = [_job(s, artifacts, inline=trains and not spec.shares_files) for s in pending]
        previous = {s.run.run_id: s.previous for s in pending}
        finished = failed = measured = 0
        started: dict[str, Any] = {}
        saving: list[str] = []  # the run being recorded: if that is cut short, its mark goes too
        # Only measurements: each takes a fraction of a second, less than starting a worker
        # pool would; they run here, with the torch threads a run of this study gets, so that
        # their numbers are those the runs would have measured right after training.
        runner = spec.make(shared, options) if trains else LocalExecutor(shared, options.threads)

        def on_start(job: Job) -> None:
            started[job.run_id] = time.perf_counter()  # first: an interrupted mark is cleared too
            if job.train:
                row = run_row(job.run, "running", started=now(), study=study.name)
                recorder.best_effort(lambda: recorder.store.mark_running(row))
            emit(RunEvent("start", job.run, done, total))

        try:
            for job, result in runner.run(jobs, on_start):
                saving[:] = [job.run_id]
                done += 1
                seconds = time.perf_counter() - started.pop(job.run_id)
                if isinstance(result, Failure):
                    failed += 1
                    error = result.error
                    if not job.train:
                        if result.error.startswith("ArtifactError"):
                            recorder.best_effort(
                                lambda rid=job.run_id: recorder.store.forget_artifact(rid)
                            )
                            error += " (its predictions will be recomputed on the next run)"
                    elif previous[job.run_id] == "finished":
                        # A forced redo that fails must not wipe the results it was to replace
                        # (mark_running left a finished row as it was).
                        error += " (its earlier finished results are kept)"
                    else:
                        row = run_row(job.run, "failed", started=None, study=study.name,
                                      error=f"{result.error}\n{result.traceback}")  # fmt: skip
                        _write(recorder, RunRecord(job.run_id, row, [], [], []))
                    emit(RunEvent("fail", job.run, done, total, seconds, error=error))
                    if fail_fast:
                        raise XmodalError(f"run {job.run_id} failed (--fail-fast): {result.error}")
                    continue
                _write(
                    recorder, _record_of(job, result, study, artifacts, force), batch=not job.train
                )
                if result.errors:
                    failed += 1
                    emit(RunEvent("fail", job.run, done, total, seconds,
                                  error="; ".join(e.splitlines()[0] for e in result.errors)))  # fmt: skip
                    if fail_fast:
                        raise XmodalError(
                            f"run {job.run_id} failed (--fail-fast): {result.errors[0].splitlines()[0]}"
                        )
                    continue
                if job.train:
                    finished += 1
                else:
                    measured += 1
                emit(RunEvent("finish", job.run, done, total, seconds))
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {finished + measured} run(s) finished in this session are saved; "
                f"run the same command again to resume ({total - done} left)"
            ) from None
        finally:
            # Runs still in flight when the loop stops (Ctrl-C, --fail-fast, a dead worker)
            # were never recorded: forget their `running` marks so they do not look stale.
            recorder.write_batch()  # measurements that finished are kept, whatever stopped us
            recorder.best_effort(lambda: recorder.store.clear_running([*started, *saving]))
            runner.close()
        spooled = recorder.finish()
    return RunSummary(planned=total, skipped=total - len(pending), finished=finished,
                      failed=failed, measured=measured, spooled=spooled)  # fmt: skip


def check_writable(db: Path) -> None:
    """Refuse, before anything is written, a results database that cannot be written: its
    directory missing or read-only, or the file itself read-only."""
    db = Path(db)
    parent = db.resolve().parent
    fix = "pass --db PATH in a writable directory (or set XMODAL_DB)"
    if not parent.is_dir():
        raise XmodalError(
            f"{db}: cannot write the results database: {parent} is not a directory; {fix}"
        )
    if db.exists():
        if not os.access(db, os.R_OK | os.W_OK):
            raise XmodalError(
                f"{db}: cannot write the results database: the file is read-only for you; "
                f"make it writable (chmod u+w {db}) or {fix}"
            )
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise XmodalError(
            f"{db}: cannot create the results database: directory {parent} is not writable; {fix}"
        )


def _record_of(
    job: Job, outcome: Outcome, study: Study, artifacts: ArtifactStore, force: bool
) -> RunRecord:
    """The store's record of a job: its predictions go to the artifacts first (a crash between
    the two leaves an unreferenced file, never a run pointing at a missing one)."""
    row = None
    if outcome.run is not None:
        digest = artifacts.put(outcome.predictions) if outcome.predictions is not None else None
        row = attrs.evolve(outcome.run, study=study.name, artifact=digest)
    stamp = now()
    include_self = bool(job.run.measure["include_self"])
    measurements = [
        MeasurementRow(
            measurement_id=m.measurement.measurement_id,
            run_id=job.run_id,
            metric=m.measurement.metric,
            params=dict(m.measurement.params),
            include_self=include_self,
            status="failed" if m.error else "finished",
            error=m.error,
            seconds=m.seconds,
            measured_at=stamp,
        )
        for m in outcome.measured
    ]
    results = [row for m in outcome.measured for row in m.rows]
    return RunRecord(job.run_id, row, measurements, results, outcome.curves,
                     replace_all=force and job.train)  # fmt: skip


def _space_needed(stages: list[Stage], shared: StudyData) -> int:
    """Bytes the predictions of the runs to train take (artifact and, at worst, spool), plus a
    margin for their result rows."""
    total = 0
    for stage in stages:
        if stage.action != "train" or not stage.run.maps:
            continue
        target = shared.data(stage.run).features[stage.run.target_features]
        sizes = dict(zip(("train", "test"), map(len, shared.split(stage.run)), strict=True))
        total += sum(sizes[s] for s in stage.run.measure["splits"]) * target.shape[1] * 4
    return 2 * total + 16 * 2**20


def _write(recorder: Recorder, record: RunRecord, batch: bool = False) -> None:
    try:
        recorder.record(record, batch=batch)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted while saving a run; it was rolled back and will be redone"
        ) from None
